//! Power-of-two channel factors for the static per-tensor scheme (the paper's TRIP factors,
//! after FQ-ViT's PTF; method.md §3).
//!
//! One scale `s` per tensor; channel `c` is quantized on the grid `s * 2^a_c`, `a_c` in
//! `0..=kmax`. At run time the activation is divided by `2^a_c` (exact in float) and
//! quantized with the single scale `s`, while the weights' input channel `c` is multiplied
//! by `2^a_c`, so the kernel stays a plain integer GEMM with one activation scale per row.
//!
//! Granularity: method.md says "per input channel" and is silent on how that meets 4-bit
//! weight groups. agq chooses one exponent per weight *group* (32 consecutive input
//! channels, one Q4_1 block column): then the fold multiplies each block's f16 `d` and `m`
//! by `2^a`, which is exact (an exponent shift; checked for f16 overflow), and the 4-bit
//! codes stay as stored. A per-channel factor would make the channels of one group differ
//! by up to 8x, so the block must be re-quantized over the widened range, which coarsens its
//! other 31 weights: measured on SmolLM2-135M (10 WikiText-2 test chunks), per-channel
//! factors with re-quantization gave ppl 42.55 for `w4a8-trip` against 26.62 for `w4a16`.
//! Per-channel factors (`group = 1`) remain available for that comparison.
//!
//! Choice of `s`: every candidate in [`scale_candidates`] (per-channel-absmax quantiles over
//! `qmax`, so that the scale fits the bulk of the channels and outliers take a coarser
//! factor; plus the plain per-tensor scale and FQ-ViT's `amax / (qmax 2^kmax)`) is scored
//! by the total squared error with each group's best factor, and the lowest wins.

use kernels::{Q4Matrix, QuantizedActivations};
use serde::{Deserialize, Serialize};

/// Default largest factor exponent: 7 (factors 1 .. 128). method.md (after FQ-ViT) says
/// K = 3; SmolLM2-135M has massive activations (per-channel absmax up to ~2000x the median
/// channel at layer 11's `down`), which a factor of 8 cannot bridge. Measured (10
/// WikiText-2 test chunks, 4096 calibration tokens of valid): `w4a8-trip` 55.80 with
/// K = 3, 29.01 with K = 7 (`w4a16` 26.62).
pub const DEFAULT_KMAX: u8 = 7;

/// Channels sharing one factor by default: a Q4_1 weight block, so the fold is exact.
pub const GROUP: usize = kernels::QK;

/// Rows used to score scale candidates; factors are then chosen on all rows.
const SEARCH_ROWS: usize = 512;

/// Quantiles of the per-channel absmax tried as "bulk" ranges.
const QUANTILES: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0];

/// A calibrated per-tensor scale with one power-of-two factor exponent per input channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelFactors {
    pub bits: u8,
    pub scale: f32,
    /// `a_c` per input channel; all zero = plain per-tensor.
    pub factors: Vec<u8>,
}

impl ChannelFactors {
    /// Plain per-tensor quantization with scale `amax / qmax`, no factors.
    pub fn per_tensor(x: &[f32], k: usize, bits: u8) -> Self {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        ChannelFactors { bits, scale: amax / qmax(bits), factors: vec![0; k] }
    }

    pub fn k(&self) -> usize {
        self.factors.len()
    }
}

fn qmax(bits: u8) -> f32 {
    QuantizedActivations::qmax(bits) as f32
}

/// `2^-a` and `2^a` as exact f32.
fn pow2(a: u8) -> (f32, f32) {
    let p = (1u32 << a) as f32;
    (1.0 / p, p)
}

/// Squared error of channel `c` at each exponent: `out[c * (kmax + 1) + a]`, summed over
/// `rows`. Mirrors the run-time arithmetic exactly: `q = round((x * 2^-a) * (1/s))`,
/// clamped, and the product sees `q * s * 2^a`.
pub fn factor_errors(x: &[f32], k: usize, rows: &[usize], bits: u8, scale: f32, kmax: u8) -> Vec<f64> {
    let na = kmax as usize + 1;
    let mut err = vec![0f64; k * na];
    let qm = qmax(bits);
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for &r in rows {
        let row = &x[r * k..(r + 1) * k];
        for (c, &v) in row.iter().enumerate() {
            for a in 0..na {
                let (down, up) = pow2(a as u8);
                let q = ((v * down) * inv).round().clamp(-qm, qm);
                let d = (v - q * scale * up) as f64;
                err[c * na + a] += d * d;
            }
        }
    }
    err
}

/// Each channel's error-minimising exponent for a fixed scale (ties: the smaller exponent,
/// the finer grid) and the resulting total error over `rows`.
pub fn best_factors(x: &[f32], k: usize, rows: &[usize], bits: u8, scale: f32, kmax: u8) -> (Vec<u8>, f64) {
    best_group_factors(x, k, rows, bits, scale, kmax, 1)
}

/// One exponent per group of `group` consecutive channels (the last group may be shorter),
/// minimising the group's summed squared error; returned expanded to one per channel.
pub fn best_group_factors(
    x: &[f32],
    k: usize,
    rows: &[usize],
    bits: u8,
    scale: f32,
    kmax: u8,
    group: usize,
) -> (Vec<u8>, f64) {
    let na = kmax as usize + 1;
    let group = group.max(1);
    let err = factor_errors(x, k, rows, bits, scale, kmax);
    let mut total = 0.0;
    let mut factors = vec![0u8; k];
    for g0 in (0..k).step_by(group) {
        let g1 = (g0 + group).min(k);
        let mut sums = vec![0f64; na];
        for c in g0..g1 {
            for (a, s) in sums.iter_mut().enumerate() {
                *s += err[c * na + a];
            }
        }
        let (a, best) = sums.iter().enumerate().fold((0, f64::INFINITY), |b, (a, &v)| if v < b.1 { (a, v) } else { b });
        total += best;
        factors[g0..g1].iter_mut().for_each(|f| *f = a as u8);
    }
    (factors, total)
}

/// Per-channel absolute maximum over all rows.
pub fn channel_absmax(x: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; k];
    for row in x.chunks_exact(k.max(1)).take(m) {
        for (o, v) in out.iter_mut().zip(row) {
            *o = o.max(v.abs());
        }
    }
    out
}

/// Scales worth trying for a tensor with these per-channel absmax values (positive, deduped).
pub fn scale_candidates(absmax: &[f32], bits: u8, kmax: u8) -> Vec<f32> {
    let mut sorted: Vec<f32> = absmax.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f32::total_cmp);
    let Some(&amax) = sorted.last() else { return Vec::new() };
    let qm = qmax(bits);
    let mut c: Vec<f32> = QUANTILES
        .iter()
        .map(|&p| sorted[((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)] / qm)
        .collect();
    c.push(amax / (qm * pow2(kmax).1));
    c.retain(|&s| s > 0.0 && s.is_finite());
    c.sort_by(f32::total_cmp);
    c.dedup();
    c
}

/// Calibrate scale and per-channel factors on `x` (`m x k`, the site's activations on
/// calibration text).
pub fn search(x: &[f32], m: usize, k: usize, bits: u8, kmax: u8) -> ChannelFactors {
    search_grouped(x, m, k, bits, kmax, 1)
}

/// Calibrate scale and factors with one exponent per `group` consecutive channels
/// ([`GROUP`] for weights that must fold exactly).
pub fn search_grouped(x: &[f32], m: usize, k: usize, bits: u8, kmax: u8, group: usize) -> ChannelFactors {
    assert_eq!(x.len(), m * k, "activations must be m x k");
    let absmax = channel_absmax(x, m, k);
    let stride = m.div_ceil(SEARCH_ROWS).max(1);
    let sample: Vec<usize> = (0..m).step_by(stride).collect();
    let mut best: Option<(f32, f64)> = None;
    for s in scale_candidates(&absmax, bits, kmax) {
        let (_, e) = best_group_factors(x, k, &sample, bits, s, kmax, group);
        if best.is_none_or(|b| e < b.1) {
            best = Some((s, e));
        }
    }
    let Some((scale, _)) = best else {
        // All zero (or no rows): any scale gives zero error.
        return ChannelFactors { bits, scale: 0.0, factors: vec![0; k] };
    };
    let all: Vec<usize> = (0..m).collect();
    let (factors, _) = best_group_factors(x, k, &all, bits, scale, kmax, group);
    ChannelFactors { bits, scale, factors }
}

/// Total squared error of quantizing `x` with `cf` (as the run time does it).
pub fn error(x: &[f32], m: usize, k: usize, cf: &ChannelFactors) -> f64 {
    let kmax = cf.factors.iter().copied().max().unwrap_or(0);
    let na = kmax as usize + 1;
    let rows: Vec<usize> = (0..m).collect();
    let err = factor_errors(x, k, &rows, cf.bits, cf.scale, kmax);
    cf.factors.iter().enumerate().map(|(c, &a)| err[c * na + a as usize]).sum()
}

/// `x[:, c] /= 2^a_c` (exact): the activation side of the fold.
pub fn scale_activations(x: &mut [f32], k: usize, factors: &[u8]) {
    assert_eq!(factors.len(), k);
    for row in x.chunks_exact_mut(k.max(1)) {
        for (v, &a) in row.iter_mut().zip(factors) {
            *v *= pow2(a).0;
        }
    }
}

/// `w[j][c] *= 2^a_c` for every output row `j` of a row-major `n x k` matrix: the weight
/// side of the fold (input channel `c` is element `c` of each row in kernels' layout).
pub fn fold_f32(w: &mut [f32], k: usize, factors: &[u8]) {
    assert_eq!(factors.len(), k);
    for row in w.chunks_exact_mut(k.max(1)) {
        for (v, &a) in row.iter_mut().zip(factors) {
            *v *= pow2(a).1;
        }
    }
}

/// One exponent per Q4_1 block column, when `factors` are constant over every block of
/// [`GROUP`] input channels (`None` otherwise: the fold would have to re-quantize).
pub fn group_exponents(factors: &[u8]) -> Option<Vec<u8>> {
    factors.chunks(GROUP).map(|g| g.iter().all(|&a| a == g[0]).then_some(g[0])).collect()
}

/// Lowers each group's exponent until `d * 2^a` and `m * 2^a` stay finite in f16 for every
/// row of `w` (the largest finite f16 is 65504). Returns per-channel factors; the
/// activations must then use these, not the calibrated ones. Real weight scales are tiny
/// (~1e-2), so this only matters for pathological files.
pub fn clamp_for_f16(w: &Q4Matrix, factors: &[u8]) -> Vec<u8> {
    let groups = group_exponents(factors).expect("group-constant factors");
    let bpr = Q4Matrix::blocks_per_row(w.k);
    assert_eq!(groups.len(), bpr, "one exponent per block column");
    let mut big = vec![0f32; bpr];
    for j in 0..w.n {
        for (b, blk) in w.row(j).iter().enumerate() {
            big[b] = big[b].max(blk.d.to_f32().abs()).max(blk.m.to_f32().abs());
        }
    }
    let mut out = factors.to_vec();
    for (b, (&a, &mx)) in groups.iter().zip(&big).enumerate() {
        let mut a = a;
        while a > 0 && !half::f16::from_f32(mx * pow2(a).1).is_finite() {
            a -= 1;
        }
        let end = ((b + 1) * GROUP).min(w.k);
        out[b * GROUP..end].iter_mut().for_each(|f| *f = a);
    }
    out
}

/// The exact fold for group-constant factors: each block's `d` and `m` times `2^a` of its
/// column, codes unchanged. `None` when the factors are not group-constant or a scaled
/// `d`/`m` would overflow f16 (use [`clamp_for_f16`] first).
pub fn fold_exact(w: &Q4Matrix, factors: &[u8]) -> Option<Q4Matrix> {
    if factors.len() != w.k {
        return None;
    }
    let groups = group_exponents(factors)?;
    let bpr = Q4Matrix::blocks_per_row(w.k);
    let mut blocks = w.blocks.clone();
    for (i, blk) in blocks.iter_mut().enumerate() {
        let up = pow2(groups[i % bpr]).1;
        // f16 * 2^a is exact as long as it does not overflow (subnormals scale exactly).
        let (d, m) = (half::f16::from_f32(blk.d.to_f32() * up), half::f16::from_f32(blk.m.to_f32() * up));
        if !(d.is_finite() && m.is_finite()) {
            return None;
        }
        blk.d = d;
        blk.m = m;
    }
    Some(Q4Matrix { n: w.n, k: w.k, blocks })
}

/// The 4-bit weights with the factors folded in: dequantize, scale input channels, and
/// re-quantize to Q4_1. `None` folds nothing but still re-quantizes, which isolates the
/// cost of re-quantization from the cost of the factors.
pub fn fold_into_weights(w: &Q4Matrix, factors: Option<&[u8]>) -> Q4Matrix {
    let mut f = w.dequantize();
    if let Some(a) = factors {
        fold_f32(&mut f, w.k, a);
    }
    Q4Matrix::quantize(w.n, w.k, &f)
}
