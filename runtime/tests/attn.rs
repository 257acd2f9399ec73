//! Prefill attention's packed kernels against their scalar references (bit for bit), and
//! whole attention calls against a plain f64 re-implementation and against the per-row path.

use proptest::prelude::*;
use runtime::model::attention::{attend, AttnOps, AttnShape, FloatAttn};
use runtime::model::attn_kernels::{self, scalar, Isa, LANES, PV_ROWS};
use runtime::model::KvLayer;
use runtime::quant::softmax;

fn rnd(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Small multiples of 1/4: every dot product is exact, so scores do not depend on the order
/// of summation (log2 codes then cannot flip between two paths).
fn dyadic(seed: u64, n: usize) -> Vec<f32> {
    rnd(seed, n).iter().map(|v| (v * 12.0).round() / 4.0).collect()
}

fn isas() -> Vec<Isa> {
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(Isa::Avx2);
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            v.push(Isa::Avx512);
        }
    }
    if v.is_empty() {
        println!("no AVX2/AVX-512 on this CPU: only the scalar reference is exercised");
    }
    v
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

struct Log2;
impl AttnOps for Log2 {
    fn log2(&self) -> bool {
        true
    }
}

/// Float attention in f64: per (head, row) softmax over the visible keys.
fn reference(shape: AttnShape, q: &[f32], q_pos: &[u32], k: &[f32], v: &[f32], pos: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let AttnShape { n_head, n_head_kv, head_dim: hd } = shape;
    let (m, qd, kvd) = (q_pos.len(), n_head * hd, n_head_kv * hd);
    let group = n_head / n_head_kv;
    let mut out = vec![0f32; m * qd];
    let mut sink = vec![0f32; n_head * m];
    for h in 0..n_head {
        let kvh = h / group;
        for r in 0..m {
            let n = pos.iter().filter(|&&p| p <= q_pos[r]).count();
            if n == 0 {
                continue;
            }
            let s: Vec<f64> = (0..n)
                .map(|j| (0..hd).map(|d| q[r * qd + h * hd + d] as f64 * k[j * kvd + kvh * hd + d] as f64).sum::<f64>() / (hd as f64).sqrt())
                .collect();
            let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let sum: f64 = e.iter().sum();
            sink[h * m + r] = (e[0] / sum) as f32;
            for d in 0..hd {
                out[r * qd + h * hd + d] = ((0..n).map(|j| e[j] * v[j * kvd + kvh * hd + d] as f64).sum::<f64>() / sum) as f32;
            }
        }
    }
    (out, sink)
}

/// A cache of `n` tokens at positions `first..first+n` and `m` queries at the last `m`
/// positions plus `extra` (so some queries see every key, and with `first > 0` a query
/// before the first cached position sees none).
/// The layer, the queries and their positions, and the cached keys, values and positions.
type Setup = (KvLayer, Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>, Vec<u32>);

fn setup(shape: AttnShape, n: usize, m: usize, first: u32, seed: u64, exact: bool) -> Setup {
    let kvd = shape.n_head_kv * shape.head_dim;
    let gen = |s, len| if exact { dyadic(s, len) } else { rnd(s, len).iter().map(|x| x * 4.0).collect() };
    let (k, v): (Vec<f32>, Vec<f32>) = (gen(seed, n * kvd), gen(seed + 1, n * kvd));
    let pos: Vec<u32> = (first..first + n as u32).collect();
    let mut layer = KvLayer::new(shape.n_head_kv, shape.head_dim, n.max(1));
    layer.append(&k, &v, &pos).unwrap();
    let q = gen(seed + 2, m * shape.n_head * shape.head_dim);
    // Queries: the last `m` positions of a prompt ending at first + n - 1; the earliest may
    // precede the cache (no visible key).
    let end = first as i64 + n as i64;
    let q_pos: Vec<u32> = (0..m as i64).map(|i| (end - m as i64 + i).max(0) as u32).collect();
    (layer, q, q_pos, k, v, pos)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scores_kernels_equal_scalar(chunks in 1usize..5, hd in 1usize..90, n in 0usize..37, seed in any::<u64>()) {
        let rp = chunks * LANES;
        let qt = rnd(seed, hd * rp);
        let keys = rnd(seed + 1, n * hd);
        let mut want = vec![0f32; n * rp];
        scalar::scores(&qt, rp, &keys, hd, n, 0.125, &mut want);
        for isa in isas() {
            let mut got = vec![0f32; n * rp];
            attn_kernels::scores(isa, &qt, rp, &keys, hd, n, 0.125, &mut got);
            prop_assert_eq!(bits(&got), bits(&want), "{:?}", isa);
        }
    }

    #[test]
    fn pv_kernels_equal_scalar(chunks in 1usize..4, hblk in 1usize..9, n in 0usize..37, i0 in 0usize..16, nrows in 1usize..=PV_ROWS, seed in any::<u64>()) {
        let (rp, hd) = (chunks * LANES, hblk * 16);
        let nrows = nrows.min(rp - i0.min(rp - 1));
        let i0 = i0.min(rp - nrows);
        let w = rnd(seed, n.max(1) * rp);
        let values = rnd(seed + 1, n * hd);
        let acc0 = rnd(seed + 2, rp * hd);
        let mut want = acc0.clone();
        scalar::pv(&w, rp, i0, nrows, &values, hd, n, &mut want);
        for isa in isas() {
            let mut got = acc0.clone();
            attn_kernels::pv(isa, &w, rp, i0, nrows, &values, hd, n, &mut got);
            prop_assert_eq!(bits(&got), bits(&want), "{:?}", isa);
        }
    }

    /// The log2 weights across lanes are the per-row rule, bit for bit (including masked keys).
    #[test]
    fn log2_lane_weights_equal_per_row_rule(n in 1usize..40, nk0 in 0usize..40, seed in any::<u64>()) {
        let rp = LANES;
        let st0: Vec<f32> = rnd(seed, n * rp).iter().map(|v| v * 40.0).collect();
        let nk: Vec<usize> = (0..rp).map(|i| (nk0 + i).min(n)).collect();
        let mut st = st0.clone();
        let mut sum = vec![0f32; rp];
        attn_kernels::weights(Isa::Scalar, &mut st, rp, n, &nk, true, &mut sum, None);
        for i in 0..rp {
            let mut row: Vec<f32> = (0..nk[i]).map(|j| st0[j * rp + i]).collect();
            softmax::log2_probs_from_scores(&mut row);
            for j in 0..n {
                let got = if sum[i] > 0.0 { st[j * rp + i] / sum[i] } else { 0.0 };
                let want = if j < nk[i] { row[j] } else { 0.0 };
                prop_assert!((got - want).abs() <= 1e-6 * want.max(1e-30), "lane {i} key {j}: {got} vs {want}");
            }
        }
    }

    /// Float attention through the packed kernels equals an f64 reference to rounding, for
    /// odd row counts, causal edges, queries that see no key, GQA groups, several head sizes.
    #[test]
    fn attention_matches_f64_reference(n in 1usize..90, m in 4usize..40, first in 0u32..3, group in 1usize..4, hd in prop::sample::select(vec![16usize, 48, 64]), seed in any::<u64>()) {
        let m = m.min(n + first as usize);
        prop_assume!(m >= 4);
        let shape = AttnShape { n_head: 2 * group, n_head_kv: 2, head_dim: hd };
        let (layer, q, q_pos, k, v, pos) = setup(shape, n, m, first, seed, false);
        let (want, want_sink) = reference(shape, &q, &q_pos, &k, &v, &pos);
        let mut out = vec![f32::NAN; want.len()];
        let mut sink = vec![f32::NAN; want_sink.len()];
        attend(&FloatAttn, shape, &q, &q_pos, &layer, &mut out, Some(&mut sink));
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            prop_assert!((a - b).abs() <= 2e-5 * (1.0 + b.abs()), "out[{i}] {a} vs {b}");
        }
        for (a, b) in sink.iter().zip(&want_sink) {
            prop_assert!((a - b).abs() <= 2e-5, "sink {a} vs {b}");
        }
    }

    /// The packed path (m >= 4 rows) equals the per-row path (each row alone), in float and
    /// log2 mode: exact scores, so the log2 codes are the same and only rounding differs.
    #[test]
    fn packed_equals_per_row_path(n in 1usize..80, m in 4usize..24, group in 1usize..4, seed in any::<u64>()) {
        let m = m.min(n);
        prop_assume!(m >= 4);
        let shape = AttnShape { n_head: 2 * group, n_head_kv: 2, head_dim: 64 };
        let (layer, q, q_pos, ..) = setup(shape, n, m, 0, seed, true);
        let qd = shape.n_head * 64;
        for ops in [&FloatAttn as &dyn AttnOps, &Log2] {
            let mut out = vec![0f32; m * qd];
            let mut sink = vec![0f32; shape.n_head * m];
            attend(ops, shape, &q, &q_pos, &layer, &mut out, Some(&mut sink));
            for r in 0..m {
                let mut o1 = vec![0f32; qd];
                let mut s1 = vec![0f32; shape.n_head];
                attend(ops, shape, &q[r * qd..(r + 1) * qd], &q_pos[r..r + 1], &layer, &mut o1, Some(&mut s1));
                for (a, b) in out[r * qd..(r + 1) * qd].iter().zip(&o1) {
                    prop_assert!((a - b).abs() <= 2e-5 * (1.0 + b.abs()), "row {r}: {a} vs {b} (log2 {})", ops.log2());
                }
                for h in 0..shape.n_head {
                    prop_assert!((sink[h * m + r] - s1[h]).abs() <= 2e-6, "sink");
                }
            }
        }
    }
}

#[test]
fn log2_rule_keeps_the_max_and_zeroes_the_tail() {
    let ln2 = std::f32::consts::LN_2;
    // Scores at max - c·ln2: weights exactly 2^-c, codes clamped at 15, zero from 2^-16 down.
    let mut s: Vec<f32> = [0.0f32, 1.0, 2.0, 15.0, 15.7, 16.2, 20.0].iter().map(|c| 5.0 - c * ln2).collect();
    s.push(f32::NEG_INFINITY);
    s.push(f32::NAN);
    let w: Vec<f32> = s.iter().map(|&x| softmax::log2_weight(x, 5.0)).collect();
    assert_eq!(w, vec![1.0, 0.5, 0.25, 2f32.powi(-15), 2f32.powi(-15), 0.0, 0.0, 0.0, 0.0]);
    // Rounding in the log domain: 0.7 of the max is 2^-0.51, code 1; 0.72 is code 0.
    assert_eq!(softmax::log2_weight(0.7f32.ln(), 0.0), 0.5);
    assert_eq!(softmax::log2_weight(0.72f32.ln(), 0.0), 1.0);
    // Normalised: the max keeps the largest share, the row sums to 1.
    let mut row = vec![3.0f32, 3.0 - ln2, 3.0 - 2.0 * ln2, -100.0];
    softmax::log2_probs_from_scores(&mut row);
    assert_eq!(row, vec![4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 0.0]);
    let mut empty: Vec<f32> = vec![];
    softmax::log2_probs_from_scores(&mut empty);
    let mut masked = vec![f32::NEG_INFINITY; 3];
    softmax::log2_probs_from_scores(&mut masked);
    assert_eq!(masked, vec![0.0; 3]);
}
