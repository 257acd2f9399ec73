//! NEON table lookup: `ld2` de-interleaves a group's 32 index bytes into `p0|p2<<4` and
//! `p1|p3<<4` for 16 columns; four `tbl` lookups, `T[p0] + 2 T[p1]` and `T[p2] + 2 T[p3]` in
//! 8 bits (|.| <= 96), then `saddw` and `sshll #2` into 16-bit column lanes.

// Micro-kernels index several register arrays by the same row/column counters.
#![allow(clippy::needless_range_loop)]

use super::{LutActs, PackedPlanes, G, TILE};
use crate::formats::QK;
use crate::variants::w4a8::ROW_CHUNK;
use std::arch::aarch64::*;
use std::ops::Range;

const MR: usize = 2;

#[inline]
#[target_feature(enable = "neon")]
unsafe fn micro<const R: usize>(w: &PackedPlanes, a: &LutActs, r0: usize, t: usize, out: *mut f32, ld: usize, ncols: usize) {
    let (bpr, gpr) = (w.bpr, w.bpr * QK / G);
    let mask = vdupq_n_u8(0x0f);
    let mut facc = [[vdupq_n_f32(0.0); 4]; R];
    for b in 0..bpr {
        let mut acc = [[vdupq_n_s16(0); 2]; R];
        for g in b * QK / G..(b + 1) * QK / G {
            let x = vld2q_u8(w.idx.as_ptr().add((t * gpr + g) * 32));
            let i0 = vandq_u8(x.0, mask);
            let i2 = vshrq_n_u8::<4>(x.0);
            let i1 = vandq_u8(x.1, mask);
            let i3 = vshrq_n_u8::<4>(x.1);
            for r in 0..R {
                let tab = vld1q_s8(a.tables.as_ptr().add(((r0 + r) * gpr + g) * 16));
                let l1 = vqtbl1q_s8(tab, i1);
                let l3 = vqtbl1q_s8(tab, i3);
                let t01 = vaddq_s8(vqtbl1q_s8(tab, i0), vaddq_s8(l1, l1));
                let t23 = vaddq_s8(vqtbl1q_s8(tab, i2), vaddq_s8(l3, l3));
                acc[r][0] = vaddq_s16(vaddw_s8(acc[r][0], vget_low_s8(t01)), vshll_n_s8::<2>(vget_low_s8(t23)));
                acc[r][1] = vaddq_s16(vaddw_high_s8(acc[r][1], t01), vshll_high_n_s8::<2>(t23));
            }
        }
        let at = (t * bpr + b) * TILE;
        for r in 0..R {
            let s = *a.pad.sums.get_unchecked((r0 + r) * a.pad.bpr8 + b);
            let parts = [
                vmovl_s16(vget_low_s16(acc[r][0])),
                vmovl_high_s16(acc[r][0]),
                vmovl_s16(vget_low_s16(acc[r][1])),
                vmovl_high_s16(acc[r][1]),
            ];
            for (v, part) in parts.into_iter().enumerate() {
                let dv = vld1q_f32(w.d.as_ptr().add(at + 4 * v));
                let mv = vld1q_f32(w.m.as_ptr().add(at + 4 * v));
                facc[r][v] = vfmaq_f32(facc[r][v], vcvtq_f32_s32(part), dv);
                facc[r][v] = vfmaq_n_f32(facc[r][v], mv, s);
            }
        }
    }
    for r in 0..R {
        let sc = a.pad.scales[r0 + r];
        for v in 0..4 {
            crate::variants::w4a8::store4_neon(out.add(r * ld + 4 * v), vmulq_n_f32(facc[r][v], sc), ncols.saturating_sub(4 * v));
        }
    }
}

/// # Safety
/// NEON; `cols.start` a multiple of `TILE`; shapes checked by `gemm_acts`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn gemm(w: &PackedPlanes, a: &LutActs, cols: Range<usize>, o: *mut f32, nc: usize) {
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
                    _ => micro::<2>(w, a, r, j / TILE, dst, nc, ncols),
                }
                r += rr;
            }
        }
    }
}
