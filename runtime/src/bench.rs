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
    run_once_at(model, test, 0, st, hooks, seed)
}

/// One timed run of `test` after `depth` tokens were already fed (llama-bench's `-d`): the
/// `depth`-token prefill is not timed (nor profiled), so `tg128` at depth 512 measures decode
/// over a 512-token KV cache, as generation after a prompt does.
pub fn run_once_at(model: &Model, test: Test, depth: usize, st: &mut State, hooks: &dyn Hooks, seed: u64) -> Result<u64, ModelError> {
    let vocab = model.config.vocab_size;
    let mut cache = model.new_cache(depth + test.tokens());
    if depth > 0 {
        let ctx = tokens(depth, vocab, seed ^ 0x5eed);
        let profile = st.profile.clone();
        model.forward(&ctx, &mut cache, st, Logits::Last, hooks)?;
        st.profile = profile;
    }
    let toks = tokens(test.tokens(), vocab, seed);
    let t0 = Instant::now();
    match test {
        Test::Prompt(_) => {
            model.forward(&toks, &mut cache, st, Logits::Last, hooks)?;
        }
        Test::Gen(_) => {
            for &t in &toks {
                model.forward(&[t], &mut cache, st, Logits::Last, hooks)?;
            }
        }
    }
    Ok(t0.elapsed().as_nanos() as u64)
}

/// Warm-up plus `reps` timed runs; `progress(done)` after each timed run.
pub fn run(
    model: &Model,
    test: Test,
    reps: usize,
    hooks: &dyn Hooks,
    progress: impl FnMut(usize),
) -> Result<Vec<u64>, ModelError> {
    run_at(model, test, 0, reps, hooks, progress)
}

/// [`run`] after an untimed `depth`-token prefill per repetition (see [`run_once_at`]).
pub fn run_at(
    model: &Model,
    test: Test,
    depth: usize,
    reps: usize,
    hooks: &dyn Hooks,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u64>, ModelError> {
    let mut st = State::new();
    run_once_at(model, test, depth, &mut st, hooks, 0)?;
    st.profile.reset();
    let mut samples = Vec::with_capacity(reps);
    for r in 0..reps {
        samples.push(run_once_at(model, test, depth, &mut st, hooks, r as u64 + 1)?);
        progress(r + 1);
    }
    if st.profile.enabled() {
        eprint!("{}{} {}", test.name(), depth_suffix(depth), st.profile.report());
    }
    Ok(samples)
}

/// llama-bench's test-name suffix for a depth: `" @ d512"`, empty at depth 0.
pub fn depth_suffix(depth: usize) -> String {
    if depth == 0 {
        String::new()
    } else {
        format!(" @ d{depth}")
    }
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

/// Tokens each layer's KV cache holds after an `n`-token prefill from an empty cache: the
/// tokens that reached the layer (pruning shortens the later layers' caches).
pub fn kept_per_layer(model: &Model, n: usize, hooks: &dyn Hooks) -> Result<Vec<usize>, ModelError> {
    let mut cache = model.new_cache(n);
    let mut st = State::new();
    st.profile = Default::default();
    model.forward(&tokens(n, model.config.vocab_size, 1), &mut cache, &mut st, Logits::Last, hooks)?;
    Ok(cache.layers.iter().map(|l| l.len()).collect())
}

/// Nanosecond samples without and with token dropping.
pub type OffOn = (Vec<u64>, Vec<u64>);

/// Prefill times of an `n`-token prompt with token dropping off and on (`Hooks::set_pruning`),
/// `reps` of each, interleaved (off, on, off, ...) after one warm-up of each so drift on a
/// shared machine hits both alike. `None` when the hooks do not prune. Leaves pruning on.
pub fn pruning_savings(model: &Model, n: usize, reps: usize, hooks: &dyn Hooks) -> Result<Option<OffOn>, ModelError> {
    if !hooks.set_pruning(true) {
        return Ok(None);
    }
    let mut st = State::new();
    st.profile = Default::default();
    let (mut off, mut on) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for r in 0..=reps {
        for (enabled, out) in [(false, &mut off), (true, &mut on)] {
            hooks.set_pruning(enabled);
            let ns = run_once(model, Test::Prompt(n), &mut st, hooks, r as u64 + 1);
            hooks.set_pruning(true);
            if r > 0 {
                out.push(ns?);
            }
        }
    }
    Ok(Some((off, on)))
}
