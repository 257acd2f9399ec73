//! Ops timed inside the real forward pass (`forward.*` records): prefills and decode steps
//! of the whole model, each op charged by the runtime's own per-op timer
//! (`runtime::model::profile`).
//!
//! Why: a decode step streams every layer's weights, the LM head and each layer's KV cache
//! once, so each op finds its data out of cache; the same op timed over and over in
//! isolation finds its weights in the (large, here 260 MB) last-level cache. On this VM the
//! isolated M = 1 ops sum to about half of a real step (1 thread, CPU clock, loaded machine:
//! gate_up 119 vs 207 us, LM head 1.74 vs 3.58 ms, attention at KV 544: 34 vs 128 us;
//! `cargo run --release -p profiler --example decode_breakdown`). In a prefill the runtime
//! also does what no isolated op does: row-parallel norms/RoPE/SiLU, the INT8 KV cache
//! append, and for plans with low-bit tokens the mixed INT8/INT4 rows of a site
//! (`cargo run --release -p profiler --example prefill_breakdown`). Timing the ops where
//! they really run measures all of that instead of correcting for it.
//!
//! Runs (each on every `--threads` count):
//! - one per linear kernel variant (every linear site of every layer on it, per-token
//!   activations, f32 attention), and one per variant with block scales under the group
//!   scheme (label `<variant>@group`): `forward.{qkv,o,gate_up,down}` at M = 1 (decode at a
//!   short KV length) and at every prefill size M > 1 of `--tokens` (a prefill of M tokens
//!   from an empty cache). The `w4a16` run also yields the per-step and per-row ops
//!   (`forward.{embed,norm,rope,silu}` at each M, `forward.lm_head` at M = 1), the `f16`
//!   run the f16 `forward.lm_head`.
//! - one per attention variant (`w4a16` linear sites): `forward.attention` at M = 1 for each
//!   KV length (the cache holds `kv - 1` tokens, a step attends over `kv` keys, then the
//!   cache is cut back so every sample sees the same length), and at (M, M) for each prefill
//!   size (causal, from an empty cache); the first INT8 variant also `forward.rope`
//!   `int8-kv` (RoPE plus the KV append with INT8 codes).
//! - one per mixed-rows pair (the presets' INT8 kernel with their INT4 low-bit kernel, per
//!   scheme): every layer marks half of the rows low-bit (`low_bit = 0.5`, no pruning), so
//!   `forward.{o,gate_up,down}` with variant `<high>+<low>` at each prefill M is a site whose
//!   [`mixed_low_rows`]`(M)` rows are INT4 (layer 0's `o`, whose rows are all INT8, is left
//!   out). Decode steps never have low-bit rows.
//!
//! A sample is one forward call: the op's time per call averaged over the layers (the
//! final norm's call left out of `norm`). Decode: `steps` samples after `warmup` steps;
//! prefill: [`prefill_samples`] samples (after one warm-up prefill), the sizes interleaved,
//! at least two and fewer when two rounds took longer than [`prefill_budget_s`].
//! What each op covers is what the runtime charges to it: `forward.o` and `forward.down`
//! include their residual add, quantized sites their activation quantization, `forward.rope`
//! the q/k/v split and the KV append, the first layer's `norm` the prefill's RoPE angles.

use crate::measure::Clock;
use crate::profile::{ModelShapes, RecordKey};
use crate::stats::Summary;
use kernels::Variant;
use runtime::gguf::Gguf;
use runtime::model::profile::{Op, Profile};
use runtime::model::{llama, FloatHooks, Hooks, KvCache, LoadOptions, Logits, Model, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{Plan, Scheme, Site, SitePlan, SoftmaxMode, VariantChoice, WeightFormat};
use std::path::Path;

/// Prefix of the op names of records timed inside the forward pass.
pub const PREFIX: &str = "forward.";

/// The variant whose run also yields the per-step (non-linear) records.
pub const BASE_VARIANT: Variant = Variant::W4A16;

/// Share of the rows a mixed-rows run makes low-bit at every layer.
pub const MIXED_LOW_SHARE: f64 = 0.5;

/// Low-bit rows of an `m`-row site in a mixed-rows run: what `PruneState::select` picks
/// for `low_bit = 0.5` (rounded; token 0 and the last token never low-bit).
pub fn mixed_low_rows(m: usize) -> usize {
    ((MIXED_LOW_SHARE * m as f64).round() as usize).min(m.saturating_sub(2))
}

/// Timed prefills per size (after one warm-up prefill at the largest size).
pub fn prefill_samples(quick: bool) -> usize {
    let _ = quick;
    3
}

/// The record variant of a linear site: the kernel variant, with `@group` for the group
/// scheme (per-token and per-32-input-block activation scales).
pub fn site_label(variant: &str, scheme: Scheme) -> String {
    match scheme {
        Scheme::Group => format!("{variant}@group"),
        _ => variant.to_string(),
    }
}

/// The record variant of a mixed-rows site: `<high label>+<low label>`.
pub fn mixed_label(high: &str, low: &str) -> String {
    format!("{high}+{low}")
}

/// The kernel variant a record variant runs on (`w4a8@group+w4a4-widen@group` -> `w4a8`).
pub fn kernel_of(label: &str) -> &str {
    label.split(['+', '@']).next().unwrap_or(label)
}

/// One measurement run and the record keys it yields.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Every linear site on `variant` (`group`: with the group scheme), f32 attention;
    /// decode at a short KV length and prefills.
    Linear { variant: String, threads: usize, group: bool },
    /// `w4a16` linear sites, `attention` variant, decode at each KV length and prefills;
    /// `rope8`: this run also yields the INT8-cache `forward.rope` records (the first INT8
    /// attention variant).
    Attention { attention: String, threads: usize, rope8: bool },
    /// Every linear site on `high`'s INT8 kernel, half of the rows INT4 on `low` at
    /// o/gate_up/down; prefills only.
    Mixed { high: Variant, low: Variant, threads: usize, group: bool },
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

fn scheme_of(group: bool) -> Scheme {
    if group {
        Scheme::Group
    } else {
        Scheme::Token
    }
}

/// Prefill sizes of a token-count list (those above 1).
pub fn prefill_sizes(tokens: &[usize]) -> Vec<usize> {
    tokens.iter().copied().filter(|&m| m > 1).collect()
}

impl Group {
    pub fn threads(&self) -> usize {
        match self {
            Group::Linear { threads, .. } | Group::Attention { threads, .. } | Group::Mixed { threads, .. } => *threads,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Group::Linear { variant, threads, group } => {
                format!("forward pass, linear {}, t={threads}", site_label(variant, scheme_of(*group)))
            }
            Group::Attention { attention, threads, .. } => format!("forward pass, attention {attention}, t={threads}"),
            Group::Mixed { .. } => format!("forward pass, mixed rows {}, t={}", self.mixed_variant(), self.threads()),
        }
    }

    fn mixed_variant(&self) -> String {
        match self {
            Group::Mixed { high, low, group, .. } => {
                let sc = scheme_of(*group);
                mixed_label(&site_label(high.name(), sc), &site_label(low.name(), sc))
            }
            _ => String::new(),
        }
    }

    /// The records this run produces. `q4_head`: the kernel of a Q4_1 model's LM head;
    /// `tokens`: the profile's token counts (prefills at those above 1).
    pub fn keys(&self, shapes: &ModelShapes, tokens: &[usize], kv_lengths: &[usize], q4_head: &str) -> Vec<RecordKey> {
        let prefill = prefill_sizes(tokens);
        let k_of = |op: &str| shapes.linear_shape(op).map_or(0, |x| x.1);
        match self {
            Group::Linear { variant, threads, group } => {
                let t = *threads;
                let v: Variant = variant.parse().expect("a registry variant");
                let b = v.activation_bits();
                let label = site_label(variant, scheme_of(*group));
                let mut out = Vec::new();
                for &m in std::iter::once(&1).chain(&prefill) {
                    for op in ["qkv", "o", "gate_up", "down"] {
                        out.push(key(op, &label, b, m, 0, k_of(op), t));
                    }
                }
                if *group {
                    return out;
                }
                if v == Variant::F16 {
                    out.push(key("lm_head", "f16", 16, 1, 0, shapes.d_model, t));
                }
                if v == BASE_VARIANT {
                    if q4_head != "f16" {
                        out.push(key("lm_head", q4_head, 16, 1, 0, shapes.d_model, t));
                    }
                    for &m in std::iter::once(&1).chain(&prefill) {
                        for op in ["embed", "norm", "silu", "rope"] {
                            out.push(key(op, "f32", 16, m, 0, 0, t));
                        }
                    }
                }
                out
            }
            Group::Attention { attention, threads, rope8 } => {
                let t = *threads;
                let b = attention_bits(attention);
                let mut out: Vec<RecordKey> = kv_lengths.iter().map(|&kv| key("attention", attention, b, 1, kv, 0, t)).collect();
                out.extend(prefill.iter().map(|&m| key("attention", attention, b, m, m, 0, t)));
                if *rope8 {
                    for &m in std::iter::once(&1).chain(&prefill) {
                        out.push(key("rope", "int8-kv", 16, m, 0, 0, t));
                    }
                }
                out
            }
            Group::Mixed { threads, .. } => {
                let label = self.mixed_variant();
                let mut out = Vec::new();
                for &m in &prefill {
                    for op in ["o", "gate_up", "down"] {
                        out.push(key(op, &label, 8, m, 0, k_of(op), *threads));
                    }
                }
                out
            }
        }
    }
}

/// Every run for these thread counts and attention variants, in canonical order. Mixed-rows
/// runs only when there are prefill sizes.
pub fn groups(threads: &[usize], tokens: &[usize], attention: &[String]) -> Vec<Group> {
    let mut out = Vec::new();
    let first8 = attention.iter().find(|a| int8_cache(a));
    let prefill = !prefill_sizes(tokens).is_empty();
    for &t in threads {
        for v in Variant::ALL {
            out.push(Group::Linear { variant: v.name().to_string(), threads: t, group: false });
        }
        for v in Variant::ALL.into_iter().filter(|v| v.supports_block_scales()) {
            out.push(Group::Linear { variant: v.name().to_string(), threads: t, group: true });
        }
        for a in attention {
            out.push(Group::Attention { attention: a.clone(), threads: t, rope8: Some(a) == first8 });
        }
        if prefill {
            for group in [false, true] {
                let (high, low) = mixed_pair(group);
                out.push(Group::Mixed { high, low, threads: t, group });
            }
        }
    }
    out
}

/// The INT8 kernel and the INT4 low-bit kernel a preset's layer resolves to (`auto`), per
/// scheme: what the agile presets run.
pub fn mixed_pair(group: bool) -> (Variant, Variant) {
    let high = SitePlan::int(8, scheme_of(group)).resolve_variant(WeightFormat::Q4_1);
    let mut lp = runtime::plan::LayerPlan::default();
    for s in Site::LINEAR {
        *lp.site_mut(s) = SitePlan::int(8, scheme_of(group));
    }
    lp.low_bit = MIXED_LOW_SHARE;
    (high, lp.resolve_low_bit_variant(WeightFormat::Q4_1))
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

    /// Loads the model with `w` weights (once).
    pub fn load(&mut self, w: WeightFormat) -> Result<(), InForwardError> {
        self.model(w).map(|_| ())
    }

    /// The model with `w` weights, if loaded.
    pub fn loaded(&self, w: WeightFormat) -> Option<&Model> {
        if w == WeightFormat::F16 {
            self.f16.as_ref()
        } else {
            self.q4.as_ref()
        }
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

/// The plan a group runs: every linear site on one variant and scheme, the given attention,
/// no pruning; a mixed-rows run marks half of the rows low-bit at every layer.
pub fn group_plan(g: &Group, n_layer: usize) -> Result<Plan, String> {
    let (variant, attention, scheme, low) = match g {
        Group::Linear { variant, group, .. } => (variant.parse::<Variant>()?, "f32", scheme_of(*group), None),
        Group::Attention { attention, .. } => (BASE_VARIANT, attention.as_str(), Scheme::Token, None),
        Group::Mixed { high, low, group, .. } => (*high, "f32", scheme_of(*group), Some(*low)),
    };
    let weights = if variant == Variant::F16 { WeightFormat::F16 } else { WeightFormat::Q4_1 };
    let mut p = Plan::float(n_layer, weights);
    let (qk, pv, log2) =
        crate::workbench::attention_parts(attention).ok_or_else(|| format!("unknown attention variant `{attention}`"))?;
    let bits = variant.activation_bits();
    for l in &mut p.layers {
        for s in Site::LINEAR {
            let sp = l.site_mut(s);
            *sp = SitePlan::int(bits, scheme);
            if variant != sp.resolve_variant(weights) {
                sp.variant = VariantChoice::Fixed(variant);
            }
        }
        l.qk.bits = if qk { 8 } else { 16 };
        l.pv.bits = if pv { 8 } else { 16 };
        l.softmax = if log2 { SoftmaxMode::Log2x4 } else { SoftmaxMode::F32 };
        if let Some(low) = low {
            l.low_bit = MIXED_LOW_SHARE;
            l.low_bit_variant = VariantChoice::Fixed(low);
        }
    }
    Ok(p)
}

/// Per-call seconds of `op` in one forward call, averaged over the layers' calls (`None`
/// when the op did not run). `skip_first`: leave out the first call (layer 0's `o` in a
/// mixed-rows run); `norm` leaves out the final norm (the call after the last layer).
fn per_call(p: &Profile, op: Op, n_layer: usize, skip_first: bool) -> Option<f64> {
    let mut calls: Vec<f64> = p.log().iter().filter(|c| c.0 == op).map(|c| c.1).collect();
    if op == Op::Norm {
        calls.truncate(2 * n_layer);
    }
    if skip_first && !calls.is_empty() {
        calls.remove(0);
    }
    (!calls.is_empty()).then(|| calls.iter().sum::<f64>() / calls.len() as f64)
}

fn op_of(name: &str) -> Option<Op> {
    Some(match name {
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
        _ => return None,
    })
}

/// How many samples to take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Samples {
    /// Timed decode steps per KV point (0: no decode points).
    pub steps: usize,
    /// Untimed decode steps before them.
    pub warmup: usize,
    /// Timed prefills per size (0: no prefill points).
    pub prefills: usize,
    /// After two rounds of prefills, stop once they took this long (seconds; slow variants
    /// such as the MSE-clipped INT4 ones cost seconds per 512-token prefill).
    pub prefill_budget_s: f64,
}

/// The prefill time budget per run (see [`Samples::prefill_budget_s`]).
pub fn prefill_budget_s(quick: bool) -> f64 {
    if quick {
        2.0
    } else {
        6.0
    }
}

/// Samples (seconds per call) of every key of `g`, by key, measured on `pool`. Prefills at
/// the sizes in `tokens` above 1; decode at `kv_lengths` (attention runs) or one short KV.
#[allow(clippy::too_many_arguments)]
pub fn measure_group(
    models: &mut Models,
    g: &Group,
    tokens: &[usize],
    kv_lengths: &[usize],
    q4_head: &str,
    n: Samples,
    clock: Clock,
    pool: &rayon::ThreadPool,
) -> Result<Vec<(RecordKey, Vec<f64>)>, InForwardError> {
    let cfg = runtime::config::ModelConfig::from_gguf(&models.g).map_err(|e| models.err(e))?;
    let plan = group_plan(g, cfg.n_layer).map_err(|e| models.err(e))?;
    models.model(plan.weights)?;
    Runner::new(models, g, tokens, kv_lengths, q4_head, clock)?.run(n, pool)
}

/// One group's model, executor and buffers, kept across measurement rounds (the validation's
/// re-measurement calls [`Runner::run`] once per round, interleaved with the plans' runs).
pub struct Runner<'a> {
    g: Group,
    model: &'a Model,
    hooks: Box<dyn Hooks>,
    cache: KvCache,
    st: State,
    toks: Vec<u32>,
    keys: Vec<RecordKey>,
    points: Vec<usize>,
    prefill: Vec<usize>,
    n_layer: usize,
    clock: Option<fn() -> f64>,
    file: String,
    warmed: bool,
}

impl<'a> Runner<'a> {
    /// Builds the group's executor on the model `models` already loaded for it
    /// (see [`Models::load`]). Prefill sizes: `tokens` above 1; decode: `kv_lengths`.
    pub fn new(
        models: &'a Models,
        g: &Group,
        tokens: &[usize],
        kv_lengths: &[usize],
        q4_head: &str,
        clock: Clock,
    ) -> Result<Runner<'a>, InForwardError> {
        let cfg = runtime::config::ModelConfig::from_gguf(&models.g).map_err(|e| models.err(e))?;
        let plan = group_plan(g, cfg.n_layer).map_err(|e| models.err(e))?;
        let model = models.loaded(plan.weights).ok_or_else(|| models.err("model not loaded (Models::load first)"))?;
        let fixed = plan.layers.iter().any(|l| Site::LINEAR.iter().any(|&s| l.site(s).variant != VariantChoice::Auto));
        let hooks: Box<dyn Hooks> = if runtime::model::float_plan_weights(&plan).is_ok() && !fixed {
            Box::new(FloatHooks)
        } else {
            Box::new(PlanHooks::build(model, &models.g, &plan, &format!("{g:?}"), None, Prunable::All).map_err(|e| models.err(e))?)
        };
        let points: Vec<usize> = match g {
            Group::Linear { .. } => vec![kv_lengths.first().copied().unwrap_or(16).min(64)],
            Group::Attention { .. } => kv_lengths.to_vec(),
            Group::Mixed { .. } => Vec::new(),
        };
        let prefill = prefill_sizes(tokens);
        let max_kv = points.iter().copied().max().unwrap_or(1);
        let max_m = prefill.iter().copied().max().unwrap_or(1);
        let toks = runtime::bench::tokens((max_kv + 64).max(max_m), cfg.vocab_size, 0x05ee_df0d);
        Ok(Runner {
            g: g.clone(),
            model,
            hooks,
            cache: model.new_cache((max_kv + 1).max(max_m)),
            st: State::new(),
            toks,
            keys: g.keys(&models_shapes(&cfg), tokens, kv_lengths, q4_head),
            points,
            prefill,
            n_layer: cfg.n_layer,
            clock: match clock {
                Clock::Cpu => Some(cpu_seconds),
                Clock::Wall => None,
            },
            file: models.file.clone(),
            warmed: false,
        })
    }

    pub fn group(&self) -> &Group {
        &self.g
    }

    /// The record keys this runner yields.
    pub fn keys(&self) -> &[RecordKey] {
        &self.keys
    }

    /// One round: `n.steps` timed decode steps per KV point (after `n.warmup`), then
    /// `n.prefills` timed prefills per size, sizes interleaved (the first round starts with
    /// one untimed prefill at the largest size). Samples by key.
    pub fn run(&mut self, n: Samples, pool: &rayon::ThreadPool) -> Result<Vec<(RecordKey, Vec<f64>)>, InForwardError> {
        let (model, hooks, file, clock) = (self.model, &*self.hooks, &self.file, self.clock);
        let (cache, st, toks) = (&mut self.cache, &mut self.st, &self.toks);
        let points: &[usize] = if n.steps == 0 { &[] } else { &self.points };
        let prefill: &[usize] = if n.prefills == 0 { &[] } else { &self.prefill };
        let warm = !self.warmed;
        // (m, kv) -> the profiles of its timed calls.
        let mut timed: Vec<((usize, usize), Vec<Profile>)> = Vec::new();
        pool.install(|| -> Result<(), InForwardError> {
            let run = |cache: &mut KvCache, st: &mut State, toks: &[u32]| {
                model.forward(toks, cache, st, Logits::Last, hooks).map(|_| ()).map_err(|e| InForwardError::Model {
                    file: file.clone(),
                    msg: e.to_string(),
                })
            };
            cache.clear();
            for &kv in points {
                // Grow the cache to kv - 1 tokens (untimed), then time steps attending over kv keys.
                let have = cache.layers[0].len();
                if kv - 1 > have {
                    st.profile = Profile::default();
                    run(cache, st, &toks[have..kv - 1])?;
                }
                let mut profiles = Vec::with_capacity(n.steps);
                for i in 0..n.warmup + n.steps {
                    st.profile = Profile::with_log(clock);
                    st.profile.start();
                    run(cache, st, &toks[kv - 1 + (i % 2)..kv + (i % 2)])?;
                    cache.layers.iter_mut().for_each(|l| l.truncate(kv - 1));
                    if i >= n.warmup {
                        profiles.push(st.profile.clone());
                    }
                }
                timed.push(((1, kv), profiles));
            }
            if let Some(&max_m) = prefill.iter().max() {
                // One warm-up prefill at the largest size (buffers grown, pages touched), then
                // the sizes interleaved so drift hits all of them alike.
                if warm {
                    cache.clear();
                    st.profile = Profile::default();
                    run(cache, st, &toks[..max_m])?;
                }
                let mut by_m: Vec<Vec<Profile>> = vec![Vec::new(); prefill.len()];
                let t0 = std::time::Instant::now();
                for round in 0..n.prefills {
                    if round >= 2 && t0.elapsed().as_secs_f64() > n.prefill_budget_s {
                        break;
                    }
                    for (i, &m) in prefill.iter().enumerate() {
                        cache.clear();
                        st.profile = Profile::with_log(clock);
                        st.profile.start();
                        run(cache, st, &toks[..m])?;
                        by_m[i].push(st.profile.clone());
                    }
                }
                timed.extend(prefill.iter().zip(by_m).map(|(&m, p)| ((m, m), p)));
            }
            Ok(())
        })?;
        self.warmed |= !prefill.is_empty();
        let mixed = matches!(self.g, Group::Mixed { .. });
        let mut out = Vec::new();
        for k in &self.keys {
            let op = k.op.strip_prefix(PREFIX).unwrap_or(&k.op);
            let Some(which) = op_of(op) else { continue };
            // Decode points are (1, kv); attention records name their kv, the others any.
            let at = |&&((m, kv), _): &&((usize, usize), Vec<Profile>)| m == k.m && (k.m > 1 || which != Op::Attention || kv == k.kv);
            let samples: Vec<f64> = timed
                .iter()
                .filter(at)
                .flat_map(|(_, ps)| ps.iter())
                .filter_map(|p| per_call(p, which, self.n_layer, mixed && which == Op::O))
                .collect();
            if !samples.is_empty() {
                out.push((k.clone(), samples));
            }
        }
        Ok(out)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_low_rows() {
        assert_eq!(site_label("w4a8", Scheme::Group), "w4a8@group");
        assert_eq!(site_label("w4a8", Scheme::Token), "w4a8");
        assert_eq!(kernel_of("w4a8@group+w4a4-widen@group"), "w4a8");
        assert_eq!(kernel_of("w4a8+w4a4-widen"), "w4a8");
        assert_eq!(mixed_low_rows(512), 256);
        assert_eq!(mixed_low_rows(3), 1);
        assert_eq!(mixed_low_rows(2), 0);
    }

    #[test]
    fn mixed_pair_is_what_the_presets_resolve() {
        let (h, l) = mixed_pair(true);
        assert_eq!((h, l), (Variant::W4A8, Variant::W4A4Widen));
        let (h, _) = mixed_pair(false);
        assert_eq!(h, Variant::W4A8);
    }
}
