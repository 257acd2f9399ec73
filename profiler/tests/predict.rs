//! The predictor on synthetic profiles whose answer is known in closed form, and the
//! pruning bookkeeping against the runtime's own `PruneState`.

use profiler::predict::{kept_tokens, predict, Basis, PredictError, Workload};
use profiler::synthetic::{smollm2_shapes, synthetic_profile};
use runtime::plan::presets::preset;
use runtime::prune::PruneState;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
}

/// Linear ops 1 µs per row (LM head 100 µs per row), quantize 0.1 µs per row, causal
/// prefill attention 1 µs x m², decode attention 10 ns per key, everything else free.
fn cost(k: &profiler::profile::RecordKey) -> f64 {
    let m = k.m as f64;
    match k.op.as_str() {
        "lm_head" => 1e-4 * m,
        "qkv" | "o" | "gate_up" | "down" => 1e-6 * m,
        "quantize" => 1e-7 * m,
        "attention" if k.m == k.kv && k.m > 1 => 1e-6 * m * m,
        "attention" => 1e-8 * k.kv as f64,
        _ => 0.0,
    }
}

#[test]
fn dense_plan_sums_known_costs() {
    let prof = synthetic_profile(smollm2_shapes(), &[1, 2], &[1, 16, 64, 128], &[1, 64, 256], cost);
    let plan = preset("w4a8", 30).unwrap();
    let (p, n) = (100usize, 5usize);
    let pr = predict(&prof, &plan, &Workload { prompt_tokens: p, gen_tokens: n, threads: 2 }).unwrap();
    assert_eq!(pr.basis, Basis::Measured);
    let pf = p as f64;
    // Per layer: 4 linear sites + 4 quantizations at m = 100 (interpolated between 64 and
    // 128, exact because the costs are linear), attention 1e-6 * 100^2 (per-row interpolation
    // is exact for a quadratic).
    let layer = 4.0 * 1e-6 * pf + 4.0 * 1e-7 * pf + 1e-6 * pf * pf;
    assert!(close(pr.prefill_s, 30.0 * layer + 1e-4), "{} vs {}", pr.prefill_s, 30.0 * layer + 1e-4);
    assert!(close(pr.per_layer[7].by_op["attention"], 1e-6 * pf * pf));
    // Decode step i: keys = 100 + i + 1.
    let att: f64 = (0..n).map(|i| 1e-8 * (p + i + 1) as f64).sum();
    let decode = 30.0 * (n as f64 * (4.0 * 1e-6 + 4.0 * 1e-7) + att) + n as f64 * 1e-4;
    assert!(close(pr.decode_s, decode), "{} vs {decode}", pr.decode_s);
    assert!(close(pr.e2e_s, pr.prefill_s + pr.decode_s));
    assert!(pr.per_layer.iter().all(|l| l.tokens_in == p && l.tokens_kept == p));
}

#[test]
fn float_plan_has_no_quantize_and_pruning_shrinks_later_layers() {
    let prof = synthetic_profile(smollm2_shapes(), &[1], &[1, 16, 64, 512], &[1, 512, 1024], cost);
    let w = Workload { prompt_tokens: 512, gen_tokens: 0, threads: 1 };
    let fp = predict(&prof, &preset("fp16", 30).unwrap(), &w).unwrap();
    assert!(fp.per_layer.iter().all(|l| !l.by_op.contains_key("quantize")));
    let ag = predict(&prof, &preset("agile8", 30).unwrap(), &w).unwrap();
    let kept = kept_tokens(&preset("agile8", 30).unwrap(), 512);
    assert_eq!(kept[0], (512, 512, 0));
    assert!(kept[29].1 < 512 && kept[29].1 >= 350, "{:?}", kept[29]);
    for (l, c) in ag.per_layer.iter().enumerate() {
        assert_eq!((c.tokens_in, c.tokens_kept), (kept[l].0, kept[l].1));
        // gate_up runs on the kept rows.
        assert!(close(c.by_op["gate_up"], 1e-6 * c.tokens_kept as f64));
    }
    assert!(ag.prefill_s < fp.prefill_s * 1.2);
    assert_eq!(ag.decode_s, 0.0);
}

/// `kept_tokens` must agree with the runtime's pruning decisions row for row.
#[test]
fn kept_tokens_match_the_runtime_prune_state() {
    for name in ["agile8", "agile4"] {
        let plan = preset(name, 30).unwrap();
        for p in [2usize, 3, 17, 100, 512] {
            let mut st = PruneState::new(p, 0..p);
            let mut seed = 12345u64 + p as u64;
            let want = kept_tokens(&plan, p);
            for (l, lp) in plan.layers.iter().enumerate() {
                let m_in = st.n_rows();
                if lp.prune > 0.0 || lp.low_bit > 0.0 {
                    let imp: Vec<f32> = (0..m_in)
                        .map(|_| {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            (seed >> 40) as f32
                        })
                        .collect();
                    let sel = st.select(&imp, lp.prune, lp.low_bit);
                    st.apply(&sel);
                }
                assert_eq!((want[l].0, want[l].1), (m_in, st.n_rows()), "{name} p={p} layer {l}");
            }
        }
    }
}

#[test]
fn errors_name_what_is_missing() {
    let prof = synthetic_profile(smollm2_shapes(), &[1], &[1, 16], &[1, 64], cost);
    let w = Workload { prompt_tokens: 16, gen_tokens: 2, threads: 4 };
    let e = predict(&prof, &preset("w4a8", 30).unwrap(), &w).unwrap_err();
    assert!(matches!(e, PredictError::Threads { threads: 4, .. }), "{e}");
    let e = predict(&prof, &preset("w4a8", 12).unwrap(), &Workload { threads: 1, ..w }).unwrap_err();
    assert!(e.to_string().contains("12 layers"), "{e}");
    let mut prof = prof;
    prof.records.retain(|r| r.variant != "w4a8");
    let e = predict(&prof, &preset("w4a8", 30).unwrap(), &Workload { threads: 1, ..w }).unwrap_err();
    assert!(e.to_string().contains("w4a8"), "{e}");
}

/// Decode steps use the ops timed inside the forward pass (`forward.*`) where the profile
/// has them: site costs include their quantization and residual, attention interpolates in
/// the KV length; a site without such a record falls back to the isolated ones.
#[test]
fn decode_uses_in_forward_records() {
    use profiler::profile::Record;
    let mut prof = synthetic_profile(smollm2_shapes(), &[1], &[1, 16, 64], &[1, 64, 256], cost);
    let rec = |op: &str, variant: &str, bits: u8, kv: usize, s: f64| Record {
        op: format!("forward.{op}"),
        variant: variant.into(),
        isa: "synthetic".into(),
        bits,
        m: 1,
        kv,
        n: 0,
        k: 0,
        threads: 1,
        median_s: s,
        p10_s: s,
        p90_s: s,
        samples: 1,
        cv: 0.0,
        counters: Default::default(),
    };
    for (op, s) in [("qkv", 3e-6), ("o", 5e-6), ("gate_up", 7e-6)] {
        prof.records.push(rec(op, "w4a8", 8, 0, s));
    }
    prof.records.push(rec("lm_head", "w8a16", 16, 0, 2e-3));
    prof.records.push(rec("norm", "f32", 16, 0, 1e-7));
    prof.records.push(rec("attention", "f32", 16, 64, 1e-5));
    prof.records.push(rec("attention", "f32", 16, 256, 3e-5));
    let plan = preset("w4a8", 30).unwrap();
    let (p, n) = (100usize, 4usize);
    let pr = predict(&prof, &plan, &Workload { prompt_tokens: p, gen_tokens: n, threads: 1 }).unwrap();
    // Per layer and step: the three in-forward sites, `down` from isolated records (kernel
    // + quantize; the synthetic residual is free), two norms; attention over 100 + i + 1
    // keys on the line through (64, 1e-5) and (256, 3e-5).
    let layer = 3e-6 + 5e-6 + 7e-6 + (1e-6 + 1e-7) + 2.0 * 1e-7;
    let att: f64 = (0..n).map(|i| 1e-5 + 2e-5 * ((p + i + 1) as f64 - 64.0) / 192.0).sum();
    let step_other = 2e-3 + 1e-7; // LM head + final norm (embedding free)
    let want = 30.0 * (n as f64 * layer + att) + n as f64 * step_other;
    assert!(close(pr.decode_s, want), "{} vs {want}", pr.decode_s);
    // Prefill's layers are untouched by them (no in-prefill records); its one-row LM head and
    // final norm run after the layers as in a decode step, so they use the in-step records.
    let base = synthetic_profile(smollm2_shapes(), &[1], &[1, 16, 64], &[1, 64, 256], cost);
    let pb = predict(&base, &plan, &Workload { prompt_tokens: p, gen_tokens: n, threads: 1 }).unwrap();
    let layers = |x: &profiler::predict::Prediction| x.per_layer.iter().map(|l| l.prefill_s()).sum::<f64>();
    assert!(close(layers(&pr), layers(&pb)));
    assert!(close(pr.lm_head_s, 2e-3) && close(pb.lm_head_s, 1e-4));
    assert!(close(pr.prefill_s - pb.prefill_s, (2e-3 - 1e-4) + 1e-7));
    assert!(pr.decode_s > pb.decode_s);
}

/// In-prefill records (`forward.*` at M > 1): known affine costs per op.
fn fwd_cost(op: &str, variant: &str, m: usize) -> f64 {
    let m = m as f64;
    match (op, variant) {
        (_, "w4a8") => 2e-6 * m + 1e-6,
        (_, "w4a4-widen") => 3e-6 * m + 1e-6,
        (_, "w4a8+w4a4-widen") => 2.5e-6 * m + 5e-6,
        (_, "w4a8@group") => 2.2e-6 * m + 1e-6,
        ("norm", _) => 1e-8 * m,
        ("rope", _) => 2e-8 * m,
        ("silu", _) => 3e-8 * m,
        ("embed", _) => 4e-9 * m,
        _ => 0.0,
    }
}

fn with_forward_records(ms: &[usize], variants: &[(&str, u8)], mixed: bool) -> profiler::profile::DeviceProfile {
    use profiler::synthetic::forward_record;
    let mut prof = synthetic_profile(smollm2_shapes(), &[1], ms, &[1, 64, 1024], cost);
    for &m in ms {
        for &(v, bits) in variants {
            for op in ["qkv", "o", "gate_up", "down"] {
                prof.records.push(forward_record(op, v, bits, m, 0, 1, fwd_cost(op, v, m)));
            }
        }
        if mixed && m > 1 {
            for op in ["o", "gate_up", "down"] {
                prof.records.push(forward_record(op, "w4a8+w4a4-widen", 8, m, 0, 1, fwd_cost(op, "w4a8+w4a4-widen", m)));
            }
        }
        for op in ["norm", "silu", "embed"] {
            prof.records.push(forward_record(op, "f32", 16, m, 0, 1, fwd_cost(op, "f32", m)));
        }
        prof.records.push(forward_record("rope", "f32", 16, m, 0, 1, fwd_cost("rope", "f32", m)));
        if m > 1 {
            // Causal prefill attention: 5e-7 * M^2 (per row linear in M: exact).
            prof.records.push(forward_record("attention", "f32", 16, m, m, 1, 5e-7 * (m * m) as f64));
        }
    }
    prof
}

/// Prefill layers use the records timed inside real prefills where the profile has them:
/// site times include quantization and the residual, per-row ops and causal attention
/// interpolate in M; ops without such a record fall back to the isolated ones.
#[test]
fn prefill_uses_in_prefill_records() {
    let ms = [1usize, 16, 64, 128, 512];
    let prof = with_forward_records(&ms, &[("w4a8", 8)], false);
    let plan = preset("w4a8", 30).unwrap();
    let p = 100usize;
    let pr = predict(&prof, &plan, &Workload { prompt_tokens: p, gen_tokens: 0, threads: 1 }).unwrap();
    let l = &pr.per_layer[3].by_op;
    assert!(close(l["qkv"], fwd_cost("qkv", "w4a8", p)), "{l:?}");
    assert!(close(l["down"], fwd_cost("down", "w4a8", p)));
    assert!(!l.contains_key("quantize") && !l.contains_key("residual"), "{l:?}");
    assert!(close(l["norm"], 2.0 * 1e-8 * p as f64));
    assert!(close(l["attention"], 5e-7 * (p * p) as f64));
    let layer = 4.0 * (2e-6 * p as f64 + 1e-6) + 2e-8 * p as f64 + 2e-8 * p as f64 + 3e-8 * p as f64 + 5e-7 * (p * p) as f64;
    assert!(close(pr.per_layer[3].prefill_s(), layer), "{} vs {layer}", pr.per_layer[3].prefill_s());
    // Embedding of the prompt, final norm and LM head (isolated: no in-step record) of one row.
    assert!(close(pr.prefill_other_s, 4e-9 * p as f64 + 1e-8));
    assert!(close(pr.lm_head_s, 1e-4));
    // fp16 has no in-prefill site records here: its sites come from the isolated ones.
    let fp = predict(&prof, &preset("fp16", 30).unwrap(), &Workload { prompt_tokens: p, gen_tokens: 0, threads: 1 }).unwrap();
    assert!(close(fp.per_layer[3].by_op["qkv"], 1e-6 * p as f64));
    // A profile with decode-only in-step records (session 3) prices prefill as before.
    let dec_only = with_forward_records(&[1], &[("w4a8", 8)], false);
    let iso = predict(&dec_only, &plan, &Workload { prompt_tokens: p, gen_tokens: 0, threads: 1 }).unwrap();
    assert!(close(iso.per_layer[3].by_op["qkv"], 1e-6 * p as f64));
    assert!(close(iso.per_layer[3].by_op["quantize"], 4.0 * 1e-7 * p as f64));
}

/// Sites with INT4 low-importance rows are priced from the mixed-rows records (half of the
/// rows INT4), moved along the single-kernel records for the layer's actual share.
#[test]
fn mixed_rows_use_the_mixed_record() {
    use profiler::in_forward::mixed_low_rows;
    let ms = [1usize, 16, 64, 128, 512];
    let plan = preset("agile4", 30).unwrap();
    let p = 512usize;
    let w = Workload { prompt_tokens: p, gen_tokens: 0, threads: 1 };
    let kept = kept_tokens(&plan, p);
    let site = |op: &str, rows: usize, low: usize, mixed: bool| {
        if low == 0 {
            return fwd_cost(op, "w4a8", rows);
        }
        let (hi, lo) = (|x: usize| fwd_cost(op, "w4a8", x), |x: usize| fwd_cost(op, "w4a4-widen", x));
        if !mixed {
            return hi(rows - low) + lo(low);
        }
        let h = mixed_low_rows(rows);
        fwd_cost(op, "w4a8+w4a4-widen", rows) + hi(rows - low) - hi(rows - h) + lo(low) - lo(h)
    };
    for mixed in [true, false] {
        let prof = with_forward_records(&ms, &[("w4a8", 8), ("w4a4-widen", 4)], mixed);
        let pr = predict(&prof, &plan, &w).unwrap();
        let mut some_low = false;
        for l in 1..30 {
            let (m_in, m_kept, low) = kept[l];
            let low_o = kept[l - 1].2;
            some_low |= low > 0;
            let b = &pr.per_layer[l].by_op;
            assert!(close(b["o"], site("o", m_in, low_o, mixed)), "layer {l} o {} vs {}", b["o"], site("o", m_in, low_o, mixed));
            assert!(close(b["gate_up"], site("gate_up", m_kept, low, mixed)), "layer {l}");
            assert!(close(b["down"], site("down", m_kept, low, mixed)), "layer {l}");
            assert!(close(b["qkv"], fwd_cost("qkv", "w4a8", m_in)), "layer {l}");
        }
        assert!(some_low);
    }
    // At exactly the measured share the mixed record is the answer.
    assert_eq!(mixed_low_rows(128), 64);
    assert!(close(site("down", 128, 64, true), fwd_cost("down", "w4a8+w4a4-widen", 128)));
}

/// The group scheme (per-token and per-32-block scales) is priced from its own in-step
/// records; a profile without them re-prices the per-token ones with the measured
/// difference between the group and the per-token quantizers.
#[test]
fn group_scheme_uses_its_records() {
    let plan = preset("w4a8-g32", 30).unwrap();
    let w = Workload { prompt_tokens: 64, gen_tokens: 3, threads: 1 };
    let ms = [1usize, 16, 64, 128];
    let with = with_forward_records(&ms, &[("w4a8", 8), ("w4a8@group", 8)], false);
    let pr = predict(&with, &plan, &w).unwrap();
    assert!(close(pr.per_layer[0].by_op["gate_up"], fwd_cost("gate_up", "w4a8@group", 64)));
    let dl = profiler::predict::Predictor::new(&with).unwrap().decode_layer(plan.weights, &plan.layers[0], 1).unwrap();
    assert!(close(dl["qkv"], fwd_cost("qkv", "w4a8@group", 1)), "{dl:?}");
    assert!(!dl.contains_key("quantize"));
    // Without group records: the per-token in-step time plus quantize(group) - quantize(token)
    // (synthetic quantize costs do not depend on the scheme: the difference is 0 here, so
    // make the group quantizer dearer).
    let mut without = with_forward_records(&ms, &[("w4a8", 8)], false);
    for r in without.records.iter_mut().filter(|r| r.op == "quantize" && r.variant == "group") {
        r.median_s *= 3.0;
    }
    let dl = profiler::predict::Predictor::new(&without).unwrap().decode_layer(plan.weights, &plan.layers[0], 1).unwrap();
    assert!(close(dl["qkv"], fwd_cost("qkv", "w4a8", 1)));
    assert!(close(dl["quantize"], 4.0 * 2.0 * 1e-7), "{dl:?}");
    // A profile with no group quantizer records at all cannot price it: an error naming it.
    let mut none = without;
    none.records.retain(|r| !(r.op == "quantize" && r.variant == "group"));
    let e = predict(&none, &plan, &w).unwrap_err();
    assert!(e.to_string().contains("group"), "{e}");
}
