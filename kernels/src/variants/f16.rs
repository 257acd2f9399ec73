//! FP16 baseline: f16 weights x f32 activations, f32 accumulation.
//!
//! Packed layout: the `n` weight rows are grouped into panels of [`NR`] = 16 output columns;
//! panel `p` stores, for every `k` in order, the 16 weights `w[16p + i][k]` (i = 0..16) as
//! contiguous f16, so one 32-byte load gives one k-slice of 16 output columns. Columns past
//! `n` are zero. This serves both shapes:
//! - GEMM (m > 1): a panel's k-block is converted to f32 once into a small buffer and reused
//!   for every activation row by a register-blocked micro-kernel (rows x 16 columns).
//! - GEMV (m = 1): the f16 panel is streamed, converted on the fly, with several
//!   independent accumulators.
//!
//! AVX-512 runs both on 512-bit registers (one zmm per 16-column k-slice).

use crate::matmul::{KernelError, Q4Matrix};
use crate::registry::{Isa, Variant};
use crate::variants::{Act, OutTile, Prepared};
use half::f16;
use std::ops::Range;

/// Output columns per panel.
pub const NR: usize = 16;

pub fn implemented(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 => cfg!(target_arch = "x86_64"),
        Isa::Avx512 => cfg!(target_arch = "x86_64"),
        Isa::Neon => cfg!(target_arch = "aarch64"),
    }
}

/// f16 weights in 16-column panels (see the module doc).
pub struct PreparedF16 {
    isa: Isa,
    n: usize,
    k: usize,
    /// `ceil(n / 16)` panels of `k * 16` values.
    panels: Vec<f16>,
}

impl PreparedF16 {
    /// Packs row-major `n x k` f16 weights.
    pub fn from_f16(isa: Isa, n: usize, k: usize, w: &[f16]) -> Result<Self, KernelError> {
        Self::pack(isa, n, k, w.len(), |j, c| w[j * k + c])
    }

    /// Packs row-major `n x k` f32 weights, rounding each to f16.
    pub fn from_f32(isa: Isa, n: usize, k: usize, w: &[f32]) -> Result<Self, KernelError> {
        Self::pack(isa, n, k, w.len(), |j, c| f16::from_f32(w[j * k + c]))
    }

    /// Dequantizes 4-bit weights and rounds them to f16 (the FP16 counterpart of a Q4 model).
    pub fn from_q4(isa: Isa, w: &Q4Matrix) -> Self {
        let dense = w.dequantize();
        Self::from_f32(isa, w.n, w.k, &dense).expect("dequantize returns n * k values")
    }

    fn pack(
        isa: Isa,
        n: usize,
        k: usize,
        len: usize,
        get: impl Fn(usize, usize) -> f16,
    ) -> Result<Self, KernelError> {
        if len != n * k {
            return Err(KernelError::Shape(format!("{n}x{k} weights need {} values, got {len}", n * k)));
        }
        let np = n.div_ceil(NR);
        let mut panels = vec![f16::ZERO; np * k * NR];
        for j in 0..n {
            let (p, i) = (j / NR, j % NR);
            let base = p * k * NR + i;
            for c in 0..k {
                panels[base + c * NR] = get(j, c);
            }
        }
        Ok(PreparedF16 { isa, n, k, panels })
    }

    /// Panel `p`'s `k * 16` values.
    pub(crate) fn panel(&self, p: usize) -> &[f16] {
        &self.panels[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

impl Prepared for PreparedF16 {
    fn variant(&self) -> Variant {
        Variant::F16
    }
    fn isa(&self) -> Isa {
        self.isa
    }
    fn n(&self) -> usize {
        self.n
    }
    fn k(&self) -> usize {
        self.k
    }
    fn col_align(&self) -> usize {
        NR
    }

    fn gemm_into(&self, a: Act<'_>, cols: Range<usize>, mut out: OutTile<'_>) {
        let Act::F32 { x, m, k } = a else { unreachable!("f16 takes float activations") };
        debug_assert_eq!(k, self.k);
        debug_assert_eq!((out.m(), out.cols()), (m, cols.len()));
        debug_assert_eq!(cols.start % NR, 0);
        match self.isa {
            Isa::Scalar => gemm_scalar(self, x, m, cols, &mut out),
            // SAFETY: `Matmul` only builds an Avx2 matmul where `Isa::Avx2.is_available()`;
            // `out` is an exclusive m x cols tile with stride `ld`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::gemm(self, x, m, cols, out.as_mut_ptr(), out.ld()) },
            // SAFETY: as above; Avx512 implies AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx2::gemm512(self, x, m, cols, out.as_mut_ptr(), out.ld()) },
            // SAFETY: as above, for NEON.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::gemm(self, x, m, cols, out.as_mut_ptr(), out.ld()) },
            #[allow(unreachable_patterns)]
            isa => unreachable!("f16 has no {isa} implementation in this build"),
        }
    }
}

/// The reference: one sequential f32 dot product per output.
fn gemm_scalar(w: &PreparedF16, x: &[f32], m: usize, cols: Range<usize>, out: &mut OutTile<'_>) {
    let k = w.k;
    for (jj, j) in cols.enumerate() {
        let panel = w.panel(j / NR);
        let i = j % NR;
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            let mut acc = 0f32;
            for c in 0..k {
                acc += panel[c * NR + i].to_f32() * xr[c];
            }
            out.row(r)[jj] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{PreparedF16, NR};
    use crate::arch::x86_64::{self as arch, Panels};
    use std::arch::x86_64::*;
    use std::ops::Range;

    impl Panels for PreparedF16 {
        #[inline(always)]
        unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32) {
            // A panel's k-slice is contiguous: one straight f16 -> f32 conversion.
            let src = self.panel(p)[k0 * NR..k1 * NR].as_ptr() as *const __m128i;
            for i in 0..(k1 - k0) * 2 {
                _mm256_store_ps(dst.add(i * 8), _mm256_cvtph_ps(_mm_loadu_si128(src.add(i))));
            }
        }
    }

    /// # Safety
    /// AVX2, FMA and F16C are available.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn gemm(w: &PreparedF16, x: &[f32], m: usize, cols: Range<usize>, out: *mut f32, ldc: usize) {
        if m == 1 {
            gemv(w, x, cols, out)
        } else {
            arch::gemm(w, x, m, w.k, cols, out, ldc)
        }
    }

    /// AVX-512: the GEMM on 512-bit registers; the GEMV one zmm per 16-column `k` slice.
    ///
    /// # Safety
    /// AVX-512 F/VL, AVX2, FMA and F16C are available.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    pub unsafe fn gemm512(w: &PreparedF16, x: &[f32], m: usize, cols: Range<usize>, out: *mut f32, ldc: usize) {
        if m == 1 {
            gemv512(w, x, cols, out)
        } else {
            arch::gemm512(w, x, m, w.k, cols, out, ldc)
        }
    }

    /// One activation row, two panels at a time (two independent weight streams, which
    /// keeps more loads in flight), 4 `k` steps each (8 zmm accumulators).
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    unsafe fn gemv512(w: &PreparedF16, x: &[f32], cols: Range<usize>, out: *mut f32) {
        let (k, x) = (w.k, x.as_ptr());
        assert!(w.panels.len() >= cols.end.div_ceil(NR) * k * NR);
        let (p0, p1) = (cols.start / NR, cols.end.div_ceil(NR));
        let mut p = p0;
        while p < p1 {
            let np = (p1 - p).min(2);
            let src = [w.panel(p).as_ptr() as *const __m256i, w.panel(p + np - 1).as_ptr() as *const __m256i];
            let mut acc = [[_mm512_setzero_ps(); 4]; 2];
            macro_rules! step {
                ($kk:expr, $u:expr) => {{
                    let xv = _mm512_set1_ps(*x.add($kk));
                    for v in 0..2 {
                        let wv = _mm512_cvtph_ps(_mm256_loadu_si256(src[v].add($kk)));
                        acc[v][$u] = _mm512_fmadd_ps(xv, wv, acc[v][$u]);
                    }
                }};
            }
            let mut kk = 0;
            while kk + 4 <= k {
                for u in 0..4 {
                    step!(kk + u, u);
                }
                kk += 4;
            }
            // A constant index: a dynamic one would keep `acc` in memory.
            while kk < k {
                step!(kk, 0);
                kk += 1;
            }
            for v in 0..np {
                let s = _mm512_add_ps(_mm512_add_ps(acc[v][0], acc[v][1]), _mm512_add_ps(acc[v][2], acc[v][3]));
                let j0 = (p + v) * NR;
                let ncols = (cols.end - j0).min(NR);
                _mm512_mask_storeu_ps(out.add(j0 - cols.start), ((1u32 << ncols) - 1) as u16, s);
            }
            p += np;
        }
    }

    /// One activation row: stream each panel once, converting on the fly; four k-steps in
    /// flight (8 accumulators) to cover the FMA latency.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemv(w: &PreparedF16, x: &[f32], cols: Range<usize>, out: *mut f32) {
        let (k, x) = (w.k, x.as_ptr());
        assert!(w.panels.len() >= cols.end.div_ceil(NR) * k * NR);
        for p in cols.start / NR..cols.end.div_ceil(NR) {
            let src = w.panel(p).as_ptr() as *const __m128i;
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut kk = 0;
            while kk + 4 <= k {
                for u in 0..4 {
                    let xv = _mm256_broadcast_ss(&*x.add(kk + u));
                    let s = src.add((kk + u) * 2);
                    acc[2 * u] = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128(s)), acc[2 * u]);
                    acc[2 * u + 1] = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128(s.add(1))), acc[2 * u + 1]);
                }
                kk += 4;
            }
            while kk < k {
                let xv = _mm256_broadcast_ss(&*x.add(kk));
                let s = src.add(kk * 2);
                acc[0] = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128(s)), acc[0]);
                acc[1] = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128(s.add(1))), acc[1]);
                kk += 1;
            }
            let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[4], acc[6]));
            let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[3]), _mm256_add_ps(acc[5], acc[7]));
            let j0 = p * NR;
            arch::store16(out.add(j0 - cols.start), lo, hi, (cols.end - j0).min(NR));
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{PreparedF16, NR};
    use crate::arch::aarch64::{self as arch, Panels};
    use std::arch::aarch64::*;
    use std::ops::Range;

    impl Panels for PreparedF16 {
        #[inline(always)]
        unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32) {
            let src = self.panel(p)[k0 * NR..k1 * NR].as_ptr() as *const u16;
            for i in 0..(k1 - k0) * 2 {
                let (lo, hi) = arch::f16x8(src.add(i * 8));
                vst1q_f32(dst.add(i * 8), lo);
                vst1q_f32(dst.add(i * 8 + 4), hi);
            }
        }
    }

    /// # Safety
    /// `out` is valid for the tile.
    #[target_feature(enable = "neon")]
    pub unsafe fn gemm(w: &PreparedF16, x: &[f32], m: usize, cols: Range<usize>, out: *mut f32, ldc: usize) {
        if m == 1 {
            gemv(w, x, cols, out)
        } else {
            arch::gemm(w, x, m, w.k, cols, out, ldc)
        }
    }

    /// One activation row: stream each panel, converting on the fly, two k-steps in flight
    /// (8 accumulators).
    #[target_feature(enable = "neon")]
    unsafe fn gemv(w: &PreparedF16, x: &[f32], cols: Range<usize>, out: *mut f32) {
        let k = w.k;
        for p in cols.start / NR..cols.end.div_ceil(NR) {
            let src = w.panel(p).as_ptr() as *const u16;
            let mut acc = [[vdupq_n_f32(0.0); 4]; 2];
            for kk in 0..k {
                let xv = vdupq_n_f32(x[kk]);
                let s = src.add(kk * NR);
                let (w0, w1) = arch::f16x8(s);
                let (w2, w3) = arch::f16x8(s.add(8));
                let a = &mut acc[kk % 2];
                a[0] = vfmaq_f32(a[0], xv, w0);
                a[1] = vfmaq_f32(a[1], xv, w1);
                a[2] = vfmaq_f32(a[2], xv, w2);
                a[3] = vfmaq_f32(a[3], xv, w3);
            }
            let sum = std::array::from_fn(|i| vaddq_f32(acc[0][i], acc[1][i]));
            let j0 = p * NR;
            arch::store16(out.add(j0 - cols.start), sum, (cols.end - j0).min(NR));
        }
    }
}
