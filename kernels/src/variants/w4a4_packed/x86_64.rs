//! AVX2 packed multiplier: `vpmullw` of 16 packed lanes (32 columns) by a broadcast `u`,
//! then `tot += p`, `hi += p >> 8` (module doc). Register-blocked over MR activation rows,
//! which share each unpacked weight vector.

// Micro-kernels index several register arrays by the same row/column counters.
#![allow(clippy::needless_range_loop)]

use super::{PackedActs, PackedW4x2, TILE};
use crate::formats::QK;
use crate::variants::w4a8::ROW_CHUNK;
use std::arch::x86_64::*;
use std::ops::Range;

const MR: usize = 4;

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro<const R: usize>(w: &PackedW4x2, a: &PackedActs, r0: usize, t: usize, out: *mut f32, ld: usize, ncols: usize) {
    let (bpr, kp) = (w.bpr, w.bpr * QK);
    let mask = _mm256_set1_epi16(0x0f0f);
    let mut facc = [[_mm256_setzero_ps(); 4]; R];
    for b in 0..bpr {
        let mut tot = [_mm256_setzero_si256(); R];
        let mut hi = [_mm256_setzero_si256(); R];
        for q in 0..QK / 2 {
            let x = _mm256_loadu_si256(w.qs.as_ptr().add(((t * bpr + b) * 16 + q) * 32) as *const __m256i);
            let w0 = _mm256_and_si256(x, mask);
            let w1 = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
            for r in 0..R {
                let up = a.u.as_ptr().add((r0 + r) * kp + b * QK + 2 * q);
                let p0 = _mm256_mullo_epi16(w0, _mm256_set1_epi16(*up as i16));
                let p1 = _mm256_mullo_epi16(w1, _mm256_set1_epi16(*up.add(1) as i16));
                tot[r] = _mm256_add_epi16(tot[r], _mm256_add_epi16(p0, p1));
                hi[r] = _mm256_add_epi16(hi[r], _mm256_add_epi16(_mm256_srli_epi16(p0, 8), _mm256_srli_epi16(p1, 8)));
            }
        }
        // Flush after 32 additions per lane (<= MAX_ADDS): lanes l -> columns l and 16 + l.
        let at = (t * bpr + b) * TILE;
        for r in 0..R {
            let lo = _mm256_sub_epi16(tot[r], _mm256_slli_epi16(hi[r], 8));
            let s = _mm256_broadcast_ss(a.pad.sums.get_unchecked((r0 + r) * a.pad.bpr8 + b));
            let parts = [
                _mm256_castsi256_si128(lo),
                _mm256_extracti128_si256(lo, 1),
                _mm256_castsi256_si128(hi[r]),
                _mm256_extracti128_si256(hi[r], 1),
            ];
            for (v, part) in parts.into_iter().enumerate() {
                let sw = _mm256_cvtepi16_epi32(_mm_loadu_si128(w.sw8.as_ptr().add(at + 8 * v) as *const __m128i));
                let dot = _mm256_sub_epi32(_mm256_cvtepu16_epi32(part), sw);
                let dv = _mm256_loadu_ps(w.d.as_ptr().add(at + 8 * v));
                let mv = _mm256_loadu_ps(w.m.as_ptr().add(at + 8 * v));
                facc[r][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), dv, facc[r][v]);
                facc[r][v] = _mm256_fmadd_ps(mv, s, facc[r][v]);
            }
        }
    }
    for r in 0..R {
        let sc = _mm256_set1_ps(a.pad.scales[r0 + r]);
        for v in 0..4 {
            let y = _mm256_mul_ps(facc[r][v], sc);
            let dst = out.add(r * ld + v * 8);
            if ncols >= (v + 1) * 8 {
                _mm256_storeu_ps(dst, y);
            } else if ncols > v * 8 {
                let mut tmp = [0f32; 8];
                _mm256_storeu_ps(tmp.as_mut_ptr(), y);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, ncols - v * 8);
            }
        }
    }
}

/// # Safety
/// AVX2 and FMA; `cols.start` a multiple of `TILE`; shapes checked by `gemm_acts`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm(w: &PackedW4x2, a: &PackedActs, cols: Range<usize>, o: *mut f32, nc: usize) {
    let m = a.pad.m;
    for rc in (0..m).step_by(ROW_CHUNK) {
        let re = (rc + ROW_CHUNK).min(m);
        for j in cols.clone().step_by(TILE) {
            let ncols = (cols.end - j).min(TILE);
            let mut r = rc;
            while r < re {
                let rr = MR.min(re - r);
                let dst = o.add(r * nc + j - cols.start);
                match rr {
                    1 => micro::<1>(w, a, r, j / TILE, dst, nc, ncols),
                    2 => micro::<2>(w, a, r, j / TILE, dst, nc, ncols),
                    3 => micro::<3>(w, a, r, j / TILE, dst, nc, ncols),
                    _ => micro::<4>(w, a, r, j / TILE, dst, nc, ncols),
                }
                r += rr;
            }
        }
    }
}

/// `dot2` with 16 lanes, input `i` in lane `i % 16`: each lane flushes after `flush_every`
/// of its own additions.
///
/// # Safety
/// AVX2; slices of equal length with 4-bit values.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot2(w0: &[u8], w1: &[u8], u: &[u8], flush_every: usize) -> (u32, u32) {
    let n = u.len();
    let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let (mut tot, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let flush = |tot: __m256i, hi: __m256i, s0: &mut __m256i, s1: &mut __m256i| {
        let lo = _mm256_sub_epi16(tot, _mm256_slli_epi16(hi, 8));
        // Unsigned 16-bit halves to 32 bits: madd by ones would treat them as signed.
        let lo32 = _mm256_add_epi32(_mm256_and_si256(lo, _mm256_set1_epi32(0xffff)), _mm256_srli_epi32(lo, 16));
        let hi32 = _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(0xffff)), _mm256_srli_epi32(hi, 16));
        *s0 = _mm256_add_epi32(*s0, lo32);
        *s1 = _mm256_add_epi32(*s1, hi32);
    };
    let mut adds = 0;
    let mut i = 0;
    while i + 16 <= n {
        let mut lane_w = [0u16; 16];
        let mut lane_u = [0u16; 16];
        for l in 0..16 {
            lane_w[l] = w0[i + l] as u16 | (w1[i + l] as u16) << 8;
            lane_u[l] = u[i + l] as u16;
        }
        let p = _mm256_mullo_epi16(
            _mm256_loadu_si256(lane_w.as_ptr() as *const __m256i),
            _mm256_loadu_si256(lane_u.as_ptr() as *const __m256i),
        );
        tot = _mm256_add_epi16(tot, p);
        hi = _mm256_add_epi16(hi, _mm256_srli_epi16(p, 8));
        adds += 1;
        if adds == flush_every {
            flush(tot, hi, &mut s0, &mut s1);
            (tot, hi, adds) = (_mm256_setzero_si256(), _mm256_setzero_si256(), 0);
        }
        i += 16;
    }
    flush(tot, hi, &mut s0, &mut s1);
    let (mut l0, mut l1) = ([0u32; 8], [0u32; 8]);
    _mm256_storeu_si256(l0.as_mut_ptr() as *mut __m256i, s0);
    _mm256_storeu_si256(l1.as_mut_ptr() as *mut __m256i, s1);
    let (t0, t1) = super::dot2_scalar(&w0[i..], &w1[i..], &u[i..], flush_every);
    (l0.iter().sum::<u32>() + t0, l1.iter().sum::<u32>() + t1)
}
