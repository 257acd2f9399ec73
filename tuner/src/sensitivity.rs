//! Sensitivity: what each candidate change costs in quality, measured as the KL divergence
//! of next-token distributions against the reference (`w4a16`) model on calibration text.
//!
//! Cheap by construction: per calibration chunk the reference run records every linear
//! site's output; a candidate that changes layer `l` and later replays layers `0..l` from
//! the recording (the same inputs give the same outputs) and computes only `l..n`. Only the
//! second half of each chunk is scored (as in the perplexity protocol, and pruning never
//! touches it), so KL and the perplexity validation see the same positions.

use crate::divergence::{kl_and_dnll, log_softmax_rows};
use crate::TuneError;
use runtime::gguf::TensorSource;
use runtime::model::{AttnOps, FloatHooks, Hooks, Linear, Logits, Model, SiteCall, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{Plan, Site};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Mean KL (nats per scored token) and mean NLL change of one measured change.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitResult {
    pub kl: f64,
    pub dnll: f64,
    pub tokens: usize,
}

fn slot(site: Site) -> usize {
    match site {
        Site::Qkv => 0,
        Site::O => 1,
        Site::GateUp => 2,
        Site::Down => 3,
        _ => unreachable!("layer linear sites only"),
    }
}

/// Float run that keeps every layer's linear outputs.
struct Recorder {
    outs: Mutex<Vec<Vec<f32>>>,
}

impl Hooks for Recorder {
    fn linear(&self, call: SiteCall<'_>, lin: &Linear, x: &[f32], y: &mut [f32]) {
        FloatHooks.linear(call, lin, x, y);
        if let Some(l) = call.layer {
            let mut o = self.outs.lock().unwrap();
            let i = l * 4 + slot(call.site);
            if o.len() <= i {
                o.resize(i + 1, Vec::new());
            }
            o[i].clear();
            o[i].extend_from_slice(y);
        }
    }
}

/// Replays layers `< from` from a recording, runs the rest through `inner`. Layer 0's qkv
/// always goes to `inner`: the plan executor starts its per-forward bookkeeping there.
struct Replay<'a> {
    inner: &'a dyn Hooks,
    from: usize,
    outs: &'a [Vec<f32>],
}

impl Hooks for Replay<'_> {
    fn linear(&self, call: SiteCall<'_>, lin: &Linear, x: &[f32], y: &mut [f32]) {
        match call.layer {
            Some(l) if l < self.from && !(l == 0 && call.site == Site::Qkv) => {
                let rec = &self.outs[l * 4 + slot(call.site)];
                assert_eq!(rec.len(), y.len(), "replayed layer {l} {} has another shape", call.site);
                y.copy_from_slice(rec);
            }
            _ => self.inner.linear(call, lin, x, y),
        }
    }
    fn attn_ops(&self, layer: usize) -> &dyn AttnOps {
        self.inner.attn_ops(layer)
    }
    fn wants_sink(&self, layer: usize) -> bool {
        self.inner.wants_sink(layer)
    }
    fn prune(&self, layer: usize, rows: &[usize], positions: &[u32], sink: &[f32]) -> Option<Vec<usize>> {
        self.inner.prune(layer, rows, positions, sink)
    }
}

/// Runs candidates against the reference plan on a fixed set of token chunks.
pub struct Calibrator<'a> {
    pub model: &'a Model,
    pub src: &'a dyn TensorSource,
    pub chunks: Vec<Vec<u32>>,
}

/// A candidate to measure: a plan that differs from the reference from layer `first` on.
pub struct Job {
    pub key: String,
    pub plan: Plan,
    pub first: usize,
}

impl Calibrator<'_> {
    /// Measures every job on every chunk; `progress(done, total)` after each forward.
    pub fn measure(&self, jobs: &[Job], mut progress: impl FnMut(usize, usize)) -> Result<Vec<UnitResult>, TuneError> {
        let vocab = self.model.config.vocab_size;
        let mut sums = vec![(0.0f64, 0.0f64, 0usize); jobs.len()];
        let total = self.chunks.len() * (jobs.len() + 1);
        let mut done = 0;
        let hooks: Vec<PlanHooks> = jobs
            .iter()
            .map(|j| PlanHooks::build(self.model, self.src, &j.plan, &j.key, None, Prunable::FirstHalf))
            .collect::<Result<_, _>>()
            .map_err(|e| TuneError::Runtime(e.to_string()))?;
        let mut st = State::new();
        for chunk in &self.chunks {
            let ctx = chunk.len();
            let first = ctx / 2;
            let targets: Vec<u32> = chunk[first + 1..].to_vec();
            let rows = targets.len();
            let mut cache = self.model.new_cache(ctx);
            let rec = Recorder { outs: Mutex::new(Vec::new()) };
            self.model.forward(chunk, &mut cache, &mut st, Logits::From(first), &rec).map_err(rt)?;
            let mut ref_lp = st.logits()[..rows * vocab].to_vec();
            log_softmax_rows(&mut ref_lp, vocab);
            let outs = rec.outs.into_inner().unwrap();
            done += 1;
            progress(done, total);
            for (j, (job, h)) in jobs.iter().zip(&hooks).enumerate() {
                cache.clear();
                let replay = Replay { inner: h, from: job.first, outs: &outs };
                self.model.forward(chunk, &mut cache, &mut st, Logits::From(first), &replay).map_err(rt)?;
                if st.logit_rows.len() != ctx - first {
                    return Err(TuneError::Runtime(format!("{}: scored rows were pruned", job.key)));
                }
                let (kl, d) = kl_and_dnll(&ref_lp, &st.logits()[..rows * vocab], vocab, &targets);
                sums[j].0 += kl;
                sums[j].1 += d;
                sums[j].2 += rows;
                done += 1;
                progress(done, total);
            }
        }
        Ok(sums.into_iter().map(|(k, d, n)| UnitResult { kl: k / n as f64, dnll: d / n as f64, tokens: n }).collect())
    }
}

fn rt(e: runtime::model::ModelError) -> TuneError {
    TuneError::Runtime(e.to_string())
}

/// Sensitivity results on disk, keyed by everything that determines them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cache {
    /// Model sha256, calibration text sha256 and the protocol, as one string.
    pub key: String,
    pub units: BTreeMap<String, UnitResult>,
    /// Held-out reference runs: plan name -> per-token NLLs.
    #[serde(default)]
    pub heldout: BTreeMap<String, Vec<f64>>,
}

impl Cache {
    /// `dir/sens-<16 hex of sha256(key)>.json`.
    pub fn path(dir: &Path, key: &str) -> PathBuf {
        let h = runtime::hash::bytes_sha256(key.as_bytes());
        dir.join(format!("sens-{}.json", &h[..16]))
    }

    /// The cache for `key`, empty when missing, unreadable or for another key.
    pub fn load(dir: &Path, key: &str) -> Cache {
        let fresh = Cache { key: key.to_string(), ..Default::default() };
        let Ok(text) = std::fs::read_to_string(Cache::path(dir, key)) else { return fresh };
        match serde_json::from_str::<Cache>(&text) {
            Ok(c) if c.key == key => c,
            _ => fresh,
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), TuneError> {
        std::fs::create_dir_all(dir).map_err(|e| TuneError::Io { file: dir.display().to_string(), source: e })?;
        let path = Cache::path(dir, &self.key);
        let json = serde_json::to_string(self).expect("serialisable");
        runtime::plan::write_atomic(&path, json.as_bytes()).map_err(|e| TuneError::Io { file: path.display().to_string(), source: e })
    }
}
