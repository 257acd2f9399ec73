//! NEON packed multiplier: `mul v.8h, w.8h, u` (by scalar) on 8 packed lanes (16 columns),
//! then `tot += p` and `usra hi, p, #8` (shift right and accumulate: `hi += p >> 8`).

// Micro-kernels index several register arrays by the same row/column counters.
#![allow(clippy::needless_range_loop)]

use super::{PackedActs, PackedW4x2, TILE};
use crate::formats::QK;
use crate::variants::w4a8::ROW_CHUNK;
use std::arch::aarch64::*;
use std::ops::Range;

const MR: usize = 2;

#[inline]
#[target_feature(enable = "neon")]
unsafe fn micro<const R: usize>(w: &PackedW4x2, a: &PackedActs, r0: usize, t: usize, out: *mut f32, ld: usize, ncols: usize) {
    let (bpr, kp) = (w.bpr, w.bpr * QK);
    let mask = vdupq_n_u16(0x0f0f);
    let mut facc = [[vdupq_n_f32(0.0); 8]; R];
    for b in 0..bpr {
        let mut tot = [[vdupq_n_u16(0); 2]; R];
        let mut hi = [[vdupq_n_u16(0); 2]; R];
        for q in 0..QK / 2 {
            let rec = w.qs.as_ptr().add(((t * bpr + b) * 16 + q) * 32) as *const u16;
            let x = [vld1q_u16(rec), vld1q_u16(rec.add(8))];
            for r in 0..R {
                let up = a.u.as_ptr().add((r0 + r) * kp + b * QK + 2 * q);
                let (u0, u1) = (*up, *up.add(1));
                for h in 0..2 {
                    let p0 = vmulq_n_u16(vandq_u16(x[h], mask), u0);
                    let p1 = vmulq_n_u16(vandq_u16(vshrq_n_u16::<4>(x[h]), mask), u1);
                    tot[r][h] = vaddq_u16(tot[r][h], vaddq_u16(p0, p1));
                    hi[r][h] = vsraq_n_u16::<8>(vsraq_n_u16::<8>(hi[r][h], p0), p1);
                }
            }
        }
        // Flush (32 additions per lane): vector h, lane l -> columns 8h + l (lo), 16 + 8h + l (hi).
        let at = (t * bpr + b) * TILE;
        for r in 0..R {
            let s = *a.pad.sums.get_unchecked((r0 + r) * a.pad.bpr8 + b);
            for h in 0..2 {
                let lo = vsubq_u16(tot[r][h], vshlq_n_u16::<8>(hi[r][h]));
                let parts = [
                    (8 * h, vmovl_u16(vget_low_u16(lo))),
                    (8 * h + 4, vmovl_high_u16(lo)),
                    (16 + 8 * h, vmovl_u16(vget_low_u16(hi[r][h]))),
                    (20 + 8 * h, vmovl_high_u16(hi[r][h])),
                ];
                for (col, part) in parts {
                    let sw = vmovl_s16(vld1_s16(w.sw8.as_ptr().add(at + col)));
                    let dot = vsubq_s32(vreinterpretq_s32_u32(part), sw);
                    let dv = vld1q_f32(w.d.as_ptr().add(at + col));
                    let mv = vld1q_f32(w.m.as_ptr().add(at + col));
                    let f = &mut facc[r][col / 4];
                    *f = vfmaq_f32(*f, vcvtq_f32_s32(dot), dv);
                    *f = vfmaq_n_f32(*f, mv, s);
                }
            }
        }
    }
    for r in 0..R {
        let sc = a.pad.scales[r0 + r];
        for v in 0..8 {
            crate::variants::w4a8::store4_neon(out.add(r * ld + 4 * v), vmulq_n_f32(facc[r][v], sc), ncols.saturating_sub(4 * v));
        }
    }
}

/// # Safety
/// NEON; `cols.start` a multiple of `TILE`; shapes checked by `gemm_acts`.
#[target_feature(enable = "neon")]
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
                    _ => micro::<2>(w, a, r, j / TILE, dst, nc, ncols),
                }
                r += rr;
            }
        }
    }
}

/// `dot2` with 8 lanes, input `i` in lane `i % 8`.
///
/// # Safety
/// NEON; slices of equal length with 4-bit values.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot2(w0: &[u8], w1: &[u8], u: &[u8], flush_every: usize) -> (u32, u32) {
    let n = u.len();
    let (mut s0, mut s1) = (vdupq_n_u32(0), vdupq_n_u32(0));
    let (mut tot, mut hi) = (vdupq_n_u16(0), vdupq_n_u16(0));
    let mut adds = 0;
    let mut i = 0;
    while i + 8 <= n {
        let packed = vorrq_u16(vmovl_u8(vld1_u8(w0.as_ptr().add(i))), vshlq_n_u16::<8>(vmovl_u8(vld1_u8(w1.as_ptr().add(i)))));
        let p = vmulq_u16(packed, vmovl_u8(vld1_u8(u.as_ptr().add(i))));
        tot = vaddq_u16(tot, p);
        hi = vsraq_n_u16::<8>(hi, p);
        adds += 1;
        if adds == flush_every {
            s0 = vpadalq_u16(s0, vsubq_u16(tot, vshlq_n_u16::<8>(hi)));
            s1 = vpadalq_u16(s1, hi);
            (tot, hi, adds) = (vdupq_n_u16(0), vdupq_n_u16(0), 0);
        }
        i += 8;
    }
    s0 = vpadalq_u16(s0, vsubq_u16(tot, vshlq_n_u16::<8>(hi)));
    s1 = vpadalq_u16(s1, hi);
    let (t0, t1) = super::dot2_scalar(&w0[i..], &w1[i..], &u[i..], flush_every);
    (vaddvq_u32(s0) + t0, vaddvq_u32(s1) + t1)
}
