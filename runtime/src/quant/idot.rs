//! Integer dot kernels of INT8 attention: Q·Kᵀ as `i8 x i8` dots against an INT8 key cache,
//! and P·V as `i16 x i8` weighted sums against an INT8 value cache, in blocks of
//! [`PV_BLOCK`] tokens with one weight scale per block (block floating point: a large weight
//! in one block, e.g. the attention sink, does not coarsen the small weights of the others).
//! Q·K results are exact `i32`; P·V sums each block exactly in `i32` and adds `block · scale`
//! to f32 outputs with one FMA per block in block order, so the AVX2 paths equal the scalar
//! references bit for bit.
//!
//! Overflow: a Q·K term is at most 127² and a row is `dim` terms, exact for `dim < 2^17`; a
//! P·V block is at most `32 · 32767 · 127 < 2^28`.

use std::sync::OnceLock;

/// Whether the AVX2 paths are used (checked once; `AGQ_NO_SIMD` forces the scalar ones).
pub fn use_avx2() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("AGQ_NO_SIMD").is_none() && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Largest P·V weight code.
pub const W_MAX: f32 = 32767.0;

/// `out[j] = q · keys[j]` for the `out.len()` rows of `keys` (rows of `q.len()` codes).
/// Codes must lie in `-127..=127` (the cache's quantizer guarantees it).
pub fn qk(q: &[i8], keys: &[i8], out: &mut [i32]) {
    let d = q.len();
    assert!(keys.len() >= out.len() * d, "keys hold {} codes, need {} rows of {d}", keys.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if use_avx2() && d.is_multiple_of(32) && d > 0 {
        // SAFETY: AVX2 detected; `keys` holds `out.len()` rows of `d` (asserted), d % 32 == 0.
        return unsafe { x86::qk(q, keys, out) };
    }
    scalar::qk(q, keys, out)
}

/// Tokens per P·V weight block.
pub const PV_BLOCK: usize = 32;

/// `out[c] += Σ_b scale[b] · Σ_{j in block b} w[j] · values[j][c]` for the `w.len()` rows of
/// `values` (rows of `out.len()` codes); `scale` has one entry per [`PV_BLOCK`] tokens.
/// Accumulating, one FMA per block in block order: calls over consecutive whole blocks
/// (tiles of keys) give bit for bit the result of one call over all of them.
pub fn pv(w: &[i16], scale: &[f32], values: &[i8], out: &mut [f32]) {
    let d = out.len();
    assert!(values.len() >= w.len() * d, "values hold {} codes, need {} rows of {d}", values.len(), w.len());
    assert!(scale.len() >= w.len().div_ceil(PV_BLOCK), "one weight scale per {PV_BLOCK} tokens");
    #[cfg(target_arch = "x86_64")]
    if use_avx2() && d.is_multiple_of(16) && d > 0 {
        // SAFETY: AVX2+FMA detected; `values` holds `w.len()` rows of `d` (asserted), d % 16 == 0.
        return unsafe { x86::pv(w, scale, values, out) };
    }
    scalar::pv(w, scale, values, out)
}

/// Non-negative weights `w` as `i16` codes, one scale per [`PV_BLOCK`] tokens
/// (`w ≈ scale[j / PV_BLOCK] · code[j]`, scale = block max / 32767; 0 for an all-zero block).
pub fn quantize_weights(w: &[f32], codes: &mut Vec<i16>, scales: &mut Vec<f32>) {
    codes.clear();
    scales.clear();
    for blk in w.chunks(PV_BLOCK) {
        quantize_block(blk, codes, scales);
    }
}

/// [`quantize_weights`] of `p[j] · vscale[j] · mul` (probability × the value row's scale ×
/// the row's normalisation) without materialising the products: one pass instead of two.
pub fn quantize_weights_scaled(p: &[f32], vscale: &[f32], mul: f32, codes: &mut Vec<i16>, scales: &mut Vec<f32>) {
    assert!(vscale.len() >= p.len(), "one value scale per weight");
    codes.clear();
    scales.clear();
    let mut buf = [0f32; PV_BLOCK];
    for (blk, vs) in p.chunks(PV_BLOCK).zip(vscale.chunks(PV_BLOCK)) {
        let b = &mut buf[..blk.len()];
        for ((x, &pj), &v) in b.iter_mut().zip(blk).zip(vs) {
            *x = pj * v * mul;
        }
        quantize_block(b, codes, scales);
    }
}

#[inline]
fn quantize_block(blk: &[f32], codes: &mut Vec<i16>, scales: &mut Vec<f32>) {
    let max = blk.iter().fold(0f32, |a, &v| a.max(v));
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        codes.extend(std::iter::repeat_n(0, blk.len()));
        scales.push(0.0);
        return;
    }
    let inv = W_MAX / max;
    // Weights are >= 0, so `floor(x + 0.5)` is round-half-up; the truncating cast (which
    // also maps NaN to 0) vectorises, unlike `f32::round`.
    codes.extend(blk.iter().map(|&v| ((v * inv).min(W_MAX) + 0.5) as i16));
    scales.push(max / W_MAX);
}

/// The plain loops the SIMD paths are checked against (also the fallback).
pub mod scalar {
    pub fn qk(q: &[i8], keys: &[i8], out: &mut [i32]) {
        let d = q.len();
        for (j, o) in out.iter_mut().enumerate() {
            *o = q.iter().zip(&keys[j * d..(j + 1) * d]).map(|(&a, &b)| a as i32 * b as i32).sum();
        }
    }

    pub fn pv(w: &[i16], scale: &[f32], values: &[i8], out: &mut [f32]) {
        let d = out.len();
        let mut acc = vec![0i32; d];
        for (b, blk) in w.chunks(super::PV_BLOCK).enumerate() {
            acc.iter_mut().for_each(|a| *a = 0);
            for (i, &wj) in blk.iter().enumerate() {
                let j = b * super::PV_BLOCK + i;
                for (a, &v) in acc.iter_mut().zip(&values[j * d..(j + 1) * d]) {
                    *a += wj as i32 * v as i32;
                }
            }
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = (a as f32).mul_add(scale[b], *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `q · k` over 32 codes as 8 i32 partial sums: `vpsignb` moves q's sign onto k, so
    /// `vpmaddubsw(|q|, ±k)` is exact (pairs ≤ 2·127², below i16 saturation).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot32(qa: __m256i, qs: __m256i, k: *const i8) -> __m256i {
        let kv = _mm256_loadu_si256(k as *const __m256i);
        let p16 = _mm256_maddubs_epi16(qa, _mm256_sign_epi8(kv, qs));
        _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
    }

    /// 8 vectors of 8 lanes to the 8 lane sums, in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum8(a: [__m256i; 8]) -> __m256i {
        let h01 = _mm256_hadd_epi32(a[0], a[1]);
        let h23 = _mm256_hadd_epi32(a[2], a[3]);
        let h45 = _mm256_hadd_epi32(a[4], a[5]);
        let h67 = _mm256_hadd_epi32(a[6], a[7]);
        // Low 128 bits: rows 0-3 summed over their low halves; high 128 bits: their high halves.
        let h0123 = _mm256_hadd_epi32(h01, h23);
        let h4567 = _mm256_hadd_epi32(h45, h67);
        let lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
        let hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
        _mm256_add_epi32(lo, hi)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum1(a: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// One key row's 8 partial sums; chunks past the 8 cached ones reload q.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn row_dot(qa: &[__m256i; 8], qs: &[__m256i; 8], q: *const i8, nc: usize, row: *const i8) -> __m256i {
        let mut acc = _mm256_setzero_si256();
        for c in 0..nc {
            let (a, s) = if c < 8 {
                (qa[c], qs[c])
            } else {
                let v = _mm256_loadu_si256(q.add(c * 32) as *const __m256i);
                (_mm256_abs_epi8(v), v)
            };
            acc = _mm256_add_epi32(acc, dot32(a, s, row.add(c * 32)));
        }
        acc
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn qk(q: &[i8], keys: &[i8], out: &mut [i32]) {
        let d = q.len();
        let nc = d / 32;
        let n = out.len();
        let kp = keys.as_ptr();
        // q as |q| (u8) and its signs, per 32-code chunk; d is small (head_dim), 8 chunks cover 256.
        let mut qa = [_mm256_setzero_si256(); 8];
        let mut qs = [_mm256_setzero_si256(); 8];
        let chunks = nc.min(8);
        for c in 0..chunks {
            let v = _mm256_loadu_si256(q.as_ptr().add(c * 32) as *const __m256i);
            qa[c] = _mm256_abs_epi8(v);
            qs[c] = v;
        }
        let mut j = 0;
        while j + 8 <= n {
            let mut acc = [_mm256_setzero_si256(); 8];
            for (r, a) in acc.iter_mut().enumerate() {
                *a = row_dot(&qa, &qs, q.as_ptr(), nc, kp.add((j + r) * d));
            }
            _mm256_storeu_si256(out.as_mut_ptr().add(j) as *mut __m256i, hsum8(acc));
            j += 8;
        }
        while j < n {
            out[j] = hsum1(row_dot(&qa, &qs, q.as_ptr(), nc, kp.add(j * d)));
            j += 1;
        }
    }

    /// Two tokens at a time: their 16-bit codes interleaved (`vpunpck{l,h}wd`) against the
    /// broadcast pair `(w_j, w_j+1)` in one `vpmaddwd`. The unpack splits each 16-column
    /// chunk into columns {0-3, 8-11} and {4-7, 12-15}; the epilogue restores the order.
    /// Columns go in passes of 64 (8 i32 block accumulators in registers); the f32 sums live
    /// in `out` and are updated once per block.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn pv(w: &[i16], scale: &[f32], values: &[i8], out: &mut [f32]) {
        let d = out.len();
        let n = w.len();
        let vp = values.as_ptr();
        let z = _mm256_setzero_si256();
        let mut c0 = 0;
        while c0 < d {
            let nch = ((d - c0) / 16).min(4);
            let mut b0 = 0;
            while b0 < n {
                let end = (b0 + super::PV_BLOCK).min(n);
                let mut lo = [z; 4];
                let mut hi = [z; 4];
                let mut j = b0;
                while j + 2 <= end {
                    let pair = (w[j] as u16 as u32) | ((w[j + 1] as u16 as u32) << 16);
                    let wp = _mm256_set1_epi32(pair as i32);
                    let (ra, rb) = (vp.add(j * d + c0), vp.add((j + 1) * d + c0));
                    for c in 0..nch {
                        let a = _mm256_cvtepi8_epi16(_mm_loadu_si128(ra.add(c * 16) as *const __m128i));
                        let b = _mm256_cvtepi8_epi16(_mm_loadu_si128(rb.add(c * 16) as *const __m128i));
                        lo[c] = _mm256_add_epi32(lo[c], _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
                        hi[c] = _mm256_add_epi32(hi[c], _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
                    }
                    j += 2;
                }
                if j < end {
                    let wp = _mm256_set1_epi32(w[j] as u16 as i32);
                    let ra = vp.add(j * d + c0);
                    for c in 0..nch {
                        let a = _mm256_cvtepi8_epi16(_mm_loadu_si128(ra.add(c * 16) as *const __m128i));
                        lo[c] = _mm256_add_epi32(lo[c], _mm256_madd_epi16(_mm256_unpacklo_epi16(a, z), wp));
                        hi[c] = _mm256_add_epi32(hi[c], _mm256_madd_epi16(_mm256_unpackhi_epi16(a, z), wp));
                    }
                }
                let s = _mm256_set1_ps(scale[b0 / super::PV_BLOCK]);
                for c in 0..nch {
                    let first = _mm256_permute2x128_si256(lo[c], hi[c], 0x20);
                    let second = _mm256_permute2x128_si256(lo[c], hi[c], 0x31);
                    let o = out.as_mut_ptr().add(c0 + c * 16);
                    _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_cvtepi32_ps(first), s, _mm256_loadu_ps(o)));
                    _mm256_storeu_ps(o.add(8), _mm256_fmadd_ps(_mm256_cvtepi32_ps(second), s, _mm256_loadu_ps(o.add(8))));
                }
                b0 = end;
            }
            c0 += nch * 16;
        }
    }
}
