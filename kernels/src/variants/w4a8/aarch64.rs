//! NEON W4A8 on the tiled layout (module doc of `w4a8`): each 16-byte weight vector is
//! "4 columns x 4 consecutive inputs", and one 4-byte group of activations is applied to it
//! by element. With ARMv8.2 dotprod that is one `sdot v.4s, w.16b, a.4b[i]` (inline asm:
//! `vdotq_laneq_s32` is not stable in Rust 1.95) into 32-bit column lanes; without it,
//! `smull`/`smull2` of the broadcast group, `addp`, `sadalp` (|pair sum| <= 2*15*128).
//! Per-block activation scales (`BS = true`): the f32 dot times the row's block scale
//! before the FMA (sums pre-scaled).

// Micro-kernels index several register arrays by the same row/column counters.
#![allow(clippy::needless_range_loop)]

use super::{PackedW4, ROW_CHUNK, SCALES, TILE};
use crate::formats::{PaddedActivations, QK};
use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

const MR: usize = 2;

/// `acc[i] += sum_e w[4i + e] * a[4L + e]` with `sdot` by element.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_sdot<const L: i32>(mut acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    asm!("sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{l}]", acc = inout(vreg) acc, w = in(vreg) w, a = in(vreg) a,
         l = const L, options(pure, nomem, nostack, preserves_flags));
    acc
}

/// The same without dotprod.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_smull<const L: i32>(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let ap = vreinterpretq_s8_s32(vdupq_laneq_s32::<L>(vreinterpretq_s32_s8(a)));
    let lo = vmull_s8(vget_low_s8(w), vget_low_s8(ap));
    let hi = vmull_high_s8(w, ap);
    vpadalq_s16(acc, vpaddq_s16(lo, hi))
}

/// Stores 4 lanes, or the first `n` of them.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn store4(dst: *mut f32, v: float32x4_t, n: usize) {
    if n >= 4 {
        vst1q_f32(dst, v);
    } else if n > 0 {
        let mut tmp = [0f32; 4];
        vst1q_f32(tmp.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, n);
    }
}

macro_rules! kernels {
    ($micro:ident, $gemm:ident, $feat:literal, $dot:ident) => {
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn $micro<const R: usize, const BS: bool>(w: &PackedW4, a: &PaddedActivations, r0: usize, t: usize, out: *mut f32, ld: usize, ncols: usize) {
            let bpr = w.bpr;
            let mask = vdupq_n_u8(0x0f);
            let mut facc = [[vdupq_n_f32(0.0); 4]; R];
            for b in 0..bpr {
                let mut acc = [[vdupq_n_s32(0); 4]; R];
                let mut alo = [vdupq_n_s8(0); R];
                let mut ahi = [vdupq_n_s8(0); R];
                for r in 0..R {
                    let ap = a.q.as_ptr().add((r0 + r) * bpr * QK + b * QK);
                    alo[r] = vld1q_s8(ap);
                    ahi[r] = vld1q_s8(ap.add(16));
                }
                // Quad pair qp covers inputs 8qp..8qp+8: 4-byte groups (2qp, 2qp+1) of the block.
                macro_rules! step {
                    ($qp:expr, $areg:ident, $l0:literal, $l1:literal) => {
                        for cv in 0..4 {
                            let p = w.record(t, b).add($qp * 64 + cv * 16);
                            let x = vld1q_u8(p);
                            let wl = vreinterpretq_s8_u8(vandq_u8(x, mask));
                            let wh = vreinterpretq_s8_u8(vshrq_n_u8::<4>(x));
                            for r in 0..R {
                                acc[r][cv] = $dot::<$l0>(acc[r][cv], wl, $areg[r]);
                                acc[r][cv] = $dot::<$l1>(acc[r][cv], wh, $areg[r]);
                            }
                        }
                    };
                }
                step!(0, alo, 0, 1);
                step!(1, alo, 2, 3);
                step!(2, ahi, 0, 1);
                step!(3, ahi, 2, 3);
                let sp = w.record(t, b).add(SCALES) as *const u16;
                let (d0, d1) = crate::arch::aarch64::f16x8(sp);
                let (d2, d3) = crate::arch::aarch64::f16x8(sp.add(8));
                let (m0, m1) = crate::arch::aarch64::f16x8(sp.add(16));
                let (m2, m3) = crate::arch::aarch64::f16x8(sp.add(24));
                let (ds, ms) = ([d0, d1, d2, d3], [m0, m1, m2, m3]);
                for cv in 0..4 {
                    let (dv, mv) = (ds[cv], ms[cv]);
                    for r in 0..R {
                        let s = *a.sums.get_unchecked((r0 + r) * a.bpr8 + b);
                        let mut dot = vcvtq_f32_s32(acc[r][cv]);
                        if BS {
                            dot = vmulq_n_f32(dot, *a.block_scales.get_unchecked((r0 + r) * a.bpr8 + b));
                        }
                        facc[r][cv] = vfmaq_f32(facc[r][cv], dot, dv);
                        facc[r][cv] = vfmaq_n_f32(facc[r][cv], mv, s);
                    }
                }
            }
            for r in 0..R {
                let sc = a.scales[r0 + r];
                for cv in 0..4 {
                    store4(out.add(r * ld + 4 * cv), vmulq_n_f32(facc[r][cv], sc), ncols.saturating_sub(4 * cv));
                }
            }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $gemm<const BS: bool>(w: &PackedW4, a: &PaddedActivations, cols: Range<usize>, o: *mut f32, nc: usize) {
            for rc in (0..a.m).step_by(ROW_CHUNK) {
                let re = (rc + ROW_CHUNK).min(a.m);
                for j in cols.clone().step_by(TILE) {
                    let ncols = (cols.end - j).min(TILE);
                    let mut r = rc;
                    while r < re {
                        let rr = MR.min(re - r);
                        let dst = o.add(r * nc + j - cols.start);
                        match rr {
                            1 => $micro::<1, BS>(w, a, r, j / TILE, dst, nc, ncols),
                            _ => $micro::<2, BS>(w, a, r, j / TILE, dst, nc, ncols),
                        }
                        r += rr;
                    }
                }
            }
        }
    };
}

kernels!(micro_sdot, gemm_sdot, "neon,dotprod", dot_sdot);
kernels!(micro_smull, gemm_smull, "neon", dot_smull);

/// # Safety
/// The CPU must have NEON, and dotprod when `dotprod` is true; `cols.start` a multiple of
/// `TILE`.
pub(super) unsafe fn gemm(w: &PackedW4, a: &PaddedActivations, cols: Range<usize>, o: *mut f32, nc: usize, dotprod: bool) {
    match (dotprod, a.is_blocked()) {
        (true, false) => gemm_sdot::<false>(w, a, cols, o, nc),
        (true, true) => gemm_sdot::<true>(w, a, cols, o, nc),
        (false, false) => gemm_smull::<false>(w, a, cols, o, nc),
        (false, true) => gemm_smull::<true>(w, a, cols, o, nc),
    }
}
