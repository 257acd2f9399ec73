//! The search space: changes to the `w4a16` plan that the runtime can execute, and the
//! quality units whose sensitivity is measured.
//!
//! Per layer and linear site the activation bits (16 / 8 / 4, dynamic: per token, or per
//! token and 32-input block with `Scheme::Group`, one scheme per tuning run) and, for the
//! bits, the kernel the latency model says is fastest; per layer INT8 attention with
//! log2 probabilities; and one prune schedule for the whole model (the paper's progressive
//! form: from layer `start` every layer drops `gamma` of its tokens so that `beta` are gone
//! at the end). A kernel variant changes speed, not results (the integer kernels are exact;
//! `f16` vs `w4a16` differ only by rounding the dequantized weight to f16), so quality is
//! measured per (layer, site, bits), not per variant.

use kernels::Variant;
use runtime::plan::{Plan, Scheme, Site, SitePlan, SoftmaxMode, VariantChoice};
use serde::{Deserialize, Serialize};

/// A quality unit: one change whose KL divergence against the baseline is measured alone.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Unit {
    Site {
        layer: usize,
        site: SiteName,
        bits: u8,
        /// Integer activation scheme (`token` or `group`); caches from before it read as `token`.
        #[serde(default)]
        scheme: Scheme,
    },
    /// All four linear sites of a layer at once, bits per `[qkv, o, gate_up, down]`.
    Layer {
        layer: usize,
        bits: [u8; 4],
        #[serde(default)]
        scheme: Scheme,
    },
    Attn { layer: usize },
    Prune(PruneSchedule),
}

/// Serializable site name (the runtime's `Site` is not serde).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteName {
    Qkv,
    O,
    GateUp,
    Down,
}

impl SiteName {
    pub const ALL: [SiteName; 4] = [SiteName::Qkv, SiteName::O, SiteName::GateUp, SiteName::Down];

    pub fn site(self) -> Site {
        match self {
            SiteName::Qkv => Site::Qkv,
            SiteName::O => Site::O,
            SiteName::GateUp => Site::GateUp,
            SiteName::Down => Site::Down,
        }
    }

    pub fn name(self) -> &'static str {
        self.site().name()
    }
}

/// Progressive token pruning: layers `start..n` each drop `gamma(beta, n - start)` of their
/// current prunable tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneSchedule {
    pub start: usize,
    pub beta: f64,
}

impl PruneSchedule {
    pub fn apply(&self, plan: &mut Plan) {
        let ratios = runtime::prune::schedule(plan.n_layer(), self.start, self.beta);
        for (l, r) in plan.layers.iter_mut().zip(ratios) {
            l.prune = r;
        }
    }

    /// The schedules tried: starts at 1/3, 1/2, 2/3 and 5/6 of the depth, beta 0.1 to 0.5.
    pub fn family(n_layer: usize) -> Vec<PruneSchedule> {
        let mut v = Vec::new();
        for frac in [1.0 / 3.0, 0.5, 2.0 / 3.0, 5.0 / 6.0] {
            let start = ((n_layer as f64 * frac).round() as usize).min(n_layer.saturating_sub(1));
            for beta in [0.1, 0.2, 0.3, 0.5] {
                let s = PruneSchedule { start, beta };
                if !v.contains(&s) {
                    v.push(s);
                }
            }
        }
        v
    }
}

impl Unit {
    /// Stable key for caches and reports: `l12.qkv.a8`, `l12.qkv.a8g` (group scheme),
    /// `l3.attn8`, `prune.s15.b0.3`.
    pub fn key(&self) -> String {
        match self {
            Unit::Site { layer, site, bits, scheme } => format!("l{layer}.{}.a{bits}{}", site.name(), scheme_suffix(*scheme)),
            Unit::Layer { layer, bits: [a, b, c, d], scheme } => format!("l{layer}.a{a}-{b}-{c}-{d}{}", scheme_suffix(*scheme)),
            Unit::Attn { layer } => format!("l{layer}.attn8"),
            Unit::Prune(p) => format!("prune.s{}.b{}", p.start, p.beta),
        }
    }

    /// The first layer whose computation the unit changes (earlier layers can be replayed).
    pub fn first_layer(&self) -> usize {
        match *self {
            Unit::Site { layer, .. } | Unit::Layer { layer, .. } | Unit::Attn { layer } => layer,
            Unit::Prune(p) => p.start,
        }
    }

    /// Applies the unit with the runtime's default kernel for its bits.
    pub fn apply(&self, plan: &mut Plan) {
        match *self {
            Unit::Site { layer, site, bits, scheme } => {
                *plan.layers[layer].site_mut(site.site()) = if bits == 16 { SitePlan::FLOAT } else { SitePlan::int(bits, scheme) };
            }
            Unit::Layer { layer, bits, scheme } => {
                for (site, b) in SiteName::ALL.into_iter().zip(bits) {
                    *plan.layers[layer].site_mut(site.site()) = if b == 16 { SitePlan::FLOAT } else { SitePlan::int(b, scheme) };
                }
            }
            Unit::Attn { layer } => set_attn8(plan, layer),
            Unit::Prune(p) => p.apply(plan),
        }
    }
}

/// How finely quality is measured and chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One choice per (layer, site): 4 units per layer and bit width.
    Site,
    /// One choice per layer among [`LAYER_PATTERNS`]: fewer units, a quarter of the cost.
    Layer,
}

impl Granularity {
    pub fn parse(s: &str) -> Result<Granularity, String> {
        match s {
            "site" => Ok(Granularity::Site),
            "layer" => Ok(Granularity::Layer),
            _ => Err(format!("granularity `{s}`: expected site or layer")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Site => "site",
            Granularity::Layer => "layer",
        }
    }
}

/// Per-layer activation bits `[qkv, o, gate_up, down]` tried with `Granularity::Layer`:
/// float (only other float kernels), INT8 MLP (the paper's first target, method.md §1),
/// INT8 everywhere, INT4 everywhere.
pub const LAYER_PATTERNS: [[u8; 4]; 4] = [[16, 16, 16, 16], [16, 16, 8, 8], [8, 8, 8, 8], [4, 4, 4, 4]];

fn set_attn8(plan: &mut Plan, layer: usize) {
    let l = &mut plan.layers[layer];
    l.qk = SitePlan::int(8, Scheme::Token);
    l.pv = SitePlan::int(8, Scheme::Token);
    l.softmax = SoftmaxMode::Log2x4;
}

/// One concrete change the search may pick. Changes of different groups commute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    /// Set a linear site's activation bits, scheme and kernel.
    Site { layer: usize, site: SiteName, bits: u8, scheme: Scheme, variant: Variant },
    /// Set all four linear sites of a layer (`[qkv, o, gate_up, down]`).
    Layer { layer: usize, bits: [u8; 4], scheme: Scheme, variants: [Variant; 4] },
    Attn { layer: usize },
    Prune(PruneSchedule),
}

impl Change {
    pub fn apply(&self, plan: &mut Plan) {
        match *self {
            Change::Site { layer, site, bits, scheme, variant } => {
                *plan.layers[layer].site_mut(site.site()) = site_plan(bits, scheme, variant);
            }
            Change::Layer { layer, bits, scheme, variants } => {
                for ((site, b), v) in SiteName::ALL.into_iter().zip(bits).zip(variants) {
                    *plan.layers[layer].site_mut(site.site()) = site_plan(b, scheme, v);
                }
            }
            Change::Attn { layer } => set_attn8(plan, layer),
            Change::Prune(p) => p.apply(plan),
        }
    }

    /// The quality unit this change costs, or `None` when it does not change results
    /// (a float site on another float kernel).
    pub fn unit(&self) -> Option<Unit> {
        match *self {
            Change::Site { bits: 16, .. } => None,
            Change::Site { layer, site, bits, scheme, .. } => Some(Unit::Site { layer, site, bits, scheme }),
            Change::Layer { bits: [16, 16, 16, 16], .. } => None,
            Change::Layer { layer, bits, scheme, .. } => Some(Unit::Layer { layer, bits, scheme }),
            Change::Attn { layer } => Some(Unit::Attn { layer }),
            Change::Prune(p) => Some(Unit::Prune(p)),
        }
    }

    pub fn label(&self) -> String {
        match *self {
            Change::Site { layer, site, bits, scheme, variant } => {
                format!("l{layer}.{}=a{bits}{}/{}", site.name(), label_suffix(bits, scheme), variant.name())
            }
            Change::Layer { layer, bits, scheme, variants } => {
                let v: Vec<String> = SiteName::ALL
                    .iter()
                    .zip(bits)
                    .zip(variants)
                    .map(|((s, b), v)| format!("{}=a{b}{}/{}", s.name(), label_suffix(b, scheme), v.name()))
                    .collect();
                format!("l{layer}.{}", v.join(","))
            }
            Change::Attn { layer } => format!("l{layer}.attn=int8+log2"),
            Change::Prune(p) => format!("prune start {} beta {}", p.start, p.beta),
        }
    }
}

/// Kernel variants that take `bits`-bit activations of `scheme` with 4-bit weights and run on
/// this CPU (`f16` is included for float sites: the model's Q4_1 weights dequantized to f16,
/// exact up to f16 rounding). Variants for other weight formats (`w8a16`: Q8_0 matrices) are
/// not candidates: they would requantize the weights.
pub fn variants_for(bits: u8, scheme: Scheme) -> Vec<Variant> {
    let mut v: Vec<Variant> = kernels::available()
        .into_iter()
        .map(|(v, _)| v)
        .filter(|v| v.activation_bits() == bits && (v.name().starts_with("w4a") || *v == Variant::F16))
        .filter(|v| bits == 16 || scheme.runs_on(*v))
        .collect();
    v.sort_by_key(|x| x.name());
    v.dedup();
    v
}

/// A float site ignores the scheme; integer sites take the tuning run's scheme.
fn site_plan(bits: u8, scheme: Scheme, variant: Variant) -> SitePlan {
    let scheme = if bits == 16 { Scheme::Token } else { scheme };
    SitePlan { bits, scheme, variant: VariantChoice::Fixed(variant) }
}

fn scheme_suffix(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Group => "g",
        Scheme::Token | Scheme::Tensor => "",
    }
}

fn label_suffix(bits: u8, scheme: Scheme) -> &'static str {
    if bits == 16 {
        ""
    } else {
        scheme_suffix(scheme)
    }
}

/// `--scheme`: the dynamic schemes the search may set (`tensor` needs calibration statistics
/// the tuner does not produce).
pub fn parse_scheme(s: &str) -> Result<Scheme, String> {
    match s {
        "token" => Ok(Scheme::Token),
        "group" => Ok(Scheme::Group),
        _ => Err(format!("--scheme `{s}`: expected token or group")),
    }
}
