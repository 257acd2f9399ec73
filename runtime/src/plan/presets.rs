//! Built-in plans, usable wherever a plan file is accepted (`--plan agile8`).
//!
//! | preset | weights | linear sites | qk / pv | pruning / low-bit tokens |
//! |---|---|---|---|---|
//! | `fp16` | f16 | float | float | none |
//! | `w4a16` | Q4_1 | float | float | none |
//! | `w4a8` | Q4_1 | INT8 per-token | float | none |
//! | `w4a8-trip` | Q4_1 | INT8 per-tensor + channel factors | float | none |
//! | `w4a4` | Q4_1 | INT4 per-token | float | none |
//! | `w4a4-trip` | Q4_1 | INT4 per-tensor + channel factors | float | none |
//! | `agile8` | Q4_1 | INT8 per-token | INT8, log2-4 softmax | beta = 0.3 over the second half of the layers |
//! | `agile4` | Q4_1 | as agile8 | as agile8 | as agile8, plus INT4 tokens at o/gate_up/down, 0 → 0.5 with depth |
//! | `w4a8-g32` | Q4_1 | INT8 per token and 32-input block | float | none |
//! | `agile8-g32` | Q4_1 | INT8 per token and block | as agile8 | as agile8 |
//! | `agile4-g32` | Q4_1 | INT8 per token and block; INT4 tokens per block too | as agile8 | as agile4 (see [`AGILE4_G32_LOW_BIT_MAX`]) |
//!
//! The LM head stays float in every preset (method.md §1). The `-g32` presets differ from
//! their paper counterparts only in the linear sites' scheme (`group` instead of `token`):
//! the paper presets keep the per-token scheme issue #5 defines them with.

use super::{LayerPlan, Plan, Scheme, Site, SitePlan, SoftmaxMode, WeightFormat};
use crate::prune;

pub const NAMES: [&str; 11] = [
    "fp16",
    "w4a16",
    "w4a8",
    "w4a8-trip",
    "w4a4",
    "w4a4-trip",
    "agile8",
    "agile4",
    "w4a8-g32",
    "agile8-g32",
    "agile4-g32",
];

/// Final fraction of prunable tokens removed by the agile presets.
pub const AGILE_PRUNE_BETA: f64 = 0.3;
/// Largest low-bit (INT4) token ratio in `agile4`, reached at the last layer.
pub const AGILE4_LOW_BIT_MAX: f64 = 0.5;
/// The same for `agile4-g32`, whose INT4 tokens have per-block scales.
pub const AGILE4_G32_LOW_BIT_MAX: f64 = 0.5;

/// The preset `name` expanded for `n_layer` layers, or `None` for an unknown name.
pub fn preset(name: &str, n_layer: usize) -> Option<Plan> {
    let mut p = match name {
        "fp16" => Plan::float(n_layer, WeightFormat::F16),
        "w4a16" => Plan::float(n_layer, WeightFormat::Q4_1),
        "w4a8" => linear(n_layer, 8, Scheme::Token),
        "w4a8-trip" => linear(n_layer, 8, Scheme::Tensor),
        "w4a4" => linear(n_layer, 4, Scheme::Token),
        "w4a4-trip" => linear(n_layer, 4, Scheme::Tensor),
        "agile8" => agile8(n_layer),
        "agile4" => agile4(n_layer, AGILE4_LOW_BIT_MAX),
        "w4a8-g32" => linear(n_layer, 8, Scheme::Group),
        "agile8-g32" => grouped(agile8(n_layer)),
        "agile4-g32" => grouped(agile4(n_layer, AGILE4_G32_LOW_BIT_MAX)),
        _ => return None,
    };
    p.name = Some(name.to_string());
    p.description = Some(describe(name).to_string());
    Some(p)
}

fn describe(name: &str) -> &'static str {
    match name {
        "fp16" => "f16 weights, float activations: the FP16 baseline",
        "w4a16" => "Q4_1 weights, float activations (weight-only quantization)",
        "w4a8" => "Q4_1 weights, INT8 dynamic per-token activations at every linear site",
        "w4a8-trip" => "Q4_1 weights, INT8 static per-tensor activations with power-of-two channel factors",
        "w4a4" => "Q4_1 weights, INT4 dynamic per-token activations at every linear site",
        "w4a4-trip" => "Q4_1 weights, INT4 static per-tensor activations with power-of-two channel factors",
        "agile8" => "Agile-Quant INT8: linear sites and QK in INT8, log2 4-bit softmax, 30% of prompt tokens pruned over the second half of the layers",
        "agile4" => "agile8 plus INT4 for low-importance tokens at o/gate_up/down, ratio 0 -> 0.5 with depth",
        "w4a8-g32" => "Q4_1 weights, INT8 dynamic activations with one scale per token and 32-input block at every linear site",
        "agile8-g32" => "agile8 with per-token-and-block (group 32) INT8 activation scales at the linear sites",
        "agile4-g32" => "agile4 with per-token-and-block (group 32) activation scales at the linear sites, INT4 tokens included",
        _ => "",
    }
}

fn linear(n_layer: usize, bits: u8, scheme: Scheme) -> Plan {
    let mut p = Plan::float(n_layer, WeightFormat::Q4_1);
    for l in &mut p.layers {
        for s in Site::LINEAR {
            *l.site_mut(s) = SitePlan::int(bits, scheme);
        }
    }
    p
}

/// The paper's setting: INT8 everywhere incl. QK and V, log2 4-bit probabilities, and
/// progressive pruning on the later layers: the second half of the layers (m = n - n/2)
/// each drop gamma = 1-(1-beta)^(1/m) of their incoming prunable tokens, so that beta = 0.3
/// of them are gone after the last layer. Pruning late keeps the early layers (where
/// attention is still local and importance estimates noisy) dense.
fn agile8(n_layer: usize) -> Plan {
    let mut p = linear(n_layer, 8, Scheme::Token);
    for l in &mut p.layers {
        l.qk = SitePlan::int(8, Scheme::Token);
        l.pv = SitePlan::int(8, Scheme::Token);
        l.softmax = SoftmaxMode::Log2x4;
    }
    let start = n_layer / 2;
    let gamma = prune::gamma(AGILE_PRUNE_BETA, n_layer - start);
    for l in &mut p.layers[start..] {
        l.prune = gamma;
    }
    p
}

/// agile8 plus INT4 low-importance tokens: layer l uses ratio max * l / (n - 1), rounded to
/// 0.01, so the low-bit set grows with depth.
fn agile4(n_layer: usize, max: f64) -> Plan {
    let mut p = agile8(n_layer);
    let last = n_layer.saturating_sub(1).max(1) as f64;
    for (i, l) in p.layers.iter_mut().enumerate() {
        l.low_bit = (max * i as f64 / last * 100.0).round() / 100.0;
        if l.low_bit >= 1.0 {
            l.low_bit = 0.99;
        }
    }
    p
}

/// The plan with every integer linear site switched to the group scheme (attention sites
/// keep their per-head, per-token quantization).
fn grouped(mut p: Plan) -> Plan {
    for l in &mut p.layers {
        for s in Site::LINEAR {
            let sp = l.site_mut(s);
            if !sp.is_float() {
                sp.scheme = Scheme::Group;
            }
        }
    }
    p
}

/// Default layer plan (all float), for building plans in code.
pub fn float_layer() -> LayerPlan {
    LayerPlan::default()
}
