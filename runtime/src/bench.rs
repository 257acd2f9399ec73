//! llama-bench-style throughput tests. `pp N`: process an N-token prompt from an empty cache
//! (logits for the last token only). `tg N`: from an empty cache, decode N tokens one at a
//! time (llama-bench feeds one start token and then N single-token steps; the tokens are
//! pseudo-random, since sampling is not what is timed). Each test runs once untimed
//! (warm-up), then `reps` timed repetitions on a fresh cache.

use crate::model::{Hooks, Logits, Model, ModelError, State};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    Prompt(usize),
    Gen(usize),
}

impl Test {
    /// llama-bench's name: `pp512`, `tg128`.
    pub fn name(&self) -> String {
        match self {
            Test::Prompt(n) => format!("pp{n}"),
            Test::Gen(n) => format!("tg{n}"),
        }
    }
    pub fn tokens(&self) -> usize {
        match self {
            Test::Prompt(n) | Test::Gen(n) => *n,
        }
    }
}

/// Deterministic pseudo-random token ids in `0..vocab` (splitmix64 from `seed`).
pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            ((z ^ (z >> 31)) % vocab as u64) as u32
        })
        .collect()
}

/// One timed run of `test` in nanoseconds.
pub fn run_once(model: &Model, test: Test, st: &mut State, hooks: &dyn Hooks, seed: u64) -> Result<u64, ModelError> {
    let vocab = model.config.vocab_size;
    match test {
        Test::Prompt(n) => {
            let toks = tokens(n, vocab, seed);
            let mut cache = model.new_cache(n);
            let t0 = Instant::now();
            model.forward(&toks, &mut cache, st, Logits::Last, hooks)?;
            Ok(t0.elapsed().as_nanos() as u64)
        }
        Test::Gen(n) => {
            let toks = tokens(n, vocab, seed);
            let mut cache = model.new_cache(n);
            let t0 = Instant::now();
            for &t in &toks {
                model.forward(&[t], &mut cache, st, Logits::Last, hooks)?;
            }
            Ok(t0.elapsed().as_nanos() as u64)
        }
    }
}

/// Warm-up plus `reps` timed runs; `progress(done)` after each timed run.
pub fn run(
    model: &Model,
    test: Test,
    reps: usize,
    hooks: &dyn Hooks,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u64>, ModelError> {
    let mut st = State::new();
    run_once(model, test, &mut st, hooks, 0)?;
    st.profile.reset();
    let mut samples = Vec::with_capacity(reps);
    for r in 0..reps {
        samples.push(run_once(model, test, &mut st, hooks, r as u64 + 1)?);
        progress(r + 1);
    }
    if st.profile.enabled() {
        eprint!("{} {}", test.name(), st.profile.report());
    }
    Ok(samples)
}

/// Mean and sample standard deviation (0 for one sample), as llama-bench reports them.
pub fn mean_stddev(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() < 2 { 0.0 } else { (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() };
    (mean, sd)
}
