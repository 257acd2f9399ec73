//! The layer loop. One call feeds any number of new tokens (prefill) or one (decode) through
//! every block, appending to the KV cache, and returns logits for the rows asked for.

use super::attention::{attend, AttnShape};
use super::profile::{Op, Profile};
use super::{simd, Hooks, KvCache, MlpKind, Model, ModelError, PositionKind, SiteCall};
use crate::plan::Site;
use rayon::prelude::*;

/// Which rows' logits to compute (the LM head is the largest matmul: skip unneeded rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last fed token (generation, benchmarks).
    Last,
    /// Every token (that survived pruning).
    All,
    /// Tokens whose index in the batch is `>= from` (perplexity scores the second half).
    From(usize),
    /// None (cache warm-up).
    None,
}

/// Scratch buffers, grown on demand and reused, so steady-state decoding does not allocate.
#[derive(Default)]
pub struct State {
    x: Vec<f32>,
    xn: Vec<f32>,
    qkv: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    tmp: Vec<f32>,
    gu: Vec<f32>,
    h: Vec<f32>,
    sink: Vec<f32>,
    cs: Vec<(f32, f32)>,
    rows: Vec<usize>,
    positions: Vec<u32>,
    logit_pos: Vec<u32>,
    sel: Vec<f32>,
    logits: Vec<f32>,
    /// Batch index of each returned logits row.
    pub logit_rows: Vec<usize>,
    n_logits: usize,
    pub profile: Profile,
}

fn fit(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

impl State {
    pub fn new() -> State {
        State { profile: Profile::from_env(), ..Default::default() }
    }

    /// The logits of the last `forward` (`logit_rows.len() x vocab`).
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.n_logits]
    }
}

/// Row-wise work (norms, RoPE, SiLU) is split over threads from this many rows on (prefill);
/// each row is computed the same way either way, so results do not depend on it.
const PAR_ROWS: usize = 32;

/// `f(row index, row)` for every `d`-wide row of `x`, in parallel for many rows.
fn rows_each<T: Send>(x: &mut [T], d: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if x.len() >= PAR_ROWS * d {
        x.par_chunks_mut(d).enumerate().with_min_len(PAR_ROWS / 2).for_each(|(r, row)| f(r, row));
    } else {
        x.chunks_mut(d).enumerate().for_each(|(r, row)| f(r, row));
    }
}

/// `norm` of each `d`-wide row of `x` into `out` (rows in parallel for many rows).
fn norm_rows(norm: &super::Norm, x: &[f32], out: &mut [f32], d: usize) {
    if x.len() >= PAR_ROWS * d {
        out.par_chunks_mut(d).zip(x.par_chunks(d)).with_min_len(PAR_ROWS / 2).for_each(|(o, xr)| norm.apply(xr, o));
    } else {
        norm.apply(x, out);
    }
}

/// Keeps rows `keep` (ascending) of a row-major matrix with rows of `d`, in place.
fn compact_rows(x: &mut [f32], d: usize, keep: &[usize]) {
    for (dst, &src) in keep.iter().enumerate() {
        if dst != src {
            x.copy_within(src * d..(src + 1) * d, dst * d);
        }
    }
}

impl Model {
    /// Feeds `tokens` at the cache's next positions and returns the requested logits
    /// (`st.logit_rows.len() x vocab`, row `i` for batch index `st.logit_rows[i]`).
    pub fn forward<'s>(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        st: &'s mut State,
        want: Logits,
        hooks: &dyn Hooks,
    ) -> Result<&'s [f32], ModelError> {
        let cfg = &self.config;
        let m0 = tokens.len();
        if m0 == 0 {
            return Err(ModelError::Empty);
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::BadToken { id, vocab: cfg.vocab_size });
        }
        let free = cache.layers.iter().map(|l| l.capacity() - l.len()).min().unwrap_or(0);
        if m0 > free {
            let l0 = &cache.layers[0];
            return Err(super::CacheFull { len: l0.len(), adding: m0, cap: l0.capacity() }.into());
        }
        debug_assert_eq!(self.kind.positions, PositionKind::Rope);
        debug_assert_eq!(self.kind.mlp, MlpKind::SwiGlu);
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let (qd, kvd, ff) = (cfg.q_dim(), cfg.kv_dim(), cfg.n_ff);
        let shape = AttnShape { n_head: cfg.n_head, n_head_kv: cfg.n_head_kv, head_dim: hd };
        let p0 = cache.next_pos();
        let mut prof = std::mem::take(&mut st.profile);
        prof.start();

        st.rows.clear();
        st.rows.extend(0..m0);
        st.positions.clear();
        st.positions.extend((0..m0 as u32).map(|i| p0 + i));
        let x = fit(&mut st.x, m0 * d);
        for (r, &t) in tokens.iter().enumerate() {
            self.embed.row(t, &mut x[r * d..(r + 1) * d]);
        }
        prof.mark(Op::Embed);
        // RoPE angles once per token for all layers (indexed by batch row; f64 sin/cos per
        // layer and row cost ~3% of a prefill).
        let half = cfg.rope_dim / 2;
        if st.cs.len() < m0 * half {
            st.cs.resize(m0 * half, (1.0, 0.0));
        }
        let rope = &self.rope;
        rows_each(&mut st.cs[..m0 * half], half, |r, cs| rope.angles(p0 + r as u32, cs));

        let mut m = m0;
        for (l, blk) in self.blocks.iter().enumerate() {
            // --- attention ---
            norm_rows(&blk.attn_norm, &st.x[..m * d], fit(&mut st.xn, m * d), d);
            prof.mark(Op::Norm);
            let c = SiteCall { layer: Some(l), site: Site::Qkv, rows: &st.rows, positions: &st.positions };
            hooks.linear(c, &blk.qkv, &st.xn[..m * d], fit(&mut st.qkv, m * (qd + 2 * kvd)));
            prof.mark(Op::Qkv);
            let (q, k, v) = (fit(&mut st.q, m * qd), fit(&mut st.k, m * kvd), fit(&mut st.v, m * kvd));
            {
                let (qkv, rows, cs) = (&st.qkv, &st.rows, &st.cs);
                let split = |r: usize, q: &mut [f32], k: &mut [f32], v: &mut [f32]| {
                    let row = &qkv[r * (qd + 2 * kvd)..(r + 1) * (qd + 2 * kvd)];
                    q.copy_from_slice(&row[..qd]);
                    k.copy_from_slice(&row[qd..qd + kvd]);
                    v.copy_from_slice(&row[qd + kvd..]);
                    let cs = &cs[rows[r] * half..(rows[r] + 1) * half];
                    rope.rotate_row(q, cs);
                    rope.rotate_row(k, cs);
                };
                if m >= PAR_ROWS {
                    q.par_chunks_mut(qd)
                        .zip(k.par_chunks_mut(kvd))
                        .zip(v.par_chunks_mut(kvd))
                        .enumerate()
                        .with_min_len(PAR_ROWS / 2)
                        .for_each(|(r, ((q, k), v))| split(r, q, k, v));
                } else {
                    for (r, ((q, k), v)) in q.chunks_mut(qd).zip(k.chunks_mut(kvd)).zip(v.chunks_mut(kvd)).enumerate() {
                        split(r, q, k, v);
                    }
                }
            }
            let ops = hooks.attn_ops(l);
            if ops.int8().any() {
                cache.layers[l].enable_int8();
            }
            cache.layers[l].append(&st.k[..m * kvd], &st.v[..m * kvd], &st.positions)?;
            prof.mark(Op::Rope);
            let want_sink = hooks.wants_sink(l);
            let sink = if want_sink { Some(fit(&mut st.sink, cfg.n_head * m)) } else { None };
            attend(ops, shape, &st.q[..m * qd], &st.positions, &cache.layers[l], fit(&mut st.attn, m * qd), sink);
            prof.mark(Op::Attention);
            let c = SiteCall { layer: Some(l), site: Site::O, rows: &st.rows, positions: &st.positions };
            hooks.linear(c, &blk.o, &st.attn[..m * qd], fit(&mut st.tmp, m * d));
            super::ops::add_in_place(&mut st.x[..m * d], &st.tmp[..m * d]);
            prof.mark(Op::O);

            // --- token pruning point: between attention and MLP ---
            let sink: &[f32] = if want_sink { &st.sink[..cfg.n_head * m] } else { &[] };
            if let Some(keep) = hooks.prune(l, &st.rows, &st.positions, sink) {
                assert!(keep.windows(2).all(|w| w[0] < w[1]) && keep.last().is_none_or(|&i| i < m), "prune: bad rows");
                compact_rows(&mut st.x, d, &keep);
                st.rows = keep.iter().map(|&i| st.rows[i]).collect();
                st.positions = keep.iter().map(|&i| st.positions[i]).collect();
                m = keep.len();
                if m == 0 {
                    break;
                }
            }

            // --- MLP ---
            norm_rows(&blk.ffn_norm, &st.x[..m * d], fit(&mut st.xn, m * d), d);
            prof.mark(Op::Norm);
            let c = SiteCall { layer: Some(l), site: Site::GateUp, rows: &st.rows, positions: &st.positions };
            hooks.linear(c, &blk.gate_up, &st.xn[..m * d], fit(&mut st.gu, m * 2 * ff));
            prof.mark(Op::GateUp);
            let h = fit(&mut st.h, m * ff);
            let gu = &mut st.gu[..m * 2 * ff];
            let silu = |(g, hr): (&mut [f32], &mut [f32])| {
                let (g, u) = g.split_at_mut(ff);
                simd::silu_mul(g, u);
                hr.copy_from_slice(g);
            };
            if m >= PAR_ROWS {
                gu.par_chunks_mut(2 * ff).zip(h.par_chunks_mut(ff)).with_min_len(PAR_ROWS / 2).for_each(silu);
            } else {
                gu.chunks_mut(2 * ff).zip(h.chunks_mut(ff)).for_each(silu);
            }
            prof.mark(Op::Silu);
            let c = SiteCall { layer: Some(l), site: Site::Down, rows: &st.rows, positions: &st.positions };
            hooks.linear(c, &blk.down, &st.h[..m * ff], fit(&mut st.tmp, m * d));
            super::ops::add_in_place(&mut st.x[..m * d], &st.tmp[..m * d]);
            prof.mark(Op::Down);
        }
        cache.advance(m0);

        // --- output: final norm and LM head on the wanted rows only ---
        st.logit_rows.clear();
        let rows = &st.rows[..m];
        match want {
            Logits::None => {}
            Logits::Last => {
                if rows.last() == Some(&(m0 - 1)) {
                    st.logit_rows.push(m0 - 1)
                }
            }
            Logits::All => st.logit_rows.extend_from_slice(rows),
            Logits::From(from) => st.logit_rows.extend(rows.iter().copied().filter(|&r| r >= from)),
        }
        let n_out = st.logit_rows.len();
        let sel = fit(&mut st.sel, n_out * d);
        st.logit_pos.clear();
        let mut i = 0;
        for (r, &orig) in rows.iter().enumerate() {
            if i < n_out && st.logit_rows[i] == orig {
                sel[i * d..(i + 1) * d].copy_from_slice(&st.x[r * d..(r + 1) * d]);
                st.logit_pos.push(st.positions[r]);
                i += 1;
            }
        }
        let xn = fit(&mut st.xn, n_out * d);
        self.out_norm.apply(&st.sel[..n_out * d], xn);
        prof.mark(Op::Norm);
        let vocab = self.lm_head.n();
        let logits = fit(&mut st.logits, n_out * vocab);
        if n_out > 0 {
            let c = SiteCall { layer: None, site: Site::LmHead, rows: &st.logit_rows, positions: &st.logit_pos };
            hooks.linear(c, &self.lm_head, &st.xn[..n_out * d], logits);
        }
        prof.mark(Op::LmHead);
        st.profile = prof;
        st.n_logits = n_out * vocab;
        Ok(&st.logits[..n_out * vocab])
    }
}
