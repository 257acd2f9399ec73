//! The float forward pass: a decoder-only transformer described per architecture (norm kind,
//! positional scheme, MLP kind), loaded from a tensor source, run with a KV cache.
//!
//! Plan hooks (for the plan-driven runtime): every matmul goes through [`Hooks::linear`]
//! with its [`Site`] and the original index and position of each activation row; attention
//! arithmetic goes through [`Hooks::attn_ops`]; after each layer's attention residual
//! [`Hooks::prune`] may drop rows (the hidden-state matrix shrinks and later layers see
//! fewer tokens). [`FloatHooks`] is the plain float runtime.

pub mod attention;
pub mod attn_kernels;
pub mod forward;
pub mod kv_cache;
pub mod linear;
pub mod llama;
pub mod ops;
pub mod profile;
pub mod simd;

pub use attention::{AttnOps, FloatAttn};
pub use forward::{Logits, State};
pub use kv_cache::{CacheFull, KvCache, KvLayer};
pub use linear::Linear;
pub use llama::LoadOptions;

use crate::plan::Site;

/// How a block is built; one value per architecture, so the layer loop is not llama-only.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockKind {
    pub norm: NormKind,
    pub positions: PositionKind,
    pub mlp: MlpKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormKind {
    /// LLaMA.
    Rms { eps: f32 },
    /// OPT/BLOOM (weight and bias); not loaded yet.
    Layer { eps: f32 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PositionKind {
    /// Rotary on Q and K (LLaMA).
    Rope,
    /// Learned absolute embeddings added to the input (OPT); not loaded yet.
    Learned,
    /// Linear attention biases per head (BLOOM); not loaded yet.
    Alibi,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MlpKind {
    /// `down(silu(gate(x)) * up(x))`, gate and up fused into one `gate_up` matmul.
    SwiGlu,
    /// `down(act(up(x)))` (OPT: ReLU, BLOOM: GELU); not loaded yet.
    Plain,
}

/// Norm weights of one norm site.
#[derive(Clone, Debug)]
pub struct Norm {
    pub kind: NormKind,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

impl Norm {
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        match self.kind {
            NormKind::Rms { eps } => ops::rms_norm(x, &self.weight, eps, out),
            NormKind::Layer { eps } => ops::layer_norm(x, &self.weight, self.bias.as_deref(), eps, out),
        }
    }
}

/// One decoder block's parameters.
pub struct Block {
    pub attn_norm: Norm,
    /// Q, K and V fused: output `[q | k | v]`.
    pub qkv: Linear,
    pub o: Linear,
    pub ffn_norm: Norm,
    /// SwiGLU: `[gate | up]` fused; Plain: `up`.
    pub gate_up: Linear,
    pub down: Linear,
}

/// Which matmul call this is, and which tokens the activation rows are.
#[derive(Clone, Copy, Debug)]
pub struct SiteCall<'a> {
    /// `None` for the LM head.
    pub layer: Option<usize>,
    pub site: Site,
    /// Index of each row in the original batch (rows shrink under pruning).
    pub rows: &'a [usize],
    /// Original position of each row.
    pub positions: &'a [u32],
}

/// Extension points for quantization plans. Defaults are the float runtime.
pub trait Hooks: Sync {
    /// Every matmul: `y (m x n) = x (m x k) · Wᵀ`.
    fn linear(&self, call: SiteCall<'_>, lin: &Linear, x: &[f32], y: &mut [f32]) {
        let _ = call;
        lin.forward_f32(x, y)
    }
    /// The attention arithmetic of `layer`.
    fn attn_ops(&self, layer: usize) -> &dyn AttnOps {
        let _ = layer;
        &FloatAttn
    }
    /// Whether `prune` at `layer` needs each row's probability on the first cached token.
    fn wants_sink(&self, layer: usize) -> bool {
        let _ = layer;
        false
    }
    /// After attention + residual at `layer`: the (ascending) row indices to keep, or `None`
    /// to keep all. `sink` is `n_head x rows.len()` when `wants_sink` said so, else empty.
    fn prune(&self, layer: usize, rows: &[usize], positions: &[u32], sink: &[f32]) -> Option<Vec<usize>> {
        let _ = (layer, rows, positions, sink);
        None
    }
    /// Switches token dropping on or off (on by default), everything else unchanged, so a
    /// benchmark can time what pruning saves. Returns whether these hooks prune at all.
    fn set_pruning(&self, on: bool) -> bool {
        let _ = on;
        false
    }
}

/// The plain float runtime: no quantized activations, no pruning.
pub struct FloatHooks;
impl Hooks for FloatHooks {}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{file}: tensor `{tensor}`: {source}")]
    Kernel { file: String, tensor: String, source: kernels::KernelError },
    #[error("{file}: {what}")]
    Unsupported { file: String, what: String },
    #[error(transparent)]
    CacheFull(#[from] CacheFull),
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("empty token batch")]
    Empty,
}

/// A loaded decoder-only model.
pub struct Model {
    pub config: crate::config::ModelConfig,
    pub kind: BlockKind,
    pub weights: crate::plan::WeightFormat,
    pub embed: llama::Embedding,
    pub rope: ops::Rope,
    pub blocks: Vec<Block>,
    pub out_norm: Norm,
    pub lm_head: Linear,
}

impl Model {
    /// A KV cache for up to `cap` tokens.
    pub fn new_cache(&self, cap: usize) -> KvCache {
        KvCache::new(self.config.n_layer, self.config.n_head_kv, self.config.head_dim, cap)
    }
}

/// The weight storage of a plan the float runtime can execute on its own, or why not:
/// integer activations, non-f32 softmax and pruning are executed by the plan runtime.
pub fn float_plan_weights(plan: &crate::plan::Plan) -> Result<crate::plan::WeightFormat, String> {
    let name = plan.name.as_deref().unwrap_or("plan");
    for (l, lp) in plan.layers.iter().enumerate() {
        for s in Site::LAYER {
            if !lp.site(s).is_float() {
                return Err(format!("{name}: layer {l} site {s} uses {}-bit activations; only float plans (fp16, w4a16) run here", lp.site(s).bits));
            }
        }
        if lp.prune > 0.0 || lp.low_bit > 0.0 || lp.softmax != crate::plan::SoftmaxMode::F32 {
            return Err(format!("{name}: layer {l} prunes tokens or quantizes the softmax; only float plans (fp16, w4a16) run here"));
        }
    }
    if !plan.lm_head.is_float() {
        return Err(format!("{name}: the LM head must stay float"));
    }
    Ok(plan.weights)
}
