//! Quantization plans: which precision, scheme and kernel every matmul site of every layer
//! uses, the softmax mode, and the token-pruning / low-bit-token schedule.
//!
//! A [`Plan`] is always fully expanded (one [`LayerPlan`] per layer). Files use a compact
//! form (a `[defaults]` table plus per-layer overrides, see [`file`]) that expands into it for
//! a given layer count; built-in [`presets`] produce the same type.

pub mod exec;
pub mod file;
pub mod presets;

use kernels::{Isa, Variant};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Current plan schema version; files carry it as `schema = 1`.
pub const SCHEMA: u32 = 1;

/// A matmul or attention site of a decoder layer (plus the model-level LM head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    Qkv,
    O,
    GateUp,
    Down,
    Qk,
    Pv,
    LmHead,
}

impl Site {
    /// The per-layer sites, in file order.
    pub const LAYER: [Site; 6] = [Site::Qkv, Site::O, Site::GateUp, Site::Down, Site::Qk, Site::Pv];
    /// Sites that multiply activations by (4-bit) weights.
    pub const LINEAR: [Site; 4] = [Site::Qkv, Site::O, Site::GateUp, Site::Down];
    /// Sites whose low-importance tokens may use INT4 (method.md §4).
    pub const LOW_BIT: [Site; 3] = [Site::O, Site::GateUp, Site::Down];

    pub fn name(self) -> &'static str {
        match self {
            Site::Qkv => "qkv",
            Site::O => "o",
            Site::GateUp => "gate_up",
            Site::Down => "down",
            Site::Qk => "qk",
            Site::Pv => "pv",
            Site::LmHead => "lm_head",
        }
    }

    pub fn is_linear(self) -> bool {
        !matches!(self, Site::Qk | Site::Pv)
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How integer activations get their scale (method.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Dynamic per-token: each row's own `amax / qmax`, computed at run time.
    #[default]
    Token,
    /// Static per-tensor from calibration, with power-of-two channel factors folded into
    /// the weights.
    Tensor,
    /// Dynamic per token and per 32-input block: each block of a row gets its own
    /// `amax / qmax` (Q8_1-style, how llama.cpp feeds its own Q4_1 matmul). The blocks line
    /// up with the Q4_1 weight blocks, so the kernel applies the block scale next to the
    /// weight block's `d` and `m`. Runs on `w4a8` and `w4a4-widen` only.
    Group,
}

impl Scheme {
    /// The name used in plan files.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Token => "token",
            Scheme::Tensor => "tensor",
            Scheme::Group => "group",
        }
    }

    /// Whether a kernel variant can take activations of this scheme: block scales
    /// ([`Scheme::Group`]) are implemented by `w4a8` and `w4a4-widen` only.
    pub fn runs_on(self, v: Variant) -> bool {
        self != Scheme::Group || v.supports_block_scales()
    }
}

/// A kernel variant, or `auto`: resolved on the running CPU by [`SitePlan::resolve_variant`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum VariantChoice {
    #[default]
    Auto,
    Fixed(Variant),
}

impl VariantChoice {
    pub fn name(self) -> &'static str {
        match self {
            VariantChoice::Auto => "auto",
            VariantChoice::Fixed(v) => v.name(),
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "auto" {
            Ok(VariantChoice::Auto)
        } else {
            s.parse::<Variant>().map(VariantChoice::Fixed).map_err(|e| format!("{e}, or `auto`"))
        }
    }
}

/// Softmax output precision before the PV product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SoftmaxMode {
    #[default]
    #[serde(rename = "f32")]
    F32,
    /// 4-bit log2 quantized probabilities (method.md §3).
    #[serde(rename = "log2-4")]
    Log2x4,
}

/// Storage of the linear-layer weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum WeightFormat {
    /// f16 weights (dequantized from the model file when it holds 4-bit ones): the baseline.
    #[serde(rename = "f16")]
    F16,
    /// 4-bit Q4_1, group 32: the model file's blocks, used as stored.
    #[default]
    #[serde(rename = "q4_1")]
    Q4_1,
}

/// RoPE positions of tokens that survive pruning (method.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Positions {
    /// Each surviving token keeps its original position.
    #[default]
    Keep,
    /// Survivors are renumbered 0.. (the paper's code).
    Renumber,
}

/// One site's activation treatment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SitePlan {
    /// 16 = float, 8 or 4 = integer.
    pub bits: u8,
    pub scheme: Scheme,
    pub variant: VariantChoice,
}

impl SitePlan {
    pub const FLOAT: SitePlan = SitePlan { bits: 16, scheme: Scheme::Token, variant: VariantChoice::Auto };

    pub fn int(bits: u8, scheme: Scheme) -> SitePlan {
        SitePlan { bits, scheme, variant: VariantChoice::Auto }
    }

    pub fn is_float(&self) -> bool {
        self.bits == 16
    }

    /// The kernel for a linear site. `auto` picks by bits: f16 weights → `f16`; float
    /// activations → `w4a16`; 8 bits → `w4a8`; 4 bits → the first of w4a4-packed,
    /// w4a4-widen, w4a4-lut that has a SIMD path on this CPU (a static preference; the
    /// tuner writes the variant the device profile measured fastest).
    /// With the group scheme `auto` is `w4a8` / `w4a4-widen` (the variants with block scales).
    pub fn resolve_variant(&self, weights: WeightFormat) -> Variant {
        match self.variant {
            VariantChoice::Fixed(v) => v,
            VariantChoice::Auto if self.scheme == Scheme::Group && self.bits == 4 => Variant::W4A4Widen,
            VariantChoice::Auto => auto_variant(self.bits, weights),
        }
    }
}

/// See [`SitePlan::resolve_variant`]. For 4-bit activations `auto` is the variant whose
/// best ISA here is the widest (AVX-512 > AVX2/NEON > scalar), ties going to the paper's
/// packed multiplier, then widen, then lut. On a VNNI CPU that is `w4a4-widen`, whose
/// `vpdpbusd` path ran 2.5-10x faster than the AVX2-only `w4a4-packed` at M = 1 and 512
/// (`agq kernels --variants w4a4-packed,w4a4-widen,w4a4-lut,w4a8 --m 1,512`).
pub fn auto_variant(bits: u8, weights: WeightFormat) -> Variant {
    match (bits, weights) {
        (_, WeightFormat::F16) => Variant::F16,
        (16, _) => Variant::W4A16,
        (8, _) => Variant::W4A8,
        _ => {
            let width = |i: Isa| match i {
                Isa::Scalar => 0,
                Isa::Avx2 | Isa::Neon => 1,
                Isa::Avx512 => 2,
            };
            let mut best = (Variant::W4A4Packed, width(kernels::best_isa(Variant::W4A4Packed)));
            for v in [Variant::W4A4Widen, Variant::W4A4Lut] {
                let w = width(kernels::best_isa(v));
                if w > best.1 {
                    best = (v, w);
                }
            }
            best.0
        }
    }
}

/// Everything the plan says about one decoder layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPlan {
    pub qkv: SitePlan,
    pub o: SitePlan,
    pub gate_up: SitePlan,
    pub down: SitePlan,
    /// Q·Kᵀ: 8 = INT8 per-head per-token Q and K.
    pub qk: SitePlan,
    /// P·V: 8 = INT8 per-head per-token V (the probabilities follow `softmax`).
    pub pv: SitePlan,
    pub softmax: SoftmaxMode,
    /// Fraction of the layer's incoming prunable tokens dropped after attention (0 = none).
    pub prune: f64,
    /// Fraction of the layer's prunable tokens that use INT4 at o/gate_up/down (the set only
    /// grows with depth; see `prune::LowBitSet`).
    pub low_bit: f64,
    /// Kernel for those INT4 rows.
    pub low_bit_variant: VariantChoice,
}

impl Default for LayerPlan {
    fn default() -> Self {
        LayerPlan {
            qkv: SitePlan::FLOAT,
            o: SitePlan::FLOAT,
            gate_up: SitePlan::FLOAT,
            down: SitePlan::FLOAT,
            qk: SitePlan::FLOAT,
            pv: SitePlan::FLOAT,
            softmax: SoftmaxMode::F32,
            prune: 0.0,
            low_bit: 0.0,
            low_bit_variant: VariantChoice::Auto,
        }
    }
}

impl LayerPlan {
    pub fn site(&self, s: Site) -> &SitePlan {
        match s {
            Site::Qkv => &self.qkv,
            Site::O => &self.o,
            Site::GateUp => &self.gate_up,
            Site::Down => &self.down,
            Site::Qk => &self.qk,
            Site::Pv => &self.pv,
            Site::LmHead => panic!("lm_head is not a layer site"),
        }
    }

    pub fn site_mut(&mut self, s: Site) -> &mut SitePlan {
        match s {
            Site::Qkv => &mut self.qkv,
            Site::O => &mut self.o,
            Site::GateUp => &mut self.gate_up,
            Site::Down => &mut self.down,
            Site::Qk => &mut self.qk,
            Site::Pv => &mut self.pv,
            Site::LmHead => panic!("lm_head is not a layer site"),
        }
    }

    /// Sites whose low-importance rows switch to INT4 when `low_bit > 0`: those of
    /// o/gate_up/down running INT8.
    pub fn low_bit_sites(&self) -> Vec<Site> {
        Site::LOW_BIT.into_iter().filter(|&s| self.site(s).bits == 8).collect()
    }

    /// The kernel for the INT4 low-importance rows. Those rows follow their site's scheme
    /// (block scales at a group site), so `auto` is `w4a4-widen` when any low-bit site uses
    /// the group scheme, else [`auto_variant`] for 4 bits.
    pub fn resolve_low_bit_variant(&self, weights: WeightFormat) -> Variant {
        match self.low_bit_variant {
            VariantChoice::Fixed(v) => v,
            VariantChoice::Auto if self.low_bit_sites().iter().any(|&s| self.site(s).scheme == Scheme::Group) => {
                Variant::W4A4Widen
            }
            VariantChoice::Auto => auto_variant(4, weights),
        }
    }
}

/// Where calibration came from (the statistics file is what the tensor scheme reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Calibration statistics file (see `calibrate`), relative to the plan file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    /// Calibration text file the statistics were collected on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// What the tuner recorded when it chose this plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunerInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_ppl: Option<f64>,
    /// The constraint searched under, e.g. "latency <= 0.6 x fp16".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// Quality protocol of `measured_ppl`, e.g. "wikitext2-test ctx512 dense-half".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The device fingerprint (the profiler's schema, kept verbatim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<toml::Table>,
    // Added by the tuner (T, session 2); all optional so older plan files still parse.
    /// What was minimised: `prefill`, `decode` or `e2e`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    /// The workload latencies refer to, e.g. "prompt 512 + gen 128 tokens, 2 threads".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Predicted by the device profile, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_prefill_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_decode_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_e2e_s: Option<f64>,
    /// Measured on the device while tuning (median of a few runs, machine possibly loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_prefill_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_decode_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_e2e_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_ppl_stderr: Option<f64>,
    /// The reference the budget is relative to (`w4a16` or `fp16`) and its perplexity under
    /// the same protocol as `measured_ppl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_ppl: Option<f64>,
    /// Sum of the per-change KL divergences the search used, and the combined plan's KL as
    /// measured on the calibration text (the additivity check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_kl: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_kl: Option<f64>,
    /// Device profile file the predictions came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// How the sensitivity was measured (text, chunks, context, reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<String>,
}

/// A fully expanded plan for a model with `layers.len()` decoder layers.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: Option<String>,
    pub description: Option<String>,
    /// When set, the plan only applies to the model file with this sha256.
    pub model_sha256: Option<String>,
    pub weights: WeightFormat,
    pub positions: Positions,
    pub calibration: Option<Calibration>,
    pub tuner: Option<TunerInfo>,
    pub lm_head: SitePlan,
    pub layers: Vec<LayerPlan>,
}

impl Plan {
    /// All-float plan with the given weight storage.
    pub fn float(n_layer: usize, weights: WeightFormat) -> Plan {
        Plan {
            name: None,
            description: None,
            model_sha256: None,
            weights,
            positions: Positions::Keep,
            calibration: None,
            tuner: None,
            lm_head: SitePlan::FLOAT,
            layers: vec![LayerPlan::default(); n_layer],
        }
    }

    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// Whether any layer prunes tokens.
    pub fn prunes(&self) -> bool {
        self.layers.iter().any(|l| l.prune > 0.0)
    }

    /// Whether any site uses the static per-tensor scheme (and so needs calibration stats).
    pub fn needs_calibration(&self) -> bool {
        let int_tensor = |s: &SitePlan| !s.is_float() && s.scheme == Scheme::Tensor;
        int_tensor(&self.lm_head) || self.layers.iter().any(|l| Site::LAYER.iter().any(|&s| int_tensor(l.site(s))))
    }

    /// Errors when the plan is pinned to a different model file.
    pub fn check_model(&self, source: &str, model_path: &Path, model_sha256: &str) -> Result<(), PlanError> {
        match &self.model_sha256 {
            Some(want) if !want.eq_ignore_ascii_case(model_sha256) => Err(PlanError::ModelMismatch {
                file: source.into(),
                expected: want.clone(),
                model: model_path.display().to_string(),
                actual: model_sha256.into(),
            }),
            _ => Ok(()),
        }
    }

    /// Parses a plan file and expands it for `n_layer` layers.
    pub fn from_file(path: &Path, n_layer: usize) -> Result<Plan, PlanError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::Io { file: file.clone(), source: e })?;
        file::parse(&text, &file)?.expand(n_layer)
    }

    /// A preset name or a plan file path (presets win; a file named like a preset needs a
    /// path with a `/`).
    pub fn load(spec: &str, n_layer: usize) -> Result<Plan, PlanError> {
        match presets::preset(spec, n_layer) {
            Some(p) => Ok(p),
            None if Path::new(spec).exists() || spec.contains('/') || spec.ends_with(".toml") => {
                Plan::from_file(Path::new(spec), n_layer)
            }
            None => Err(PlanError::UnknownPreset { name: spec.into() }),
        }
    }

    /// The compact TOML form (parses back to an identical plan).
    pub fn to_toml(&self) -> String {
        file::to_toml(self)
    }

    /// Writes the compact TOML atomically.
    pub fn write(&self, path: &Path) -> Result<(), PlanError> {
        write_atomic(path, self.to_toml().as_bytes())
            .map_err(|e| PlanError::Io { file: path.display().to_string(), source: e })
    }
}

/// Why a plan could not be used. Every message names the file (or preset) and the key.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {msg}")]
    Toml { file: String, msg: String },
    #[error("{file}: `{key}`: {msg}")]
    Invalid { file: String, key: String, msg: String },
    #[error("{file}: the plan is for the model with sha256 {expected}, but {model} has sha256 {actual}")]
    ModelMismatch { file: String, expected: String, model: String, actual: String },
    #[error("`{name}` is neither a preset ({}) nor an existing plan file", presets::NAMES.join(", "))]
    UnknownPreset { name: String },
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename, so
/// readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
