//! The few vector loops of the forward pass that are not matmuls: dot products and weighted
//! sums for attention, and a vectorised `exp` for softmax and SiLU. Each has a scalar
//! reference (always available, used when AVX2+FMA is missing) and an AVX2 path chosen at
//! run time; the two agree to float rounding, and each path is deterministic on its own.

use std::sync::OnceLock;

/// Whether the AVX2+FMA paths are used (checked once).
pub fn use_avx2() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("AGQ_NO_SIMD").is_none()
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `sum a[i] * b[i]`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 and FMA were detected; lengths are equal.
        return unsafe { x86::dot(a, b) };
    }
    scalar::dot(a, b)
}

/// `out[i] = scale * dot(q, keys[i])` for the `out.len()` rows of `keys` (row length `q.len()`).
#[inline]
pub fn scores(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
    let d = q.len();
    assert!(keys.len() >= out.len() * d);
    #[cfg(target_arch = "x86_64")]
    if use_avx2() && d.is_multiple_of(8) {
        // SAFETY: AVX2 and FMA were detected; `keys` holds `out.len()` rows of `d`.
        return unsafe { x86::scores(q, keys, scale, out) };
    }
    for (i, s) in out.iter_mut().enumerate() {
        *s = scale * dot(q, &keys[i * d..(i + 1) * d]);
    }
}

/// `out = sum_i p[i] * values[i]` (rows of length `out.len()`), overwriting `out`.
#[inline]
pub fn weighted_sum(p: &[f32], values: &[f32], out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    weighted_sum_acc(p, values, out)
}

/// `out += sum_i p[i] * values[i]`, adding each term to `out` in order `i = 0, 1, ...`: so
/// running it over consecutive slices of `p` / `values` gives bit-for-bit the result of one
/// call over all of them (attention walks the cache tile by tile this way).
#[inline]
pub fn weighted_sum_acc(p: &[f32], values: &[f32], out: &mut [f32]) {
    let d = out.len();
    assert!(values.len() >= p.len() * d);
    #[cfg(target_arch = "x86_64")]
    if use_avx2() && d.is_multiple_of(32) {
        // SAFETY: AVX2 and FMA were detected; `values` holds `p.len()` rows of `d`.
        return unsafe { x86::weighted_sum_acc(p, values, out) };
    }
    scalar::weighted_sum_acc(p, values, out)
}

/// `x[i] = exp(x[i] - shift)`, returning the sum of the results (accumulated in a fixed
/// order, so it is deterministic).
#[inline]
pub fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::exp_shifted_sum(x, shift) };
    }
    scalar::exp_shifted_sum(x, shift)
}

/// Per lane: `row[i] = exp(row[i] - shift[i])`, `sum[i] += row[i]` (`avx`: the AVX2 path,
/// which the caller has checked with [`use_avx2`]).
#[inline]
pub fn exp_lanes(avx: bool, row: &mut [f32], shift: &[f32], sum: &mut [f32]) {
    assert!(shift.len() >= row.len() && sum.len() >= row.len());
    #[cfg(target_arch = "x86_64")]
    if avx && use_avx2() {
        // SAFETY: AVX2 and FMA were detected; lengths asserted.
        return unsafe { x86::exp_lanes(row, shift, sum) };
    }
    let _ = avx;
    scalar::exp_lanes(row, shift, sum)
}

/// `gate[i] = silu(gate[i]) * up[i]`, SiLU(x) = x / (1 + exp(-x)).
#[inline]
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: AVX2 and FMA were detected; lengths are equal.
        return unsafe { x86::silu_mul(gate, up) };
    }
    scalar::silu_mul(gate, up)
}

/// The scalar reference paths (also the fallback).
pub mod scalar {
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        // 8 interleaved partial sums: the same association as the vector path's lanes.
        let mut acc = [0f32; 8];
        let n8 = a.len() / 8 * 8;
        for i in (0..n8).step_by(8) {
            for l in 0..8 {
                acc[l] += a[i + l] * b[i + l];
            }
        }
        let mut s = acc.iter().sum::<f32>();
        for i in n8..a.len() {
            s += a[i] * b[i];
        }
        s
    }

    pub fn weighted_sum(p: &[f32], values: &[f32], out: &mut [f32]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        weighted_sum_acc(p, values, out)
    }

    pub fn weighted_sum_acc(p: &[f32], values: &[f32], out: &mut [f32]) {
        let d = out.len();
        for (i, &pi) in p.iter().enumerate() {
            for (o, v) in out.iter_mut().zip(&values[i * d..(i + 1) * d]) {
                *o += pi * v;
            }
        }
    }

    /// `exp` by the same range reduction and polynomial as the vector path.
    pub fn exp(x: f32) -> f32 {
        super::exp_poly(x)
    }

    pub fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
        let mut sum = 0f64;
        for v in x.iter_mut() {
            *v = exp(*v - shift);
            sum += *v as f64;
        }
        sum as f32
    }

    pub fn exp_lanes(row: &mut [f32], shift: &[f32], sum: &mut [f32]) {
        for ((v, &s), t) in row.iter_mut().zip(shift).zip(sum.iter_mut()) {
            *v = exp(*v - s);
            *t += *v;
        }
    }

    pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + exp(-*g)) * u;
        }
    }
}

// exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 (two-part ln2), exp(r) by a
// degree-6 polynomial (Cephes expf coefficients), |rel err| < 2e-7 over the clamped range.
const EXP_HI: f32 = 88.376_26;
const EXP_LO: f32 = -87.336_55;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P0: f32 = 1.987_569_1e-4;
const P1: f32 = 1.398_199_9e-3;
const P2: f32 = 8.333_452e-3;
const P3: f32 = 4.166_579_6e-2;
const P4: f32 = 1.666_666_5e-1;
const P5: f32 = 0.5;

/// Scalar twin of the AVX2 exp (same operations, same order, `mul_add` where it fuses).
pub(crate) fn exp_poly(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < EXP_LO {
        return 0.0;
    }
    let x = x.min(EXP_HI);
    let n = (x * LOG2E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut y = P0;
    y = y.mul_add(r, P1);
    y = y.mul_add(r, P2);
    y = y.mul_add(r, P3);
    y = y.mul_add(r, P4);
    y = y.mul_add(r, P5);
    let r2 = r * r;
    let y = y.mul_add(r2, r + 1.0);
    // 2^n in two steps so n = 128 (x near the top) does not overflow the exponent field.
    let n = n as i32;
    let h = n / 2;
    y * f32::from_bits(((h + 127) as u32) << 23) * f32::from_bits(((n - h + 127) as u32) << 23)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        // Lane order 0..8 summed pairwise: fixed, so deterministic.
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), v);
        l.iter().sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    /// `d` is a multiple of 8. Four keys at a time: four independent FMA chains, and one
    /// horizontal reduction for all four.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scores(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
        let (d, n) = (q.len(), out.len());
        let (pq, pk) = (q.as_ptr(), keys.as_ptr());
        let vs = _mm_set1_ps(scale);
        let mut j = 0;
        while j + 4 <= n {
            let (k0, k1, k2, k3) = (pk.add(j * d), pk.add((j + 1) * d), pk.add((j + 2) * d), pk.add((j + 3) * d));
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut a2 = _mm256_setzero_ps();
            let mut a3 = _mm256_setzero_ps();
            for c in (0..d).step_by(8) {
                let qv = _mm256_loadu_ps(pq.add(c));
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0.add(c)), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1.add(c)), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2.add(c)), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3.add(c)), a3);
            }
            let s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            let r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
            _mm_storeu_ps(out.as_mut_ptr().add(j), _mm_mul_ps(r, vs));
            j += 4;
        }
        while j < n {
            out[j] = scale * dot(q, &keys[j * d..(j + 1) * d]);
            j += 1;
        }
    }

    /// `d` is a multiple of 32: the accumulators start from `out` and stay in registers
    /// across all rows.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weighted_sum_acc(p: &[f32], values: &[f32], out: &mut [f32]) {
        let d = out.len();
        let pv = values.as_ptr();
        let mut c0 = 0;
        // 64 columns per pass (one head of the real model): each value row is read once.
        while c0 + 64 <= d {
            let mut a = [_mm256_setzero_ps(); 8];
            for (l, acc) in a.iter_mut().enumerate() {
                *acc = _mm256_loadu_ps(out.as_ptr().add(c0 + 8 * l));
            }
            for (i, &pi) in p.iter().enumerate() {
                let w = _mm256_set1_ps(pi);
                let row = pv.add(i * d + c0);
                for (l, acc) in a.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(8 * l)), *acc);
                }
            }
            for (l, acc) in a.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(c0 + 8 * l), *acc);
            }
            c0 += 64;
        }
        for c in (c0..d).step_by(32) {
            let o = out.as_ptr().add(c);
            let mut a0 = _mm256_loadu_ps(o);
            let mut a1 = _mm256_loadu_ps(o.add(8));
            let mut a2 = _mm256_loadu_ps(o.add(16));
            let mut a3 = _mm256_loadu_ps(o.add(24));
            for (i, &pi) in p.iter().enumerate() {
                let w = _mm256_set1_ps(pi);
                let row = pv.add(i * d + c);
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(8)), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(16)), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(24)), a3);
            }
            let o = out.as_mut_ptr().add(c);
            _mm256_storeu_ps(o, a0);
            _mm256_storeu_ps(o.add(8), a1);
            _mm256_storeu_ps(o.add(16), a2);
            _mm256_storeu_ps(o.add(24), a3);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
        let under = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
        let x = _mm256_min_ps(x, _mm256_set1_ps(EXP_HI));
        let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
        let mut y = _mm256_set1_ps(P0);
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P1));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P2));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P4));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P5));
        let r2 = _mm256_mul_ps(r, r);
        let y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let ni = _mm256_cvtps_epi32(n);
        let h = _mm256_srai_epi32(_mm256_add_epi32(ni, _mm256_srli_epi32(ni, 31)), 1); // n / 2 toward 0
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
        let y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
        let y = _mm256_andnot_ps(under, y);
        _mm256_blendv_ps(y, x, nan)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
        let n8 = x.len() / 8 * 8;
        let s = _mm256_set1_ps(shift);
        let p = x.as_mut_ptr();
        // Two f32 lane accumulators, reduced in a fixed order: deterministic, and exact
        // enough (the terms are in (0, 1] and the max term is 1).
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n8 {
            let e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), s));
            let e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i + 8)), s));
            _mm256_storeu_ps(p.add(i), e0);
            _mm256_storeu_ps(p.add(i + 8), e1);
            acc0 = _mm256_add_ps(acc0, e0);
            acc1 = _mm256_add_ps(acc1, e1);
            i += 16;
        }
        if i < n8 {
            let e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), s));
            _mm256_storeu_ps(p.add(i), e0);
            acc0 = _mm256_add_ps(acc0, e0);
        }
        let mut sum = hsum(_mm256_add_ps(acc0, acc1)) as f64;
        for v in &mut x[n8..] {
            *v = exp_poly(*v - shift);
            sum += *v as f64;
        }
        sum as f32
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_lanes(row: &mut [f32], shift: &[f32], sum: &mut [f32]) {
        let n = row.len();
        let n8 = n / 8 * 8;
        let (p, ps, pt) = (row.as_mut_ptr(), shift.as_ptr(), sum.as_mut_ptr());
        let mut i = 0;
        while i < n8 {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(ps.add(i))));
            _mm256_storeu_ps(p.add(i), e);
            _mm256_storeu_ps(pt.add(i), _mm256_add_ps(_mm256_loadu_ps(pt.add(i)), e));
            i += 8;
        }
        for i in n8..n {
            row[i] = exp_poly(row[i] - shift[i]);
            sum[i] += row[i];
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
        let n8 = gate.len() / 8 * 8;
        let (pg, pu) = (gate.as_mut_ptr(), up.as_ptr());
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i < n8 {
            let g = _mm256_loadu_ps(pg.add(i));
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
            let s = _mm256_div_ps(g, _mm256_add_ps(one, e));
            _mm256_storeu_ps(pg.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(pu.add(i))));
            i += 8;
        }
        for j in n8..gate.len() {
            let g = gate[j];
            gate[j] = g / (1.0 + exp_poly(-g)) * up[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vecs(max: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
        (0..max).prop_flat_map(|n| (prop::collection::vec(-4f32..4.0, n), prop::collection::vec(-4f32..4.0, n)))
    }

    #[test]
    fn exp_matches_f64_over_range_and_edges() {
        // Inside the range where the result is a normal float (below it: 0 by design).
        for i in -1960..=1990 {
            let x = i as f32 * 0.0443;
            let want = (x as f64).exp();
            let got = exp_poly(x) as f64;
            assert!(((got - want) / want).abs() < 3e-7, "exp({x}) = {got}, want {want}");
        }
        assert_eq!(exp_poly(-100.0), 0.0);
        assert_eq!(exp_poly(-87.5), 0.0);
        assert_eq!(exp_poly(f32::NEG_INFINITY), 0.0);
        assert!(exp_poly(88.7).is_finite());
        assert!(exp_poly(f32::NAN).is_nan());
    }

    proptest! {
        #[test]
        fn dot_simd_matches_scalar((a, b) in vecs(200)) {
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let tol = 1e-4 * (1.0 + a.len() as f64);
            prop_assert!((dot(&a, &b) as f64 - want).abs() < tol);
            prop_assert!((scalar::dot(&a, &b) as f64 - want).abs() < tol);
        }

        #[test]
        fn scores_simd_matches_scalar(n in 0usize..23, dblk in 1usize..10, scale in 0.01f32..2.0, seed in any::<u64>()) {
            let d = dblk * 8;
            let mut s = seed;
            let mut rnd = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5 };
            let q: Vec<f32> = (0..d).map(|_| rnd()).collect();
            let k: Vec<f32> = (0..n * d).map(|_| rnd()).collect();
            let mut out = vec![0f32; n];
            scores(&q, &k, scale, &mut out);
            for j in 0..n {
                let want = scale * scalar::dot(&q, &k[j * d..(j + 1) * d]);
                prop_assert!((out[j] - want).abs() < 1e-5, "key {j}: {} vs {want}", out[j]);
            }
        }

        #[test]
        fn weighted_sum_simd_matches_scalar(rows in 0usize..40, dblk in 1usize..4, seed in any::<u64>()) {
            let d = dblk * 32;
            let mut s = seed;
            let mut rnd = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5 };
            let p: Vec<f32> = (0..rows).map(|_| rnd()).collect();
            let v: Vec<f32> = (0..rows * d).map(|_| rnd()).collect();
            let (mut a, mut b) = (vec![1f32; d], vec![2f32; d]);
            weighted_sum(&p, &v, &mut a);
            scalar::weighted_sum(&p, &v, &mut b);
            for (x, y) in a.iter().zip(&b) { prop_assert!((x - y).abs() < 1e-5); }
        }

        #[test]
        fn weighted_sum_in_pieces_is_bit_identical(rows in 0usize..40, cut in 0usize..40, dblk in 1usize..4, seed in any::<u64>()) {
            let (d, cut) = (dblk * 32, cut.min(rows));
            let mut s = seed;
            let mut rnd = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5 };
            let p: Vec<f32> = (0..rows).map(|_| rnd()).collect();
            let v: Vec<f32> = (0..rows * d).map(|_| rnd()).collect();
            for odd in [false, true] {
                // odd: a width the vector path does not take (scalar fallback).
                let d = if odd { d - 1 } else { d };
                let v = &v[..rows * d];
                let mut whole = vec![7f32; d];
                weighted_sum(&p, v, &mut whole);
                let mut pieces = vec![0f32; d];
                weighted_sum_acc(&p[..cut], &v[..cut * d], &mut pieces);
                weighted_sum_acc(&p[cut..], &v[cut * d..], &mut pieces);
                prop_assert_eq!(whole.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), pieces.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            }
        }

        #[test]
        fn exp_sum_and_silu_simd_match_scalar(x in prop::collection::vec(-100f32..100.0, 0..70), extra in 0f32..5.0) {
            // As softmax uses it: the shift is at least the maximum.
            let shift = x.iter().copied().fold(0f32, f32::max) + extra;
            let (mut a, mut b) = (x.clone(), x.clone());
            let sa = exp_shifted_sum(&mut a, shift);
            let sb = scalar::exp_shifted_sum(&mut b, shift);
            for (p, q) in a.iter().zip(&b) { prop_assert!((p - q).abs() <= 1e-6 * q.abs()); }
            prop_assert!((sa - sb).abs() <= 1e-5 * sb.abs());
            let up: Vec<f32> = x.iter().map(|v| v * 0.5 + 1.0).collect();
            let (mut g1, mut g2) = (x.clone(), x.clone());
            silu_mul(&mut g1, &up);
            scalar::silu_mul(&mut g2, &up);
            for ((p, q), xv) in g1.iter().zip(&g2).zip(&x) {
                let want = (*xv as f64) / (1.0 + (-*xv as f64).exp()) * (*xv as f64 * 0.5 + 1.0);
                prop_assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()));
                prop_assert!((*q as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()));
            }
        }
    }
}
