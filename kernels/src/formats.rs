//! Block formats shared by every variant. The weight blocks are byte-identical to GGUF's, so
//! the default model's tensors are used as stored.

use half::f16;
use rayon::prelude::*;
use std::borrow::Cow;

/// Values per quantization block (GGUF's QK4_0 / QK4_1 / QK8_0).
pub const QK: usize = 32;

/// GGUF Q4_1: `value = d * q + m`, codes 0..=15. Low nibbles of `qs` are elements 0..16,
/// high nibbles elements 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// GGUF Q4_0: `value = d * (q - 8)`, codes 0..=15, same nibble order as Q4_1.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// GGUF Q8_0: `value = d * q`, q signed 8-bit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl BlockQ4_1 {
    /// The 4-bit code of element `i` (0..32).
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        if i < QK / 2 {
            self.qs[i] & 0x0f
        } else {
            self.qs[i - QK / 2] >> 4
        }
    }

    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (i, o) in out.iter_mut().enumerate() {
            *o = d * self.code(i) as f32 + m;
        }
    }

    /// Round-to-nearest asymmetric quantization over the block's [min, max] range.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            let lo = ((x[j] - min) * id).round().clamp(0.0, 15.0) as u8;
            let hi = ((x[j + QK / 2] - min) * id).round().clamp(0.0, 15.0) as u8;
            qs[j] = lo | (hi << 4);
        }
        BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(min), qs }
    }
}

impl BlockQ4_0 {
    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for j in 0..QK / 2 {
            out[j] = d * ((self.qs[j] & 0x0f) as i32 - 8) as f32;
            out[j + QK / 2] = d * ((self.qs[j] >> 4) as i32 - 8) as f32;
        }
    }
}

impl BlockQ8_0 {
    /// Symmetric round-to-nearest (GGUF's Q8_0 quantizer): `d = amax / 127`.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        BlockQ8_0 { d: f16::from_f32(d), qs: std::array::from_fn(|i| (x[i] * id).round().clamp(-127.0, 127.0) as i8) }
    }

    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = d * q as f32;
        }
    }
}

/// Symmetric integer activations, row-major `m x k`, one row per token:
/// `x[r][c] ≈ scales[r] * q[r][c]`, with `|q| <= 127` (8 bits) or `|q| <= 7` (4 bits).
/// The dynamic per-token scheme gives each row its own scale; the static per-tensor scheme
/// gives every row the same one. The per-block scheme (Q8_1-style, what llama.cpp feeds its
/// Q4_1 matmul) adds one scale per row and 32-input block, so a single outlier only coarsens
/// its own block: `x[r][c] ≈ scales[r] * block_scales[r * bpr + c / 32] * q[r][c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActivations {
    pub m: usize,
    pub k: usize,
    pub bits: u8,
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
    /// Empty for the per-row schemes; otherwise `m * ceil(k / 32)` scales, row-major
    /// (`bpr = ceil(k / 32)` per row). Only `w4a8` and `w4a4-widen` accept them.
    pub block_scales: Vec<f32>,
}

impl QuantizedActivations {
    /// Largest code magnitude for a bitwidth (127 or 7).
    pub fn qmax(bits: u8) -> i32 {
        assert!(bits == 8 || bits == 4, "activation bits must be 8 or 4, got {bits}");
        (1 << (bits - 1)) - 1
    }

    /// Dynamic per-token: each row's scale is `amax / qmax`.
    pub fn quantize_per_token(x: &[f32], m: usize, k: usize, bits: u8) -> Self {
        assert_eq!(x.len(), m * k);
        let qmax = Self::qmax(bits) as f32;
        // Indexed rows rather than `chunks_exact(k)`, which yields nothing when k = 0.
        let amax = |r: usize| x[r * k..(r + 1) * k].iter().fold(0f32, |a, v| a.max(v.abs())) / qmax;
        let scales = if m * k >= PARALLEL_MIN {
            (0..m).into_par_iter().map(amax).collect::<Vec<_>>()
        } else {
            (0..m).map(amax).collect::<Vec<_>>()
        };
        Self::quantize_with_scales(x, m, k, bits, scales)
    }

    /// Static per-tensor: one calibrated `scale` for every row; values beyond the range clip.
    pub fn quantize_per_tensor(x: &[f32], m: usize, k: usize, bits: u8, scale: f32) -> Self {
        Self::quantize_with_scales(x, m, k, bits, vec![scale; m])
    }

    /// Dynamic per token and per 32-input block: each block's scale is its `amax / qmax`
    /// (`block_scales`), every row scale is 1. An all-zero block gets scale 0 and codes 0.
    pub fn quantize_per_block(x: &[f32], m: usize, k: usize, bits: u8) -> Self {
        assert_eq!(x.len(), m * k);
        let qmax = Self::qmax(bits) as f32;
        let bpr = k.div_ceil(QK);
        let mut q = vec![0i8; m * k];
        let mut block_scales = vec![0f32; m * bpr];
        if k > 0 {
            let row = |((out, x), bs): ((&mut [i8], &[f32]), &mut [f32])| {
                for ((out, x), s) in out.chunks_mut(QK).zip(x.chunks(QK)).zip(bs) {
                    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
                    *s = amax / qmax;
                    quantize_row(x, if *s > 0.0 { 1.0 / *s } else { 0.0 }, qmax, out);
                }
            };
            // Parallel over rows for prefill-sized inputs, as `quantize_with_scales`.
            if m * k >= PARALLEL_MIN {
                q.par_chunks_mut(k).zip(x.par_chunks(k)).zip(block_scales.par_chunks_mut(bpr)).for_each(row);
            } else {
                q.chunks_mut(k).zip(x.chunks(k)).zip(block_scales.chunks_mut(bpr)).for_each(row);
            }
        }
        QuantizedActivations { m, k, bits, q, scales: vec![1.0; m], block_scales }
    }

    /// Blocks per row, `ceil(k / 32)`.
    pub fn blocks_per_row(&self) -> usize {
        self.k.div_ceil(QK)
    }

    /// Whether the activations carry per-block scales.
    pub fn is_blocked(&self) -> bool {
        !self.block_scales.is_empty()
    }

    /// The factor of code `(r, c)`: `scales[r]`, times its block's scale when blocked.
    #[inline]
    pub fn scale_of(&self, r: usize, c: usize) -> f32 {
        if self.is_blocked() {
            self.scales[r] * self.block_scales[r * self.blocks_per_row() + c / QK]
        } else {
            self.scales[r]
        }
    }

    fn quantize_with_scales(x: &[f32], m: usize, k: usize, bits: u8, scales: Vec<f32>) -> Self {
        assert_eq!(x.len(), m * k);
        let qmax = Self::qmax(bits) as f32;
        let mut q = vec![0i8; m * k];
        if k > 0 {
            let row = |((out, x), &scale): ((&mut [i8], &[f32]), &f32)| {
                quantize_row(x, if scale > 0.0 { 1.0 / scale } else { 0.0 }, qmax, out)
            };
            // Activation quantization runs serially between parallel matmuls at every site,
            // so on prefill-sized inputs it is split over rows (rows are independent: the
            // result does not depend on the thread count).
            if m * k >= PARALLEL_MIN {
                q.par_chunks_mut(k).zip(x.par_chunks(k)).zip(scales.par_iter()).for_each(row);
            } else {
                q.chunks_mut(k).zip(x.chunks(k)).zip(scales.iter()).for_each(row);
            }
        }
        QuantizedActivations { m, k, bits, q, scales, block_scales: Vec::new() }
    }

    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.m * self.k];
        for r in 0..self.m {
            for c in 0..self.k {
                out[r * self.k + c] = self.scale_of(r, c) * self.q[r * self.k + c] as f32;
            }
        }
        out
    }
}

/// Inputs smaller than this are quantized on the calling thread (a rayon split costs more).
const PARALLEL_MIN: usize = 1 << 15;

/// `round(x * inv)` clamped to `±qmax`, rounding half away from zero exactly like
/// `f32::round`, but written so the loop vectorises (`f32::round` is a libm call per element
/// on baseline x86-64, which made quantization a visible serial cost of every integer site).
/// Clamping first is equivalent because `qmax` is an integer; NaN becomes 0 as before.
#[inline]
fn quantize_row(x: &[f32], inv: f32, qmax: f32, out: &mut [i8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        let s = (v * inv).clamp(-qmax, qmax);
        let t = s as i32; // truncates toward zero; |s| <= 127 so `s - t` is exact
        let f = s - t as f32;
        *o = (t + (f >= 0.5) as i32 - (f <= -0.5) as i32) as i8;
    }
}

/// Integer activations laid out for the integer kernels, derived once per matmul call: rows
/// zero-padded to whole 32-blocks (so kernels never branch on a tail: the padded weight codes
/// meet zero activations), plus each row's per-block code sums for the `m * sum(a)` term of
/// Q4_1 (`sum_c a_c (d w_c + m) = d * dot + m * sum(a)`). When `k` is a multiple of 32 the
/// codes are borrowed, not copied.
///
/// Block-scaled activations (`QuantizedActivations::block_scales`) keep their block scales
/// `s_b` in `block_scales` (same `m x bpr8` layout as `sums`) and the sums are stored
/// pre-multiplied, `sums[b] = s_b * sum_b(a)`, so the Q4_1 identity becomes
/// `sum_b (d * (s_b * dot_b) + m * sums[b])`: one extra multiply per block on the dot.
#[derive(Clone, Debug, PartialEq)]
pub struct PaddedActivations<'a> {
    pub m: usize,
    pub k: usize,
    pub bits: u8,
    /// Blocks per row, `ceil(k / 32)`.
    pub bpr: usize,
    /// `bpr` rounded up to a multiple of 8, the stride of `sums` (8 f32 = one AVX2 vector).
    pub bpr8: usize,
    /// `m x bpr*32` codes, zero beyond `k` (empty in a [`PaddedActivations::detach`]ed copy
    /// whose codes were borrowed).
    pub q: Cow<'a, [i8]>,
    /// `m x bpr8` block sums as f32 (exact: |sum| <= 32 * 128), zero beyond `bpr`; times
    /// the block scale when blocked.
    pub sums: Cow<'a, [f32]>,
    pub scales: Cow<'a, [f32]>,
    /// Empty (per-row scales), or `m x bpr8` block scales, zero beyond `bpr`.
    pub block_scales: Cow<'a, [f32]>,
}

impl<'a> PaddedActivations<'a> {
    pub fn new(a: &'a QuantizedActivations) -> Self {
        let bpr = a.k.div_ceil(QK);
        let bpr8 = bpr.div_ceil(8) * 8;
        let kp = bpr * QK;
        let q: Cow<'a, [i8]> = if kp == a.k {
            Cow::Borrowed(&a.q[..a.m * a.k])
        } else {
            let mut q = vec![0i8; a.m * kp];
            for r in 0..a.m {
                q[r * kp..r * kp + a.k].copy_from_slice(&a.q[r * a.k..(r + 1) * a.k]);
            }
            Cow::Owned(q)
        };
        let blocked = a.is_blocked();
        if blocked {
            assert_eq!(a.block_scales.len(), a.m * bpr, "block-scaled activations need m * ceil(k/32) block scales");
        }
        let mut sums = vec![0f32; a.m * bpr8];
        let mut block_scales = vec![0f32; if blocked { a.m * bpr8 } else { 0 }];
        if bpr > 0 {
            let row = |(r, (sums, q)): (usize, (&mut [f32], &[i8]))| {
                for (b, blk) in q.chunks_exact(QK).enumerate() {
                    // i16 lanes: |sum| <= 32 * 128 fits, and the loop vectorises.
                    let s = blk.iter().fold(0i16, |s, &v| s + v as i16) as f32;
                    sums[b] = if blocked { s * a.block_scales[r * bpr + b] } else { s };
                }
            };
            // Every integer matmul call pays this before its tiles start: split prefill-sized
            // inputs over the pool (rows are independent, so results do not depend on it).
            if a.m * kp >= PARALLEL_MIN {
                sums.par_chunks_mut(bpr8).zip(q.par_chunks(kp)).enumerate().for_each(row);
            } else {
                sums.chunks_mut(bpr8).zip(q.chunks(kp)).enumerate().for_each(row);
            }
            for r in 0..if blocked { a.m } else { 0 } {
                block_scales[r * bpr8..r * bpr8 + bpr].copy_from_slice(&a.block_scales[r * bpr..(r + 1) * bpr]);
            }
        }
        PaddedActivations {
            m: a.m,
            k: a.k,
            bits: a.bits,
            bpr,
            bpr8,
            q,
            sums: Cow::Owned(sums),
            scales: Cow::Borrowed(&a.scales[..a.m]),
            block_scales: Cow::Owned(block_scales),
        }
    }

    /// The same data, owned (to outlive the activations).
    pub fn into_owned(self) -> PaddedActivations<'static> {
        PaddedActivations {
            q: Cow::Owned(self.q.into_owned()),
            sums: Cow::Owned(self.sums.into_owned()),
            scales: Cow::Owned(self.scales.into_owned()),
            block_scales: Cow::Owned(self.block_scales.into_owned()),
            ..self
        }
    }

    /// An owned copy without the codes or scales it borrowed from the activations (no copy
    /// of the `m x k` codes per call); [`PaddedActivations::attach`] borrows them back.
    pub fn detach(self) -> PaddedActivations<'static> {
        let borrowed = |c: &Cow<'_, [i8]>| matches!(c, Cow::Borrowed(_));
        let q = if borrowed(&self.q) { Cow::Owned(Vec::new()) } else { Cow::Owned(self.q.into_owned()) };
        PaddedActivations {
            q,
            sums: Cow::Owned(self.sums.into_owned()),
            scales: Cow::Owned(Vec::new()),
            block_scales: Cow::Owned(self.block_scales.into_owned()),
            ..self
        }
    }

    /// A borrowed view of a [`PaddedActivations::detach`]ed copy made from `a`, with `a`'s
    /// codes and row scales where the copy left them out.
    pub fn attach<'b>(&'b self, a: &'b QuantizedActivations) -> PaddedActivations<'b> {
        debug_assert!(a.m == self.m && a.k == self.k);
        PaddedActivations {
            q: Cow::Borrowed(if self.q.is_empty() { &a.q[..a.m * a.k] } else { &self.q }),
            sums: Cow::Borrowed(&self.sums),
            scales: Cow::Borrowed(if self.scales.is_empty() { &a.scales[..a.m] } else { &self.scales }),
            block_scales: Cow::Borrowed(&self.block_scales),
            ..*self
        }
    }

    /// Row `r`'s padded codes.
    #[inline]
    pub fn row(&self, r: usize) -> &[i8] {
        &self.q[r * self.bpr * QK..(r + 1) * self.bpr * QK]
    }

    /// Row `r`'s block sums (length `bpr8`).
    #[inline]
    pub fn row_sums(&self, r: usize) -> &[f32] {
        &self.sums[r * self.bpr8..(r + 1) * self.bpr8]
    }

    /// Whether the activations carry per-block scales.
    #[inline]
    pub fn is_blocked(&self) -> bool {
        !self.block_scales.is_empty()
    }

    /// Row `r`'s block scales (length `bpr8`); only when blocked.
    #[inline]
    pub fn row_block_scales(&self, r: usize) -> &[f32] {
        &self.block_scales[r * self.bpr8..(r + 1) * self.bpr8]
    }
}
