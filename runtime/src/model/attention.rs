//! Causal grouped-query attention over one layer's KV cache. What a plan may change (INT8
//! Q·Kᵀ / P·V over the layer's INT8 cache, log2-4 probabilities for P·V) is described by
//! [`AttnOps`]; the loops are here, in three paths:
//!
//! - **Prefill, float K/V** (4+ query rows, AVX2 or AVX-512): one task per (KV head, 16 query
//!   positions) packs all query heads of the KV head as lanes and runs the register-blocked
//!   kernels of `attn_kernels` (scores, per-lane softmax or log2 weights, P·V over 64-key
//!   tiles). Results equal the per-row path to float rounding.
//! - **Decode and the scalar fallback, float K/V**: per (head, row) dot products and
//!   weighted sums, K/V walked in 64-key tiles.
//! - **INT8**: per (head, row), Q·Kᵀ as `i8` dots and/or P·V as `i16 x i8` block sums
//!   (`quant::idot`); the weights (probability × the value row's scale / the row's sum) go
//!   straight into 16-bit codes with one scale per block of 32 keys.
//!
//! Each output element is computed by exactly one task in a fixed order, so results do not
//! depend on the thread count. The causal mask uses the cached tokens' original positions:
//! a query at position p sees the cached tokens with position <= p (a prefix, positions
//! ascend).

use super::kv_cache::KvLayer;
use super::attn_kernels::{self, Isa, LANES, PV_ROWS};
use super::simd;
use crate::quant::attn::quantize_i8_row;
use crate::quant::{idot, softmax};
use rayon::prelude::*;
use std::cell::RefCell;

/// What a plan changes in one layer's attention: which products run as integer dots over
/// the layer's INT8 cache, and whether P·V uses log2-4 probabilities
/// ([`crate::quant::softmax::log2_weight`]). The loops live here, so every mode shares the
/// tiling and the kernels.
pub trait AttnOps: Sync {
    /// Which products run as integer dots over the layer's INT8 cache.
    fn int8(&self) -> Int8Attn {
        Int8Attn::default()
    }
    /// Whether P·V sees log2-4 probabilities instead of the float softmax.
    fn log2(&self) -> bool {
        false
    }
}

/// Integer attention products of a layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Int8Attn {
    pub qk: bool,
    pub pv: bool,
}

impl Int8Attn {
    pub fn any(self) -> bool {
        self.qk || self.pv
    }
}

/// Plain f32 attention.
pub struct FloatAttn;
impl AttnOps for FloatAttn {}

/// Numerically stable softmax (max subtracted), deterministic order.
pub fn softmax(s: &mut [f32]) {
    if s.is_empty() {
        return;
    }
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = simd::exp_shifted_sum(s, max);
    let inv = 1.0 / sum;
    s.iter_mut().for_each(|v| *v *= inv);
}

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

/// Query rows per task: small enough to balance heads over threads, large enough that task
/// overhead stays negligible.
const ROW_BLOCK: usize = 16;

/// Keys per tile in tiled prefill attention: 64 keys of head_dim 64 in f32 are 16 KiB, which
/// stay in L1 while every (head, row) of a task uses them; untiled, each query row streamed
/// the head's whole K and V from L2 (40% of a w4a8 pp512 went to attention). A multiple of
/// 4, so `simd::scores` groups keys exactly as over the whole row.
const KEY_TILE: usize = 64;

/// Below this many (head, query row, key) triples an attention call runs on one thread.
const SERIAL_WORK: usize = 1024;

/// Per-thread scratch of one (head, query row).
#[derive(Default)]
struct Scratch {
    /// Tiled path: scores of every (head, row) of a task, `n_max` apart.
    block: Vec<f32>,
    n_keys: Vec<usize>,
    scores: Vec<f32>,
    q8: Vec<i8>,
    dots: Vec<i32>,
    w16: Vec<i16>,
    wscale: Vec<f32>,
    /// Packed path: transposed queries, transposed scores, P·V accumulators, lane sums.
    qt: Vec<f32>,
    st: Vec<f32>,
    acc: Vec<f32>,
    sums: Vec<f32>,
    sinks: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The probabilities of one score row, in place: the float softmax, or with `log2` the
/// normalised log2-4 probabilities. Returns the float probability of key 0 when `sink`.
fn probs(s: &mut [f32], log2: bool, sink: bool, tmp: &mut Vec<f32>) -> f32 {
    if !log2 {
        softmax(s);
        return s[0];
    }
    let p0 = if sink {
        tmp.clear();
        tmp.extend_from_slice(s);
        softmax(tmp);
        tmp[0]
    } else {
        0.0
    };
    softmax::log2_probs_from_scores(s);
    p0
}

/// Below this many query rows (decode) prefill's packed kernels waste most lanes: the
/// per-row tiled path runs instead.
const PACKED_MIN_ROWS: usize = 4;

/// `out` (`m x n_head*head_dim`) = attention of the `m` query rows `q` (same layout, already
/// rotated) at positions `q_pos` over `cache`. When `sink` is given (`n_head x m`), it
/// receives each row's float softmax probability on the first cached token (the
/// token-importance input for pruning).
pub fn attend(
    ops: &dyn AttnOps,
    shape: AttnShape,
    q: &[f32],
    q_pos: &[u32],
    cache: &KvLayer,
    out: &mut [f32],
    sink: Option<&mut [f32]>,
) {
    let AttnShape { n_head, n_head_kv, head_dim: hd } = shape;
    let m = q_pos.len();
    let qd = n_head * hd;
    assert_eq!(q.len(), m * qd);
    assert_eq!(out.len(), m * qd);
    let group = n_head / n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let cached = cache.positions();
    let out_p = SendPtr(out.as_mut_ptr());
    let sink_p = sink.map(|s| {
        assert_eq!(s.len(), n_head * m);
        SendPtr(s.as_mut_ptr())
    });
    let mode = ops.int8();
    let log2 = ops.log2();
    assert!(!mode.any() || cache.has_int8(), "INT8 attention needs the layer's INT8 cache (KvLayer::enable_int8)");
    let blocks = m.div_ceil(ROW_BLOCK);
    // Element (h, r) of `out` / `sink` belongs to one task only.
    let out_row = |h: usize, r: usize| unsafe { std::slice::from_raw_parts_mut(out_p.get().add(r * qd + h * hd), hd) };
    let isa = attn_kernels::isa();
    if !mode.any() && isa != Isa::Scalar && hd.is_multiple_of(16) && m >= PACKED_MIN_ROWS {
        // One task per (KV head, block of rows): all `group` query heads sharing the KV head,
        // packed as lanes, so each key and value row is loaded once per task and used by
        // every lane from registers (see `attn_kernels`).
        let task = |task: usize| {
            let (kvh, b) = (task / blocks, task % blocks);
            let (keys, values) = (cache.keys(kvh), cache.values(kvh));
            let rows = b * ROW_BLOCK..((b + 1) * ROW_BLOCK).min(m);
            let nr = rows.len();
            let lanes = group * nr;
            let rp = lanes.div_ceil(LANES) * LANES;
            SCRATCH.with(|sc| {
                let sc = &mut *sc.borrow_mut();
                let Scratch { qt, st, acc, n_keys: nk, sums, sinks, .. } = sc;
                qt.clear();
                qt.resize(hd * rp, 0.0);
                nk.clear();
                nk.resize(rp, 0);
                for hi in 0..group {
                    let h = kvh * group + hi;
                    for (ri, r) in rows.clone().enumerate() {
                        let i = hi * nr + ri;
                        nk[i] = cached.partition_point(|&p| p <= q_pos[r]);
                        for (d, &v) in q[r * qd + h * hd..r * qd + (h + 1) * hd].iter().enumerate() {
                            qt[d * rp + i] = v;
                        }
                    }
                }
                let n_max = nk.iter().copied().max().unwrap_or(0);
                st.clear();
                st.resize(n_max * rp, 0.0);
                attn_kernels::scores(isa, qt, rp, &keys[..n_max * hd], hd, n_max, scale, st);
                sums.resize(rp, 0.0);
                sinks.resize(rp, 0.0);
                attn_kernels::weights(isa, st, rp, n_max, nk, log2, sums, sink_p.map(|_| &mut sinks[..]));
                acc.clear();
                acc.resize(lanes * hd, 0.0);
                // Keys in tiles that stay in L1 while every block of rows uses them; a block
                // stops at the last key any of its rows sees (the causal edge).
                for t0 in (0..n_max).step_by(KEY_TILE) {
                    let t1 = (t0 + KEY_TILE).min(n_max);
                    for i0 in (0..lanes).step_by(PV_ROWS) {
                        let nrows = PV_ROWS.min(lanes - i0);
                        let end = nk[i0..i0 + nrows].iter().copied().max().unwrap_or(0).min(t1);
                        if end > t0 {
                            attn_kernels::pv(isa, &st[t0 * rp..], rp, i0, nrows, &values[t0 * hd..end * hd], hd, end - t0, acc);
                        }
                    }
                }
                for hi in 0..group {
                    let h = kvh * group + hi;
                    for (ri, r) in rows.clone().enumerate() {
                        let i = hi * nr + ri;
                        let inv = if sums[i] > 0.0 { 1.0 / sums[i] } else { 0.0 };
                        for (o, &a) in out_row(h, r).iter_mut().zip(&acc[i * hd..(i + 1) * hd]) {
                            *o = a * inv;
                        }
                        if let Some(sp) = sink_p {
                            // SAFETY: element (h, r) belongs to this task.
                            unsafe { *sp.get().add(h * m + r) = sinks[i] };
                        }
                    }
                }
            });
        };
        (0..n_head_kv * blocks).into_par_iter().for_each(task);
        return;
    }
    if !mode.any() {
        // Decode and the scalar fallback: one task per (KV head, block of rows) runs all
        // `group` query heads that share the KV head, key tile by key tile: each K/V tile is
        // fetched once and used by every (head, row) of the task while it is in L1.
        let task = |task: usize| {
            let (kvh, b) = (task / blocks, task % blocks);
            let (keys, values) = (cache.keys(kvh), cache.values(kvh));
            let rows = b * ROW_BLOCK..((b + 1) * ROW_BLOCK).min(m);
            let heads = kvh * group..(kvh + 1) * group;
            SCRATCH.with(|sc| {
                let sc = &mut *sc.borrow_mut();
                sc.n_keys.clear();
                sc.n_keys.extend(rows.clone().map(|r| cached.partition_point(|&p| p <= q_pos[r])));
                let n_max = sc.n_keys.iter().copied().max().unwrap_or(0);
                let nr = rows.len();
                if sc.block.len() < group * nr * n_max {
                    sc.block.resize(group * nr * n_max, 0.0);
                }
                let (n_keys, block, tmp) = (&sc.n_keys, &mut sc.block, &mut sc.scores);
                for t0 in (0..n_max).step_by(KEY_TILE) {
                    for (hi, h) in heads.clone().enumerate() {
                        for (ri, r) in rows.clone().enumerate() {
                            let t1 = (t0 + KEY_TILE).min(n_keys[ri]);
                            if t1 > t0 {
                                let s = &mut block[(hi * nr + ri) * n_max..][t0..t1];
                                simd::scores(&q[r * qd + h * hd..r * qd + (h + 1) * hd], &keys[t0 * hd..t1 * hd], scale, s);
                            }
                        }
                    }
                }
                for (hi, h) in heads.clone().enumerate() {
                    for (ri, r) in rows.clone().enumerate() {
                        let s = &mut block[(hi * nr + ri) * n_max..][..n_keys[ri]];
                        out_row(h, r).iter_mut().for_each(|v| *v = 0.0);
                        if s.is_empty() {
                            continue;
                        }
                        let p0 = probs(s, log2, sink_p.is_some(), tmp);
                        if let Some(sp) = sink_p {
                            // SAFETY: element (h, r) belongs to this task.
                            unsafe { *sp.get().add(h * m + r) = p0 };
                        }
                    }
                }
                for t0 in (0..n_max).step_by(KEY_TILE) {
                    for (hi, h) in heads.clone().enumerate() {
                        for (ri, r) in rows.clone().enumerate() {
                            let t1 = (t0 + KEY_TILE).min(n_keys[ri]);
                            if t1 > t0 {
                                let p = &block[(hi * nr + ri) * n_max..][t0..t1];
                                simd::weighted_sum_acc(p, &values[t0 * hd..t1 * hd], out_row(h, r));
                            }
                        }
                    }
                }
            });
        };
        let tasks = n_head_kv * blocks;
        // Small calls (decode over a short cache) run on the calling thread: a parallel
        // region costs more than the work. Each task computes the same thing either way.
        if n_head * m * cached.len() < SERIAL_WORK {
            (0..tasks).for_each(task);
        } else {
            (0..tasks).into_par_iter().for_each(task);
        }
        return;
    }
    (0..n_head * blocks).into_par_iter().for_each(|task| {
        let (h, b) = (task / blocks, task % blocks);
        let kvh = h / group;
        let (keys, values) = (cache.keys(kvh), cache.values(kvh));
        let (keys8, values8) = (cache.keys_i8(kvh), cache.values_i8(kvh));
        SCRATCH.with(|sc| {
            let sc = &mut *sc.borrow_mut();
            for r in b * ROW_BLOCK..((b + 1) * ROW_BLOCK).min(m) {
                let n_keys = cached.partition_point(|&p| p <= q_pos[r]);
                if sc.scores.len() < n_keys {
                    sc.scores.resize(n_keys, 0.0);
                    sc.dots.resize(n_keys, 0);
                }
                let s = &mut sc.scores[..n_keys];
                let qr = &q[r * qd + h * hd..r * qd + (h + 1) * hd];
                let o = out_row(h, r);
                if n_keys == 0 {
                    o.iter_mut().for_each(|v| *v = 0.0);
                    continue;
                }
                let mut max = f32::NEG_INFINITY;
                match (mode.qk, keys8) {
                    (true, Some((kc, ks))) => {
                        sc.q8.resize(hd, 0);
                        let qs = quantize_i8_row(qr, &mut sc.q8) * scale;
                        let dots = &mut sc.dots[..n_keys];
                        idot::qk(&sc.q8, &kc[..n_keys * hd], dots);
                        for ((sj, &dj), &kj) in s.iter_mut().zip(dots.iter()).zip(ks) {
                            *sj = dj as f32 * (qs * kj);
                        }
                    }
                    _ => simd::scores(qr, &keys[..n_keys * hd], scale, s),
                }
                max = s.iter().copied().fold(max, f32::max);
                let (vc, vs) = match (mode.pv, values8) {
                    (true, Some(v)) => v,
                    _ => {
                        let p0 = probs(s, log2, sink_p.is_some(), &mut sc.block);
                        if let Some(sp) = sink_p {
                            // SAFETY: element (h, r) belongs to this task.
                            unsafe { *sp.get().add(h * m + r) = p0 };
                        }
                        simd::weighted_sum(s, &values[..n_keys * hd], o);
                        continue;
                    }
                };
                // INT8 P·V, passes fused: unnormalised weights (exp or log2 codes) with
                // their sum, then weight × value scale / sum straight into i16 blocks.
                let (total, p0) = if !max.is_finite() {
                    s.iter_mut().for_each(|v| *v = 0.0);
                    (0.0, 0.0)
                } else if log2 {
                    let p0 = if sink_p.is_some() {
                        sc.block.clear();
                        sc.block.extend_from_slice(s);
                        softmax(&mut sc.block);
                        sc.block[0]
                    } else {
                        0.0
                    };
                    (softmax::log2_total(softmax::log2_weights_row(s, max)), p0)
                } else {
                    let sum = simd::exp_shifted_sum(s, max);
                    (sum, s[0] / sum)
                };
                if let Some(sp) = sink_p {
                    // SAFETY: element (h, r) belongs to this task.
                    unsafe { *sp.get().add(h * m + r) = p0 };
                }
                let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
                idot::quantize_weights_scaled(s, vs, inv, &mut sc.w16, &mut sc.wscale);
                o.iter_mut().for_each(|v| *v = 0.0);
                idot::pv(&sc.w16, &sc.wscale, &vc[..n_keys * hd], o);
            }
        });
    });
}
