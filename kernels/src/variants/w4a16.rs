//! W4A16: Q4_1 weights x f32 activations (weight-only quantization), f32 accumulation.
//!
//! Packed layout: like the f16 variant, panels of [`NR`] = 16 output columns. Each panel is a
//! run of [`Group`]s, one per 32 values of `k` (Q4_1's block), holding the 16 columns' scale
//! `d` and minimum `m` (f16, as in the GGUF block) and, for each of the 32 `k`, 8 bytes of
//! codes: byte `i` = code of column `i` (low nibble) | code of column `i + 8` (high nibble).
//! The group is as large as the 16 Q4_1 blocks it replaces (320 bytes), so GEMV streams the
//! same number of bytes as GGUF, while a k-slice of 16 columns unpacks with a handful of
//! vector instructions into `d * q + m`.
//! Columns past `n` have `d = m = 0`; codes past `k` are never read.
//!
//! AVX-512 arranges the 256 code bytes of a group differently ("nibble lanes"): four chunks
//! of 8 `k`, each 16 little-endian u32 words, word `i` = column `i`, nibble `t` (bits
//! `4t..4t+4`) = the code at `k = 8·chunk + t`. One 64-byte load then holds 8 `k` of all 16
//! columns in column lanes: a shift by `4t` and a `vpermps` from the table 0..15 (which reads
//! only the low 4 bits of each index) give the 16 codes at one `k` as f32, ready for an FMA
//! with `x_k` broadcast straight from memory (no per-run expansion of `x`). Same bytes.

use crate::formats::QK;
use crate::matmul::{KernelError, Q4Matrix};
use crate::registry::{Isa, Variant};
use crate::variants::{Act, OutTile, Prepared};
use std::any::Any;
use half::f16;
use std::ops::Range;

/// Output columns per panel.
pub const NR: usize = 16;

/// 32 values of `k` for 16 columns (see the module doc).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    pub d: [f16; NR],
    pub m: [f16; NR],
    pub qs: [[u8; NR / 2]; QK],
}
const _: () = assert!(std::mem::size_of::<Group>() == 320);

impl Group {
    const ZERO: Group = Group { d: [f16::ZERO; NR], m: [f16::ZERO; NR], qs: [[0; NR / 2]; QK] };

    /// Byte index (into the flattened `qs`) and nibble shift of column `i` (0..16) at offset
    /// `kk` (0..32), in the byte-per-k layout or, with `lanes`, the AVX-512 nibble lanes.
    #[inline]
    fn at(kk: usize, i: usize, lanes: bool) -> (usize, u32) {
        if lanes {
            ((kk / 8) * 64 + 4 * i + (kk % 8) / 2, 4 * (kk % 2) as u32)
        } else {
            (kk * (NR / 2) + i % (NR / 2), if i < NR / 2 { 0 } else { 4 })
        }
    }

    /// Code of column `i` (0..16) at offset `kk` (0..32) in the group.
    #[inline]
    pub fn code(&self, kk: usize, i: usize, lanes: bool) -> u8 {
        let (byte, shift) = Self::at(kk, i, lanes);
        (self.qs.as_flattened()[byte] >> shift) & 0x0f
    }
}

pub fn implemented(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 => cfg!(target_arch = "x86_64"),
        Isa::Avx512 => cfg!(target_arch = "x86_64"),
        Isa::Neon => cfg!(target_arch = "aarch64"),
    }
}

pub fn prepare(isa: Isa, w: &Q4Matrix) -> Result<Box<dyn Prepared>, KernelError> {
    Ok(Box::new(PreparedW4A16::new(isa, w)))
}

/// Q4_1 weights in 16-column panels of groups.
pub struct PreparedW4A16 {
    isa: Isa,
    n: usize,
    k: usize,
    /// Groups per panel: `ceil(k / 32)`.
    gpp: usize,
    /// Codes in the AVX-512 nibble-lane arrangement (module doc) rather than byte-per-k.
    lanes: bool,
    groups: Vec<Group>,
}

impl PreparedW4A16 {
    pub fn new(isa: Isa, w: &Q4Matrix) -> Self {
        let (n, k) = (w.n, w.k);
        let gpp = Q4Matrix::blocks_per_row(k);
        let np = n.div_ceil(NR);
        let lanes = isa == Isa::Avx512;
        let mut groups = vec![Group::ZERO; np * gpp];
        for j in 0..n {
            let (p, i) = (j / NR, j % NR);
            for (g, blk) in w.row(j).iter().enumerate() {
                let grp = &mut groups[p * gpp + g];
                grp.d[i] = blk.d;
                grp.m[i] = blk.m;
                for kk in 0..QK {
                    let (byte, shift) = Group::at(kk, i, lanes);
                    grp.qs.as_flattened_mut()[byte] |= blk.code(kk) << shift;
                }
            }
        }
        PreparedW4A16 { isa, n, k, gpp, lanes, groups }
    }

    pub(crate) fn panel(&self, p: usize) -> &[Group] {
        &self.groups[p * self.gpp..(p + 1) * self.gpp]
    }
}

impl Prepared for PreparedW4A16 {
    fn variant(&self) -> Variant {
        Variant::W4A16
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

    fn prepare_act(&self, a: Act<'_>) -> Option<Box<dyn Any + Send + Sync>> {
        match a {
            Act::F32 { x, m: 1, .. } if self.isa != Isa::Scalar => Some(Box::new(RowPrep::new(x, self.isa == Isa::Avx2))),
            _ => None,
        }
    }

    fn gemm_into_with(&self, a: Act<'_>, prep: Option<&(dyn Any + Send + Sync)>, cols: Range<usize>, out: OutTile<'_>) {
        self.tile(a, prep.and_then(|p| p.downcast_ref::<RowPrep>()), cols, out)
    }

    fn gemm_into(&self, a: Act<'_>, cols: Range<usize>, out: OutTile<'_>) {
        self.tile(a, None, cols, out)
    }
}

impl PreparedW4A16 {
    /// One tile; `prep` is the GEMV's per-run data when `Matmul::run` computed it.
    #[allow(unused_variables)]
    fn tile(&self, a: Act<'_>, prep: Option<&RowPrep>, cols: Range<usize>, mut out: OutTile<'_>) {
        let Act::F32 { x, m, k } = a else { unreachable!("w4a16 takes float activations") };
        debug_assert_eq!(k, self.k);
        debug_assert_eq!((out.m(), out.cols()), (m, cols.len()));
        debug_assert_eq!(cols.start % NR, 0);
        match self.isa {
            Isa::Scalar => gemm_scalar(self, x, m, cols, &mut out),
            // SAFETY: `Matmul` only builds an Avx2 matmul where `Isa::Avx2.is_available()`;
            // `out` is an exclusive m x cols tile with stride `ld`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::gemm(self, x, m, prep, cols, out.as_mut_ptr(), out.ld()) },
            // SAFETY: as above; Avx512 implies AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if m == 1 => unsafe {
                match prep {
                    Some(p) => avx512::gemv(self, x, p, cols, out.as_mut_ptr()),
                    None => avx512::gemv(self, x, &RowPrep::new(x, false), cols, out.as_mut_ptr()),
                }
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { crate::arch::x86_64::gemm512(self, x, m, self.k, cols, out.as_mut_ptr(), out.ld()) },
            // SAFETY: as above, for NEON.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::gemm(self, x, m, prep, cols, out.as_mut_ptr(), out.ld()) },
            #[allow(unreachable_patterns)]
            isa => unreachable!("w4a16 has no {isa} implementation in this build"),
        }
    }
}

/// What the GEMV derives from its one activation row, once per run rather than per tile:
/// `Σ x` over each Q4_1 group (the `m` term of `d·q + m` multiplies it) and, for the AVX2
/// path's in-place high nibbles, `x / 16` (exact, a power-of-two scale). Both are cheap
/// vectorised passes: this runs serially before the tiles, on every decode matmul.
pub(crate) struct RowPrep {
    xs: Vec<f32>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    x16: Vec<f32>,
}

impl RowPrep {
    fn new(x: &[f32], x16: bool) -> Self {
        RowPrep { xs: x.chunks(QK).map(group_sum).collect(), x16: if x16 { x.iter().map(|v| v * (1.0 / 16.0)).collect() } else { Vec::new() } }
    }
}

/// `Σ x` of one group in 8 interleaved partial sums (vectorisable; any order is within the
/// accumulation bound the tests assert).
fn group_sum(c: &[f32]) -> f32 {
    let mut s = [0f32; 8];
    let mut it = c.chunks_exact(8);
    for ch in &mut it {
        for l in 0..8 {
            s[l] += ch[l];
        }
    }
    for (l, v) in it.remainder().iter().enumerate() {
        s[l] += v;
    }
    ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

/// The reference: per output, per Q4_1 block, a sequential f32 dot of `d * q + m` with `x`,
/// the block sums added in order.
fn gemm_scalar(w: &PreparedW4A16, x: &[f32], m: usize, cols: Range<usize>, out: &mut OutTile<'_>) {
    let k = w.k;
    for (jj, j) in cols.enumerate() {
        let panel = w.panel(j / NR);
        let i = j % NR;
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            let mut acc = 0f32;
            for (g, grp) in panel.iter().enumerate() {
                let (d, mn) = (grp.d[i].to_f32(), grp.m[i].to_f32());
                let mut s = 0f32;
                for (kk, &xv) in xr[g * QK..((g + 1) * QK).min(k)].iter().enumerate() {
                    s += (d * grp.code(kk, i, w.lanes) as f32 + mn) * xv;
                }
                acc += s;
            }
            out.row(r)[jj] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{PreparedW4A16, RowPrep, NR};
    use crate::arch::x86_64::{self as arch, Panels};
    use crate::formats::QK;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// The 16 codes at one `k` as f32: columns 0..8 as `q`, columns 8..16 as `16·q` (the
    /// high nibble left in place saves a shift; callers fold the 1/16 into the other factor,
    /// which is exact: a power-of-two scale).
    #[inline(always)]
    unsafe fn codes(qs: &[u8; NR / 2]) -> (__m256, __m256) {
        let q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs.as_ptr() as *const __m128i));
        let lo = _mm256_and_si256(q, _mm256_set1_epi32(0x0f));
        let hi = _mm256_and_si256(q, _mm256_set1_epi32(0xf0));
        (_mm256_cvtepi32_ps(lo), _mm256_cvtepi32_ps(hi))
    }

    /// A group's `d` or `m` for the 16 columns.
    #[inline(always)]
    unsafe fn halves(v: &[half::f16; NR]) -> (__m256, __m256) {
        let p = v.as_ptr() as *const __m128i;
        (_mm256_cvtph_ps(_mm_loadu_si128(p)), _mm256_cvtph_ps(_mm_loadu_si128(p.add(1))))
    }

    impl Panels for PreparedW4A16 {
        #[inline(always)]
        unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32) {
            if self.lanes {
                return fill_lanes(self, p, k0, k1, dst);
            }
            let panel = self.panel(p);
            let mut kk = k0;
            while kk < k1 {
                let g = kk / QK;
                let grp = &panel[g];
                let ((d0, d1), (m0, m1)) = (halves(&grp.d), halves(&grp.m));
                let d1 = _mm256_mul_ps(d1, _mm256_set1_ps(1.0 / 16.0));
                let end = ((g + 1) * QK).min(k1);
                for t in kk..end {
                    let (lo, hi16) = codes(&grp.qs[t - g * QK]);
                    let o = dst.add((t - k0) * NR);
                    _mm256_store_ps(o, _mm256_fmadd_ps(lo, d0, m0));
                    _mm256_store_ps(o.add(8), _mm256_fmadd_ps(hi16, d1, m1));
                }
                kk = end;
            }
        }
    }

    /// `fill` for the AVX-512 nibble-lane codes (the AVX-512 GEMM driver uses it): the same
    /// `d·q + m` (one FMA on an exact `q`) as the byte-per-k fill, so both GEMMs agree bit
    /// for bit.
    #[inline(always)]
    unsafe fn fill_lanes(w: &PreparedW4A16, p: usize, k0: usize, k1: usize, dst: *mut f32) {
        let panel = w.panel(p);
        let mask = _mm256_set1_epi32(0x0f);
        let mut kk = k0;
        while kk < k1 {
            let g = kk / QK;
            let grp = &panel[g];
            let ((d0, d1), (m0, m1)) = (halves(&grp.d), halves(&grp.m));
            let end = ((g + 1) * QK).min(k1);
            let qs = grp.qs.as_ptr() as *const u8;
            for t in kk..end {
                let pos = t - g * QK;
                let c = qs.add((pos / 8) * 64) as *const __m256i;
                let sh = _mm_cvtsi32_si128(4 * (pos % 8) as i32);
                let q0 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(_mm256_loadu_si256(c), sh), mask));
                let q1 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(_mm256_loadu_si256(c.add(1)), sh), mask));
                let o = dst.add((t - k0) * NR);
                _mm256_store_ps(o, _mm256_fmadd_ps(q0, d0, m0));
                _mm256_store_ps(o.add(8), _mm256_fmadd_ps(q1, d1, m1));
            }
            kk = end;
        }
    }

    /// # Safety
    /// AVX2, FMA and F16C are available; `out` is valid for the tile.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn gemm(
        w: &PreparedW4A16,
        x: &[f32],
        m: usize,
        prep: Option<&RowPrep>,
        cols: Range<usize>,
        out: *mut f32,
        ldc: usize,
    ) {
        if m == 1 {
            match prep {
                Some(p) if !p.x16.is_empty() => gemv(w, x, p, cols, out),
                _ => gemv(w, x, &RowPrep::new(x, true), cols, out),
            }
        } else {
            arch::gemm(w, x, m, w.k, cols, out, ldc)
        }
    }

    /// One activation row, streaming the 4-bit panels: per group, `Σ q·x` for 16 columns in
    /// 8 accumulators, then `y += d · Σ q·x + m · Σ x`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemv(w: &PreparedW4A16, x: &[f32], prep: &RowPrep, cols: Range<usize>, out: *mut f32) {
        let k = w.k;
        // Columns 8..16 arrive as 16·q: they pair with x / 16.
        let (xs, x16) = (&prep.xs, &prep.x16);
        for p in cols.start / NR..cols.end.div_ceil(NR) {
            let (mut y0, mut y1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (g, grp) in w.panel(p).iter().enumerate() {
                let kg = (k - g * QK).min(QK);
                let xg = x.as_ptr().add(g * QK);
                let xg16 = x16.as_ptr().add(g * QK);
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut t = 0;
                while t + 4 <= kg {
                    for u in 0..4 {
                        let (lo, hi16) = codes(&grp.qs[t + u]);
                        let xv = _mm256_broadcast_ss(&*xg.add(t + u));
                        let xv16 = _mm256_broadcast_ss(&*xg16.add(t + u));
                        acc[2 * u] = _mm256_fmadd_ps(lo, xv, acc[2 * u]);
                        acc[2 * u + 1] = _mm256_fmadd_ps(hi16, xv16, acc[2 * u + 1]);
                    }
                    t += 4;
                }
                while t < kg {
                    let (lo, hi16) = codes(&grp.qs[t]);
                    let xv = _mm256_broadcast_ss(&*xg.add(t));
                    let xv16 = _mm256_broadcast_ss(&*xg16.add(t));
                    acc[0] = _mm256_fmadd_ps(lo, xv, acc[0]);
                    acc[1] = _mm256_fmadd_ps(hi16, xv16, acc[1]);
                    t += 1;
                }
                let s0 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[4], acc[6]));
                let s1 = _mm256_add_ps(_mm256_add_ps(acc[1], acc[3]), _mm256_add_ps(acc[5], acc[7]));
                let ((d0, d1), (m0, m1)) = (halves(&grp.d), halves(&grp.m));
                let xsum = _mm256_set1_ps(xs[g]);
                y0 = _mm256_fmadd_ps(m0, xsum, _mm256_fmadd_ps(d0, s0, y0));
                y1 = _mm256_fmadd_ps(m1, xsum, _mm256_fmadd_ps(d1, s1, y1));
            }
            let j0 = p * NR;
            arch::store16(out.add(j0 - cols.start), y0, y1, (cols.end - j0).min(NR));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PreparedW4A16, RowPrep, NR};
    use crate::formats::QK;
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// One activation row on 512-bit registers over the nibble-lane codes (module doc): per
    /// 64-byte chunk (8 `k` x 16 columns), for each `k` a shift by 4 more bits, a `vpermps`
    /// from the table 0..15 (low 4 bits of each lane = the code; no mask) and an FMA with
    /// `x_k` broadcast from memory. Two panels per pass (two weight streams, 8 FMA chains).
    /// Per group `y += d · Σ q·x + m · Σ x`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL, AVX2, FMA and F16C are available; `out` is valid for `cols`; `w`
    /// holds nibble-lane codes; `x.len() == w.k`; `prep.xs` has one sum per group.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn gemv(w: &PreparedW4A16, x: &[f32], prep: &RowPrep, cols: Range<usize>, out: *mut f32) {
        assert!(w.lanes && x.len() == w.k && prep.xs.len() == w.gpp);
        let (p0, p1) = (cols.start / NR, cols.end.div_ceil(NR));
        let mut p = p0;
        while p < p1 {
            let np = if p + 1 < p1 { 2 } else { 1 };
            let y = if np == 2 { panels::<2>(w, x, prep, p) } else { panels::<1>(w, x, prep, p) };
            for (i, yv) in y.iter().take(np).enumerate() {
                let j0 = (p + i) * NR;
                let ncols = (cols.end - j0).min(NR);
                _mm512_mask_storeu_ps(out.add(j0 - cols.start), ((1u32 << ncols) - 1) as u16, *yv);
            }
            p += np;
        }
    }

    /// Panels `p..p + P` (P = 1 or 2), in 16-column lanes.
    #[inline(always)]
    unsafe fn panels<const P: usize>(w: &PreparedW4A16, x: &[f32], prep: &RowPrep, p: usize) -> [__m512; 2] {
        let iota = _mm512_setr_ps(0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., 13., 14., 15.);
        let mut y = [_mm512_setzero_ps(); 2];
        let k = w.k;
        let gp: [*const super::Group; P] = std::array::from_fn(|i| w.panel(p + i).as_ptr());
        for g in 0..w.gpp {
            let kg = (k - g * QK).min(QK);
            let xg = x.as_ptr().add(g * QK);
            let mut acc = [[_mm512_setzero_ps(); 4]; P];
            if kg == QK {
                for c in 0..4 {
                    let mut v: [__m512i; P] = std::array::from_fn(|i| {
                        _mm512_loadu_si512((*gp[i].add(g)).qs.as_ptr().cast::<u8>().add(c * 64) as *const _)
                    });
                    for t in 0..8 {
                        let xb = _mm512_set1_ps(*xg.add(c * 8 + t));
                        for i in 0..P {
                            if t > 0 {
                                v[i] = _mm512_srli_epi32::<4>(v[i]);
                            }
                            acc[i][t % 4] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v[i], iota), xb, acc[i][t % 4]);
                        }
                    }
                }
            } else {
                // The short last group: only its `kg` inputs exist in `x`.
                for c in 0..kg.div_ceil(8) {
                    let mut v: [__m512i; P] = std::array::from_fn(|i| {
                        _mm512_loadu_si512((*gp[i].add(g)).qs.as_ptr().cast::<u8>().add(c * 64) as *const _)
                    });
                    for t in 0..(kg - c * 8).min(8) {
                        let xb = _mm512_set1_ps(*xg.add(c * 8 + t));
                        for i in 0..P {
                            if t > 0 {
                                v[i] = _mm512_srli_epi32::<4>(v[i]);
                            }
                            acc[i][t % 4] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v[i], iota), xb, acc[i][t % 4]);
                        }
                    }
                }
            }
            let xsum = _mm512_set1_ps(*prep.xs.get_unchecked(g));
            for i in 0..P {
                let grp = &*gp[i].add(g);
                let s = _mm512_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]), _mm512_add_ps(acc[i][2], acc[i][3]));
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(grp.d.as_ptr() as *const __m256i));
                let mn = _mm512_cvtph_ps(_mm256_loadu_si256(grp.m.as_ptr() as *const __m256i));
                y[i] = _mm512_fmadd_ps(mn, xsum, _mm512_fmadd_ps(d, s, y[i]));
            }
        }
        y
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{PreparedW4A16, RowPrep, NR};
    use crate::arch::aarch64::{self as arch, Panels};
    use crate::formats::QK;
    use std::arch::aarch64::*;
    use std::ops::Range;

    /// The 16 codes at one `k` as f32 (columns 0..4, 4..8, 8..12, 12..16).
    #[inline(always)]
    unsafe fn codes(qs: &[u8; NR / 2]) -> [float32x4_t; 4] {
        let v = vld1_u8(qs.as_ptr());
        let lo = vmovl_u8(vand_u8(v, vdup_n_u8(0x0f)));
        let hi = vmovl_u8(vshr_n_u8::<4>(v));
        let f = |h: uint16x4_t| vcvtq_f32_u32(vmovl_u16(h));
        [f(vget_low_u16(lo)), f(vget_high_u16(lo)), f(vget_low_u16(hi)), f(vget_high_u16(hi))]
    }

    /// A group's `d` or `m` for the 16 columns.
    #[inline(always)]
    unsafe fn halves(v: &[half::f16; NR]) -> [float32x4_t; 4] {
        let p = v.as_ptr() as *const u16;
        let (a, b) = arch::f16x8(p);
        let (c, d) = arch::f16x8(p.add(8));
        [a, b, c, d]
    }

    impl Panels for PreparedW4A16 {
        #[inline(always)]
        unsafe fn fill(&self, p: usize, k0: usize, k1: usize, dst: *mut f32) {
            let panel = self.panel(p);
            let mut kk = k0;
            while kk < k1 {
                let g = kk / QK;
                let grp = &panel[g];
                let (d, m) = (halves(&grp.d), halves(&grp.m));
                let end = ((g + 1) * QK).min(k1);
                for t in kk..end {
                    let q = codes(&grp.qs[t - g * QK]);
                    let o = dst.add((t - k0) * NR);
                    for i in 0..4 {
                        vst1q_f32(o.add(4 * i), vfmaq_f32(m[i], q[i], d[i]));
                    }
                }
                kk = end;
            }
        }
    }

    /// # Safety
    /// `out` is valid for the tile.
    #[target_feature(enable = "neon")]
    pub unsafe fn gemm(
        w: &PreparedW4A16,
        x: &[f32],
        m: usize,
        prep: Option<&RowPrep>,
        cols: Range<usize>,
        out: *mut f32,
        ldc: usize,
    ) {
        if m == 1 {
            match prep {
                Some(p) => gemv(w, x, p, cols, out),
                None => gemv(w, x, &RowPrep::new(x, false), cols, out),
            }
        } else {
            arch::gemm(w, x, m, w.k, cols, out, ldc)
        }
    }

    /// One activation row, streaming the 4-bit panels: per group `Σ q·x` for 16 columns in
    /// two sets of accumulators, then `y += d · Σ q·x + m · Σ x`.
    #[target_feature(enable = "neon")]
    unsafe fn gemv(w: &PreparedW4A16, x: &[f32], prep: &RowPrep, cols: Range<usize>, out: *mut f32) {
        let k = w.k;
        let xs = &prep.xs;
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
                let (d, m) = (halves(&grp.d), halves(&grp.m));
                let xsum = vdupq_n_f32(xs[g]);
                for i in 0..4 {
                    let s = vaddq_f32(acc[0][i], acc[1][i]);
                    y[i] = vfmaq_f32(vfmaq_f32(y[i], d[i], s), m[i], xsum);
                }
            }
            let j0 = p * NR;
            arch::store16(out.add(j0 - cols.start), y, (cols.end - j0).min(NR));
        }
    }
}
