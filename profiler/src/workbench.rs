//! Every op of one transformer block and the LM head, prepared at the model's real shapes
//! with the model's real layer-0 weights, as callable closures for the measurement loop.
//! Each op calls the same runtime/kernels functions the forward pass calls, in the same
//! way (see `runtime::model::forward`), so a profile times what inference runs.
//!
//! Op keys are `profile::RecordKey`s; see `profile::Record` for the op names.

use crate::profile::RecordKey;
use kernels::{best_isa, Activations, Isa, Matmul, QuantizedActivations, Variant};
use runtime::config::ModelConfig;
use runtime::gguf::Gguf;
use runtime::model::attention::{attend, AttnShape};
use runtime::model::{llama, FloatAttn, FloatHooks, Hooks, KvLayer, LoadOptions, Logits, Model, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{presets, Plan, Site, SoftmaxMode, WeightFormat};
use runtime::prune::{gather_rows, PruneState};
use runtime::quant::trip;
use runtime::quant::ActQuantizer;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum WorkbenchError {
    #[error("{file}: {msg}")]
    Model { file: String, msg: String },
    #[error("cannot profile `{op}` variant `{variant}`: {msg}")]
    Op { op: String, variant: String, msg: String },
}

/// A prepared op: call it to run once.
pub type OpFn<'a> = Box<dyn FnMut() + Send + 'a>;

/// The model and the prepared weights every op needs.
pub struct Workbench {
    file: String,
    g: Gguf,
    pub cfg: ModelConfig,
    /// One-layer Q4_1 model (embedding, norms, RoPE, blocks under Q4_1 plans).
    model: Model,
    /// One-layer f16 model, loaded on first use (the fp16 block).
    model_f16: Option<Model>,
    matmuls: HashMap<(String, Variant), Vec<Matmul>>,
    /// Layers whose weights linear ops cycle through.
    rotate: usize,
    /// Layers of the `block` (and attention-hook) models.
    block_layers: usize,
    hooks: HashMap<String, Box<dyn Hooks>>,
}

/// Deterministic pseudo-random values in [-1, 1) (SplitMix64).
pub fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Variant names of the attention implementations (see `predict::attention_variant`).
pub fn attention_parts(variant: &str) -> Option<(bool, bool, bool)> {
    if variant == "f32" {
        return Some((false, false, false));
    }
    let (mut qk, mut pv, mut log2) = (false, false, false);
    for p in variant.split('+') {
        match p {
            "qk8" => qk = true,
            "pv8" => pv = true,
            "log2" => log2 = true,
            _ => return None,
        }
    }
    Some((qk, pv, log2))
}

/// Presets whose first layer the `block` records time.
pub const BLOCK_PRESETS: [&str; 5] = ["fp16", "w4a16", "w4a8", "w4a4", "agile8"];

/// The ISA the runtime's float helpers (norm, RoPE, attention) use here.
pub fn float_isa() -> &'static str {
    if runtime::model::simd::use_avx2() {
        "avx2"
    } else {
        "scalar"
    }
}

/// The model cut to its first `n` layers.
fn first_layers(mut m: Model, n: usize) -> Model {
    m.blocks.truncate(n);
    m.config.n_layer = n;
    m
}

impl Workbench {
    /// Opens the model; linear ops will cycle through the weights of `rotate` layers, and
    /// `block` records time a forward pass through the first `block_layers` layers.
    pub fn open(model: &Path, rotate: usize, block_layers: usize) -> Result<Workbench, WorkbenchError> {
        let file = model.display().to_string();
        let err = |e: &dyn std::fmt::Display| WorkbenchError::Model { file: file.clone(), msg: e.to_string() };
        let g = Gguf::open(model).map_err(|e| err(&e))?;
        let cfg = ModelConfig::from_gguf(&g).map_err(|e| err(&e))?;
        let m = llama::load(&g, &cfg, LoadOptions::new(WeightFormat::Q4_1)).map_err(|e| err(&e))?;
        let block_layers = block_layers.clamp(1, cfg.n_layer);
        Ok(Workbench {
            file,
            g,
            cfg,
            model: first_layers(m, block_layers),
            model_f16: None,
            matmuls: HashMap::new(),
            rotate,
            block_layers,
            hooks: HashMap::new(),
        })
    }

    fn op_err(key: &RecordKey, msg: impl std::fmt::Display) -> WorkbenchError {
        WorkbenchError::Op { op: key.op.clone(), variant: key.variant.clone(), msg: msg.to_string() }
    }

    fn site(op: &str) -> Option<Site> {
        Some(match op {
            "qkv" => Site::Qkv,
            "o" => Site::O,
            "gate_up" => Site::GateUp,
            "down" => Site::Down,
            "lm_head" => Site::LmHead,
            _ => return None,
        })
    }

    /// Prepares the weights of `op` for `variant` as the runtime does (f16 from the stored
    /// matrix, the other variants from its Q4_1 blocks, round-to-nearest for a Q8_0 LM head),
    /// for the first `rotate` layers: calls cycle through the layers' distinct weights, so a
    /// small matrix is not timed hot in cache when the real forward pass streams every
    /// layer's weights in turn.
    fn matmul(&mut self, op: &str, variant: Variant) -> Result<&[Matmul], String> {
        let key = (op.to_string(), variant);
        if !self.matmuls.contains_key(&key) {
            let site = Self::site(op).ok_or("not a linear op")?;
            let layers: Vec<Option<usize>> =
                if site == Site::LmHead { vec![None] } else { (0..self.rotate.clamp(1, self.cfg.n_layer)).map(Some).collect() };
            let mut mms = Vec::with_capacity(layers.len());
            for layer in layers {
                let names = llama::site_tensors(layer, site, self.cfg.tied_embeddings);
                let mm = if variant == Variant::F16 {
                    let (n, k, w) = llama::stacked_f32(&self.g, &names).map_err(|e| e.to_string())?;
                    Matmul::new_f16(best_isa(Variant::F16), n, k, &w)
                } else {
                    let q4 = llama::stacked_q4(&self.g, &names).map_err(|e| e.to_string())?;
                    Matmul::new_q4(variant, best_isa(variant), &q4)
                }
                .map_err(|e| e.to_string())?;
                mms.push(mm);
            }
            self.matmuls.insert(key.clone(), mms);
        }
        Ok(&self.matmuls[&key])
    }

    /// Hooks for a one-layer plan: `name` is a block preset or an attention variant
    /// (`attn:<variant>`).
    fn hooks(&mut self, name: &str) -> Result<(), String> {
        if self.hooks.contains_key(name) {
            return Ok(());
        }
        let (plan, weights) = if let Some(v) = name.strip_prefix("attn:") {
            let (qk, pv, log2) = attention_parts(v).ok_or_else(|| format!("unknown attention variant `{v}`"))?;
            let mut p = Plan::float(self.block_layers, WeightFormat::Q4_1);
            for l in &mut p.layers {
                l.qk.bits = if qk { 8 } else { 16 };
                l.pv.bits = if pv { 8 } else { 16 };
                l.softmax = if log2 { SoftmaxMode::Log2x4 } else { SoftmaxMode::F32 };
            }
            (p, WeightFormat::Q4_1)
        } else {
            let mut p = presets::preset(name, self.cfg.n_layer).ok_or_else(|| format!("unknown preset `{name}`"))?;
            p.layers.truncate(self.block_layers);
            let w = p.weights;
            (p, w)
        };
        if weights == WeightFormat::F16 && self.model_f16.is_none() {
            let m = llama::load(&self.g, &self.cfg, LoadOptions::new(WeightFormat::F16)).map_err(|e| e.to_string())?;
            self.model_f16 = Some(first_layers(m, self.block_layers));
        }
        let model = if weights == WeightFormat::F16 { self.model_f16.as_ref().unwrap() } else { &self.model };
        let hooks: Box<dyn Hooks> = if runtime::model::float_plan_weights(&plan).is_ok() {
            Box::new(FloatHooks)
        } else {
            Box::new(PlanHooks::build(model, &self.g, &plan, name, None, Prunable::All).map_err(|e| e.to_string())?)
        };
        self.hooks.insert(name.to_string(), hooks);
        Ok(())
    }

    /// The ISA the op runs on and its `(n, k)`, for the record.
    pub fn describe(&mut self, key: &RecordKey) -> (String, usize, usize) {
        if let Ok(v) = key.variant.parse::<Variant>() {
            if let Ok(mm) = self.matmul(&key.op, v) {
                return (mm[0].isa().to_string(), mm[0].n(), mm[0].k());
            }
        }
        (float_isa().to_string(), 0, key.k)
    }

    /// Builds the op `key` (threads are the caller's business: run it inside the pool).
    pub fn prepare(&mut self, key: &RecordKey) -> Result<OpFn<'_>, WorkbenchError> {
        let cfg = self.cfg.clone();
        let (m, d, ff) = (key.m.max(1), cfg.n_embd, cfg.n_ff);
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let seed = 0xa90 ^ ((m as u64) << 20) ^ key.kv as u64;
        let op = key.op.as_str();
        match op {
            "qkv" | "o" | "gate_up" | "down" | "lm_head" => {
                let v: Variant = key.variant.parse().map_err(|e: String| Self::op_err(key, e))?;
                let mms = self.matmul(op, v).map_err(|e| Self::op_err(key, e))?;
                let (n, k) = (mms[0].n(), mms[0].k());
                let x = random_values(m * k, seed);
                let mut y = vec![0f32; m * n];
                let mut i = 0;
                if v.activation_bits() == 16 {
                    Ok(Box::new(move || {
                        mms[i].run(Activations::F32 { x: &x, m }, &mut y);
                        i = (i + 1) % mms.len();
                    }))
                } else {
                    let q = QuantizedActivations::quantize_per_token(&x, m, k, v.activation_bits());
                    Ok(Box::new(move || {
                        mms[i].run(Activations::Int(&q), &mut y);
                        i = (i + 1) % mms.len();
                    }))
                }
            }
            "quantize" => {
                let k = key.k;
                let x = random_values(m * k, seed);
                let q = match key.variant.as_str() {
                    "token" => ActQuantizer::PerToken { bits: key.bits, clip: runtime::quant::clip::default_clip(key.bits) },
                    "tensor" => ActQuantizer::PerTensor(trip::search(&x, m, k, key.bits, 3)),
                    "group" => ActQuantizer::PerBlock { bits: key.bits },
                    v => return Err(Self::op_err(key, format!("unknown scheme `{v}`"))),
                };
                Ok(Box::new(move || {
                    std::hint::black_box(q.quantize(&x, m, k));
                }))
            }
            "embed" => {
                let model = &self.model;
                let toks = runtime::bench::tokens(m, cfg.vocab_size, seed);
                let mut x = vec![0f32; m * d];
                Ok(Box::new(move || {
                    for (r, &t) in toks.iter().enumerate() {
                        model.embed.row(t, &mut x[r * d..(r + 1) * d]);
                    }
                }))
            }
            "norm" => {
                let norm = &self.model.blocks[0].attn_norm;
                let x = random_values(m * d, seed);
                let mut out = vec![0f32; m * d];
                Ok(Box::new(move || norm.apply(&x, &mut out)))
            }
            "residual" => {
                let y = random_values(m * d, seed);
                let mut x = random_values(m * d, seed + 1);
                Ok(Box::new(move || runtime::model::ops::add_in_place(&mut x, &y)))
            }
            "silu" => {
                let gu0 = random_values(m * 2 * ff, seed);
                let mut gu = gu0.clone();
                let mut h = vec![0f32; m * ff];
                Ok(Box::new(move || {
                    for r in 0..m {
                        let (g, u) = gu[r * 2 * ff..(r + 1) * 2 * ff].split_at_mut(ff);
                        runtime::model::simd::silu_mul(g, u);
                        h[r * ff..(r + 1) * ff].copy_from_slice(g);
                    }
                    // Keep the inputs from decaying to a fixed point over repeated runs.
                    gu.copy_from_slice(&gu0);
                }))
            }
            "rope" => {
                let model = &self.model;
                let int8 = match key.variant.as_str() {
                    "f32" => false,
                    "int8-kv" => true,
                    v => return Err(Self::op_err(key, format!("unknown rope variant `{v}`"))),
                };
                let qkv = random_values(m * (qd + 2 * kvd), seed);
                let (mut q, mut k, mut v) = (vec![0f32; m * qd], vec![0f32; m * kvd], vec![0f32; m * kvd]);
                let mut cs = vec![(1f32, 0f32); cfg.rope_dim / 2];
                let positions: Vec<u32> = (0..m as u32).collect();
                let mut layer = KvLayer::new(cfg.n_head_kv, cfg.head_dim, m);
                if int8 {
                    layer.enable_int8();
                }
                Ok(Box::new(move || {
                    for r in 0..m {
                        let row = &qkv[r * (qd + 2 * kvd)..(r + 1) * (qd + 2 * kvd)];
                        q[r * qd..(r + 1) * qd].copy_from_slice(&row[..qd]);
                        k[r * kvd..(r + 1) * kvd].copy_from_slice(&row[qd..qd + kvd]);
                        v[r * kvd..(r + 1) * kvd].copy_from_slice(&row[qd + kvd..]);
                        model.rope.angles(positions[r], &mut cs);
                        model.rope.rotate_row(&mut q[r * qd..(r + 1) * qd], &cs);
                        model.rope.rotate_row(&mut k[r * kvd..(r + 1) * kvd], &cs);
                    }
                    layer.truncate(0);
                    layer.append(&k, &v, &positions).expect("capacity m");
                }))
            }
            "attention" => {
                let kv = key.kv.max(m);
                let name = format!("attn:{}", key.variant);
                self.hooks(&name).map_err(|e| Self::op_err(key, e))?;
                let hooks = &self.hooks[&name];
                let shape = AttnShape { n_head: cfg.n_head, n_head_kv: cfg.n_head_kv, head_dim: cfg.head_dim };
                let mut layer = KvLayer::new(cfg.n_head_kv, cfg.head_dim, kv);
                let ops = if key.variant == "f32" { &FloatAttn as &dyn runtime::model::AttnOps } else { hooks.attn_ops(0) };
                if ops.int8().any() {
                    layer.enable_int8();
                }
                let positions: Vec<u32> = (0..kv as u32).collect();
                layer
                    .append(&random_values(kv * kvd, seed), &random_values(kv * kvd, seed + 1), &positions)
                    .map_err(|e| Self::op_err(key, e))?;
                let q = random_values(m * qd, seed + 2);
                let q_pos = positions[kv - m..].to_vec();
                let mut out = vec![0f32; m * qd];
                Ok(Box::new(move || attend(ops, shape, &q, &q_pos, &layer, &mut out, None)))
            }
            "softmax" => {
                let kv = key.kv.max(1);
                let s0 = random_values(m * kv, seed);
                let mut s = s0.clone();
                let log2 = key.variant == "log2-4";
                let mut codes = Vec::new();
                Ok(Box::new(move || {
                    s.copy_from_slice(&s0);
                    for row in s.chunks_exact_mut(kv) {
                        runtime::model::attention::softmax(row);
                        if log2 {
                            runtime::quant::softmax::log2_codes(row, &mut codes);
                        }
                    }
                }))
            }
            "prune_select" => {
                let imp = random_values(m, seed);
                let x0 = random_values(m * d, seed + 1);
                let mut x = x0.clone();
                // The agile presets' rate: 30% over the second half of the layers.
                let gamma = runtime::prune::gamma(presets::AGILE_PRUNE_BETA, cfg.n_layer - cfg.n_layer / 2);
                Ok(Box::new(move || {
                    let st = PruneState::new(m, 0..m);
                    let sel = st.select(&imp, gamma, 0.25);
                    x.truncate(0);
                    x.extend_from_slice(&x0);
                    gather_rows(&mut x, d, &sel.keep);
                    std::hint::black_box(&sel);
                }))
            }
            "block" => {
                let name = key.variant.clone();
                self.hooks(&name).map_err(|e| Self::op_err(key, e))?;
                let f16 = presets::preset(&name, 1).is_some_and(|p| p.weights == WeightFormat::F16);
                let model = if f16 { self.model_f16.as_ref().expect("loaded by hooks()") } else { &self.model };
                let hooks = &*self.hooks[&name];
                let kv = key.kv.max(m);
                let mut cache = model.new_cache(kv);
                let mut st = State::new();
                let toks = runtime::bench::tokens(kv, cfg.vocab_size, seed);
                let err = |e: runtime::model::ModelError| Self::op_err(key, e);
                if m == kv {
                    Ok(Box::new(move || {
                        cache.clear();
                        model.forward(&toks, &mut cache, &mut st, Logits::None, hooks).expect("block forward");
                    }))
                } else if m == 1 {
                    if kv > 1 {
                        model.forward(&toks[..kv - 1], &mut cache, &mut st, Logits::None, hooks).map_err(err)?;
                    }
                    let t = [toks[kv - 1]];
                    Ok(Box::new(move || {
                        model.forward(&t, &mut cache, &mut st, Logits::None, hooks).expect("block forward");
                        cache.layers.iter_mut().for_each(|l| l.truncate(kv - 1));
                    }))
                } else {
                    Err(Self::op_err(key, "block records are prefills (m = kv) or decode steps (m = 1)"))
                }
            }
            _ => Err(Self::op_err(key, "unknown op")),
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The kernel the runtime chose for the LM head of a Q4_1-weight model.
    pub fn lm_head_variant(&self) -> String {
        self.model.lm_head.mm.variant().name().to_string()
    }

    /// Layers a `block` call runs (its time is divided by this for the record).
    pub fn block_layers(&self) -> usize {
        self.block_layers
    }
}

/// Whether this ISA name is a SIMD one (for reports).
pub fn is_simd(isa: &str) -> bool {
    isa != Isa::Scalar.name()
}

/// The plan presets' KV cache: to decide the `rope` variant of a layer.
pub fn rope_variant(qk8: bool, pv8: bool) -> &'static str {
    if qk8 || pv8 {
        "int8-kv"
    } else {
        "f32"
    }
}
