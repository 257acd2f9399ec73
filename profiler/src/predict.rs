//! The latency predictor: the time of a whole plan (prefill of P tokens, then N decode steps)
//! as the sum of per-op latencies from a device profile, interpolated in M (tokens) and KV
//! length, with pruning shrinking M layer by layer exactly as the plan runtime does.
//!
//! What is predicted is what `runtime` runs: prefill = one `forward` of P tokens from an
//! empty cache with logits for the last token only (`agq bench`'s pp test); decode = N
//! single-token steps that continue that cache (step i of layer l sees the layer's cached
//! rows + i + 1 keys). With `prompt_tokens = 0` decode starts from an empty cache (`tg N`).
//!
//! Interpolation: linear ops and the other per-row ops are linear in M between measured
//! points (and extrapolated along the last segment); prefill attention is causal, so its time
//! per row is linear in M (`t = a·M + b·M²`); decode attention is linear in the KV length.
//!
//! Measured profiles are used only through their records (a missing record is an error,
//! never a guess); spec-sheet profiles through a roofline model of every op (bytes moved
//! over bandwidth vs operations over peak), and the prediction says which (`basis`).

use crate::profile::{DeviceProfile, ModelShapes, ProfileKind};
use runtime::plan::{LayerPlan, Plan, Scheme, Site, SitePlan, SoftmaxMode, VariantChoice, WeightFormat};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// What to predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub threads: usize,
}

/// Where the numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Sums of measured per-op medians (a measured profile).
    Measured,
    /// Roofline estimates from published ceilings (a spec-sheet profile): predicted only.
    Roofline,
}

/// One decoder layer's prefill cost, per op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCost {
    pub layer: usize,
    /// Rows entering the layer (= its cached keys after prefill).
    pub tokens_in: usize,
    /// Rows leaving it (after its pruning).
    pub tokens_kept: usize,
    /// Op name -> seconds in prefill (`norm`, `qkv`, `quantize`, `rope`, `attention`, `o`,
    /// `residual`, `prune_select`, `gate_up`, `silu`, `down`).
    pub by_op: BTreeMap<String, f64>,
    /// This layer's time summed over all decode steps.
    #[serde(default)]
    pub decode_s: f64,
}

impl LayerCost {
    pub fn prefill_s(&self) -> f64 {
        self.by_op.values().sum()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub prefill_s: f64,
    /// Total over `gen_tokens` steps.
    pub decode_s: f64,
    pub e2e_s: f64,
    pub per_layer: Vec<LayerCost>,
    /// LM head of the prefill (one row: logits of the last prompt token).
    pub lm_head_s: f64,
    /// Embedding lookup and final norm of the prefill.
    pub prefill_other_s: f64,
    /// LM head over all decode steps.
    pub decode_lm_head_s: f64,
    /// Embedding and final norm over all decode steps.
    pub decode_other_s: f64,
    pub basis: Basis,
    pub threads: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("the profile has no measurements at {threads} threads (it has {available:?})")]
    Threads { threads: usize, available: Vec<usize> },
    #[error("the profile has no `{op}` records for variant `{variant}` ({bits}-bit{k}) at {threads} threads; re-run `agq profile` with it")]
    Missing { op: String, variant: String, bits: u8, k: String, threads: usize },
    #[error("the plan has {plan} layers, the profiled model {profile}")]
    Layers { plan: usize, profile: usize },
    #[error("the profile names no model shapes (a spec-sheet profile): use `predict_with_shapes`")]
    NoShapes,
}

/// Predict `plan` under `w` from `profile` (the profile's own model shapes).
pub fn predict(profile: &DeviceProfile, plan: &Plan, w: &Workload) -> Result<Prediction, PredictError> {
    Predictor::new(profile)?.predict(plan, w)
}

/// Predict with explicit model shapes (needed for spec-sheet profiles, which have none).
pub fn predict_with_shapes(
    profile: &DeviceProfile,
    shapes: &ModelShapes,
    plan: &Plan,
    w: &Workload,
) -> Result<Prediction, PredictError> {
    Predictor::with_shapes(profile, shapes.clone()).predict(plan, w)
}

/// Rows entering each layer and rows kept after it in a prefill of `prompt` tokens under
/// `plan`, as the runtime's `PruneState` decides them with every prompt token prunable
/// (generation): layer `l` drops `round(prune·m)` rows, never token 0 nor the last token.
/// Returns `(tokens_in, tokens_kept, low_bit_rows_after)` per layer; the low-bit count is an
/// estimate (which rows become low-bit depends on importances; see `PruneState::select`).
pub fn kept_tokens(plan: &Plan, prompt: usize) -> Vec<(usize, usize, usize)> {
    let active = prompt > 1 && plan.layers.iter().any(|l| l.prune > 0.0 || l.low_bit > 0.0);
    let mut m = prompt;
    let mut low = 0usize;
    let round = |r: f64, n: usize| (r * n as f64).round().max(0.0) as usize;
    plan.layers
        .iter()
        .map(|lp| {
            let m_in = m;
            if active && (lp.prune > 0.0 || lp.low_bit > 0.0) {
                // Token 0 and the last prompt token are never eligible.
                let eligible = m.saturating_sub(2);
                let n_drop = round(lp.prune, m).min(eligible);
                let after = m - n_drop;
                let target = round(lp.low_bit, after);
                let survivors = low.saturating_sub(n_drop);
                low = target.max(survivors).min(eligible - n_drop);
                m = after;
            }
            (m_in, m, low)
        })
        .collect()
}

/// Name of the attention implementation a layer plan runs (the profile's `variant` of
/// `attention` records): `f32`, or the quantized parts joined by `+` (`qk8+pv8+log2`).
pub fn attention_variant(lp: &LayerPlan) -> String {
    attention_variant_of(lp.qk.bits == 8, lp.pv.bits == 8, lp.softmax == SoftmaxMode::Log2x4)
}

pub fn attention_variant_of(qk8: bool, pv8: bool, log2: bool) -> String {
    let parts: Vec<&str> =
        [(qk8, "qk8"), (pv8, "pv8"), (log2, "log2")].into_iter().filter(|p| p.0).map(|p| p.1).collect();
    if parts.is_empty() {
        "f32".into()
    } else {
        parts.join("+")
    }
}

/// The kernel variant name a plan's site runs (`None` for the LM head's own f16 matrix).
pub fn site_variant(sp: &SitePlan, weights: WeightFormat) -> String {
    sp.resolve_variant(weights).name().to_string()
}

/// Variant name of the LM head. A float head left to `auto` is the model's own: f16 for f16
/// plans; for Q4_1 plans the kernel the profile recorded (`w8a16` for SmolLM2's Q8_0
/// embedding), f16 when the profile does not say.
pub fn lm_head_variant(plan: &Plan, q4_head: Option<&str>) -> (String, u8) {
    if plan.lm_head.is_float() && plan.lm_head.variant == VariantChoice::Auto {
        match (plan.weights, q4_head) {
            (WeightFormat::Q4_1, Some(v)) => (v.to_string(), 16),
            _ => ("f16".into(), 16),
        }
    } else {
        (site_variant(&plan.lm_head, plan.weights), plan.lm_head.bits)
    }
}

/// The quantize record variant for a scheme.
pub fn scheme_name(s: Scheme) -> &'static str {
    match s {
        Scheme::Token => "token",
        Scheme::Tensor => "tensor",
        Scheme::Group => "group",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    op: String,
    variant: String,
    bits: u8,
    k: usize,
    threads: usize,
}

/// Measured points of one (op, variant, bits, k, threads), sorted by x.
#[derive(Clone, Debug, Default)]
struct Series {
    pts: Vec<(f64, f64)>,
}

impl Series {
    /// Piecewise linear through the points; outside them, the nearest segment extended
    /// (never below zero). One point: proportional to x.
    fn at(&self, x: f64) -> f64 {
        let p = &self.pts;
        match p.len() {
            0 => f64::NAN,
            1 => p[0].1 * x / p[0].0.max(1e-12),
            n => {
                let i = match p.iter().position(|&(px, _)| px >= x) {
                    Some(0) => 0,
                    Some(i) => i - 1,
                    None => n - 2,
                };
                let ((x0, y0), (x1, y1)) = (p[i], p[i + 1]);
                let y = if x1 == x0 { y0 } else { y0 + (y1 - y0) * (x - x0) / (x1 - x0) };
                y.max(0.0)
            }
        }
    }
}

/// Rows through one layer of a prefill: `m` in, `mk` after its pruning, `low_o` low-bit
/// rows at `o` (the previous layer's set), `low` at gate_up/down; attention over `kv` keys
/// (`0`: left out, the caller adds it).
#[derive(Clone, Copy, Debug)]
struct Rows {
    m: usize,
    mk: usize,
    low_o: usize,
    low: usize,
    kv: usize,
}

/// A profile indexed for fast repeated predictions (the tuner calls it thousands of times).
pub struct Predictor {
    basis: Basis,
    shapes: Option<ModelShapes>,
    series: HashMap<Key, Series>,
    threads: Vec<usize>,
    roof: Vec<Roof>,
    q4_head: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Roof {
    threads: usize,
    bw: f64,
    f32: f64,
    int8: f64,
}

/// Internal op names for the two attention regimes.
const ATT_PREFILL: &str = "attention";
const ATT_DECODE: &str = "attention@decode";
/// Decode attention timed inside the forward pass (see `in_forward`).
const FWD_ATT: &str = "forward.attention";
const FWD_ATT_DECODE: &str = "forward.attention@decode";
/// Prefill attention timed inside the forward pass (per query row, by M).
const FWD_ATT_PREFILL: &str = "forward.attention@prefill";

impl Predictor {
    pub fn new(profile: &DeviceProfile) -> Result<Predictor, PredictError> {
        let shapes = profile.model.clone().ok_or(PredictError::NoShapes)?;
        Ok(Self::with_shapes(profile, shapes))
    }

    pub fn with_shapes(profile: &DeviceProfile, shapes: ModelShapes) -> Predictor {
        let basis = if profile.kind == ProfileKind::SpecSheet { Basis::Roofline } else { Basis::Measured };
        let mut series: HashMap<Key, Series> = HashMap::new();
        for r in &profile.records {
            let k = if r.op == "quantize" { r.k } else { 0 };
            let mut push = |op: &str, x: f64, y: f64| {
                series
                    .entry(Key { op: op.into(), variant: r.variant.clone(), bits: r.bits, k, threads: r.threads })
                    .or_default()
                    .pts
                    .push((x, y))
            };
            if r.op == FWD_ATT {
                if r.m == 1 {
                    push(FWD_ATT_DECODE, r.kv as f64, r.median_s);
                }
                if r.m == r.kv && r.m > 1 {
                    push(FWD_ATT_PREFILL, r.m as f64, r.median_s / r.m as f64);
                }
            } else if r.op == "attention" {
                if r.m == r.kv {
                    push(ATT_PREFILL, r.m as f64, r.median_s / r.m.max(1) as f64);
                }
                if r.m == 1 {
                    push(ATT_DECODE, r.kv as f64, r.median_s);
                }
            } else {
                push(&r.op, r.m as f64, r.median_s);
            }
        }
        for s in series.values_mut() {
            s.pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            s.pts.dedup_by(|a, b| a.0 == b.0);
        }
        let roof = profile
            .ceilings
            .iter()
            .map(|c| {
                let (ce, me) = profile.spec.as_ref().map_or((1.0, 1.0), |s| (s.compute_efficiency, s.memory_efficiency));
                Roof { threads: c.threads, bw: c.dram_read_gbs * 1e9 * me, f32: c.f32_gflops * 1e9 * ce, int8: c.int8_gops * 1e9 * ce }
            })
            .collect();
        // Spec sheets: the default model's Q8_0 head (w8a16) for Q4_1 plans.
        let q4_head = profile.measurement.lm_head_q4_variant.clone().or_else(|| (basis == Basis::Roofline).then(|| "w8a16".into()));
        Predictor { basis, shapes: Some(shapes), series, threads: profile.thread_counts(), roof, q4_head }
    }

    pub fn basis(&self) -> Basis {
        self.basis
    }

    fn shapes(&self) -> &ModelShapes {
        self.shapes.as_ref().expect("set by the constructors")
    }

    pub fn predict(&self, plan: &Plan, w: &Workload) -> Result<Prediction, PredictError> {
        let sh = self.shapes();
        if plan.n_layer() != sh.n_layer {
            return Err(PredictError::Layers { plan: plan.n_layer(), profile: sh.n_layer });
        }
        if !self.threads.contains(&w.threads) {
            return Err(PredictError::Threads { threads: w.threads, available: self.threads.clone() });
        }
        let t = w.threads;
        let (p, n) = (w.prompt_tokens, w.gen_tokens);
        let kept = kept_tokens(plan, p);
        let mut per_layer = Vec::with_capacity(plan.n_layer());
        let mut low_prev = 0usize;
        for (l, lp) in plan.layers.iter().enumerate() {
            let (m_in, m_kept, low) = kept[l];
            let mut by_op = BTreeMap::new();
            if p > 0 {
                let c = Rows { m: m_in, mk: m_kept, low_o: low_prev, low, kv: m_in };
                self.layer_ops(plan.weights, lp, c, t, true, &mut by_op)?;
            }
            low_prev = low;
            // Decode: every step is one row; attention over the cached rows of this layer.
            let mut decode_s = 0.0;
            if n > 0 {
                decode_s = self.decode_layer(plan.weights, lp, t)?.values().sum::<f64>() * n as f64;
                let cached = if p > 0 { m_in } else { 0 };
                let av = attention_variant(lp);
                for i in 0..n {
                    decode_s += self.decode_attention(&av, cached + i + 1, t)?;
                }
            }
            per_layer.push(LayerCost { layer: l, tokens_in: m_in, tokens_kept: m_kept, by_op, decode_s });
        }
        let (hv, hb) = lm_head_variant(plan, self.q4_head.as_deref());
        // The LM head of one row, after the layers streamed their weights (prefill's last
        // row and every decode step alike): in-step where measured.
        let head1 = self.in_forward("lm_head", &hv, hb, t).map_or_else(|| self.cost("lm_head", &hv, hb, 0, 1, t), Ok)?;
        let norm1 = self.in_forward("norm", "f32", 16, t).map_or_else(|| self.cost("norm", "f32", 16, 0, 1, t), Ok)?;
        let other1 = norm1 + self.in_forward("embed", "f32", 16, t).map_or_else(|| self.cost("embed", "f32", 16, 0, 1, t), Ok)?;
        let (lm_head_s, prefill_other_s) = if p > 0 {
            let embed = self.fwd_at("embed", "f32", 16, p, t).map_or_else(|| self.cost("embed", "f32", 16, 0, p, t), Ok)?;
            (head1, embed + norm1)
        } else {
            (0.0, 0.0)
        };
        let head_step = head1;
        let prefill_s = lm_head_s + prefill_other_s + per_layer.iter().map(LayerCost::prefill_s).sum::<f64>();
        let decode_lm_head_s = head_step * n as f64;
        let decode_other_s = other1 * n as f64;
        let decode_s = decode_lm_head_s + decode_other_s + per_layer.iter().map(|c| c.decode_s).sum::<f64>();
        Ok(Prediction {
            prefill_s,
            decode_s,
            e2e_s: prefill_s + decode_s,
            per_layer,
            lm_head_s,
            prefill_other_s,
            decode_lm_head_s,
            decode_other_s,
            basis: self.basis,
            threads: t,
            prompt_tokens: p,
            gen_tokens: n,
        })
    }

    /// Per-op seconds of one layer without pruning from the isolated records only: `m` rows,
    /// attention over `kv` keys (`kv == m`: a prefill from an empty cache; `m == 1`: a decode
    /// step). For the additivity check against measured `block` records (themselves isolated
    /// runs of a few layers) and per-layer breakdowns.
    pub fn layer(&self, weights: WeightFormat, lp: &LayerPlan, m: usize, kv: usize, threads: usize) -> Result<BTreeMap<String, f64>, PredictError> {
        let mut by_op = BTreeMap::new();
        self.layer_ops(weights, lp, Rows { m, mk: m, low_o: 0, low: 0, kv: 0 }, threads, false, &mut by_op)?;
        *by_op.entry("attention".into()).or_insert(0.0) += self.attention(&attention_variant(lp), m, kv, threads)?;
        Ok(by_op)
    }

    /// Adds one layer's prefill ops to `by_op` (`rows`: see [`Rows`]). `fwd`: price each op
    /// from the records timed inside real prefills (`forward.*` at M > 1) where the profile
    /// has them, else (and always with `fwd = false`) from the isolated records.
    fn layer_ops(&self, weights: WeightFormat, lp: &LayerPlan, rows: Rows, t: usize, fwd: bool, by_op: &mut BTreeMap<String, f64>) -> Result<(), PredictError> {
        let Rows { m, mk, low_o, low, kv } = rows;
        let mut add = |op: &str, s: f64| *by_op.entry(op.to_string()).or_insert(0.0) += s;
        let sh = self.shapes();
        let (d, ff, qd) = (sh.d_model, sh.d_ff, sh.q_dim());
        let low_variant = lp.resolve_low_bit_variant(weights).name().to_string();
        let low_sites = if lp.low_bit > 0.0 { lp.low_bit_sites() } else { Vec::new() };
        // A per-row op: in-prefill record at `rows`, else the isolated one.
        let row_op = |op: &str, variant: &str, rows: usize| -> Result<f64, PredictError> {
            match fwd.then(|| self.fwd_at(op, variant, 16, rows, t)).flatten() {
                Some(x) => Ok(x),
                None => self.cost(op, variant, 16, 0, rows, t),
            }
        };
        let site = |s: Site, rows: usize, low_rows: usize, k: usize, add: &mut dyn FnMut(&str, f64)| -> Result<(), PredictError> {
            let sp = lp.site(s);
            let low_rows = if low_sites.contains(&s) { low_rows.min(rows) } else { 0 };
            if fwd {
                if let Some(x) = self.fwd_site(s, sp, weights, &low_variant, rows, low_rows, k, t)? {
                    add(s.name(), x);
                    return Ok(());
                }
            }
            let v = site_variant(sp, weights);
            let scheme = scheme_name(sp.scheme);
            let high = rows - low_rows;
            add(s.name(), self.cost(s.name(), &v, sp.bits, 0, high, t)?);
            if !sp.is_float() {
                add("quantize", self.cost("quantize", scheme, sp.bits, k, high, t)?);
            }
            if low_rows > 0 {
                add(s.name(), self.cost(s.name(), &low_variant, 4, 0, low_rows, t)?);
                let low_scheme = if sp.scheme == Scheme::Group { "group" } else { "token" };
                add("quantize", self.cost("quantize", low_scheme, 4, k, low_rows, t)?);
            }
            if matches!(s, Site::O | Site::Down) {
                add("residual", self.cost("residual", "f32", 16, 0, rows, t)?);
            }
            Ok(())
        };
        add("norm", row_op("norm", "f32", m)?);
        site(Site::Qkv, m, 0, d, &mut add)?;
        let rope = if lp.qk.bits == 8 || lp.pv.bits == 8 { "int8-kv" } else { "f32" };
        add("rope", row_op("rope", rope, m)?);
        if kv > 0 {
            let av = attention_variant(lp);
            let x = match fwd.then(|| self.fwd_prefill_attention(&av, m, kv, t)).flatten() {
                Some(x) => x,
                None => self.attention(&av, m, kv, t)?,
            };
            add("attention", x);
        }
        site(Site::O, m, low_o, qd, &mut add)?;
        if m > 1 && (lp.prune > 0.0 || lp.low_bit > 0.0) {
            add("prune_select", self.cost("prune_select", "f32", 16, 0, m, t)?);
        }
        add("norm", row_op("norm", "f32", mk)?);
        site(Site::GateUp, mk, low, d, &mut add)?;
        add("silu", row_op("silu", "f32", mk)?);
        site(Site::Down, mk, low, ff, &mut add)?;
        Ok(())
    }

    /// A `forward.<op>` record's series at `m` rows, when the profile timed the op inside
    /// the forward pass at that kind of call: a decode step for `m == 1`, prefills (some
    /// M > 1) otherwise. Zero rows cost nothing.
    fn fwd_at(&self, op: &str, variant: &str, bits: u8, m: usize, t: usize) -> Option<f64> {
        if self.basis == Basis::Roofline {
            return None;
        }
        if m == 0 {
            return Some(0.0);
        }
        let key = Key { op: format!("{}{op}", crate::in_forward::PREFIX), variant: variant.into(), bits, k: 0, threads: t };
        let s = self.series.get(&key)?;
        let ok = if m == 1 { s.pts.iter().any(|p| p.0 == 1.0) } else { s.pts.iter().any(|p| p.0 > 1.0) };
        ok.then(|| s.at(m as f64))
    }

    /// Prefill attention of `m` rows over `kv` keys from the in-prefill records (causal, from
    /// an empty cache: `kv == m`; cost per row linear in M, as [`Predictor::attention`]).
    fn fwd_prefill_attention(&self, variant: &str, m: usize, kv: usize, t: usize) -> Option<f64> {
        if self.basis == Basis::Roofline || m <= 1 || kv != m {
            return None;
        }
        let bits = if variant == "f32" { 16 } else { 8 };
        let key = Key { op: FWD_ATT_PREFILL.into(), variant: variant.into(), bits, k: 0, threads: t };
        self.series.get(&key).map(|s| s.at(m as f64) * m as f64)
    }

    /// One linear site of a prefill from the in-prefill records: `rows` rows of which
    /// `low_rows` INT4. `None` when the profile lacks a record this needs (the caller falls
    /// back to the isolated records).
    ///
    /// Low-bit rows: the profile times each mixed pair with [`in_forward::mixed_low_rows`]
    /// of the rows INT4 (`mixed(M)`), so a site with L low rows costs
    /// `mixed(M) + hi(M - L) - hi(M - h) + lo(L) - lo(h)` with `h = mixed_low_rows(M)` and
    /// `hi`/`lo` the in-prefill records of the two kernels alone: exact at the measured
    /// share, moved along the measured single-kernel slopes for another share. Without a
    /// mixed record: `hi(M - L) + lo(L)`.
    #[allow(clippy::too_many_arguments)]
    fn fwd_site(&self, s: Site, sp: &SitePlan, weights: WeightFormat, low_variant: &str, rows: usize, low_rows: usize, k: usize, t: usize) -> Result<Option<f64>, PredictError> {
        use crate::in_forward::{mixed_label, mixed_low_rows, site_label};
        let v = site_variant(sp, weights);
        let op = s.name();
        // A profile without group-scheme runs: the per-token run, re-priced by `adj`.
        let mut label = site_label(&v, sp.scheme);
        let mut repriced = sp.scheme == Scheme::Tensor;
        if sp.scheme == Scheme::Group && self.fwd_at(op, &label, sp.bits, rows, t).is_none() {
            label = v.clone();
            repriced = true;
        }
        let hi = |m: usize| self.fwd_at(op, &label, sp.bits, m, t);
        let Some(hi_all) = hi(rows) else { return Ok(None) };
        // Timed with per-token scales; another scheme quantizes with its own.
        let adj = |m: usize| -> Result<f64, PredictError> {
            if repriced && m > 0 {
                let sc = scheme_name(sp.scheme);
                Ok(self.cost("quantize", sc, sp.bits, k, m, t)? - self.cost("quantize", "token", sp.bits, k, m, t)?)
            } else {
                Ok(0.0)
            }
        };
        if low_rows == 0 {
            return Ok(Some(hi_all + adj(rows)?));
        }
        let low_scheme = if sp.scheme == Scheme::Group { Scheme::Group } else { Scheme::Token };
        let low_label = site_label(low_variant, low_scheme);
        let lo = |m: usize| self.fwd_at(op, &low_label, 4, m, t);
        let (Some(hi_l), Some(lo_l)) = (hi(rows - low_rows), lo(low_rows)) else { return Ok(None) };
        let h = mixed_low_rows(rows);
        let mixed = self.fwd_at(op, &mixed_label(&label, &low_label), 8, rows, t);
        let x = match (mixed, hi(rows - h), lo(h)) {
            (Some(mx), Some(hi_h), Some(lo_h)) if h > 0 => mx + (hi_l - hi_h) + (lo_l - lo_h),
            _ => hi_l + lo_l,
        };
        Ok(Some(x + adj(rows - low_rows)?))
    }

    /// The median of a `forward.<op>` record at M = 1 (timed inside real decode steps), if
    /// the profile has one.
    fn in_forward(&self, op: &str, variant: &str, bits: u8, t: usize) -> Option<f64> {
        self.fwd_at(op, variant, bits, 1, t)
    }

    /// Per-op seconds of one decode step of one layer, attention left out. Ops timed inside
    /// the real forward pass (`forward.*`) are used where the profile has them: they include
    /// what the runtime charges to the op (a site's activation quantization, the residual
    /// add after `o` and `down`); otherwise the isolated records.
    pub fn decode_layer(&self, weights: WeightFormat, lp: &LayerPlan, t: usize) -> Result<BTreeMap<String, f64>, PredictError> {
        let mut by_op = BTreeMap::new();
        let mut iso = BTreeMap::new();
        self.layer_ops(weights, lp, Rows { m: 1, mk: 1, low_o: 0, low: 0, kv: 0 }, t, false, &mut iso)?;
        let mut add = |op: &str, s: f64| *by_op.entry(op.to_string()).or_insert(0.0) += s;
        let sh = self.shapes();
        let qd = sh.q_dim();
        for s in Site::LINEAR {
            let sp = lp.site(s);
            let v = site_variant(sp, weights);
            let k = match s {
                Site::Down => sh.d_ff,
                Site::O => qd,
                _ => sh.d_model,
            };
            let label = crate::in_forward::site_label(&v, sp.scheme);
            // (seconds, whether it was timed with per-token scales for another scheme).
            let timed = match self.in_forward(s.name(), &label, sp.bits, t) {
                Some(x) => Some((x, sp.scheme == Scheme::Tensor)),
                // A profile without group-scheme runs: the per-token run, re-priced below.
                None if sp.scheme == Scheme::Group => self.in_forward(s.name(), &v, sp.bits, t).map(|x| (x, true)),
                None => None,
            };
            match timed {
                Some((x, other_scheme)) => {
                    add(s.name(), x);
                    // Measured with per-token scales; another scheme quantizes differently.
                    if !sp.is_float() && other_scheme {
                        let d = self.cost("quantize", scheme_name(sp.scheme), sp.bits, k, 1, t)?
                            - self.cost("quantize", "token", sp.bits, k, 1, t)?;
                        add("quantize", d);
                    }
                }
                None => {
                    add(s.name(), self.cost(s.name(), &v, sp.bits, 0, 1, t)?);
                    if !sp.is_float() {
                        add("quantize", self.cost("quantize", scheme_name(sp.scheme), sp.bits, k, 1, t)?);
                    }
                    if matches!(s, Site::O | Site::Down) {
                        add("residual", self.cost("residual", "f32", 16, 0, 1, t)?);
                    }
                }
            }
        }
        let rope = if lp.qk.bits == 8 || lp.pv.bits == 8 { "int8-kv" } else { "f32" };
        for (op, variant, times) in [("norm", "f32", 2.0), ("rope", rope, 1.0), ("silu", "f32", 1.0)] {
            let x = match self.in_forward(op, variant, 16, t) {
                Some(x) => x * times,
                None => iso.get(op).copied().unwrap_or(0.0),
            };
            add(op, x);
        }
        Ok(by_op)
    }

    /// Decode attention over `kv` keys: timed inside the forward pass where the profile has
    /// it (interpolated in the KV length), else the isolated record.
    fn decode_attention(&self, variant: &str, kv: usize, t: usize) -> Result<f64, PredictError> {
        if self.basis == Basis::Measured {
            let bits = if variant == "f32" { 16 } else { 8 };
            let key = Key { op: FWD_ATT_DECODE.into(), variant: variant.into(), bits, k: 0, threads: t };
            if let Some(s) = self.series.get(&key) {
                return Ok(s.at(kv as f64));
            }
        }
        self.attention(variant, 1, kv, t)
    }

    /// Attention of `m` query rows over `kv` keys: `m == kv` a causal prefill from an empty
    /// cache, `m == 1` a decode step.
    fn attention(&self, variant: &str, m: usize, kv: usize, t: usize) -> Result<f64, PredictError> {
        if m == 0 || kv == 0 {
            return Ok(0.0);
        }
        let bits = if variant == "f32" { 16 } else { 8 };
        if self.basis == Basis::Roofline {
            return Ok(self.roofline("attention", variant, bits, 0, m, kv, t));
        }
        if m == 1 {
            self.lookup(ATT_DECODE, variant, bits, 0, t).map(|s| s.at(kv as f64))
        } else {
            // m rows appended to a cache of kv - m keys: causal prefill cost per row, scaled.
            self.lookup(ATT_PREFILL, variant, bits, 0, t).map(|s| s.at(m as f64) * m as f64)
        }
    }

    fn lookup(&self, op: &str, variant: &str, bits: u8, k: usize, t: usize) -> Result<&Series, PredictError> {
        self.series
            .get(&Key { op: op.into(), variant: variant.into(), bits, k, threads: t })
            .ok_or_else(|| PredictError::Missing {
                op: op.trim_end_matches("@decode").into(),
                variant: variant.into(),
                bits,
                k: if k > 0 { format!(", k = {k}") } else { String::new() },
                threads: t,
            })
    }

    /// Seconds of one call of a non-attention op over `m` rows (`k`: row length, for quantize).
    fn cost(&self, op: &str, variant: &str, bits: u8, k: usize, m: usize, t: usize) -> Result<f64, PredictError> {
        if m == 0 {
            return Ok(0.0);
        }
        if self.basis == Basis::Roofline {
            return Ok(self.roofline(op, variant, bits, k, m, 0, t));
        }
        self.lookup(op, variant, bits, k, t).map(|s| s.at(m as f64))
    }

    /// max(bytes / bandwidth, ops / peak) of one op, from the model shapes.
    #[allow(clippy::too_many_arguments)]
    fn roofline(&self, op: &str, variant: &str, bits: u8, k: usize, m: usize, kv: usize, t: usize) -> f64 {
        let Some(r) = self.roof.iter().find(|r| r.threads == t) else { return f64::NAN };
        let sh = self.shapes();
        let (m, d, ff) = (m as f64, sh.d_model as f64, sh.d_ff as f64);
        let (qd, kvd) = (sh.q_dim() as f64, sh.kv_dim() as f64);
        let peak = if bits == 16 { r.f32 } else { r.int8 };
        let (bytes, ops) = match op {
            "attention" => {
                let kv = kv as f64;
                // Keys visited: causal prefill sums 1..=m over the last m positions.
                let visits = if m <= 1.0 { kv } else { m * kv - m * (m - 1.0) / 2.0 };
                (2.0 * kv * kvd * 4.0 + 2.0 * m * qd * 4.0, 4.0 * visits * qd)
            }
            "norm" | "residual" => (3.0 * m * d * 4.0, 3.0 * m * d),
            "rope" => (3.0 * m * (qd + 2.0 * kvd) * 4.0, 6.0 * m * (qd + kvd)),
            "silu" => (3.0 * m * ff * 4.0, 6.0 * m * ff),
            "embed" => (m * d * (34.0 / 32.0 + 4.0), m * d),
            "quantize" => (m * k as f64 * 5.0, 3.0 * m * k as f64),
            "prune_select" => (2.0 * m * d * 4.0, m * m.max(2.0).log2()),
            lin => {
                let (n, kk) = sh.linear_shape(lin).map_or((0.0, 0.0), |(n, k)| (n as f64, k as f64));
                let wbytes = match variant {
                    "f16" => 2.0 * n * kk,
                    "w8a16" => n * kk * 34.0 / 32.0,
                    _ => n * kk * 20.0 / 32.0,
                };
                let abytes = if bits == 16 { 4.0 } else { 1.0 };
                (wbytes + m * kk * abytes + m * n * 4.0, 2.0 * m * n * kk)
            }
        };
        (bytes / r.bw).max(ops / peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_interpolates_and_extends() {
        let s = Series { pts: vec![(1.0, 1.0), (16.0, 4.0), (64.0, 10.0)] };
        assert_eq!(s.at(1.0), 1.0);
        assert!((s.at(8.5) - 2.5).abs() < 1e-12);
        assert!((s.at(40.0) - 7.0).abs() < 1e-12);
        assert!((s.at(128.0) - 18.0).abs() < 1e-12);
        assert_eq!(Series { pts: vec![(2.0, 4.0)] }.at(3.0), 6.0);
    }

    #[test]
    fn attention_variant_names() {
        assert_eq!(attention_variant_of(false, false, false), "f32");
        assert_eq!(attention_variant_of(true, true, true), "qk8+pv8+log2");
        assert_eq!(attention_variant_of(false, false, true), "log2");
    }
}
