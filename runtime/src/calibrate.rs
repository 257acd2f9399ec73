//! Calibration statistics: per layer and linear site, what the activations looked like on
//! calibration text (range, percentiles, per-channel absmax) and the static per-tensor scale
//! with channel factors chosen from them for INT8 and INT4. Written as JSON (atomically);
//! the static `tensor` scheme of a plan reads its scales from here.
//!
//! Collection is streaming: [`Collector::observe`] sees each site's input rows as the model
//! runs, keeps per-channel maxima exactly and a bounded reservoir sample of rows for the
//! percentiles and the factor search.

use crate::plan::{write_atomic, Site};
use crate::quant::trip::{self, ChannelFactors};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// 2: factors are chosen per group of input channels (`factor_group`), and each site
/// records its outlier ratio. Schema-1 files (per-channel factors) are rejected: re-run
/// `agq calibrate`.
pub const CALIB_SCHEMA: u32 = 2;

/// Rows kept per site for percentiles and the factor search.
pub const DEFAULT_SAMPLE_ROWS: usize = 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteStats {
    /// Input channels.
    pub k: usize,
    /// Rows (tokens) observed.
    pub rows: u64,
    pub amax: f32,
    /// Percentiles of |x| over the sampled rows.
    pub p99: f32,
    pub p999: f32,
    pub p9999: f32,
    pub channel_absmax: Vec<f32>,
    /// Outlier statistic: max over channels of the per-channel absmax, divided by its
    /// median (1 = every channel has the same range).
    #[serde(default)]
    pub channel_ratio: f32,
    pub int8: ChannelFactors,
    pub int4: ChannelFactors,
}

impl SiteStats {
    pub fn factors(&self, bits: u8) -> Option<&ChannelFactors> {
        match bits {
            8 => Some(&self.int8),
            4 => Some(&self.int4),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerStats {
    pub index: usize,
    pub qkv: SiteStats,
    pub o: SiteStats,
    pub gate_up: SiteStats,
    pub down: SiteStats,
}

impl LayerStats {
    pub fn site(&self, s: Site) -> Option<&SiteStats> {
        match s {
            Site::Qkv => Some(&self.qkv),
            Site::O => Some(&self.o),
            Site::GateUp => Some(&self.gate_up),
            Site::Down => Some(&self.down),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibStats {
    pub schema: u32,
    pub model_sha256: String,
    /// Calibration text file name as given.
    pub text: String,
    pub text_sha256: String,
    /// Tokens the model processed.
    pub tokens: u64,
    /// Largest factor exponent searched.
    pub kmax: u8,
    #[serde(default)]
    /// Input channels sharing one factor exponent (32 = one Q4_1 block: exact fold; 1 =
    /// per channel: the fold re-quantizes the weights).
    pub factor_group: usize,
    pub layers: Vec<LayerStats>,
    pub lm_head: SiteStats,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("{file}: calibrated on the model with sha256 {expected}, but {model} has sha256 {actual}")]
    ModelMismatch { file: String, expected: String, model: String, actual: String },
    #[error("{file}: no statistics for layer {layer} site {site}")]
    Missing { file: String, layer: usize, site: String },
}

impl CalibStats {
    pub fn write(&self, path: &Path) -> Result<(), CalibError> {
        let json = serde_json::to_string(self).expect("stats serialize");
        write_atomic(path, json.as_bytes()).map_err(|e| CalibError::Io { file: path.display().to_string(), source: e })
    }

    /// Reads and checks a statistics file (schema, shapes, factor ranges, scales).
    pub fn read(path: &Path) -> Result<CalibStats, CalibError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CalibError::Io { file: file.clone(), source: e })?;
        let s: CalibStats =
            serde_json::from_str(&text).map_err(|e| CalibError::Invalid { file: file.clone(), msg: e.to_string() })?;
        s.validate(&file)?;
        Ok(s)
    }

    fn validate(&self, file: &str) -> Result<(), CalibError> {
        let bad = |msg: String| CalibError::Invalid { file: file.into(), msg };
        if self.schema != CALIB_SCHEMA {
            return Err(bad(format!(
                "unsupported schema version {} (this agq reads {CALIB_SCHEMA}; re-run `agq calibrate`)",
                self.schema
            )));
        }
        if self.factor_group == 0 {
            return Err(bad("factor_group must be at least 1".into()));
        }
        for (i, l) in self.layers.iter().enumerate() {
            if l.index != i {
                return Err(bad(format!("layers[{i}] has index {} (expected {i})", l.index)));
            }
        }
        let sites = self
            .layers
            .iter()
            .flat_map(|l| Site::LINEAR.into_iter().map(move |s| (format!("layer {} {s}", l.index), l.site(s).unwrap())))
            .chain(std::iter::once(("lm_head".to_string(), &self.lm_head)));
        for (name, st) in sites {
            if st.channel_absmax.len() != st.k {
                return Err(bad(format!("{name}: channel_absmax has {} values for k = {}", st.channel_absmax.len(), st.k)));
            }
            for cf in [&st.int8, &st.int4] {
                if cf.factors.len() != st.k {
                    return Err(bad(format!("{name}: int{} factors have {} values for k = {}", cf.bits, cf.factors.len(), st.k)));
                }
                if let Some(a) = cf.factors.iter().find(|&&a| a > self.kmax) {
                    return Err(bad(format!("{name}: factor exponent {a} exceeds kmax {}", self.kmax)));
                }
                if !(cf.scale.is_finite() && cf.scale >= 0.0) {
                    return Err(bad(format!("{name}: int{} scale {} is not finite and non-negative", cf.bits, cf.scale)));
                }
            }
            if self.factor_group > 1 {
                for cf in [&st.int8, &st.int4] {
                    if cf.factors.chunks(self.factor_group).any(|g| g.iter().any(|&a| a != g[0])) {
                        return Err(bad(format!("{name}: int{} factors differ inside a group of {}", cf.bits, self.factor_group)));
                    }
                }
            }
            if st.int8.bits != 8 || st.int4.bits != 4 {
                return Err(bad(format!("{name}: int8/int4 entries carry bits {}/{}", st.int8.bits, st.int4.bits)));
            }
        }
        Ok(())
    }

    pub fn check_model(&self, file: &Path, model_path: &Path, model_sha256: &str) -> Result<(), CalibError> {
        if self.model_sha256.eq_ignore_ascii_case(model_sha256) {
            Ok(())
        } else {
            Err(CalibError::ModelMismatch {
                file: file.display().to_string(),
                expected: self.model_sha256.clone(),
                model: model_path.display().to_string(),
                actual: model_sha256.into(),
            })
        }
    }

    /// The statistics of a layer site (`layer` ignored for the LM head).
    pub fn site(&self, file: &Path, layer: usize, s: Site) -> Result<&SiteStats, CalibError> {
        let found = if s == Site::LmHead { Some(&self.lm_head) } else { self.layers.get(layer).and_then(|l| l.site(s)) };
        found.ok_or_else(|| CalibError::Missing { file: file.display().to_string(), layer, site: s.to_string() })
    }
}

/// Deterministic xorshift64*, for the reservoir (calibration must be reproducible).
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) % n
    }
}

/// Streaming statistics of one site's input rows.
#[derive(Clone, Debug)]
pub struct SiteAccumulator {
    k: usize,
    rows: u64,
    absmax: Vec<f32>,
    cap: usize,
    sample: Vec<f32>,
    rng: Rng,
}

impl SiteAccumulator {
    pub fn new(k: usize, cap_rows: usize) -> Self {
        SiteAccumulator { k, rows: 0, absmax: vec![0.0; k], cap: cap_rows.max(1), sample: Vec::new(), rng: Rng(0x9e37_79b9_7f4a_7c15) }
    }

    /// Adds `m` rows of `x` (`m x k`).
    pub fn add(&mut self, x: &[f32], m: usize) {
        assert_eq!(x.len(), m * self.k, "rows must be {} wide", self.k);
        for row in x.chunks_exact(self.k.max(1)).take(m) {
            for (a, v) in self.absmax.iter_mut().zip(row) {
                *a = a.max(v.abs());
            }
            let held = self.sample.len() / self.k.max(1);
            if held < self.cap {
                self.sample.extend_from_slice(row);
            } else {
                let j = self.rng.below(self.rows + 1) as usize;
                if j < self.cap {
                    self.sample[j * self.k..(j + 1) * self.k].copy_from_slice(row);
                }
            }
            self.rows += 1;
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Percentiles, and the INT8 and INT4 scale/factor search on the sampled rows (one
    /// factor per `group` input channels).
    pub fn finish(&self, kmax: u8, group: usize) -> SiteStats {
        let m = self.sample.len() / self.k.max(1);
        let mut abs: Vec<f32> = self.sample.iter().map(|v| v.abs()).collect();
        abs.sort_by(f32::total_cmp);
        let pct = |p: f64| if abs.is_empty() { 0.0 } else { abs[((p * (abs.len() - 1) as f64).round() as usize).min(abs.len() - 1)] };
        let amax = self.absmax.iter().fold(0f32, |a, &v| a.max(v));
        SiteStats {
            k: self.k,
            rows: self.rows,
            amax,
            p99: pct(0.99),
            p999: pct(0.999),
            p9999: pct(0.9999),
            channel_absmax: self.absmax.clone(),
            channel_ratio: channel_ratio(&self.absmax),
            int8: trip::search_grouped(&self.sample, m, self.k, 8, kmax, group),
            int4: trip::search_grouped(&self.sample, m, self.k, 4, kmax, group),
        }
    }
}

/// Max over median of per-channel absmax values (0 when all are zero or there are none).
pub fn channel_ratio(absmax: &[f32]) -> f32 {
    let mut v: Vec<f32> = absmax.to_vec();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
    if median > 0.0 {
        v[n - 1] / median
    } else {
        0.0
    }
}

/// Accumulators for every linear site of every layer plus the LM head.
#[derive(Clone, Debug)]
pub struct Collector {
    /// `[layer][qkv, o, gate_up, down]`.
    layers: Vec<[SiteAccumulator; 4]>,
    lm_head: SiteAccumulator,
}

impl Collector {
    /// `k_of(site)` gives each site's input width (n_embd for qkv/o/gate_up/lm_head, n_ff for
    /// down, in LLaMA).
    pub fn new(n_layer: usize, k_of: impl Fn(Site) -> usize, cap_rows: usize) -> Self {
        let acc = |s| SiteAccumulator::new(k_of(s), cap_rows);
        Collector {
            layers: (0..n_layer).map(|_| [acc(Site::Qkv), acc(Site::O), acc(Site::GateUp), acc(Site::Down)]).collect(),
            lm_head: acc(Site::LmHead),
        }
    }

    fn slot(s: Site) -> usize {
        match s {
            Site::Qkv => 0,
            Site::O => 1,
            Site::GateUp => 2,
            Site::Down => 3,
            _ => panic!("no calibration statistics for site {s}"),
        }
    }

    /// Records the input rows of a linear site.
    pub fn observe(&mut self, layer: usize, s: Site, x: &[f32], m: usize) {
        if s == Site::LmHead {
            self.lm_head.add(x, m);
        } else {
            self.layers[layer][Self::slot(s)].add(x, m);
        }
    }

    /// Runs the searches (the expensive part) with one factor per Q4_1 block column
    /// ([`trip::GROUP`]) and assembles the file contents.
    pub fn finish(&self, kmax: u8, model_sha256: &str, text: &str, text_sha256: &str, tokens: u64) -> CalibStats {
        self.finish_grouped(kmax, trip::GROUP, model_sha256, text, text_sha256, tokens)
    }

    /// [`Collector::finish`] with `group` input channels per factor (1 = per channel).
    pub fn finish_grouped(
        &self,
        kmax: u8,
        group: usize,
        model_sha256: &str,
        text: &str,
        text_sha256: &str,
        tokens: u64,
    ) -> CalibStats {
        use rayon::prelude::*;
        let layers = self
            .layers
            .par_iter()
            .enumerate()
            .map(|(index, a)| LayerStats {
                index,
                qkv: a[0].finish(kmax, group),
                o: a[1].finish(kmax, group),
                gate_up: a[2].finish(kmax, group),
                down: a[3].finish(kmax, group),
            })
            .collect();
        CalibStats {
            schema: CALIB_SCHEMA,
            model_sha256: model_sha256.into(),
            text: text.into(),
            text_sha256: text_sha256.into(),
            tokens,
            kmax,
            factor_group: group,
            layers,
            lm_head: self.lm_head.finish(kmax, group),
        }
    }
}

/// `model::Hooks` that records every linear site's input rows and otherwise runs the
/// model's float path.
pub struct CalibHooks {
    collector: std::sync::Mutex<Collector>,
}

impl CalibHooks {
    pub fn new(collector: Collector) -> Self {
        CalibHooks { collector: std::sync::Mutex::new(collector) }
    }

    pub fn into_collector(self) -> Collector {
        self.collector.into_inner().unwrap()
    }
}

impl crate::model::Hooks for CalibHooks {
    fn linear(&self, call: crate::model::SiteCall<'_>, lin: &crate::model::Linear, x: &[f32], y: &mut [f32]) {
        let m = x.len() / lin.k().max(1);
        self.collector.lock().unwrap().observe(call.layer.unwrap_or(0), call.site, x, m);
        lin.forward_f32(x, y)
    }
}

/// Runs `tokens` through `model` in chunks of `ctx` (fresh cache each, like the perplexity
/// protocol) and collects statistics; `progress(done_tokens)` after each chunk. The LM head
/// sees the second half of each chunk.
pub fn collect(
    model: &crate::model::Model,
    tokens: &[u32],
    ctx: usize,
    cap_rows: usize,
    mut progress: impl FnMut(usize),
) -> Result<Collector, crate::model::ModelError> {
    let cfg = &model.config;
    let (d, ff) = (cfg.n_embd, cfg.n_ff);
    let k_of = |s: Site| if s == Site::Down { ff } else { d };
    let hooks = CalibHooks::new(Collector::new(cfg.n_layer, k_of, cap_rows));
    let ctx = ctx.max(2);
    let mut cache = model.new_cache(ctx);
    let mut st = crate::model::State::new();
    let mut done = 0;
    for chunk in tokens.chunks(ctx) {
        cache.clear();
        model.forward(chunk, &mut cache, &mut st, crate::model::Logits::From(chunk.len() / 2), &hooks)?;
        done += chunk.len();
        progress(done);
    }
    Ok(hooks.into_collector())
}
