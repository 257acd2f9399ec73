//! W8A16: Q8_0 weights x f32 activations, f32 accumulation. For matrices a model file stores
//! in Q8_0, used as stored: SmolLM2's tied token embedding is its LM head, the largest matrix
//! of a decode step (49152 x 576), and reading it as Q8_0 (34 B per 32 weights) instead of
//! f16 (64 B) nearly halves its memory traffic, with the file's own weights (no rounding).
//!
//! Packed layout: panels of [`NR`] = 16 output columns, a run of [`Group`]s per panel, one per
//! 32 values of `k`: the 16 columns' scales `d` (f16, as in GGUF) and, for each of the 32 `k`,
//! the 16 columns' codes (16 bytes, one vector load). 544 bytes per group = the 16 Q8_0 blocks
//! it replaces. Columns past `n` have `d = 0`; codes past `k` are zero.
//!
//! GEMV (m = 1): per group `Σ q·x` for 16 columns (codes are exact in f32), then
//! `y += d · Σ q·x`. GEMM: per k-block a panel is expanded to `d·q` in f32 and multiplied by
//! the shared f32 micro-kernel (as w4a16 does). AVX-512 runs both on 512-bit registers.

use crate::formats::QK;
use crate::matmul::{Q4Matrix, Q8Matrix};
use crate::registry::{Isa, Variant};
use crate::variants::{Act, OutTile, Prepared};
use half::f16;
use std::ops::Range;

/// Output columns per panel.
pub const NR: usize = 16;

/// 32 values of `k` for 16 columns (see the module doc).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    pub d: [f16; NR],
    pub qs: [[i8; NR]; QK],
}
const _: () = assert!(std::mem::size_of::<Group>() == 544);

impl Group {
    const ZERO: Group = Group { d: [f16::ZERO; NR], qs: [[0; NR]; QK] };
}

pub fn implemented(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
        Isa::Neon => cfg!(target_arch = "aarch64"),
    }
}

/// Q8_0 weights in 16-column panels of groups.
pub struct PreparedW8A16 {
    isa: Isa,
    n: usize,
    k: usize,
    /// Groups per panel: `ceil(k / 32)`.
    gpp: usize,
    groups: Vec<Group>,
}

impl PreparedW8A16 {
    pub fn new(isa: Isa, w: &Q8Matrix) -> Self {
        let (n, k) = (w.n, w.k);
        let gpp = Q4Matrix::blocks_per_row(k);
        let np = n.div_ceil(NR);
        let mut groups = vec![Group::ZERO; np * gpp];
        for j in 0..n {
            let (p, i) = (j / NR, j % NR);
            for (g, blk) in w.row(j).iter().enumerate() {
                let grp = &mut groups[p * gpp + g];
                grp.d[i] = blk.d;
                // Codes past `k` stay 0 whatever the block holds.
                for kk in 0..QK.min(k - g * QK) {
                    grp.qs[kk][i] = blk.qs[kk];
                }
            }
        }
        PreparedW8A16 { isa, n, k, gpp, groups }
    }

    fn panel(&self, p: usize) -> &[Group] {
        &self.groups[p * self.gpp..(p + 1) * self.gpp]
    }
}

impl Prepared for PreparedW8A16 {
    fn variant(&self) -> Variant {
        Variant::W8A16
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

    #[allow(unused_variables)]
    fn gemm_into(&self, a: Act<'_>, cols: Range<usize>, mut out: OutTile<'_>) {
        let Act::F32 { x, m, k } = a else { unreachable!("w8a16 takes float activations") };
        debug_assert_eq!(k, self.k);
        debug_assert_eq!((out.m(), out.cols()), (m, cols.len()));
        debug_assert_eq!(cols.start % NR, 0);
        let (o, ld) = (out.as_mut_ptr(), out.ld());
        match self.isa {
            Isa::Scalar => gemm_scalar(self, x, m, cols, &mut out),
            // SAFETY (all SIMD arms): `Matmul` only builds a matmul for an ISA that
            // `is_available()` (Avx512 implies AVX2/FMA/F16C); `out` is an exclusive m x cols
            // tile with stride `ld`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::gemm(self, x, m, cols, o, ld, false) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::gemm(self, x, m, cols, o, ld, true) },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::gemm(self, x, m, cols, o, ld) },
            #[allow(unreachable_patterns)]
            isa => unreachable!("w8a16 has no {isa} implementation in this build"),
        }
    }
}

/// The reference: per output, per Q8_0 block, a sequential f32 dot of `d * q` with `x`, the
/// block sums added in order.
fn gemm_scalar(w: &PreparedW8A16, x: &[f32], m: usize, cols: Range<usize>, out: &mut OutTile<'_>) {
    let k = w.k;
    for (jj, j) in cols.enumerate() {
        let panel = w.panel(j / NR);
        let i = j % NR;
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            let mut acc = 0f32;
            for (g, grp) in panel.iter().enumerate() {
                let d = grp.d[i].to_f32();
                let mut s = 0f32;
                for (kk, &xv) in xr[g * QK..((g + 1) * QK).min(k)].iter().enumerate() {
                    s += (d * grp.qs[kk][i] as f32) * xv;
                }
                acc += s;
            }
            out.row(r)[jj] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PreparedW8A16, NR};
    use crate::arch::x86_64::{self as arch, Panels};
    use crate::formats::QK;
    use std::arch::x86_64::*;
    use std::ops::Range;

    impl Panels for PreparedW8A16 {
        #[inline(always)]
        unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32) {
            let panel = self.panel(p);
            let mut kk = k0;
            while kk < k1 {
                let g = kk / QK;
                let grp = &panel[g];
                let dp = grp.d.as_ptr() as *const __m128i;
                let (d0, d1) = (_mm256_cvtph_ps(_mm_loadu_si128(dp)), _mm256_cvtph_ps(_mm_loadu_si128(dp.add(1))));
                let end = ((g + 1) * QK).min(k1);
                for t in kk..end {
                    let q = grp.qs[t - g * QK].as_ptr();
                    let q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q as *const __m128i)));
                    let q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8) as *const __m128i)));
                    let o = dst.add((t - k0) * NR);
                    _mm256_store_ps(o, _mm256_mul_ps(d0, q0));
                    _mm256_store_ps(o.add(8), _mm256_mul_ps(d1, q1));
                }
                kk = end;
            }
        }
    }

    /// # Safety
    /// AVX2, FMA and F16C are available (and AVX-512 F/BW/VL when `avx512`); `out` is valid
    /// for the tile.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn gemm(
        w: &PreparedW8A16,
        x: &[f32],
        m: usize,
        cols: Range<usize>,
        out: *mut f32,
        ldc: usize,
        avx512: bool,
    ) {
        match (m, avx512) {
            (1, true) => gemv512(w, x, cols, out),
            (1, false) => gemv(w, x, cols, out),
            (_, true) => arch::gemm512(w, x, m, w.k, cols, out, ldc),
            _ => arch::gemm(w, x, m, w.k, cols, out, ldc),
        }
    }

    /// Per group `Σ q·x` for 16 columns in 8 accumulators (4 `k` x 2 halves), then
    /// `y += d · Σ q·x`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemv(w: &PreparedW8A16, x: &[f32], cols: Range<usize>, out: *mut f32) {
        let k = w.k;
        for p in cols.start / NR..cols.end.div_ceil(NR) {
            let (mut y0, mut y1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (g, grp) in w.panel(p).iter().enumerate() {
                let kg = (k - g * QK).min(QK);
                let xg = x.as_ptr().add(g * QK);
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut t = 0;
                // A macro, not a closure: the body must be compiled with this function's features.
                macro_rules! step {
                    ($t:expr, $u:expr) => {{
                        let q = grp.qs[$t].as_ptr();
                        let q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q as *const __m128i)));
                        let q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(q.add(8) as *const __m128i)));
                        let xv = _mm256_broadcast_ss(&*xg.add($t));
                        acc[2 * $u] = _mm256_fmadd_ps(q0, xv, acc[2 * $u]);
                        acc[2 * $u + 1] = _mm256_fmadd_ps(q1, xv, acc[2 * $u + 1]);
                    }};
                }
                while t + 4 <= kg {
                    for u in 0..4 {
                        step!(t + u, u);
                    }
                    t += 4;
                }
                while t < kg {
                    step!(t, 0);
                    t += 1;
                }
                let s0 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[4], acc[6]));
                let s1 = _mm256_add_ps(_mm256_add_ps(acc[1], acc[3]), _mm256_add_ps(acc[5], acc[7]));
                let dp = grp.d.as_ptr() as *const __m128i;
                y0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(dp)), s0, y0);
                y1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(dp.add(1))), s1, y1);
            }
            let j0 = p * NR;
            arch::store16(out.add(j0 - cols.start), y0, y1, (cols.end - j0).min(NR));
        }
    }

    /// As `gemv`, one 512-bit register per `k` step of a panel; two panels at a time (two
    /// independent weight streams), 4 accumulators each over `k`.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn gemv512(w: &PreparedW8A16, x: &[f32], cols: Range<usize>, out: *mut f32) {
        let k = w.k;
        let (p0, p1) = (cols.start / NR, cols.end.div_ceil(NR));
        let mut p = p0;
        while p < p1 {
            let np = (p1 - p).min(2);
            let mut y = [_mm512_setzero_ps(); 2];
            for g in 0..w.gpp {
                let kg = (k - g * QK).min(QK);
                let xg = x.as_ptr().add(g * QK);
                let grps: [&super::Group; 2] = [&w.groups[p * w.gpp + g], &w.groups[(p + np - 1) * w.gpp + g]];
                let mut acc = [[_mm512_setzero_ps(); 4]; 2];
                macro_rules! step {
                    ($t:expr, $u:expr) => {{
                        let xv = _mm512_set1_ps(*xg.add($t));
                        for v in 0..2 {
                            let q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(grps[v].qs.as_ptr().add($t) as *const __m128i)));
                            acc[v][$u] = _mm512_fmadd_ps(q, xv, acc[v][$u]);
                        }
                    }};
                }
                let mut t = 0;
                while t + 4 <= kg {
                    for u in 0..4 {
                        step!(t + u, u);
                    }
                    t += 4;
                }
                // A constant index: a dynamic one would keep `acc` in memory.
                while t < kg {
                    step!(t, 0);
                    t += 1;
                }
                for v in 0..2 {
                    let s = _mm512_add_ps(_mm512_add_ps(acc[v][0], acc[v][1]), _mm512_add_ps(acc[v][2], acc[v][3]));
                    let d = _mm512_cvtph_ps(_mm256_loadu_si256(grps[v].d.as_ptr() as *const __m256i));
                    y[v] = _mm512_fmadd_ps(d, s, y[v]);
                }
            }
            for v in 0..np {
                let j0 = (p + v) * NR;
                let ncols = (cols.end - j0).min(NR);
                _mm512_mask_storeu_ps(out.add(j0 - cols.start), ((1u32 << ncols) - 1) as u16, y[v]);
            }
            p += np;
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{PreparedW8A16, NR};
    use crate::arch::aarch64::{self as arch, Panels};
    use crate::formats::QK;
    use std::arch::aarch64::*;
    use std::ops::Range;

    /// The 16 codes at one `k` as f32 (columns 0..4, 4..8, 8..12, 12..16).
    #[inline(always)]
    unsafe fn codes(qs: &[i8; NR]) -> [float32x4_t; 4] {
        let v = vld1q_s8(qs.as_ptr());
        let (lo, hi) = (vmovl_s8(vget_low_s8(v)), vmovl_s8(vget_high_s8(v)));
        let f = |h: int16x4_t| vcvtq_f32_s32(vmovl_s16(h));
        [f(vget_low_s16(lo)), f(vget_high_s16(lo)), f(vget_low_s16(hi)), f(vget_high_s16(hi))]
    }

    #[inline(always)]
    unsafe fn scales(d: &[half::f16; NR]) -> [float32x4_t; 4] {
        let p = d.as_ptr() as *const u16;
        let (a, b) = arch::f16x8(p);
        let (c, e) = arch::f16x8(p.add(8));
        [a, b, c, e]
    }

    impl Panels for PreparedW8A16 {
        #[inline(always)]
        unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32) {
            let panel = self.panel(p);
            let mut kk = k0;
            while kk < k1 {
                let g = kk / QK;
                let grp = &panel[g];
                let d = scales(&grp.d);
                let end = ((g + 1) * QK).min(k1);
                for t in kk..end {
                    let q = codes(&grp.qs[t - g * QK]);
                    let o = dst.add((t - k0) * NR);
                    for i in 0..4 {
                        vst1q_f32(o.add(4 * i), vmulq_f32(d[i], q[i]));
                    }
                }
                kk = end;
            }
        }
    }

    /// # Safety
    /// `out` is valid for the tile.
    #[target_feature(enable = "neon")]
    pub unsafe fn gemm(w: &PreparedW8A16, x: &[f32], m: usize, cols: Range<usize>, out: *mut f32, ldc: usize) {
        if m > 1 {
            return arch::gemm(w, x, m, w.k, cols, out, ldc);
        }
        let k = w.k;
        for p in cols.start / NR..cols.end.div_ceil(NR) {
            let mut y = [vdupq_n_f32(0.0); 4];
            for (g, grp) in w.panel(p).iter().enumerate() {
                let kg = (k - g * QK).min(QK);
                let mut acc = [[vdupq_n_f32(0.0); 4]; 2];
                for t in 0..kg {
                    let q = codes(&grp.qs[t]);
                    let xv = vdupq_n_f32(x[g * QK + t]);
                    let a = &mut acc[t % 2];
                    for i in 0..4 {
                        a[i] = vfmaq_f32(a[i], q[i], xv);
                    }
                }
                let d = scales(&grp.d);
                for i in 0..4 {
                    y[i] = vfmaq_f32(y[i], d[i], vaddq_f32(acc[0][i], acc[1][i]));
                }
            }
            let j0 = p * NR;
            arch::store16(out.add(j0 - cols.start), y, (cols.end - j0).min(NR));
        }
    }
}
