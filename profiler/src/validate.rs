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
    /// Where `predicted_s` comes from: `profile` (the file as stored) or `fresh-ops` (the
    /// in-step records re-measured during this run, interleaved with the plans' runs).
    #[serde(default)]
    pub prediction_basis: String,
    /// With `fresh-ops`: the share within ±10% of the predictions from the stored profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_within_10pct_from_profile: Option<f64>,
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
    /// With ops re-measured in the run (`--fresh-ops`), `predicted_s` comes from them; this is
    /// the prediction from the profile file as stored, for comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_from_profile_s: Option<f64>,
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
        if self.cases.iter().all(|c| c.predicted_from_profile_s.is_some()) && !self.cases.is_empty() {
            self.share_within_10pct_from_profile = Some(share_within(
                self.cases.iter().map(|c| error_pct(c.predicted_from_profile_s.unwrap_or(f64::NAN), c.measured_s)),
            ));
        }
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

/// Times every plan `reps` times, interleaved: one untimed warm-up round, then rounds in
/// which each plan runs once in the given order (ABCABC), so a change in the host's speed
/// during the run hits every plan alike instead of whichever plan ran at that moment. Each
/// run is a prefill of `prompt_tokens` from an empty cache, then `gen_tokens` decode steps
/// (as [`measure_plan`]); every plan keeps its own cache (an INT8 cache stays INT8).
/// `before_round(r)` runs before timed round `r` (1-based): the validation's interleaved
/// re-measurement of the ops. `progress(done)` after each timed plan run. Plans run on
/// `pool`.
pub fn measure_plans_interleaved<E: From<runtime::model::ModelError>>(
    pool: &rayon::ThreadPool,
    plans: &[(&runtime::model::Model, &dyn runtime::model::Hooks)],
    w: &crate::predict::Workload,
    reps: usize,
    clock: crate::measure::Clock,
    mut before_round: impl FnMut(usize) -> Result<(), E>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<PlanTiming>, E> {
    use runtime::model::{Logits, State};
    let n = (w.prompt_tokens + w.gen_tokens).max(1);
    let mut caches: Vec<_> = plans.iter().map(|(m, _)| m.new_cache(n)).collect();
    let mut states: Vec<State> = plans.iter().map(|_| State::new()).collect();
    let mut out = vec![PlanTiming { prefill_s: Vec::new(), decode_s: Vec::new() }; plans.len()];
    let mut done = 0;
    for r in 0..=reps {
        if r > 0 {
            before_round(r)?;
        }
        for (i, (model, hooks)) in plans.iter().enumerate() {
            let toks = runtime::bench::tokens(w.prompt_tokens + w.gen_tokens, model.config.vocab_size, r as u64 + 1);
            let (cache, st) = (&mut caches[i], &mut states[i]);
            cache.clear();
            let (t0, t1, t2) = pool.install(|| -> Result<_, runtime::model::ModelError> {
                let t0 = clock.now();
                if w.prompt_tokens > 0 {
                    model.forward(&toks[..w.prompt_tokens], cache, st, Logits::Last, *hooks)?;
                }
                let t1 = clock.now();
                for &t in &toks[w.prompt_tokens..] {
                    model.forward(&[t], cache, st, Logits::Last, *hooks)?;
                }
                Ok((t0, t1, clock.now()))
            })?;
            if r > 0 {
                out[i].prefill_s.push(t1 - t0);
                out[i].decode_s.push(t2 - t1);
                done += 1;
                progress(done);
            }
        }
    }
    Ok(out)
}

/// `profile` with the records in `fresh` (key -> samples, seconds per call) replacing the
/// stored ones of the same key (added when absent): the profile as the host runs now.
pub fn with_fresh_records(
    profile: &crate::profile::DeviceProfile,
    fresh: &std::collections::BTreeMap<crate::profile::RecordKey, Vec<f64>>,
) -> crate::profile::DeviceProfile {
    let mut p = profile.clone();
    for (k, samples) in fresh {
        let Some(sum) = crate::stats::Summary::of(samples) else { continue };
        let i = match p.records.iter().position(|r| r.key() == *k) {
            Some(i) => i,
            None => {
                let mut r = p.records.iter().find(|r| r.op == k.op).cloned().unwrap_or_else(|| crate::profile::Record {
                    op: k.op.clone(),
                    variant: k.variant.clone(),
                    isa: String::new(),
                    bits: k.bits,
                    m: k.m,
                    kv: k.kv,
                    n: 0,
                    k: k.k,
                    threads: k.threads,
                    median_s: 0.0,
                    p10_s: 0.0,
                    p90_s: 0.0,
                    samples: 0,
                    cv: 0.0,
                    counters: Default::default(),
                });
                (r.op, r.variant, r.bits, r.m, r.kv, r.k, r.threads) =
                    (k.op.clone(), k.variant.clone(), k.bits, k.m, k.kv, k.k, k.threads);
                p.records.push(r);
                p.records.len() - 1
            }
        };
        let r = &mut p.records[i];
        (r.median_s, r.p10_s, r.p90_s, r.samples, r.cv) = (sum.median, sum.p10, sum.p90, sum.samples, sum.cv.unwrap_or(0.0));
        r.counters.clear();
    }
    p
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
