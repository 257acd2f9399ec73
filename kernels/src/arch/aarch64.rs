//! NEON building blocks shared by the float variants: a blocked f32 GEMM driver over
//! 16-column weight panels (the same blocking as the AVX2 one), its 6x16 register-blocked
//! micro-kernel (24 of the 32 vector registers accumulate), and f16 -> f32 conversion.
//!
//! Every output element is accumulated by one FMA chain in increasing `k` (the running sum is
//! stored and reloaded between k-blocks, which is exact), so its value does not depend on
//! which row block, column block or tile it falls in.

use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

/// Output columns per panel (four q registers).
pub const NR: usize = 16;
/// Activation rows per micro-kernel call: 6 x 4 accumulators + 4 weight + 1 broadcast
/// register = 29 of the 32 q registers.
const MR: usize = 6;
/// k per block: a 16-column panel slice (KC x 16 f32 = 16 KiB) stays in L1.
const KC: usize = 256;
/// Activation rows per block: MC x KC f32 (96 KiB) stays in L2.
const MC: usize = 96;
/// Columns converted per block: KC x NC f32 (256 KiB) stays in L2.
const NC: usize = 256;

/// A weight matrix in 16-column panels that can produce f32 slices of itself.
pub trait Panels: Sync {
    /// Writes panel `p`'s weights for `k0..k1` as `(k1 - k0) x 16` f32 (k-major) to `dst`.
    ///
    /// # Safety
    /// `dst` is valid for `(k1 - k0) * 16` writes.
    unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32);
}

/// `out` (`m` rows of `cols.len()`, row stride `ldc`) = `x` (`m x k`) times the panels'
/// columns `cols`, which start at a multiple of 16.
///
/// # Safety
/// `out` is valid for that tile.
#[target_feature(enable = "neon")]
pub unsafe fn gemm<P: Panels>(src: &P, x: &[f32], m: usize, k: usize, cols: Range<usize>, out: *mut f32, ldc: usize) {
    assert!(x.len() >= m * k && cols.start.is_multiple_of(NR) && ldc >= cols.len());
    if k == 0 {
        for r in 0..m {
            std::ptr::write_bytes(out.add(r * ldc), 0, cols.len());
        }
        return;
    }
    // Equal k-blocks of at most KC (a short last block would pay the C reload for little work).
    let kc_max = k.div_ceil(k.div_ceil(KC));
    let width = (cols.len().div_ceil(NR) * NR).min(NC);
    PANEL_BUF.with_borrow_mut(|buf| blocked(src, x, m, k, kc_max, cols, out, ldc, buf.get(kc_max * width)))
}

/// The loops of `gemm`, with the converted-panel buffer `buf` (`kc_max x min(NC, tile)`).
/// Its own `target_feature` (not `inline(always)`): it is called from a closure, which would
/// not inherit `gemm`'s features.
#[target_feature(enable = "neon")]
#[allow(clippy::too_many_arguments)]
unsafe fn blocked<P: Panels>(
    src: &P,
    x: &[f32],
    m: usize,
    k: usize,
    kc_max: usize,
    cols: Range<usize>,
    out: *mut f32,
    ldc: usize,
    buf: *mut f32,
) {
    let mut n0 = cols.start;
    while n0 < cols.end {
        let n1 = (n0 + NC).min(cols.end);
        let panels = (n0 / NR)..n1.div_ceil(NR);
        let mut k0 = 0;
        while k0 < k {
            let k1 = (k0 + kc_max).min(k);
            let kc = k1 - k0;
            for (i, p) in panels.clone().enumerate() {
                src.fill(p, k0, k1, buf.add(i * kc * NR));
            }
            let mut m0 = 0;
            while m0 < m {
                let m1 = (m0 + MC).min(m);
                for (i, p) in panels.clone().enumerate() {
                    let b = buf.add(i * kc * NR);
                    let j0 = p * NR;
                    let ncols = (cols.end - j0).min(NR);
                    let c_col = j0 - cols.start;
                    let mut r = m0;
                    while r < m1 {
                        let rows = (m1 - r).min(MR);
                        let a = x.as_ptr().add(r * k + k0);
                        let c = out.add(r * ldc + c_col);
                        let acc = k0 > 0;
                        match rows {
                            6 => micro::<6>(kc, a, k, b, c, ldc, acc, ncols),
                            5 => micro::<5>(kc, a, k, b, c, ldc, acc, ncols),
                            4 => micro::<4>(kc, a, k, b, c, ldc, acc, ncols),
                            3 => micro::<3>(kc, a, k, b, c, ldc, acc, ncols),
                            2 => micro::<2>(kc, a, k, b, c, ldc, acc, ncols),
                            _ => micro::<1>(kc, a, k, b, c, ldc, acc, ncols),
                        }
                        r += rows;
                    }
                }
                m0 = m1;
            }
            k0 = k1;
        }
        n0 = n1;
    }
}

/// `R x 16` block of `c` (+)= `a` (`R x kc`, row stride `lda`) times `b` (`kc x 16`).
/// Only the first `ncols` columns of `c` are touched.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    ncols: usize,
) {
    let mut acc = [[vdupq_n_f32(0.0); 4]; R];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            *row = load16(c.add(r * ldc), ncols);
        }
    }
    for kk in 0..kc {
        let bp = b.add(kk * NR);
        let bv = [vld1q_f32(bp), vld1q_f32(bp.add(4)), vld1q_f32(bp.add(8)), vld1q_f32(bp.add(12))];
        for (r, row) in acc.iter_mut().enumerate() {
            let av = vld1q_dup_f32(a.add(r * lda + kk));
            for (v, w) in row.iter_mut().zip(bv) {
                *v = vfmaq_f32(*v, av, w);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        store16(c.add(r * ldc), *row, ncols);
    }
}

/// Loads the first `ncols <= 16` of 16 lanes (the rest zero).
///
/// # Safety
/// `src` is valid for `ncols` reads.
#[inline(always)]
pub unsafe fn load16(src: *const f32, ncols: usize) -> [float32x4_t; 4] {
    let mut t = [0f32; NR];
    let p = if ncols == NR {
        src
    } else {
        std::ptr::copy_nonoverlapping(src, t.as_mut_ptr(), ncols);
        t.as_ptr()
    };
    [vld1q_f32(p), vld1q_f32(p.add(4)), vld1q_f32(p.add(8)), vld1q_f32(p.add(12))]
}

/// Stores the first `ncols <= 16` of 16 lanes.
///
/// # Safety
/// `dst` is valid for `ncols` writes.
#[inline(always)]
pub unsafe fn store16(dst: *mut f32, v: [float32x4_t; 4], ncols: usize) {
    if ncols == NR {
        for (i, q) in v.into_iter().enumerate() {
            vst1q_f32(dst.add(4 * i), q);
        }
    } else {
        let mut t = [0f32; NR];
        for (i, q) in v.into_iter().enumerate() {
            vst1q_f32(t.as_mut_ptr().add(4 * i), q);
        }
        std::ptr::copy_nonoverlapping(t.as_ptr(), dst, ncols);
    }
}

/// Eight f16 (as bits) to two f32x4 (`fcvtl`/`fcvtl2`: base ARMv8, no FP16 extension; the
/// intrinsic `vcvt_f32_f16` is not stable in Rust yet).
///
/// # Safety
/// `src` is valid for 8 reads.
#[inline(always)]
pub unsafe fn f16x8(src: *const u16) -> (float32x4_t, float32x4_t) {
    let h = vld1q_u16(src);
    let (lo, hi): (float32x4_t, float32x4_t);
    asm!(
        "fcvtl {lo:v}.4s, {h:v}.4h",
        "fcvtl2 {hi:v}.4s, {h:v}.8h",
        h = in(vreg) h,
        lo = out(vreg) lo,
        hi = out(vreg) hi,
        options(pure, nomem, nostack),
    );
    (lo, hi)
}

thread_local! {
    /// Per-thread converted-panel buffer, reused across calls (every slice is written by
    /// `Panels::fill` before the micro-kernel reads it, so it is never cleared).
    static PANEL_BUF: std::cell::RefCell<AlignedBuf> = const { std::cell::RefCell::new(AlignedBuf { data: Vec::new() }) };
}

/// An aligned f32 scratch buffer (the panel slices are read with aligned loads).
pub struct AlignedBuf {
    data: Vec<float32x4_t>,
}

impl AlignedBuf {
    /// A pointer to at least `len` f32, growing the buffer if needed.
    pub fn get(&mut self, len: usize) -> *mut f32 {
        let want = len.div_ceil(4);
        if self.data.len() < want {
            // SAFETY: all-zero bits are a valid vector.
            self.data.resize(want, unsafe { std::mem::zeroed() });
        }
        self.data.as_mut_ptr() as *mut f32
    }
}
