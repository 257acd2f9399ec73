//! Text generation: prefill the prompt, then decode one token at a time with greedy or
//! seeded sampling, streaming text as soon as it forms complete UTF-8.

use crate::model::{Hooks, Logits, Model, ModelError, State};
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the prompt is empty (no tokens)")]
    EmptyPrompt,
    #[error("prompt of {prompt} tokens plus {n} new ones exceeds the model context of {ctx}")]
    TooLong { prompt: usize, n: usize, ctx: usize },
    #[error("invalid sampling option: {0}")]
    BadSampling(String),
    #[error("the plan pruned the last prompt token, whose logits generation needs")]
    LastTokenPruned,
}

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax, ties to the lowest id).
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1 = off.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

/// A seeded sampler (splitmix64; reproducible across runs and platforms).
pub struct Sampler {
    cfg: SamplerConfig,
    state: u64,
    cand: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Sampler, GenerateError> {
        if !(cfg.temperature >= 0.0 && cfg.temperature.is_finite()) {
            return Err(GenerateError::BadSampling(format!("temperature {} must be >= 0", cfg.temperature)));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(GenerateError::BadSampling(format!("top-p {} must be in (0, 1]", cfg.top_p)));
        }
        let state = cfg.seed;
        Ok(Sampler { cfg, state, cand: Vec::new() })
    }

    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let argmax = || {
            let mut best = 0usize;
            for (i, &v) in logits.iter().enumerate() {
                if v > logits[best] {
                    best = i;
                }
            }
            best as u32
        };
        if self.cfg.temperature == 0.0 {
            return argmax();
        }
        let t = self.cfg.temperature;
        self.cand.clear();
        self.cand.extend(logits.iter().enumerate().map(|(i, &v)| (v / t, i as u32)));
        // Highest first, ties by id, so the order is deterministic.
        let by = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if self.cfg.top_k > 0 && self.cfg.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(self.cfg.top_k - 1, by);
            self.cand.truncate(self.cfg.top_k);
        }
        self.cand.sort_by(by);
        let max = self.cand[0].0;
        let mut probs: Vec<f64> = self.cand.iter().map(|c| ((c.0 - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        let mut keep = probs.len();
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        let mass: f64 = probs[..keep].iter().sum();
        let mut u = self.uniform() * mass;
        for (i, p) in probs[..keep].iter().enumerate() {
            u -= p;
            if u < 0.0 {
                return self.cand[i].1;
            }
        }
        self.cand[keep - 1].1
    }
}

/// Turns token bytes into text pieces, holding back an incomplete UTF-8 sequence until the
/// next token completes it.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes; returns the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let ok = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..ok]).expect("valid prefix"));
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..ok);
                            return out;
                        }
                        // Invalid bytes can never complete: emit a replacement and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..ok + bad);
                        }
                    }
                }
            }
        }
    }
    /// Whatever is left (an unfinished sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Speeds and what was produced.
#[derive(Clone, Debug, PartialEq)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub generated: Vec<u32>,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub stopped_at_eos: bool,
}

impl GenStats {
    pub fn prefill_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_seconds
    }
    /// Decode steps per second (the first generated token comes from the prefill).
    pub fn decode_tps(&self) -> f64 {
        self.generated.len().saturating_sub(1) as f64 / self.decode_seconds
    }
}

/// Generates up to `n` tokens after `prompt`, calling `emit` with each completed text piece.
pub fn generate(
    model: &Model,
    tok: &Tokenizer,
    prompt: &[u32],
    n: usize,
    sampler: &mut Sampler,
    hooks: &dyn Hooks,
    mut emit: impl FnMut(&str),
) -> Result<GenStats, GenerateError> {
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let ctx = model.config.n_ctx_train;
    if prompt.len() + n > ctx {
        return Err(GenerateError::TooLong { prompt: prompt.len(), n, ctx });
    }
    let mut cache = model.new_cache(prompt.len() + n);
    let mut st = State::new();
    let mut stream = Utf8Stream::default();
    let eos = tok.eos();
    let mut stats = GenStats {
        prompt_tokens: prompt.len(),
        generated: Vec::with_capacity(n),
        prefill_seconds: 0.0,
        decode_seconds: 0.0,
        stopped_at_eos: false,
    };
    let t0 = Instant::now();
    let mut next = 0;
    if n > 0 {
        let logits = model.forward(prompt, &mut cache, &mut st, Logits::Last, hooks)?;
        if logits.is_empty() {
            return Err(GenerateError::LastTokenPruned);
        }
        next = sampler.sample(logits);
    }
    stats.prefill_seconds = t0.elapsed().as_secs_f64();
    if st.profile.enabled() {
        eprint!("prefill {}", st.profile.report());
        st.profile.reset();
    }
    let t1 = Instant::now();
    for i in 0..n {
        if Some(next) == eos {
            stats.stopped_at_eos = true;
            break;
        }
        stats.generated.push(next);
        emit(&stream.push(&tok.decode_bytes(&[next])?));
        if i + 1 == n {
            break;
        }
        next = sampler.sample(model.forward(&[next], &mut cache, &mut st, Logits::Last, hooks)?);
    }
    stats.decode_seconds = t1.elapsed().as_secs_f64();
    emit(&stream.finish());
    if st.profile.enabled() {
        eprint!("decode {}", st.profile.report());
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_split_sequences() {
        let mut s = Utf8Stream::default();
        let e = "é€".as_bytes(); // 2 + 3 bytes
        assert_eq!(s.push(&e[..1]), "");
        assert_eq!(s.push(&e[1..3]), "é");
        assert_eq!(s.push(&e[3..]), "€");
        assert_eq!(s.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(s.push(&[0xe2]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }

    #[test]
    fn greedy_and_seeded_sampling() {
        let logits = [0.1f32, 2.0, 2.0, -1.0];
        let mut g = Sampler::new(SamplerConfig::default()).unwrap();
        assert_eq!(g.sample(&logits), 1);
        let cfg = SamplerConfig { temperature: 1.0, top_k: 2, top_p: 1.0, seed: 7 };
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone()).unwrap();
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg), "same seed, same draws");
        assert!(a.iter().all(|&t| t == 1 || t == 2), "top-k 2 keeps the two best");
        assert!(a.contains(&1) && a.contains(&2));
        let p = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 0.1, seed: 3 };
        assert!(draw(&p).iter().all(|&t| t == 1), "top-p 0.1 keeps only the best");
        assert!(Sampler::new(SamplerConfig { top_p: 0.0, ..Default::default() }).is_err());
    }
}
