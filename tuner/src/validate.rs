//! Real measurements of a plan: perplexity on held-out chunks (per-token NLLs, so two plans
//! can be compared on the same tokens) and prefill/decode timing, interleaved across plans
//! so that machine load hits them alike.

use crate::backoff::{Evaluator, Measured};
use crate::latency::Latency;
use crate::TuneError;
use runtime::bench::{run_once, Test};
use runtime::eval::{score_chunk, NllSums};
use runtime::gguf::TensorSource;
use runtime::model::{FloatHooks, Hooks, Model, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::Plan;

/// The executor for `plan` on `model`: float plans run plain, others through the plan
/// runtime. `prunable` is `FirstHalf` for perplexity, `All` for timing a prompt.
pub fn hooks_for(model: &Model, src: &dyn TensorSource, plan: &Plan, prunable: Prunable) -> Result<Box<dyn Hooks>, TuneError> {
    if runtime::model::float_plan_weights(plan).is_ok() && plan.layers.iter().all(|l| {
        runtime::plan::Site::LINEAR.iter().all(|&s| l.site(s).variant == runtime::plan::VariantChoice::Auto)
    }) {
        return Ok(Box::new(FloatHooks));
    }
    let name = plan.name.clone().unwrap_or_else(|| "plan".into());
    Ok(Box::new(PlanHooks::build(model, src, plan, &name, None, prunable).map_err(|e| TuneError::Runtime(e.to_string()))?))
}

/// Per-token NLLs of the scored halves of `chunks`.
pub fn chunk_nlls(model: &Model, hooks: &dyn Hooks, chunks: &[Vec<u32>], mut progress: impl FnMut(usize)) -> Result<Vec<f64>, TuneError> {
    let mut st = State::new();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let mut cache = model.new_cache(c.len());
        out.extend(score_chunk(model, c, &mut st, &mut cache, hooks).map_err(|e| TuneError::Runtime(e.to_string()))?);
        progress(i + 1);
    }
    Ok(out)
}

/// Perplexity and its standard error from per-token NLLs.
pub fn ppl_of(nlls: &[f64]) -> Measured {
    let mut s = NllSums::default();
    nlls.iter().for_each(|&v| s.add(v));
    Measured { ppl: s.ppl(), stderr: s.ppl_stderr() }
}

/// Mean paired NLL difference `a - b` and its standard error (same tokens).
pub fn paired_delta(a: &[f64], b: &[f64]) -> (f64, f64) {
    let n = a.len().min(b.len());
    if n < 2 {
        return (f64::NAN, f64::NAN);
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    (mean, (var / n as f64).sqrt())
}

/// Held-out perplexity of Q4_1 plans on one model.
pub struct HeldOut<'a> {
    pub model: &'a Model,
    pub src: &'a dyn TensorSource,
    pub chunks: &'a [Vec<u32>],
    /// Called with a message before each evaluation (progress display).
    pub on_eval: Box<dyn FnMut(&str) + 'a>,
    pub evals: usize,
}

impl Evaluator for HeldOut<'_> {
    fn evaluate(&mut self, plan: &Plan) -> Result<Measured, TuneError> {
        self.evals += 1;
        (self.on_eval)(&format!("held-out eval {} ({} chunks)", self.evals, self.chunks.len()));
        let h = hooks_for(self.model, self.src, plan, Prunable::FirstHalf)?;
        let nlls = chunk_nlls(self.model, &*h, self.chunks, |_| {})?;
        Ok(ppl_of(&nlls))
    }
}

/// A plan ready to time: the model it runs on and its executor (built with `Prunable::All`).
pub struct Timed<'a> {
    pub model: &'a Model,
    pub hooks: Box<dyn Hooks + 'a>,
}

/// Median prefill (`prompt` tokens) and decode (`gen` tokens) seconds of each plan, after one
/// warm-up each; repetitions are interleaved across plans.
pub fn time_plans(plans: &[Timed<'_>], prompt: usize, gen: usize, reps: usize, mut progress: impl FnMut(usize, usize)) -> Result<Vec<Latency>, TuneError> {
    let tests = [Test::Prompt(prompt), Test::Gen(gen)];
    let mut st = State::new();
    let mut samples = vec![[Vec::new(), Vec::new()]; plans.len()];
    let total = (reps + 1) * plans.len();
    let mut done = 0;
    for r in 0..=reps {
        for (i, p) in plans.iter().enumerate() {
            for (t, test) in tests.iter().enumerate() {
                if test.tokens() == 0 {
                    continue;
                }
                let ns = run_once(p.model, *test, &mut st, &*p.hooks, r as u64).map_err(|e| TuneError::Runtime(e.to_string()))?;
                if r > 0 {
                    samples[i][t].push(ns as f64 * 1e-9);
                }
            }
            done += 1;
            progress(done, total);
        }
    }
    Ok(samples
        .into_iter()
        .map(|[p, d]| Latency { prefill_s: median(p), decode_s: median(d) })
        .collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
