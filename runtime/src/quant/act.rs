//! The activation quantizer of one site, and the split of a site's rows into INT8 and INT4
//! (low-importance) tokens.
//!
//! Every scheme quantizes row by row (rows are independent), into a buffer that is reused
//! between calls on the same thread: prefill-sized activations are megabytes, and a fresh
//! allocation per site and call costs page faults on every matmul.

use super::clip;
use super::trip::{self, ChannelFactors};
use kernels::{Activations, Matmul, QuantizedActivations, QK};
use rayon::prelude::*;
use std::cell::RefCell;

/// How one site turns float activations into what its kernel takes.
#[derive(Clone, Debug, PartialEq)]
pub enum ActQuantizer {
    /// Float activations pass through.
    Float,
    /// Dynamic per-token: per-row `amax / qmax`, or with `clip` the row's MSE-optimal
    /// clipped range (see [`clip`]).
    PerToken { bits: u8, clip: bool },
    /// Dynamic per token and per 32-input block (the plan's `group` scheme): each block's
    /// `amax / qmax`, as `QuantizedActivations::quantize_per_block`.
    PerBlock { bits: u8 },
    /// Static per-tensor with channel factors: `x / 2^a` quantized with `cf.scale`. The
    /// site's weights must have been folded with the same factors.
    PerTensor(ChannelFactors),
}

/// How one row gets its scale(s).
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// `amax / qmax`.
    Amax(f32),
    /// [`clip::mse_scale`] at these bits.
    Mse(u8),
    /// A given scale, clamping to `±qmax`.
    Fixed(f32, f32),
    /// One `amax / qmax` per 32-input block; the row scale is 1.
    Blocks(f32),
}

impl Rule {
    fn blocked(self) -> bool {
        matches!(self, Rule::Blocks(_))
    }
}

fn qmax(bits: u8) -> f32 {
    QuantizedActivations::qmax(bits) as f32
}

/// Inputs smaller than this are quantized on the calling thread (as in the kernels crate).
const PARALLEL_MIN: usize = 1 << 15;

impl ActQuantizer {
    pub fn bits(&self) -> u8 {
        match self {
            ActQuantizer::Float => 16,
            ActQuantizer::PerToken { bits, .. } | ActQuantizer::PerBlock { bits } => *bits,
            ActQuantizer::PerTensor(cf) => cf.bits,
        }
    }

    /// Channel factors the weights must be folded with (`None` for the dynamic schemes).
    pub fn factors(&self) -> Option<&[u8]> {
        match self {
            ActQuantizer::PerTensor(cf) => Some(&cf.factors),
            _ => None,
        }
    }

    /// `x / 2^a` for the per-tensor scheme (borrowed unchanged otherwise).
    fn prescaled<'a>(&self, x: &'a [f32], k: usize) -> std::borrow::Cow<'a, [f32]> {
        match self {
            ActQuantizer::PerTensor(cf) if cf.factors.iter().any(|&a| a != 0) => {
                let mut v = x.to_vec();
                trip::scale_activations(&mut v, k, &cf.factors);
                std::borrow::Cow::Owned(v)
            }
            _ => std::borrow::Cow::Borrowed(x),
        }
    }

    /// The row rule of this (integer) site.
    fn rule(&self) -> Rule {
        match self {
            ActQuantizer::Float => unreachable!("float sites are not quantized"),
            ActQuantizer::PerToken { bits, clip: true } => Rule::Mse(*bits),
            ActQuantizer::PerToken { bits, clip: false } => Rule::Amax(qmax(*bits)),
            ActQuantizer::PerBlock { bits } => Rule::Blocks(qmax(*bits)),
            ActQuantizer::PerTensor(cf) => Rule::Fixed(cf.scale, qmax(cf.bits)),
        }
    }

    /// The rule of this site's INT4 low-importance rows: the group scheme keeps block scales
    /// (at 4 bits); the other schemes use dynamic per-token INT4 (after the channel factors,
    /// when the site has them), clipped as [`clip::default_clip`] says for 4 bits.
    fn low_rule(&self) -> Rule {
        match self {
            ActQuantizer::PerBlock { .. } => Rule::Blocks(qmax(4)),
            _ if clip::default_clip(4) => Rule::Mse(4),
            _ => Rule::Amax(qmax(4)),
        }
    }

    /// Integer activations for `x` (`m x k`), or `None` for a float site.
    pub fn quantize(&self, x: &[f32], m: usize, k: usize) -> Option<QuantizedActivations> {
        if *self == ActQuantizer::Float {
            return None;
        }
        let mut q = empty();
        self.quantize_into(x, m, k, &mut q);
        Some(q)
    }

    /// [`ActQuantizer::quantize`] into `out`, reusing its buffers. Panics on a float site.
    pub fn quantize_into(&self, x: &[f32], m: usize, k: usize, out: &mut QuantizedActivations) {
        if let ActQuantizer::PerTensor(cf) = self {
            assert_eq!(cf.k(), k, "channel factors are for k = {}, activations have k = {k}", cf.k());
        }
        let xs = self.prescaled(x, k);
        let rule = self.rule();
        fill(out, &xs, m, k, self.bits(), rule.blocked(), |_| rule);
    }

    /// Mixed rows in one buffer for one INT8 kernel call: rows flagged in `low` get INT4
    /// codes (`|q| <= 7`, by [`ActQuantizer::low_rule`]) with their own scales, the others
    /// this site's INT8 codes. `out.bits` is 8: an INT8 kernel computes exactly what the
    /// `w4a4-widen` kernel computes on those INT4 rows (it is the same kernel on codes
    /// held in bytes). Panics unless the site is 8-bit.
    pub fn quantize_mixed_into(&self, x: &[f32], m: usize, k: usize, low: &[bool], out: &mut QuantizedActivations) {
        assert_eq!(self.bits(), 8, "mixed rows need an INT8 site");
        assert_eq!(low.len(), m, "one low-bit flag per row");
        let xs = self.prescaled(x, k);
        let (hi, lo) = (self.rule(), self.low_rule());
        debug_assert_eq!(hi.blocked(), lo.blocked());
        fill(out, &xs, m, k, 8, hi.blocked(), |r| if low[r] { lo } else { hi });
    }

    /// `y = x · Wᵀ` through `mm`, quantizing first when the site is integer.
    pub fn matmul(&self, mm: &Matmul, x: &[f32], m: usize, y: &mut [f32]) {
        if *self == ActQuantizer::Float {
            return mm.run(Activations::F32 { x, m }, y);
        }
        with_scratch(|q| {
            self.quantize_into(x, m, mm.k(), q);
            mm.run(Activations::Int(q), y);
        })
    }

    /// `y = x · Wᵀ` with the rows flagged in `low` in INT4, in ONE call of the INT8 kernel
    /// `mm` (see [`ActQuantizer::quantize_mixed_into`]). Equal, bit for bit, to
    /// [`MixedRows`] with `mm` for the INT8 rows and `w4a4-widen` for the INT4 rows.
    pub fn matmul_mixed(&self, mm: &Matmul, x: &[f32], m: usize, low: &[bool], y: &mut [f32]) {
        with_scratch(|q| {
            self.quantize_mixed_into(x, m, mm.k(), low, q);
            mm.run(Activations::Int(q), y);
        })
    }
}

fn empty() -> QuantizedActivations {
    QuantizedActivations { m: 0, k: 0, bits: 8, q: Vec::new(), scales: Vec::new(), block_scales: Vec::new() }
}

thread_local! {
    static SCRATCH: RefCell<QuantizedActivations> = RefCell::new(empty());
}

/// Runs `f` on this thread's reusable activation buffer (a fresh one if it is in use).
fn with_scratch<R>(f: impl FnOnce(&mut QuantizedActivations) -> R) -> R {
    SCRATCH.with(|c| match c.try_borrow_mut() {
        Ok(mut q) => f(&mut q),
        Err(_) => f(&mut empty()),
    })
}

/// Quantizes `x` (`m x k`) row by row into `out` (buffers resized, not reallocated when
/// large enough), row `r` by `rule(r)`. `blocked`: every rule is [`Rule::Blocks`].
fn fill(out: &mut QuantizedActivations, x: &[f32], m: usize, k: usize, bits: u8, blocked: bool, rule: impl Fn(usize) -> Rule + Sync) {
    assert_eq!(x.len(), m * k, "activations must be m x k = {m} x {k}");
    let bpr = k.div_ceil(QK);
    out.m = m;
    out.k = k;
    out.bits = bits;
    out.q.resize(m * k, 0);
    out.scales.resize(m, 0.0);
    out.block_scales.clear();
    if blocked {
        out.block_scales.resize(m * bpr, 0.0);
    }
    if k == 0 {
        out.scales.iter_mut().enumerate().for_each(|(r, s)| *s = if rule(r).blocked() { 1.0 } else { 0.0 });
        return;
    }
    let row = |r: usize, q: &mut [i8], s: &mut f32, bs: &mut [f32]| {
        let x = &x[r * k..(r + 1) * k];
        match rule(r) {
            Rule::Amax(qm) => {
                *s = amax(x) / qm;
                quantize_row(x, *s, qm, q);
            }
            Rule::Mse(b) => {
                *s = clip::mse_scale(x, b);
                quantize_row(x, *s, qmax(b), q);
            }
            Rule::Fixed(scale, qm) => {
                *s = scale;
                quantize_row(x, scale, qm, q);
            }
            Rule::Blocks(qm) => {
                *s = 1.0;
                for ((q, x), bs) in q.chunks_mut(QK).zip(x.chunks(QK)).zip(bs.iter_mut()) {
                    *bs = amax(x) / qm;
                    quantize_row(x, *bs, qm, q);
                }
            }
        }
    };
    let (q, scales, bsc) = (&mut out.q, &mut out.scales, &mut out.block_scales);
    match (m * k >= PARALLEL_MIN, blocked) {
        (true, true) => q
            .par_chunks_mut(k)
            .zip(scales.par_iter_mut())
            .zip(bsc.par_chunks_mut(bpr))
            .enumerate()
            .for_each(|(r, ((q, s), bs))| row(r, q, s, bs)),
        (true, false) => {
            q.par_chunks_mut(k).zip(scales.par_iter_mut()).enumerate().for_each(|(r, (q, s))| row(r, q, s, &mut []))
        }
        (false, true) => q
            .chunks_mut(k)
            .zip(scales.iter_mut())
            .zip(bsc.chunks_mut(bpr))
            .enumerate()
            .for_each(|(r, ((q, s), bs))| row(r, q, s, bs)),
        (false, false) => q.chunks_mut(k).zip(scales.iter_mut()).enumerate().for_each(|(r, (q, s))| row(r, q, s, &mut [])),
    }
}

fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |a, v| a.max(v.abs()))
}

/// `round(x / scale)` clamped to `±qmax`, half away from zero: the kernels' quantizer,
/// element for element (a zero scale gives zero codes).
#[inline]
fn quantize_row(x: &[f32], scale: f32, qmax: f32, out: &mut [i8]) {
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (o, &v) in out.iter_mut().zip(x) {
        let s = (v * inv).clamp(-qmax, qmax);
        let t = s as i32;
        let f = s - t as f32;
        *o = (t + (f >= 0.5) as i32 - (f <= -0.5) as i32) as i8;
    }
}

/// Dynamic per-token quantization, plain or MSE-clipped.
pub fn per_token(x: &[f32], m: usize, k: usize, bits: u8, mse_clip: bool) -> QuantizedActivations {
    if mse_clip {
        clip::quantize_per_token_mse(x, m, k, bits)
    } else {
        QuantizedActivations::quantize_per_token(x, m, k, bits)
    }
}

/// A site's rows split into the INT8 majority and the INT4 low-importance tokens, run as two
/// kernel calls: the path for INT4 kernels that are not the INT8 kernel on byte codes
/// (`w4a4-packed`, `w4a4-lut`); `w4a4-widen` runs through [`ActQuantizer::matmul_mixed`].
#[derive(Clone, Debug, PartialEq)]
pub struct MixedRows {
    pub high_rows: Vec<usize>,
    pub low_rows: Vec<usize>,
    pub high: Option<QuantizedActivations>,
    /// Low rows at 4 bits, by the site's low-row rule (block scales at a group site, else
    /// per-token after the channel factors, clipped as [`clip::default_clip`] says).
    pub low: QuantizedActivations,
}

impl MixedRows {
    /// Split `x` (`m x k`) by `low` (one flag per row).
    pub fn quantize(q: &ActQuantizer, x: &[f32], m: usize, k: usize, low: &[bool]) -> MixedRows {
        assert_eq!(low.len(), m, "one low-bit flag per row");
        let (low_rows, high_rows): (Vec<usize>, Vec<usize>) = (0..m).partition(|&r| low[r]);
        let gather = |rows: &[usize], src: &[f32]| rows.iter().flat_map(|&r| src[r * k..(r + 1) * k].iter().copied()).collect::<Vec<f32>>();
        let high = q.quantize(&gather(&high_rows, x), high_rows.len(), k);
        let xs = q.prescaled(x, k);
        let lr = q.low_rule();
        let mut low_q = empty();
        fill(&mut low_q, &gather(&low_rows, &xs), low_rows.len(), k, 4, lr.blocked(), |_| lr);
        MixedRows { high_rows, low_rows, high, low: low_q }
    }

    /// `y` (`m x n`) from the INT8 rows through `high_mm` and the INT4 rows through
    /// `low_mm` (`x_high` is needed only when the high part is float).
    pub fn run(&self, high_mm: &Matmul, low_mm: &Matmul, x: &[f32], y: &mut [f32]) {
        let (n, k) = (high_mm.n(), high_mm.k());
        let mut scatter = |rows: &[usize], part: &[f32]| {
            for (i, &r) in rows.iter().enumerate() {
                y[r * n..(r + 1) * n].copy_from_slice(&part[i * n..(i + 1) * n]);
            }
        };
        if !self.high_rows.is_empty() {
            let mut part = vec![0f32; self.high_rows.len() * n];
            match &self.high {
                Some(q) => high_mm.run(Activations::Int(q), &mut part),
                None => {
                    let xh: Vec<f32> =
                        self.high_rows.iter().flat_map(|&r| x[r * k..(r + 1) * k].iter().copied()).collect();
                    high_mm.run(Activations::F32 { x: &xh, m: self.high_rows.len() }, &mut part)
                }
            }
            scatter(&self.high_rows, &part);
        }
        if !self.low_rows.is_empty() {
            let mut part = vec![0f32; self.low_rows.len() * n];
            low_mm.run(Activations::Int(&self.low), &mut part);
            scatter(&self.low_rows, &part);
        }
    }
}
