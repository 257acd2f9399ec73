//! Causal grouped-query attention over one layer's KV cache. The three products a plan may
//! quantize (Q·Kᵀ scores, softmax, P·V) are the methods of [`AttnOps`], so a plan swaps
//! them (INT8 QK/PV, log2 4-bit softmax) without touching the loop.
//!
//! When the ops ask for INT8 ([`AttnOps::int8`]), Q·Kᵀ and/or P·V run as integer dots over
//! the layer's INT8 cache (`quant::idot`): each query row is quantized once per head, each
//! key/value was quantized once when cached. P·V's weights (probability × the value row's
//! scale, after [`AttnOps::pv_probs`]) are quantized to 16-bit integers with one scale per
//! block of 32 keys.
//!
//! Work is split into (head, block of query rows) tasks over the rayon pool. Each output
//! element is computed by exactly one task in a fixed order, so results do not depend on
//! the thread count. The causal mask uses the cached tokens' original positions: a query
//! at position p sees the cached tokens with position <= p (a prefix, positions ascend).

use super::kv_cache::KvLayer;
use super::simd;
use crate::quant::attn::quantize_i8_row;
use crate::quant::idot;
use rayon::prelude::*;
use std::cell::RefCell;

/// The replaceable arithmetic of attention. All methods see one (head, query row).
pub trait AttnOps: Sync {
    /// `out[j] = scale * q · keys[j]` for the `out.len()` visible keys (`keys` row-major).
    fn qk(&self, q: &[f32], keys: &[f32], scale: f32, out: &mut [f32]) {
        simd::scores(q, keys, scale, out)
    }
    /// Scores to probabilities, in place.
    fn softmax(&self, s: &mut [f32]) {
        softmax(s)
    }
    /// `out = sum_j p[j] * values[j]`, overwriting `out`.
    fn pv(&self, p: &[f32], values: &[f32], out: &mut [f32]) {
        simd::weighted_sum(p, values, out)
    }
    /// Which products run as integer dots over the layer's INT8 cache.
    fn int8(&self) -> Int8Attn {
        Int8Attn::default()
    }
    /// The probabilities as an integer P·V uses them (e.g. 4-bit log2), in place.
    fn pv_probs(&self, p: &mut [f32]) {
        let _ = p;
    }
    /// Whether `pv(p, V)` is exactly `simd::weighted_sum` of `pv_probs(p)` and `qk` the
    /// default: then prefill walks the cache in tiles (same results, fewer cache misses).
    /// Implementations overriding `qk` or `pv` otherwise must leave this `false`.
    fn tileable(&self) -> bool {
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
impl AttnOps for FloatAttn {
    fn tileable(&self) -> bool {
        true
    }
}

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

/// `out` (`m x n_head*head_dim`) = attention of the `m` query rows `q` (same layout, already
/// rotated) at positions `q_pos` over `cache`. When `sink` is given (`n_head x m`), it
/// receives each row's probability on the first cached token (token-importance input for
/// pruning).
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
    assert!(!mode.any() || cache.has_int8(), "INT8 attention needs the layer's INT8 cache (KvLayer::enable_int8)");
    let blocks = m.div_ceil(ROW_BLOCK);
    if !mode.any() && ops.tileable() {
        // One task per (KV head, block of rows) runs all `group` query heads that share the
        // KV head, key tile by key tile: each K/V tile is fetched once and used by every
        // (head, row) of the task while it is in L1.
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
                let (n_keys, block) = (&sc.n_keys, &mut sc.block);
                // Element (h, r) of `out` / `sink` belongs to this task only.
                let out_row = |h: usize, r: usize| unsafe { std::slice::from_raw_parts_mut(out_p.get().add(r * qd + h * hd), hd) };
                for t0 in (0..n_max).step_by(KEY_TILE) {
                    for (hi, h) in heads.clone().enumerate() {
                        for (ri, r) in rows.clone().enumerate() {
                            let t1 = (t0 + KEY_TILE).min(n_keys[ri]);
                            if t1 > t0 {
                                let s = &mut block[(hi * nr + ri) * n_max..][t0..t1];
                                ops.qk(&q[r * qd + h * hd..r * qd + (h + 1) * hd], &keys[t0 * hd..t1 * hd], scale, s);
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
                        ops.softmax(s);
                        if let Some(sp) = sink_p {
                            // SAFETY: element (h, r) belongs to this task.
                            unsafe { *sp.get().add(h * m + r) = s[0] };
                        }
                        ops.pv_probs(s);
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
                // SAFETY: (row r, head h) is written by this task only; in bounds by the asserts.
                let o = unsafe { std::slice::from_raw_parts_mut(out_p.get().add(r * qd + h * hd), hd) };
                if n_keys == 0 {
                    o.iter_mut().for_each(|v| *v = 0.0);
                    continue;
                }
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
                    _ => ops.qk(qr, &keys[..n_keys * hd], scale, s),
                }
                ops.softmax(s);
                if let Some(sp) = sink_p {
                    // SAFETY: element (h, r) belongs to this task.
                    unsafe { *sp.get().add(h * m + r) = s[0] };
                }
                match (mode.pv, values8) {
                    (true, Some((vc, vs))) => {
                        ops.pv_probs(s);
                        s.iter_mut().zip(vs).for_each(|(p, &v)| *p *= v);
                        idot::quantize_weights(s, &mut sc.w16, &mut sc.wscale);
                        idot::pv(&sc.w16, &sc.wscale, &vc[..n_keys * hd], o);
                    }
                    _ => ops.pv(s, &values[..n_keys * hd], o),
                }
            }
        });
    });
}
