//! The predictor's validation report (`agq profile --validate --json`): predicted vs
//! measured latency per plan and phase, and the additivity check (sum of per-op medians vs
//! a measured whole block). The reports crate reads it for its predictor figure.

use serde::{Deserialize, Serialize};

/// Predictions within this many percent of the measurement count as good.
pub const WITHIN_PCT: f64 = 10.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub device_slug: String,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub threads: usize,
    pub cases: Vec<Case>,
    /// Share of `cases` with |error_pct| <= 10, in percent (0-100).
    pub share_within_10pct: f64,
    pub additivity: Vec<Additivity>,
    /// The profile file the predictions came from.
    #[serde(default)]
    pub profile: String,
    /// Timed repetitions per measured case (median taken).
    #[serde(default)]
    pub repetitions: usize,
    /// Free text: machine load or other conditions of the run.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub plan: String,
    /// `prefill` or `decode`.
    pub phase: String,
    pub predicted_s: f64,
    pub measured_s: f64,
    /// (predicted - measured) / measured x 100.
    pub error_pct: f64,
    /// p10 / p90 of the measured repetitions.
    #[serde(default)]
    pub measured_p10_s: f64,
    #[serde(default)]
    pub measured_p90_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Additivity {
    pub m: usize,
    pub threads: usize,
    pub sum_of_ops_s: f64,
    pub block_s: f64,
    /// (sum_of_ops - block) / block x 100.
    pub error_pct: f64,
    /// The block's plan (`fp16`, `w4a8`, ...).
    #[serde(default)]
    pub variant: String,
    /// KV length of the block's attention.
    #[serde(default)]
    pub kv: usize,
}

/// Signed relative error in percent.
pub fn error_pct(predicted: f64, measured: f64) -> f64 {
    (predicted - measured) / measured * 100.0
}

/// Percentage of `errors` within ±`WITHIN_PCT` (0 for none).
pub fn share_within(errors: impl IntoIterator<Item = f64>) -> f64 {
    let (mut n, mut ok) = (0usize, 0usize);
    for e in errors {
        n += 1;
        if e.abs() <= WITHIN_PCT {
            ok += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        ok as f64 * 100.0 / n as f64
    }
}

impl ValidationReport {
    /// Recomputes `share_within_10pct` from the cases.
    pub fn update_share(&mut self) {
        self.share_within_10pct = share_within(self.cases.iter().map(|c| c.error_pct));
    }
}

/// Measured seconds of one plan: each repetition is a prefill of `prompt_tokens` from an
/// empty cache (logits of the last token), then `gen_tokens` single-token decode steps that
/// continue it — exactly what `predict` predicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanTiming {
    pub prefill_s: Vec<f64>,
    pub decode_s: Vec<f64>,
}

/// Times `reps` repetitions (after one untimed warm-up) of prefill + decode on the current
/// rayon pool (install the pool with the thread count first).
pub fn measure_plan(
    model: &runtime::model::Model,
    hooks: &dyn runtime::model::Hooks,
    w: &crate::predict::Workload,
    reps: usize,
    progress: impl FnMut(usize),
) -> Result<PlanTiming, runtime::model::ModelError> {
    measure_plan_with(model, hooks, w, reps, crate::measure::Clock::Wall, progress)
}

/// [`measure_plan`] with a choice of clock (`Clock::Cpu` for a profile measured that way).
pub fn measure_plan_with(
    model: &runtime::model::Model,
    hooks: &dyn runtime::model::Hooks,
    w: &crate::predict::Workload,
    reps: usize,
    clock: crate::measure::Clock,
    mut progress: impl FnMut(usize),
) -> Result<PlanTiming, runtime::model::ModelError> {
    use runtime::model::{Logits, State};
    let vocab = model.config.vocab_size;
    let mut st = State::new();
    let mut cache = model.new_cache((w.prompt_tokens + w.gen_tokens).max(1));
    let mut out = PlanTiming { prefill_s: Vec::new(), decode_s: Vec::new() };
    for r in 0..=reps {
        let toks = runtime::bench::tokens(w.prompt_tokens + w.gen_tokens, vocab, r as u64 + 1);
        cache.clear();
        let t0 = clock.now();
        if w.prompt_tokens > 0 {
            model.forward(&toks[..w.prompt_tokens], &mut cache, &mut st, Logits::Last, hooks)?;
        }
        let t1 = clock.now();
        for &t in &toks[w.prompt_tokens..] {
            model.forward(&[t], &mut cache, &mut st, Logits::Last, hooks)?;
        }
        let t2 = clock.now();
        if r > 0 {
            out.prefill_s.push(t1 - t0);
            out.decode_s.push(t2 - t1);
            progress(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_and_error() {
        assert_eq!(error_pct(110.0, 100.0), 10.0);
        assert_eq!(share_within([1.0, -10.0, 10.5, -30.0]), 50.0);
        assert_eq!(share_within(std::iter::empty()), 0.0);
    }
}
