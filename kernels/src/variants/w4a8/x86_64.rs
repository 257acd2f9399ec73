//! AVX2 W4A8 on the tiled layout (module doc of `w4a8`): per 4 inputs, `vpmaddubsw` of
//! "8 columns x 4 codes" bytes (u8) with 4 broadcast activation bytes (i8) gives 16-bit pair
//! sums, accumulated in 16 bits over the block (8 adds of |x| <= 2*15*128 = 3840: at most
//! 30720 < 2^15, exact), then one `vpmaddwd` by ones per block widens to a 32-bit dot per
//! column. Only one multiply-port instruction per 32 multiply-adds plus one per block.
//! Register-blocked MR activation rows x NV 8-column vectors. Per-block activation scales
//! (`BS = true`): the f32 dot times the row's block scale before the FMA (sums pre-scaled).

// Micro-kernels index several register arrays by the same row/column counters.
#![allow(clippy::needless_range_loop)]

use super::{PackedW4, ROW_CHUNK, SCALES, TILE};
use crate::formats::{PaddedActivations, QK};
use std::arch::x86_64::*;
use std::ops::Range;

/// GEMM micro-kernel: 4 rows x 2 vectors (one tile) = 8 16-bit accumulators, 4 weight
/// vectors, 2 broadcasts. GEMV: 1 row x 4 vectors (two tiles).
const MR: usize = 4;
const NV_GEMM: usize = 2;
const NV_GEMV: usize = 4;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn micro<const R: usize, const V: usize, const BS: bool>(
    w: &PackedW4,
    a: &PaddedActivations,
    r0: usize,
    t0: usize,
    out: *mut f32,
    ld: usize,
    ncols: usize,
) {
    let bpr = w.bpr;
    let ones = _mm256_set1_epi16(1);
    let mask = _mm256_set1_epi8(0x0f);
    let mut facc = [[_mm256_setzero_ps(); V]; R];
    for b in 0..bpr {
        let mut acc = [[_mm256_setzero_si256(); V]; R];
        for qp in 0..4 {
            let mut w0 = [_mm256_setzero_si256(); V];
            let mut w1 = [_mm256_setzero_si256(); V];
            for v in 0..V {
                let p = w.record(t0 + v / 2, b).add(qp * 64 + (v % 2) * 32);
                let x = _mm256_loadu_si256(p as *const __m256i);
                w0[v] = _mm256_and_si256(x, mask);
                w1[v] = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
            }
            for r in 0..R {
                let ap = a.q.as_ptr().add((r0 + r) * bpr * QK + b * QK + qp * 8);
                let a0 = _mm256_set1_epi32((ap as *const i32).read_unaligned());
                let a1 = _mm256_set1_epi32((ap.add(4) as *const i32).read_unaligned());
                for v in 0..V {
                    acc[r][v] = _mm256_add_epi16(acc[r][v], _mm256_maddubs_epi16(w0[v], a0));
                    acc[r][v] = _mm256_add_epi16(acc[r][v], _mm256_maddubs_epi16(w1[v], a1));
                }
            }
        }
        for v in 0..V {
            let sp = w.record(t0 + v / 2, b).add(SCALES + (v % 2) * 16);
            let dv = _mm256_cvtph_ps(_mm_loadu_si128(sp as *const __m128i));
            let mv = _mm256_cvtph_ps(_mm_loadu_si128(sp.add(32) as *const __m128i));
            for r in 0..R {
                let s = _mm256_broadcast_ss(a.sums.get_unchecked((r0 + r) * a.bpr8 + b));
                let mut dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(acc[r][v], ones));
                if BS {
                    dot = _mm256_mul_ps(dot, _mm256_broadcast_ss(a.block_scales.get_unchecked((r0 + r) * a.bpr8 + b)));
                }
                facc[r][v] = _mm256_fmadd_ps(dot, dv, facc[r][v]);
                facc[r][v] = _mm256_fmadd_ps(mv, s, facc[r][v]);
            }
        }
    }
    for r in 0..R {
        let sc = _mm256_set1_ps(a.scales[r0 + r]);
        for v in 0..V {
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
/// The CPU must have AVX2, FMA and F16C; `cols.start` a multiple of `TILE`; shapes as checked by
/// `W4A8::gemm_padded`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn gemm(w: &PackedW4, a: &PaddedActivations, cols: Range<usize>, o: *mut f32, nc: usize) {
    if a.is_blocked() {
        gemm_with::<true>(w, a, cols, o, nc)
    } else {
        gemm_with::<false>(w, a, cols, o, nc)
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_with<const BS: bool>(w: &PackedW4, a: &PaddedActivations, cols: Range<usize>, o: *mut f32, nc: usize) {
    let (mr, nv) = if a.m == 1 { (1, NV_GEMV) } else { (MR, NV_GEMM) };
    for rc in (0..a.m).step_by(ROW_CHUNK) {
        let re = (rc + ROW_CHUNK).min(a.m);
        let mut j = cols.start;
        while j < cols.end {
            let v = nv.min((cols.end - j).div_ceil(8).next_multiple_of(2));
            let ncols = (cols.end - j).min(v * 8);
            let mut r = rc;
            while r < re {
                let rr = mr.min(re - r);
                let args = (w, a, r, j / TILE, o.add(r * nc + j - cols.start), nc, ncols);
                match (rr, v) {
                    (1, 2) => micro::<1, 2, BS>(args.0, args.1, args.2, args.3, args.4, args.5, args.6),
                    (1, 4) => micro::<1, 4, BS>(args.0, args.1, args.2, args.3, args.4, args.5, args.6),
                    (2, 2) => micro::<2, 2, BS>(args.0, args.1, args.2, args.3, args.4, args.5, args.6),
                    (3, 2) => micro::<3, 2, BS>(args.0, args.1, args.2, args.3, args.4, args.5, args.6),
                    (4, 2) => micro::<4, 2, BS>(args.0, args.1, args.2, args.3, args.4, args.5, args.6),
                    _ => unreachable!("rows {rr}, vectors {v}"),
                }
                r += rr;
            }
            j += ncols;
        }
    }
}
