//! AVX-512 VNNI W4A8 on the tiled layout (module doc of `w4a8`). The 64 bytes of one
//! (tile, block, quad pair) are exactly one zmm: 16 columns x 4 bytes, whose low nibbles are
//! inputs `8p..8p+4` and high nibbles inputs `8p+4..8p+8` of each column. A mask (and a shift
//! and a mask) give two "16 columns x 4 inputs" u8 operands, and one `vpdpbusd` against 4
//! broadcast activation bytes (i8) adds 4 products into each column's i32 lane: 64
//! multiply-adds per instruction, no 16-bit stage (products and sums stay far inside i32:
//! |dot| <= 32 * 15 * 128). Per block the i32 dots become f32 for `d * dot + m * sum(a)`.
//! Register-blocked MR activation rows x NV tiles of 16 columns.
//!
//! Port balance: `vpdpbusd` zmm issues on port 0 only, while FMAs and logic ops also use
//! port 5, so everything else is kept off port 0 where possible. The i32 -> f32 conversion
//! of the dots (`vcvtdq2ps`, port 0 only) is replaced by the magic-number trick: each
//! block's i32 accumulators start at the bits of `1.5 * 2^23` (`0x4B40_0000`), so after the
//! block they hold the bits of the float `1.5 * 2^23 + dot` exactly (|dot| <= 32*15*128 <
//! 2^22 keeps it inside the binade where the ulp is 1), and one `vsubps` (ports 0 or 5)
//! recovers `dot` exactly. With per-block activation
//! scales (`BS = true`) the f32 dot is multiplied by the row's block scale before the FMA
//! (the sums come pre-scaled): one extra multiply per (row, block, tile).

// Micro-kernels index several register arrays by the same row/column counters.
#![allow(clippy::needless_range_loop)]

use super::{PackedW4, ROW_CHUNK, SCALES, TILE};
use crate::formats::{PaddedActivations, QK};
use std::arch::x86_64::*;
use std::ops::Range;

/// GEMM micro-kernel: 6 rows x 2 tiles = 12 i32 + 12 f32 accumulators, 4 weight operands,
/// 2 broadcasts (30 of 32 zmm). GEMV: 1 row x 4 tiles (64 columns in flight).
const MR: usize = 6;
const NV_GEMM: usize = 2;
const NV_GEMV: usize = 4;
/// Bits of the f32 `1.5 * 2^23`; see the module doc.
const MAGIC: i32 = 0x4B40_0000;

#[inline(always)]
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
    let mask = _mm512_set1_epi8(0x0f);
    let magic_i = _mm512_set1_epi32(MAGIC);
    let magic_f = _mm512_castsi512_ps(magic_i);
    let mut facc = [[_mm512_setzero_ps(); V]; R];
    for b in 0..bpr {
        let mut acc = [[magic_i; V]; R];
        for qp in 0..4 {
            let mut w0 = [_mm512_setzero_si512(); V];
            let mut w1 = [_mm512_setzero_si512(); V];
            for v in 0..V {
                let x = _mm512_load_si512(w.record(t0 + v, b).add(qp * 64) as *const _);
                w0[v] = _mm512_and_si512(x, mask);
                w1[v] = _mm512_and_si512(_mm512_srli_epi16::<4>(x), mask);
            }
            for r in 0..R {
                let ap = a.q.as_ptr().add((r0 + r) * bpr * QK + b * QK + qp * 8);
                let a0 = _mm512_set1_epi32((ap as *const i32).read_unaligned());
                let a1 = _mm512_set1_epi32((ap.add(4) as *const i32).read_unaligned());
                for v in 0..V {
                    acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], w0[v], a0);
                    acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], w1[v], a1);
                }
            }
        }
        for v in 0..V {
            let sp = w.record(t0 + v, b).add(SCALES);
            let dv = _mm512_cvtph_ps(_mm256_loadu_si256(sp as *const __m256i));
            let mv = _mm512_cvtph_ps(_mm256_loadu_si256(sp.add(32) as *const __m256i));
            for r in 0..R {
                let s = _mm512_set1_ps(*a.sums.get_unchecked((r0 + r) * a.bpr8 + b));
                let mut dot = _mm512_sub_ps(_mm512_castsi512_ps(acc[r][v]), magic_f);
                if BS {
                    dot = _mm512_mul_ps(dot, _mm512_set1_ps(*a.block_scales.get_unchecked((r0 + r) * a.bpr8 + b)));
                }
                facc[r][v] = _mm512_fmadd_ps(dot, dv, facc[r][v]);
                facc[r][v] = _mm512_fmadd_ps(mv, s, facc[r][v]);
            }
        }
    }
    for r in 0..R {
        let sc = _mm512_set1_ps(a.scales[r0 + r]);
        for v in 0..V {
            let y = _mm512_mul_ps(facc[r][v], sc);
            let left = ncols.saturating_sub(v * TILE).min(TILE);
            if left > 0 {
                _mm512_mask_storeu_ps(out.add(r * ld + v * TILE), ((1u32 << left) - 1) as u16, y);
            }
        }
    }
}

/// # Safety
/// The CPU must have AVX-512 F/BW/VNNI; `cols.start` a multiple of `TILE`; shapes as checked
/// by `W4A8::gemm_padded`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm(w: &PackedW4, a: &PaddedActivations, cols: Range<usize>, o: *mut f32, nc: usize) {
    if a.is_blocked() {
        gemm_with::<true>(w, a, cols, o, nc)
    } else {
        gemm_with::<false>(w, a, cols, o, nc)
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_with<const BS: bool>(w: &PackedW4, a: &PaddedActivations, cols: Range<usize>, o: *mut f32, nc: usize) {
    let (mr, nv) = if a.m == 1 { (1, NV_GEMV) } else { (MR, NV_GEMM) };
    for rc in (0..a.m).step_by(ROW_CHUNK) {
        let re = (rc + ROW_CHUNK).min(a.m);
        let mut j = cols.start;
        while j < cols.end {
            let v = nv.min((cols.end - j).div_ceil(TILE));
            let ncols = (cols.end - j).min(v * TILE);
            let mut r = rc;
            while r < re {
                let rr = mr.min(re - r);
                let args = (w, a, r, j / TILE, o.add(r * nc + j - cols.start), nc, ncols);
                macro_rules! go {
                    ($($r:literal, $v:literal);*) => {
                        match (rr, v) {
                            $(($r, $v) => micro::<$r, $v, BS>(args.0, args.1, args.2, args.3, args.4, args.5, args.6),)*
                            _ => unreachable!("rows {rr}, tiles {v}"),
                        }
                    };
                }
                go!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 3, 1; 3, 2; 4, 1; 4, 2; 5, 1; 5, 2; 6, 1; 6, 2);
                r += rr;
            }
            j += ncols;
        }
    }
}
