//! Register-blocked micro-kernels of prefill attention (float K/V).
//!
//! One attention task owns the query rows of one KV head (all its query heads, up to 16
//! positions), packed *transposed*: lane `i` is one (head, row) pair, `qt[d * rp + i]`, with
//! `rp` lanes (a multiple of [`LANES`], padding lanes are zero). Scores are kept transposed
//! too, `st[j * rp + i]`. Then
//! - Q·Kᵀ is `st[j][..] += k[j][d] · qt[d][..]`: a broadcast key element times a vector of
//!   lanes, several keys × several lane vectors in registers, no horizontal sums;
//! - the softmax is elementwise across lanes (per-lane max, exp, sum);
//! - P·V is `out[i][..] += st[j][i] · v[j][..]`: a broadcast weight times a value row, several
//!   rows × several column vectors in registers.
//!
//! Every element is one FMA chain in a fixed order (`d` ascending for scores, `j` ascending
//! for P·V), so the AVX-512 and AVX2 paths equal the scalar references (`mul_add`) bit for
//! bit; only `exp` is a polynomial whose scalar twin may differ in the last bit.

use super::simd;
use std::sync::OnceLock;

/// Lanes of a packed query block: `rp` is always a multiple of this.
pub const LANES: usize = 16;

/// Query rows per P·V block (the caller skips keys no row of a block can see).
pub const PV_ROWS: usize = 6;

/// Which vector path runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

/// The widest path this CPU has (`AGQ_NO_SIMD` forces `Scalar`; checked once).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("AGQ_NO_SIMD").is_some() {
                return Isa::Scalar;
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// `st[j * rp + i] = scale · Σ_d keys[j * hd + d] · qt[d * rp + i]` for keys `j < n`.
#[allow(clippy::too_many_arguments)]
pub fn scores(isa: Isa, qt: &[f32], rp: usize, keys: &[f32], hd: usize, n: usize, scale: f32, st: &mut [f32]) {
    assert!(rp.is_multiple_of(LANES) && qt.len() >= hd * rp && keys.len() >= n * hd && st.len() >= n * rp);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the ISA was detected by `isa()` (or the caller's tests); bounds asserted.
        Isa::Avx512 => unsafe { x86::scores512(qt.as_ptr(), rp, keys.as_ptr(), hd, n, scale, st.as_mut_ptr()) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::scores256(qt.as_ptr(), rp, keys.as_ptr(), hd, n, scale, st.as_mut_ptr()) },
        _ => scalar::scores(qt, rp, keys, hd, n, scale, st),
    }
}

/// `acc[(i0 + r) * hd + c] += Σ_{j < n} w[j * rp + i0 + r] · values[j * hd + c]` for rows
/// `r < nrows` (at most [`PV_ROWS`]), adding the keys in order.
#[allow(clippy::too_many_arguments)]
pub fn pv(isa: Isa, w: &[f32], rp: usize, i0: usize, nrows: usize, values: &[f32], hd: usize, n: usize, acc: &mut [f32]) {
    assert!(nrows <= PV_ROWS && i0 + nrows <= rp && (n == 0 || w.len() >= (n - 1) * rp + i0 + nrows));
    assert!(values.len() >= n * hd && acc.len() >= (i0 + nrows) * hd);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: ISA detected; bounds asserted; the AVX paths need hd % 16 == 0.
        Isa::Avx512 if hd.is_multiple_of(16) => unsafe { x86::pv512(w.as_ptr(), rp, i0, nrows, values.as_ptr(), hd, n, acc.as_mut_ptr()) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 | Isa::Avx512 if hd.is_multiple_of(16) => unsafe { x86::pv256(w.as_ptr(), rp, i0, nrows, values.as_ptr(), hd, n, acc.as_mut_ptr()) },
        _ => scalar::pv(w, rp, i0, nrows, values, hd, n, acc),
    }
}

/// Turns the scores `st` (keys `j < n`) into unnormalised weights, in place, per lane `i`:
/// keys `j >= nk[i]` are masked (weight 0); float mode `exp(s - max)`, log2 mode
/// [`crate::quant::softmax::log2_weight`] of `(max - s) · log2 e`. `sum[i]` receives the
/// lane's total weight (0 for a lane without keys). With `sink`, `sink[i]` receives the
/// lane's float softmax probability of key 0 (the pruning importance), in both modes.
#[allow(clippy::too_many_arguments)]
pub fn weights(isa: Isa, st: &mut [f32], rp: usize, n: usize, nk: &[usize], log2: bool, sum: &mut [f32], sink: Option<&mut [f32]>) {
    assert!(st.len() >= n * rp && nk.len() >= rp && sum.len() >= rp);
    let nk_min = nk[..rp].iter().copied().min().unwrap_or(0);
    for j in nk_min.min(n)..n {
        for i in 0..rp {
            if j >= nk[i] {
                st[j * rp + i] = f32::NEG_INFINITY;
            }
        }
    }
    // Per-lane max; a lane without keys keeps -inf and gets shift 0 (all its weights are 0).
    let mut shift = vec![f32::NEG_INFINITY; rp];
    for row in st[..n * rp].chunks_exact(rp) {
        for (m, &s) in shift.iter_mut().zip(row) {
            *m = m.max(s);
        }
    }
    shift.iter_mut().for_each(|m| {
        if *m == f32::NEG_INFINITY {
            *m = 0.0
        }
    });
    sum[..rp].iter_mut().for_each(|s| *s = 0.0);
    let avx = isa != Isa::Scalar && simd::use_avx2();
    if !log2 {
        for row in st[..n * rp].chunks_exact_mut(rp) {
            simd::exp_lanes(avx, row, &shift, &mut sum[..rp]);
        }
        if let Some(sink) = sink {
            for i in 0..rp {
                sink[i] = if sum[i] > 0.0 && n > 0 { st[i] / sum[i] } else { 0.0 };
            }
        }
        return;
    }
    if let Some(sink) = sink {
        // The importance signal stays the float softmax: one extra exp pass, not stored.
        let (mut tmp, mut fsum) = (vec![0f32; rp], vec![0f32; rp]);
        let mut first = vec![0f32; rp];
        for (j, row) in st[..n * rp].chunks_exact(rp).enumerate() {
            tmp.copy_from_slice(row);
            simd::exp_lanes(avx, &mut tmp, &shift, &mut fsum);
            if j == 0 {
                first.copy_from_slice(&tmp);
            }
        }
        for i in 0..rp {
            sink[i] = if fsum[i] > 0.0 { first[i] / fsum[i] } else { 0.0 };
        }
    }
    let mut isum = vec![0u32; rp];
    for row in st[..n * rp].chunks_exact_mut(rp) {
        crate::quant::softmax::log2_weights_lanes(row, &shift, &mut isum);
    }
    for (s, &t) in sum[..rp].iter_mut().zip(&isum) {
        *s = crate::quant::softmax::log2_total(t);
    }
}

/// The scalar references (and the fallback without AVX2/FMA).
pub mod scalar {
    #[allow(clippy::too_many_arguments)]
    pub fn scores(qt: &[f32], rp: usize, keys: &[f32], hd: usize, n: usize, scale: f32, st: &mut [f32]) {
        for j in 0..n {
            let k = &keys[j * hd..(j + 1) * hd];
            for i in 0..rp {
                let mut a = 0f32;
                for (d, &kd) in k.iter().enumerate() {
                    a = kd.mul_add(qt[d * rp + i], a);
                }
                st[j * rp + i] = a * scale;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn pv(w: &[f32], rp: usize, i0: usize, nrows: usize, values: &[f32], hd: usize, n: usize, acc: &mut [f32]) {
        for r in 0..nrows {
            let a = &mut acc[(i0 + r) * hd..(i0 + r + 1) * hd];
            for j in 0..n {
                let wj = w[j * rp + i0 + r];
                for (o, &v) in a.iter_mut().zip(&values[j * hd..(j + 1) * hd]) {
                    *o = wj.mul_add(v, *o);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn scores512(qt: *const f32, rp: usize, keys: *const f32, hd: usize, n: usize, scale: f32, st: *mut f32) {
        let nch = rp / 16;
        let mut c0 = 0;
        while c0 < nch {
            let c = (nch - c0).min(3);
            match c {
                3 => sc512::<3>(qt, rp, keys, hd, n, scale, st, c0 * 16),
                2 => sc512::<2>(qt, rp, keys, hd, n, scale, st, c0 * 16),
                _ => sc512::<1>(qt, rp, keys, hd, n, scale, st, c0 * 16),
            }
            c0 += c;
        }
    }

    /// Lanes `l0..l0 + 16C` of every key: 8 keys × C vectors of accumulators.
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn sc512<const C: usize>(qt: *const f32, rp: usize, keys: *const f32, hd: usize, n: usize, scale: f32, st: *mut f32, l0: usize) {
        let vs = _mm512_set1_ps(scale);
        let mut j = 0;
        while j + 8 <= n {
            let mut acc = [[_mm512_setzero_ps(); C]; 8];
            for d in 0..hd {
                let mut q = [_mm512_setzero_ps(); C];
                for (c, qc) in q.iter_mut().enumerate() {
                    *qc = _mm512_loadu_ps(qt.add(d * rp + l0 + 16 * c));
                }
                for (k, ak) in acc.iter_mut().enumerate() {
                    let kv = _mm512_set1_ps(*keys.add((j + k) * hd + d));
                    for c in 0..C {
                        ak[c] = _mm512_fmadd_ps(kv, q[c], ak[c]);
                    }
                }
            }
            for (k, ak) in acc.iter().enumerate() {
                for (c, a) in ak.iter().enumerate() {
                    _mm512_storeu_ps(st.add((j + k) * rp + l0 + 16 * c), _mm512_mul_ps(*a, vs));
                }
            }
            j += 8;
        }
        while j < n {
            let mut acc = [_mm512_setzero_ps(); C];
            for d in 0..hd {
                let kv = _mm512_set1_ps(*keys.add(j * hd + d));
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(kv, _mm512_loadu_ps(qt.add(d * rp + l0 + 16 * c)), *a);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(st.add(j * rp + l0 + 16 * c), _mm512_mul_ps(*a, vs));
            }
            j += 1;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scores256(qt: *const f32, rp: usize, keys: *const f32, hd: usize, n: usize, scale: f32, st: *mut f32) {
        let nch = rp / 8;
        let mut c0 = 0;
        while c0 < nch {
            let c = (nch - c0).min(3);
            match c {
                3 => sc256::<3>(qt, rp, keys, hd, n, scale, st, c0 * 8),
                2 => sc256::<2>(qt, rp, keys, hd, n, scale, st, c0 * 8),
                _ => sc256::<1>(qt, rp, keys, hd, n, scale, st, c0 * 8),
            }
            c0 += c;
        }
    }

    /// Lanes `l0..l0 + 8C`: 4 keys × C vectors (at most 12 accumulators of the 16 registers).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn sc256<const C: usize>(qt: *const f32, rp: usize, keys: *const f32, hd: usize, n: usize, scale: f32, st: *mut f32, l0: usize) {
        let vs = _mm256_set1_ps(scale);
        let mut j = 0;
        while j + 4 <= n {
            let mut acc = [[_mm256_setzero_ps(); C]; 4];
            for d in 0..hd {
                let mut q = [_mm256_setzero_ps(); C];
                for (c, qc) in q.iter_mut().enumerate() {
                    *qc = _mm256_loadu_ps(qt.add(d * rp + l0 + 8 * c));
                }
                for (k, ak) in acc.iter_mut().enumerate() {
                    let kv = _mm256_set1_ps(*keys.add((j + k) * hd + d));
                    for c in 0..C {
                        ak[c] = _mm256_fmadd_ps(kv, q[c], ak[c]);
                    }
                }
            }
            for (k, ak) in acc.iter().enumerate() {
                for (c, a) in ak.iter().enumerate() {
                    _mm256_storeu_ps(st.add((j + k) * rp + l0 + 8 * c), _mm256_mul_ps(*a, vs));
                }
            }
            j += 4;
        }
        while j < n {
            let mut acc = [_mm256_setzero_ps(); C];
            for d in 0..hd {
                let kv = _mm256_set1_ps(*keys.add(j * hd + d));
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(kv, _mm256_loadu_ps(qt.add(d * rp + l0 + 8 * c)), *a);
                }
            }
            for (c, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(st.add(j * rp + l0 + 8 * c), _mm256_mul_ps(*a, vs));
            }
            j += 1;
        }
    }

    /// `hd % 16 == 0`: column passes of 64 (4 vectors) then 16.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn pv512(w: *const f32, rp: usize, i0: usize, nrows: usize, values: *const f32, hd: usize, n: usize, acc: *mut f32) {
        let mut c0 = 0;
        while c0 < hd {
            let wide = hd - c0 >= 64;
            macro_rules! go {
                ($r:literal) => {
                    if wide {
                        pv512k::<$r, 4>(w, rp, i0, values, hd, n, acc, c0)
                    } else {
                        pv512k::<$r, 1>(w, rp, i0, values, hd, n, acc, c0)
                    }
                };
            }
            match nrows {
                6 => go!(6),
                5 => go!(5),
                4 => go!(4),
                3 => go!(3),
                2 => go!(2),
                1 => go!(1),
                _ => {}
            }
            c0 += if wide { 64 } else { 16 };
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv512k<const R: usize, const C: usize>(w: *const f32, rp: usize, i0: usize, values: *const f32, hd: usize, n: usize, acc: *mut f32, c0: usize) {
        let mut a = [[_mm512_setzero_ps(); C]; R];
        for (r, ar) in a.iter_mut().enumerate() {
            for (c, x) in ar.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(acc.add((i0 + r) * hd + c0 + 16 * c));
            }
        }
        for j in 0..n {
            let mut v = [_mm512_setzero_ps(); C];
            for (c, vc) in v.iter_mut().enumerate() {
                *vc = _mm512_loadu_ps(values.add(j * hd + c0 + 16 * c));
            }
            for (r, ar) in a.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*w.add(j * rp + i0 + r));
                for c in 0..C {
                    ar[c] = _mm512_fmadd_ps(b, v[c], ar[c]);
                }
            }
        }
        for (r, ar) in a.iter().enumerate() {
            for (c, x) in ar.iter().enumerate() {
                _mm512_storeu_ps(acc.add((i0 + r) * hd + c0 + 16 * c), *x);
            }
        }
    }

    /// `hd % 16 == 0`: column passes of 16 (2 vectors), rows in pairs of 3 (12 accumulators).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn pv256(w: *const f32, rp: usize, i0: usize, nrows: usize, values: *const f32, hd: usize, n: usize, acc: *mut f32) {
        let mut c0 = 0;
        while c0 < hd {
            let wide = hd - c0 >= 32;
            let mut r0 = 0;
            while r0 < nrows {
                let r = (nrows - r0).min(3);
                macro_rules! go {
                    ($r:literal) => {
                        if wide {
                            pv256k::<$r, 4>(w, rp, i0 + r0, values, hd, n, acc, c0)
                        } else {
                            pv256k::<$r, 2>(w, rp, i0 + r0, values, hd, n, acc, c0)
                        }
                    };
                }
                match r {
                    3 => go!(3),
                    2 => go!(2),
                    _ => go!(1),
                }
                r0 += r;
            }
            c0 += if wide { 32 } else { 16 };
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv256k<const R: usize, const C: usize>(w: *const f32, rp: usize, i0: usize, values: *const f32, hd: usize, n: usize, acc: *mut f32, c0: usize) {
        let mut a = [[_mm256_setzero_ps(); C]; R];
        for (r, ar) in a.iter_mut().enumerate() {
            for (c, x) in ar.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(acc.add((i0 + r) * hd + c0 + 8 * c));
            }
        }
        for j in 0..n {
            let row = values.add(j * hd + c0);
            for (r, ar) in a.iter_mut().enumerate() {
                let b = _mm256_set1_ps(*w.add(j * rp + i0 + r));
                for (c, x) in ar.iter_mut().enumerate() {
                    *x = _mm256_fmadd_ps(b, _mm256_loadu_ps(row.add(8 * c)), *x);
                }
            }
        }
        for (r, ar) in a.iter().enumerate() {
            for (c, x) in ar.iter().enumerate() {
                _mm256_storeu_ps(acc.add((i0 + r) * hd + c0 + 8 * c), *x);
            }
        }
    }
}
