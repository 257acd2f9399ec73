//! Perplexity with llama.cpp's protocol: the token stream is cut into consecutive chunks of
//! `ctx` tokens, each chunk is run from an empty cache, and only the second half is scored:
//! logits at chunk positions `ctx/2 .. ctx-2` predict tokens `ctx/2+1 .. ctx-1`
//! (`ctx - 1 - ctx/2` tokens per chunk, as llama.cpp's `perplexity` counts them). No BOS is
//! inserted unless the tokenizer asks for one (SmolLM2 does not).

use crate::model::{simd, Hooks, Logits, Model, ModelError, State};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the text has {tokens} tokens, fewer than one chunk of {ctx}")]
    TooShort { tokens: usize, ctx: usize },
    #[error("--ctx {ctx} is invalid: {why}")]
    BadCtx { ctx: usize, why: String },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The outcome of a perplexity run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PplResult {
    pub ppl: f64,
    /// Standard error of the perplexity (delta method, as llama.cpp prints it).
    pub ppl_stderr: f64,
    pub nll_mean: f64,
    pub chunks: usize,
    pub tokens_scored: usize,
    pub ctx: usize,
    pub seconds: f64,
    /// Tokens run through the model per second (all chunk tokens, not only scored ones).
    pub tokens_per_second: f64,
}

/// Checks `ctx` against the model and returns how many chunks the tokens hold.
pub fn chunk_count(n_tokens: usize, ctx: usize, model_ctx: usize) -> Result<usize, EvalError> {
    let bad = |why: String| EvalError::BadCtx { ctx, why };
    if ctx < 8 {
        return Err(bad("must be at least 8".into()));
    }
    if !ctx.is_multiple_of(2) {
        return Err(bad("must be even (the second half is scored)".into()));
    }
    if ctx > model_ctx {
        return Err(bad(format!("exceeds the model's training context of {model_ctx}")));
    }
    if n_tokens < ctx {
        return Err(EvalError::TooShort { tokens: n_tokens, ctx });
    }
    Ok(n_tokens / ctx)
}

/// Running sums of the negative log-likelihood.
#[derive(Clone, Copy, Debug, Default)]
pub struct NllSums {
    pub sum: f64,
    pub sum2: f64,
    pub count: usize,
}

impl NllSums {
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }
    pub fn ppl(&self) -> f64 {
        (self.sum / self.count.max(1) as f64).exp()
    }
    /// llama.cpp's estimate: `ppl * sqrt(var(nll) / (count - 1))`.
    pub fn ppl_stderr(&self) -> f64 {
        let n = self.count as f64;
        if self.count < 2 {
            return f64::NAN;
        }
        let mean = self.sum / n;
        let var = self.sum2 / n - mean * mean;
        if var > 0.0 {
            self.ppl() * (var / (n - 1.0)).sqrt()
        } else {
            0.0
        }
    }
}

/// `-log softmax(logits)[target]`, the exponentials in f32 (vectorised) summed in f64.
pub fn nll(logits: &[f32], target: u32, scratch: &mut Vec<f32>) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    scratch.clear();
    scratch.extend_from_slice(logits);
    let sum = simd::exp_shifted_sum(scratch, max) as f64;
    sum.ln() + max as f64 - logits[target as usize] as f64
}

/// Scores one chunk; returns the NLL of each scored token in order.
pub fn score_chunk(
    model: &Model,
    chunk: &[u32],
    st: &mut State,
    cache: &mut crate::model::KvCache,
    hooks: &dyn Hooks,
) -> Result<Vec<f64>, EvalError> {
    let ctx = chunk.len();
    let first = ctx / 2;
    cache.clear();
    model.forward(chunk, cache, st, Logits::From(first), hooks)?;
    let logits = st.logits();
    let vocab = model.config.vocab_size;
    let rows = &st.logit_rows;
    // The scored half is never pruned: every row from `first` must be present.
    assert!(rows.len() == ctx - first && rows.iter().enumerate().all(|(i, &r)| r == first + i), "scored rows were pruned");
    let nlls: Vec<f64> = (0..ctx - 1 - first)
        .into_par_iter()
        .map_init(Vec::new, |scratch, i| nll(&logits[i * vocab..(i + 1) * vocab], chunk[first + i + 1], scratch))
        .collect();
    Ok(nlls)
}

/// Perplexity over the first `max_chunks` (or all) chunks. `progress(done, total, sums)` is
/// called after each chunk.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    ctx: usize,
    max_chunks: Option<usize>,
    hooks: &dyn Hooks,
    mut progress: impl FnMut(usize, usize, &NllSums),
) -> Result<PplResult, EvalError> {
    let avail = chunk_count(tokens.len(), ctx, model.config.n_ctx_train)?;
    let chunks = max_chunks.map_or(avail, |c| c.min(avail));
    let mut st = State::new();
    let mut cache = model.new_cache(ctx);
    let mut sums = NllSums::default();
    let t0 = Instant::now();
    for c in 0..chunks {
        for v in score_chunk(model, &tokens[c * ctx..(c + 1) * ctx], &mut st, &mut cache, hooks)? {
            sums.add(v);
        }
        progress(c + 1, chunks, &sums);
    }
    let seconds = t0.elapsed().as_secs_f64();
    if st.profile.enabled() {
        eprint!("{}", st.profile.report());
    }
    Ok(PplResult {
        ppl: sums.ppl(),
        ppl_stderr: sums.ppl_stderr(),
        nll_mean: sums.sum / sums.count.max(1) as f64,
        chunks,
        tokens_scored: sums.count,
        ctx,
        seconds,
        tokens_per_second: (chunks * ctx) as f64 / seconds,
    })
}
