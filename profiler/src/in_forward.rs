//! Ops timed inside the real forward pass (`forward.*` records): decode steps of the whole
//! model, each op charged by the runtime's own per-op timer (`runtime::model::profile`).
//!
//! Why: a decode step streams every layer's weights, the LM head and each layer's KV cache
//! once, so each op finds its data out of cache; the same op timed over and over in
//! isolation finds its weights in the (large, here 260 MB) last-level cache. On this VM the
//! isolated M = 1 ops sum to about half of a real step (1 thread, CPU clock, loaded machine:
//! gate_up 119 vs 207 us, LM head 1.74 vs 3.58 ms, attention at KV 544: 34 vs 128 us;
//! `cargo run --release -p profiler --example decode_breakdown`). Timing the ops where they
//! really run measures that directly instead of correcting for it.
//!
//! One run per linear kernel variant (every linear site of every layer on that variant,
//! f32 attention) gives `forward.{qkv,o,gate_up,down}` at M = 1; the `w4a16` run also the
//! per-step ops (`forward.{embed,norm,rope,silu,lm_head}`). One run per attention variant
//! (`w4a16` linear sites) walks the KV lengths: at each, the cache holds `kv - 1` tokens,
//! a step attends over `kv` keys, and the cache is cut back after the step so every sample
//! sees the same length (`forward.attention` at M = 1, that `kv`). A sample is one decode
//! step: the op's time per call averaged over the layers. What each op covers is what the
//! runtime charges to it: `forward.o` and `forward.down` include their residual add,
//! quantized sites their activation quantization, `forward.rope` the q/k/v split and the KV
//! append (with INT8 codes for INT8 attention).

use crate::measure::Clock;
use crate::profile::{ModelShapes, RecordKey};
use crate::stats::Summary;
use kernels::Variant;
use runtime::gguf::Gguf;
use runtime::model::profile::{Op, Profile};
use runtime::model::{llama, FloatHooks, Hooks, KvCache, LoadOptions, Logits, Model, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{Plan, Site, SitePlan, SoftmaxMode, VariantChoice, WeightFormat};
use std::path::Path;

/// Prefix of the op names of records timed inside the forward pass.
pub const PREFIX: &str = "forward.";

/// The variant whose run also yields the per-step (non-linear) records.
pub const BASE_VARIANT: Variant = Variant::W4A16;

/// One measurement run and the record keys it yields.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Every linear site on `variant`, f32 attention, decode at a short KV length.
    Linear { variant: String, threads: usize },
    /// `w4a16` linear sites, `attention` variant, decode at each KV length; `rope8`: this run
    /// also yields the INT8-cache `forward.rope` record (the first INT8 attention variant).
    Attention { attention: String, threads: usize, rope8: bool },
}

fn key(op: &str, variant: &str, bits: u8, m: usize, kv: usize, k: usize, threads: usize) -> RecordKey {
    RecordKey { op: format!("{PREFIX}{op}"), variant: variant.into(), bits, m, kv, k, threads }
}

fn attention_bits(a: &str) -> u8 {
    if a == "f32" {
        16
    } else {
        8
    }
}

fn int8_cache(attention: &str) -> bool {
    crate::workbench::attention_parts(attention).is_some_and(|(qk, pv, _)| qk || pv)
}

impl Group {
    pub fn threads(&self) -> usize {
        match self {
            Group::Linear { threads, .. } | Group::Attention { threads, .. } => *threads,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Group::Linear { variant, threads } => format!("forward pass, linear {variant}, t={threads}"),
            Group::Attention { attention, threads, .. } => format!("forward pass, attention {attention}, t={threads}"),
        }
    }

    /// The records this run produces. `q4_head`: the kernel of a Q4_1 model's LM head.
    pub fn keys(&self, shapes: &ModelShapes, kv_lengths: &[usize], q4_head: &str) -> Vec<RecordKey> {
        match self {
            Group::Linear { variant, threads } => {
                let t = *threads;
                let v: Variant = variant.parse().expect("a registry variant");
                let b = v.activation_bits();
                let mut out: Vec<RecordKey> = ["qkv", "o", "gate_up", "down"]
                    .iter()
                    .map(|op| key(op, variant, b, 1, 0, shapes.linear_shape(op).map_or(0, |x| x.1), t))
                    .collect();
                if v == Variant::F16 {
                    out.push(key("lm_head", "f16", 16, 1, 0, shapes.d_model, t));
                }
                if v == BASE_VARIANT {
                    if q4_head != "f16" {
                        out.push(key("lm_head", q4_head, 16, 1, 0, shapes.d_model, t));
                    }
                    for op in ["embed", "norm", "silu", "rope"] {
                        out.push(key(op, "f32", 16, 1, 0, 0, t));
                    }
                }
                out
            }
            Group::Attention { attention, threads, rope8 } => {
                let mut out: Vec<RecordKey> =
                    kv_lengths.iter().map(|&kv| key("attention", attention, attention_bits(attention), 1, kv, 0, *threads)).collect();
                if *rope8 {
                    out.push(key("rope", "int8-kv", 16, 1, 0, 0, *threads));
                }
                out
            }
        }
    }
}

/// Every run for these thread counts and attention variants, in canonical order.
pub fn groups(threads: &[usize], attention: &[String]) -> Vec<Group> {
    let mut out = Vec::new();
    let first8 = attention.iter().find(|a| int8_cache(a));
    for &t in threads {
        for v in Variant::ALL {
            out.push(Group::Linear { variant: v.name().to_string(), threads: t });
        }
        for a in attention {
            out.push(Group::Attention { attention: a.clone(), threads: t, rope8: Some(a) == first8 });
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum InForwardError {
    #[error("{file}: {msg}")]
    Model { file: String, msg: String },
}

/// Full models (every layer), loaded on first use.
pub struct Models {
    file: String,
    g: Gguf,
    q4: Option<Model>,
    f16: Option<Model>,
}

impl Models {
    pub fn open(model: &Path) -> Result<Models, InForwardError> {
        let file = model.display().to_string();
        let g = Gguf::open(model).map_err(|e| InForwardError::Model { file: file.clone(), msg: e.to_string() })?;
        Ok(Models { file, g, q4: None, f16: None })
    }

    fn err(&self, e: impl std::fmt::Display) -> InForwardError {
        InForwardError::Model { file: self.file.clone(), msg: e.to_string() }
    }

    fn model(&mut self, w: WeightFormat) -> Result<&Model, InForwardError> {
        let slot = if w == WeightFormat::F16 { &self.f16 } else { &self.q4 };
        if slot.is_none() {
            let cfg = runtime::config::ModelConfig::from_gguf(&self.g).map_err(|e| self.err(e))?;
            let m = llama::load(&self.g, &cfg, LoadOptions::new(w)).map_err(|e| self.err(e))?;
            if w == WeightFormat::F16 {
                self.f16 = Some(m);
            } else {
                self.q4 = Some(m);
            }
        }
        Ok(if w == WeightFormat::F16 { self.f16.as_ref() } else { self.q4.as_ref() }.expect("loaded above"))
    }
}

/// The plan a group runs: every linear site on one variant (per-token activations), the
/// given attention, no pruning.
pub fn group_plan(g: &Group, n_layer: usize) -> Result<Plan, String> {
    let (variant, attention) = match g {
        Group::Linear { variant, .. } => (variant.parse::<Variant>()?, "f32"),
        Group::Attention { attention, .. } => (BASE_VARIANT, attention.as_str()),
    };
    let weights = if variant == Variant::F16 { WeightFormat::F16 } else { WeightFormat::Q4_1 };
    let mut p = Plan::float(n_layer, weights);
    let (qk, pv, log2) =
        crate::workbench::attention_parts(attention).ok_or_else(|| format!("unknown attention variant `{attention}`"))?;
    for l in &mut p.layers {
        for s in Site::LINEAR {
            let sp = l.site_mut(s);
            *sp = SitePlan::int(variant.activation_bits(), runtime::plan::Scheme::Token);
            if variant != runtime::plan::auto_variant(variant.activation_bits(), weights) {
                sp.variant = VariantChoice::Fixed(variant);
            }
        }
        l.qk.bits = if qk { 8 } else { 16 };
        l.pv.bits = if pv { 8 } else { 16 };
        l.softmax = if log2 { SoftmaxMode::Log2x4 } else { SoftmaxMode::F32 };
    }
    Ok(p)
}

/// Per-call seconds of `op` over one step (`None` when the op did not run).
fn per_call(p: &Profile, op: Op) -> Option<f64> {
    (p.calls(op) > 0).then(|| p.seconds(op) / p.calls(op) as f64)
}

/// Samples (seconds per call) of every key of `g`, by key, measured on the current rayon
/// pool (install the pool with the group's thread count first). `steps` samples per point,
/// after `warmup` untimed steps.
pub fn measure_group(
    models: &mut Models,
    g: &Group,
    kv_lengths: &[usize],
    q4_head: &str,
    steps: usize,
    warmup: usize,
    clock: Clock,
    pool: &rayon::ThreadPool,
) -> Result<Vec<(RecordKey, Vec<f64>)>, InForwardError> {
    let cfg = runtime::config::ModelConfig::from_gguf(&models.g).map_err(|e| models.err(e))?;
    let plan = group_plan(g, cfg.n_layer).map_err(|e| models.err(e))?;
    let name = format!("{g:?}");
    let gguf = Gguf::open(Path::new(&models.file)).map_err(|e| models.err(e))?;
    let file = models.file.clone();
    let model = models.model(plan.weights)?;
    let fixed = plan.layers.iter().any(|l| Site::LINEAR.iter().any(|&s| l.site(s).variant != VariantChoice::Auto));
    let hooks: Box<dyn Hooks> = if runtime::model::float_plan_weights(&plan).is_ok() && !fixed {
        Box::new(FloatHooks)
    } else {
        Box::new(PlanHooks::build(model, &gguf, &plan, &name, None, Prunable::All).map_err(|e| InForwardError::Model {
            file: file.clone(),
            msg: e.to_string(),
        })?)
    };
    let prof_clock: Option<fn() -> f64> = match clock {
        Clock::Cpu => Some(cpu_seconds),
        Clock::Wall => None,
    };
    let vocab = cfg.vocab_size;
    // KV lengths this run visits (the linear runs: one short cache).
    let points: Vec<usize> = match g {
        Group::Linear { .. } => vec![kv_lengths.first().copied().unwrap_or(16).min(64)],
        Group::Attention { .. } => kv_lengths.to_vec(),
    };
    let max_kv = points.iter().copied().max().unwrap_or(1);
    let mut cache: KvCache = model.new_cache(max_kv + 1);
    let mut st = State::new();
    let toks = runtime::bench::tokens(max_kv + steps + warmup + 1, vocab, 0x5eed_f0d);
    let mut per_point: Vec<Vec<Profile>> = Vec::new();
    pool.install(|| -> Result<(), InForwardError> {
        let run = |cache: &mut KvCache, st: &mut State, toks: &[u32]| {
            model.forward(toks, cache, st, Logits::Last, &*hooks).map(|_| ()).map_err(|e| InForwardError::Model {
                file: file.clone(),
                msg: e.to_string(),
            })
        };
        for &kv in &points {
            // Grow the cache to kv - 1 tokens (untimed), then time steps attending over kv keys.
            let have = cache.layers[0].len();
            if kv - 1 > have {
                st.profile = Profile::default();
                run(&mut cache, &mut st, &toks[have..kv - 1])?;
            }
            let mut profiles = Vec::with_capacity(steps);
            for i in 0..warmup + steps {
                st.profile = Profile::with_clock(prof_clock);
                st.profile.start();
                run(&mut cache, &mut st, &toks[kv - 1 + (i % 2)..kv + (i % 2)])?;
                cache.layers.iter_mut().for_each(|l| l.truncate(kv - 1));
                if i >= warmup {
                    profiles.push(st.profile.clone());
                }
            }
            per_point.push(profiles);
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    let keys = g.keys(&models_shapes(&cfg), kv_lengths, q4_head);
    for k in keys {
        let op = k.op.strip_prefix(PREFIX).unwrap_or(&k.op);
        let which = match op {
            "qkv" => Op::Qkv,
            "o" => Op::O,
            "gate_up" => Op::GateUp,
            "down" => Op::Down,
            "lm_head" => Op::LmHead,
            "embed" => Op::Embed,
            "norm" => Op::Norm,
            "silu" => Op::Silu,
            "rope" => Op::Rope,
            "attention" => Op::Attention,
            _ => continue,
        };
        let samples: Vec<f64> = if op == "attention" {
            let i = points.iter().position(|&p| p == k.kv).expect("a visited KV length");
            per_point[i].iter().filter_map(|p| per_call(p, which)).collect()
        } else {
            per_point.iter().flatten().filter_map(|p| per_call(p, which)).collect()
        };
        if !samples.is_empty() {
            out.push((k, samples));
        }
    }
    Ok(out)
}

fn models_shapes(cfg: &runtime::config::ModelConfig) -> ModelShapes {
    ModelShapes::from_config(cfg, "", "")
}

fn cpu_seconds() -> f64 {
    Clock::Cpu.now()
}

/// Median and spread of one key's samples.
pub fn summary(samples: &[f64]) -> Summary {
    Summary::of(samples).expect("at least one sample")
}
