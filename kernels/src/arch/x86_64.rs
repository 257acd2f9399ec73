//! AVX2 + FMA (+ F16C) building blocks shared by the float variants: a blocked f32 GEMM
//! driver over 16-column weight panels and its 6x16 register-blocked micro-kernel.
//!
//! Every output element is accumulated by one FMA chain in increasing `k` (the running sum is
//! stored and reloaded between k-blocks, which is exact), so its value does not depend on
//! which row block, column block or tile it falls in.

use std::arch::x86_64::*;
use std::ops::Range;

/// Output columns per panel (two ymm registers).
pub const NR: usize = 16;
/// Activation rows per micro-kernel call: 6 x 2 accumulators + 2 weight + 1 broadcast
/// register = 15 of the 16 ymm registers.
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
    /// `dst` is valid for `(k1 - k0) * 16` writes; runs with AVX2, FMA and F16C enabled.
    unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32);
}

/// `out` (`m` rows of `cols.len()`, row stride `ldc`) = `x` (`m x k`) times the panels'
/// columns `cols`, which start at a multiple of 16.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `out` is valid for that tile.
#[target_feature(enable = "avx2,fma,f16c")]
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
#[target_feature(enable = "avx2,fma,f16c")]
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
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            if ncols == NR {
                row[0] = _mm256_loadu_ps(c.add(r * ldc));
                row[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
            } else {
                let mut t = [0f32; NR];
                std::ptr::copy_nonoverlapping(c.add(r * ldc), t.as_mut_ptr(), ncols);
                row[0] = _mm256_loadu_ps(t.as_ptr());
                row[1] = _mm256_loadu_ps(t.as_ptr().add(8));
            }
        }
    }
    // Rows are addressed as base + {0, 1, 2} x lda from two bases, so each broadcast is one
    // load with a folded address; four k per iteration amortize the loop overhead.
    let (a0, a3) = (a, a.add(3.min(R) * lda));
    #[inline(always)]
    unsafe fn step<const R: usize>(acc: &mut [[__m256; 2]; R], a0: *const f32, a3: *const f32, lda: usize, b: *const f32, kk: usize) {
        let b0 = _mm256_load_ps(b.add(kk * NR));
        let b1 = _mm256_load_ps(b.add(kk * NR + 8));
        for (r, row) in acc.iter_mut().enumerate() {
            let base = if r < 3 { a0.add(kk + r * lda) } else { a3.add(kk + (r - 3) * lda) };
            let av = _mm256_broadcast_ss(&*base);
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
    }
    let mut kk = 0;
    while kk + 4 <= kc {
        step(&mut acc, a0, a3, lda, b, kk);
        step(&mut acc, a0, a3, lda, b, kk + 1);
        step(&mut acc, a0, a3, lda, b, kk + 2);
        step(&mut acc, a0, a3, lda, b, kk + 3);
        kk += 4;
    }
    while kk < kc {
        step(&mut acc, a0, a3, lda, b, kk);
        kk += 1;
    }
    for (r, row) in acc.iter().enumerate() {
        if ncols == NR {
            _mm256_storeu_ps(c.add(r * ldc), row[0]);
            _mm256_storeu_ps(c.add(r * ldc + 8), row[1]);
        } else {
            let mut t = [0f32; NR];
            _mm256_storeu_ps(t.as_mut_ptr(), row[0]);
            _mm256_storeu_ps(t.as_mut_ptr().add(8), row[1]);
            std::ptr::copy_nonoverlapping(t.as_ptr(), c.add(r * ldc), ncols);
        }
    }
}

/// Horizontal-free store of 16 lanes, the first `ncols` of them.
///
/// # Safety
/// `dst` is valid for `ncols <= 16` writes; AVX enabled.
#[inline(always)]
pub unsafe fn store16(dst: *mut f32, lo: __m256, hi: __m256, ncols: usize) {
    if ncols == NR {
        _mm256_storeu_ps(dst, lo);
        _mm256_storeu_ps(dst.add(8), hi);
    } else {
        let mut t = [0f32; NR];
        _mm256_storeu_ps(t.as_mut_ptr(), lo);
        _mm256_storeu_ps(t.as_mut_ptr().add(8), hi);
        std::ptr::copy_nonoverlapping(t.as_ptr(), dst, ncols);
    }
}

thread_local! {
    /// Per-thread converted-panel buffer, reused across calls (every slice is written by
    /// `Panels::fill` before the micro-kernel reads it, so it is never cleared).
    static PANEL_BUF: std::cell::RefCell<AlignedBuf> = const { std::cell::RefCell::new(AlignedBuf { data: Vec::new() }) };
}

/// An aligned f32 scratch buffer (the panel slices are read with aligned loads).
pub struct AlignedBuf {
    data: Vec<__m256>,
}

impl AlignedBuf {
    /// A pointer to at least `len` f32, growing the buffer if needed.
    pub fn get(&mut self, len: usize) -> *mut f32 {
        let want = len.div_ceil(8);
        if self.data.len() < want {
            // SAFETY: all-zero bits are a valid vector.
            self.data.resize(want, unsafe { std::mem::zeroed() });
        }
        self.data.as_mut_ptr() as *mut f32
    }
}

/// Activation rows per AVX-512 micro-kernel call: 12 rows x 2 panels = 24 zmm accumulators,
/// 2 weight registers and a broadcast (27 of 32); 13 loads per 24 FMAs.
const MR512: usize = 12;

/// `gemm` on 512-bit registers: the same blocking and panel buffer, one zmm per 16-column
/// panel slice, two panels per micro-kernel call. Each output element is still one FMA
/// chain in increasing `k` (same operations in the same order as the AVX2 kernel), so the
/// results equal `gemm`'s bit for bit.
///
/// # Safety
/// The CPU supports AVX-512 F/VL, AVX2, FMA and F16C; `out` is valid for that tile.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
pub unsafe fn gemm512<P: Panels>(src: &P, x: &[f32], m: usize, k: usize, cols: Range<usize>, out: *mut f32, ldc: usize) {
    assert!(x.len() >= m * k && cols.start.is_multiple_of(NR) && ldc >= cols.len());
    if k == 0 {
        for r in 0..m {
            std::ptr::write_bytes(out.add(r * ldc), 0, cols.len());
        }
        return;
    }
    let kc_max = k.div_ceil(k.div_ceil(KC));
    let width = (cols.len().div_ceil(NR) * NR).min(NC);
    PANEL_BUF.with_borrow_mut(|buf| blocked512(src, x, m, k, kc_max, cols, out, ldc, buf.get(kc_max * width)))
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn blocked512<P: Panels>(
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
        let np = panels.len();
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
                let mut i = 0;
                while i < np {
                    let v = if i + 1 < np { 2 } else { 1 };
                    let b = buf.add(i * kc * NR);
                    let j0 = (panels.start + i) * NR;
                    let ncols = (cols.end - j0).min(v * NR);
                    let c_col = j0 - cols.start;
                    let mut r = m0;
                    while r < m1 {
                        let rows = (m1 - r).min(MR512);
                        let a = x.as_ptr().add(r * k + k0);
                        let c = out.add(r * ldc + c_col);
                        let acc = k0 > 0;
                        macro_rules! go {
                            ($($r:literal),*) => {
                                match (rows, v) {
                                    $(($r, 2) => micro512::<$r, 2>(kc, a, k, b, c, ldc, acc, ncols),
                                      ($r, _) => micro512::<$r, 1>(kc, a, k, b, c, ldc, acc, ncols),)*
                                    _ => unreachable!(),
                                }
                            };
                        }
                        go!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
                        r += rows;
                    }
                    i += v;
                }
                m0 = m1;
            }
            k0 = k1;
        }
        n0 = n1;
    }
}

/// `R x 16V` block of `c` (+)= `a` (`R x kc`, row stride `lda`) times `V` panel slices at
/// `b` (each `kc x 16`, consecutive). Only the first `ncols` columns of `c` are touched.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro512<const R: usize, const V: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    ncols: usize,
) {
    let masks: [u16; V] = std::array::from_fn(|v| {
        let n = ncols.saturating_sub(v * NR).min(NR);
        ((1u32 << n) - 1) as u16
    });
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            for v in 0..V {
                row[v] = _mm512_maskz_loadu_ps(masks[v], c.add(r * ldc + v * NR));
            }
        }
    }
    let bs: [*const f32; V] = std::array::from_fn(|v| b.add(v * kc * NR));
    for kk in 0..kc {
        let w: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(bs[v].add(kk * NR)));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(r * lda + kk));
            for v in 0..V {
                row[v] = _mm512_fmadd_ps(av, w[v], row[v]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for v in 0..V {
            _mm512_mask_storeu_ps(c.add(r * ldc + v * NR), masks[v], row[v]);
        }
    }
}
