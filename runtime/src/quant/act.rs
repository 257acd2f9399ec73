//! The activation quantizer of one site, and the split of a site's rows into INT8 and INT4
//! (low-importance) tokens.

use super::clip;
use super::trip::{self, ChannelFactors};
use kernels::{Activations, Matmul, QuantizedActivations};

/// How one site turns float activations into what its kernel takes.
#[derive(Clone, Debug, PartialEq)]
pub enum ActQuantizer {
    /// Float activations pass through.
    Float,
    /// Dynamic per-token: per-row `amax / qmax`, or with `clip` the row's MSE-optimal
    /// clipped range (see [`clip`]).
    PerToken { bits: u8, clip: bool },
    /// Static per-tensor with channel factors: `x / 2^a` quantized with `cf.scale`. The
    /// site's weights must have been folded with the same factors.
    PerTensor(ChannelFactors),
}

impl ActQuantizer {
    pub fn bits(&self) -> u8 {
        match self {
            ActQuantizer::Float => 16,
            ActQuantizer::PerToken { bits, .. } => *bits,
            ActQuantizer::PerTensor(cf) => cf.bits,
        }
    }

    /// Channel factors the weights must be folded with (`None` for the dynamic scheme).
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

    /// Integer activations for `x` (`m x k`), or `None` for a float site.
    pub fn quantize(&self, x: &[f32], m: usize, k: usize) -> Option<QuantizedActivations> {
        match self {
            ActQuantizer::Float => None,
            ActQuantizer::PerToken { bits, clip } => Some(per_token(x, m, k, *bits, *clip)),
            ActQuantizer::PerTensor(cf) => {
                assert_eq!(cf.k(), k, "channel factors are for k = {}, activations have k = {k}", cf.k());
                let xs = self.prescaled(x, k);
                Some(QuantizedActivations::quantize_per_tensor(&xs, m, k, cf.bits, cf.scale))
            }
        }
    }

    /// `y = x · Wᵀ` through `mm`, quantizing first when the site is integer.
    pub fn matmul(&self, mm: &Matmul, x: &[f32], m: usize, y: &mut [f32]) {
        match self.quantize(x, m, mm.k()) {
            None => mm.run(Activations::F32 { x, m }, y),
            Some(q) => mm.run(Activations::Int(&q), y),
        }
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

/// A site's rows split into the INT8 majority and the INT4 low-importance tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct MixedRows {
    pub high_rows: Vec<usize>,
    pub low_rows: Vec<usize>,
    pub high: Option<QuantizedActivations>,
    /// Low rows: dynamic per-token INT4 (after the channel factors, when the site has them),
    /// clipped as [`clip::default_clip`] says for 4 bits.
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
        let low_q = per_token(&gather(&low_rows, &xs), low_rows.len(), k, 4, clip::default_clip(4));
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
