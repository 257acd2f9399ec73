//! Dynamic per-token quantization with an MSE-chosen clipping range.
//!
//! Plain per-token quantization uses `amax / qmax` as the row's scale, so one large value
//! sets the step for the whole row. Clipping the range to `r · amax` (`r <= 1`) saturates
//! the few largest values and refines the grid for all others; the ratio that minimises the
//! row's squared quantization error is searched at run time over a fixed grid. It is still
//! "symmetric, one scale per token" (method.md §3): only the choice of the scale changes.
//! At 4 bits (7 levels per sign) it helps; at 8 bits it does not (see [`default_clip`]).

use kernels::QuantizedActivations;
use rayon::prelude::*;

/// Clipping ratios tried, largest first: 1.0, 0.975, ..., 0.3.
pub const RATIOS: usize = 29;
const STEP: f32 = 0.025;
/// The search stops after this many consecutive ratios without a new minimum (the error is
/// close to unimodal in the ratio; this keeps the common 8-bit case at a few passes).
pub const PATIENCE: usize = 3;

/// Inputs smaller than this are quantized on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// Whether the dynamic per-token scheme clips at this bitwidth: at 4 bits, not at 8.
/// Measured on SmolLM2-135M (10 WikiText-2 test chunks): clipping the INT4 tokens of
/// `agile4` took its perplexity from 29.53 to 29.29 (`w4a4` 8508 -> 6779, still collapsed;
/// session 4, 40 chunks: `agile4` 26.12 unclipped, 25.78 clipped);
/// clipping INT8 rows gave `w4a8` 27.35 against 27.33 unclipped (the MSE optimum is
/// `r ≈ 1` there, and saturating a massive activation costs more than the finer grid gains),
/// so 8-bit rows keep the plain `amax / 127`.
pub fn default_clip(bits: u8) -> bool {
    bits == 4
}

/// The `i`-th ratio of the grid.
pub fn ratio(i: usize) -> f32 {
    1.0 - STEP * i as f32
}

/// `round(v * inv)` clamped to `±qmax`, rounding half away from zero: the kernels'
/// activation quantizer, element for element.
#[inline]
fn code(v: f32, inv: f32, qmax: f32) -> f32 {
    let s = (v * inv).clamp(-qmax, qmax);
    let t = s as i32;
    let f = s - t as f32;
    (t + (f >= 0.5) as i32 - (f <= -0.5) as i32) as f32
}

/// Squared error of quantizing `x` with scale `s`.
pub fn row_error(x: &[f32], s: f32, qmax: f32) -> f32 {
    if s <= 0.0 {
        return x.iter().map(|v| v * v).sum();
    }
    let inv = 1.0 / s;
    x.iter()
        .map(|&v| {
            let d = v - code(v, inv, qmax) * s;
            d * d
        })
        .sum()
}

/// Rows at least this long estimate the error from a sample (see [`mse_scale`]).
pub const SAMPLE_MIN_K: usize = 128;
/// Every `SAMPLE_STRIDE`-th never-clipped value enters the estimate (weight `SAMPLE_STRIDE`).
pub const SAMPLE_STRIDE: usize = 4;

thread_local! {
    static SPLIT: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The row's scale: `r · amax / qmax` for the grid ratio `r` with the smallest error
/// (ties: the larger ratio).
///
/// Rows of [`SAMPLE_MIN_K`] or more values search on an estimate that is 3-4x cheaper per
/// ratio: values above `0.3 · amax` (the only ones any ratio clips, usually a handful) count
/// exactly, the others only contribute rounding error, estimated from every
/// [`SAMPLE_STRIDE`]-th of them times `SAMPLE_STRIDE`. The search dominated the prefill cost
/// of `agile4`'s INT4 tokens (a dozen passes over each row, as many as the matmul's work per
/// row at N = 576); measured effect on perplexity: see the README (`agile4`).
pub fn mse_scale(x: &[f32], bits: u8) -> f32 {
    let qmax = QuantizedActivations::qmax(bits) as f32;
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        return amax / qmax;
    }
    if x.len() < SAMPLE_MIN_K {
        return search(|s| row_error(x, s, qmax), amax, qmax);
    }
    SPLIT.with(|c| {
        let (big, small) = &mut *c.borrow_mut();
        big.clear();
        small.clear();
        let t = ratio(RATIOS - 1) * amax;
        for (i, &v) in x.iter().enumerate() {
            if v.abs() > t {
                big.push(v);
            } else if i % SAMPLE_STRIDE == 0 {
                small.push(v);
            }
        }
        search(|s| row_error(big, s, qmax) + SAMPLE_STRIDE as f32 * row_error(small, s, qmax), amax, qmax)
    })
}

/// The grid search over `err(scale)`, from `r = 1` down, early stop after [`PATIENCE`].
fn search(err: impl Fn(f32) -> f32, amax: f32, qmax: f32) -> f32 {
    let mut best = (amax / qmax, err(amax / qmax));
    let mut since = 0;
    for i in 1..RATIOS {
        let s = ratio(i) * amax / qmax;
        let e = err(s);
        if e < best.1 {
            best = (s, e);
            since = 0;
        } else {
            since += 1;
            if since >= PATIENCE {
                break;
            }
        }
    }
    best.0
}

/// Per-token quantization of `x` (`m x k`) with each row's [`mse_scale`].
pub fn quantize_per_token_mse(x: &[f32], m: usize, k: usize, bits: u8) -> QuantizedActivations {
    assert_eq!(x.len(), m * k);
    let qmax = QuantizedActivations::qmax(bits) as f32;
    let mut q = vec![0i8; m * k];
    let mut scales = vec![0f32; m];
    if k > 0 {
        let row = |((out, s), x): ((&mut [i8], &mut f32), &[f32])| {
            *s = mse_scale(x, bits);
            let inv = if *s > 0.0 { 1.0 / *s } else { 0.0 };
            for (o, &v) in out.iter_mut().zip(x) {
                *o = code(v, inv, qmax) as i8;
            }
        };
        if m * k >= PARALLEL_MIN {
            q.par_chunks_mut(k).zip(scales.par_iter_mut()).zip(x.par_chunks(k)).for_each(row);
        } else {
            q.chunks_mut(k).zip(scales.iter_mut()).zip(x.chunks(k)).for_each(row);
        }
    }
    QuantizedActivations { m, k, bits, q, scales, block_scales: Vec::new() }
}
