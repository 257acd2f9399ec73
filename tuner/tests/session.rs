//! A whole tuning session on a tiny synthetic model with a synthetic latency model:
//! replayed sensitivity equals a full run, the cache is reused, budgets are honoured on the
//! held-out text, a zero budget admits no quality-costing change and says why.

use kernels::Variant;
use runtime::gguf::synthetic::{tiny_config, tiny_llama};
use runtime::gguf::{GgmlType, Gguf};
use runtime::model::{llama, LoadOptions, Model};
use runtime::plan::{Plan, Scheme, Site, WeightFormat};
use tuner::latency::{Latency, LatencyModel};
use tuner::search::Candidate;
use tuner::sensitivity::{Calibrator, Job};
use tuner::session::{Quiet, Session, Settings};
use tuner::space::{Change, Granularity, SiteName, Unit};
use tuner::{Budget, Objective};

/// Per row: float 1.0, f16 kernel 0.9, INT8 0.5, INT4 0.4 (w4a4-widen; other INT4 kernels
/// 0.45), INT8 attention 1.5 vs 0.3 float; tokens per layer follow the plan's pruning.
struct Fake {
    prompt: usize,
}

fn site_cost(plan: &Plan, l: usize, s: Site) -> f64 {
    let sp = plan.layers[l].site(s);
    match sp.resolve_variant(plan.weights) {
        Variant::W4A16 => 1.0,
        Variant::F16 => 0.9,
        Variant::W4A8 => 0.5,
        Variant::W4A4Widen => 0.4,
        _ => 0.45,
    }
}

impl LatencyModel for Fake {
    fn predict(&self, plan: &Plan) -> Result<Latency, String> {
        let kept = profiler::predict::kept_tokens(plan, self.prompt);
        let mut prefill = 0.0;
        let mut decode = 0.0;
        for (l, lp) in plan.layers.iter().enumerate() {
            let (m_in, m_out, _) = kept[l];
            let attn = if lp.qk.bits == 8 { 1.5 } else { 0.3 };
            let per = |s: Site| site_cost(plan, l, s);
            prefill += m_in as f64 * (per(Site::Qkv) + per(Site::O) + attn) * 1e-3;
            prefill += m_out as f64 * (per(Site::GateUp) + per(Site::Down)) * 1e-3;
            decode += (per(Site::Qkv) + per(Site::O) + per(Site::GateUp) + per(Site::Down) + attn) * 1e-3;
        }
        Ok(Latency { prefill_s: prefill, decode_s: decode * 4.0 })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    gguf: Gguf,
    model: Model,
    tokens: Vec<u32>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let mut cfg = tiny_config();
    cfg.n_layer = 4;
    tiny_llama(&cfg, GgmlType::Q4_1, 5).write(&path).unwrap();
    let gguf = Gguf::open(&path).unwrap();
    let model = llama::load_gguf(&gguf, LoadOptions::new(WeightFormat::Q4_1)).unwrap();
    let tokens = runtime::bench::tokens(1200, cfg.vocab_size, 9);
    Fixture { _dir: dir, gguf, model, tokens }
}

fn settings() -> Settings {
    Settings {
        objective: Objective::Prefill,
        calib_ctx: 64,
        calib_chunks: 2,
        heldout_ctx: 64,
        heldout_chunks: 4,
        granularity: Granularity::Site,
        ..Settings::default()
    }
}

#[test]
fn replaying_early_layers_gives_the_full_runs_result() {
    let f = fixture();
    let chunks: Vec<Vec<u32>> = vec![f.tokens[..64].to_vec(), f.tokens[100..164].to_vec()];
    let cal = Calibrator { model: &f.model, src: &f.gguf, chunks };
    let mut plan = runtime::plan::presets::preset("w4a16", 4).unwrap();
    Unit::Site { layer: 2, site: SiteName::GateUp, bits: 8, scheme: Scheme::Token }.apply(&mut plan);
    runtime::plan::presets::preset("w4a16", 4).unwrap();
    let mut pruned = runtime::plan::presets::preset("w4a16", 4).unwrap();
    tuner::space::PruneSchedule { start: 2, beta: 0.3 }.apply(&mut pruned);
    let jobs = vec![
        Job { key: "full".into(), plan: plan.clone(), first: 0 },
        Job { key: "replay".into(), plan, first: 2 },
        Job { key: "prune-full".into(), plan: pruned.clone(), first: 0 },
        Job { key: "prune-replay".into(), plan: pruned, first: 2 },
    ];
    let r = cal.measure(&jobs, |_, _| {}).unwrap();
    assert!(r[0].kl > 0.0, "INT8 changes the distribution: {:?}", r[0]);
    assert!((r[0].kl - r[1].kl).abs() <= 1e-9 * r[0].kl.max(1e-12), "{:?} vs {:?}", r[0], r[1]);
    assert!((r[0].dnll - r[1].dnll).abs() <= 1e-9);
    assert!(r[2].kl > 0.0);
    assert!((r[2].kl - r[3].kl).abs() <= 1e-9 * r[2].kl, "{:?} vs {:?}", r[2], r[3]);
    // The reference against itself: zero.
    let same = cal.measure(&[Job { key: "w4a16".into(), plan: runtime::plan::presets::preset("w4a16", 4).unwrap(), first: 1 }], |_, _| {}).unwrap();
    assert!(same[0].kl.abs() < 1e-6 && same[0].dnll.abs() < 1e-6, "{:?}", same[0]);
}

#[test]
fn tunes_within_budget_reuses_the_cache_and_explains_zero_budgets() {
    let f = fixture();
    let cache = tempfile::tempdir().unwrap();
    let lat = Fake { prompt: 64 };
    let mk = || {
        Session::new(settings(), &f.model, None, &f.gguf, &lat, &Quiet, &"ab".repeat(32), "synthetic", &"cd".repeat(32), &f.tokens, cache.path().to_path_buf())
            .unwrap()
    };
    let mut s = mk();
    // The space: every site has INT8 and INT4 (both faster), the f16 float kernel is free;
    // INT8 attention is slower and so not a candidate; prune schedules save prefill.
    assert_eq!(s.groups.len(), 16);
    assert!(s.groups.iter().all(|g| g.options.len() == 3), "{:?}", s.groups);
    assert!(!s.schedules.is_empty());
    let picked_widen = s.groups[0].options.iter().any(|c| matches!(c, Change::Site { bits: 4, variant: Variant::W4A4Widen, .. }));
    assert!(picked_widen, "the fastest INT4 kernel is the candidate: {:?}", s.groups[0]);
    let measured = s.ensure_sensitivity().unwrap();
    assert_eq!(measured, s.units().len());

    // A generous budget: changes are taken and the held-out perplexity is within it.
    let t = s.tune(Budget::Relative(0.5)).unwrap();
    assert!(t.within);
    assert!(t.heldout.ppl <= t.allowed_ppl);
    assert!(t.kept.iter().any(|c: &Candidate| c.kl > 0.0), "{:?}", t.kept);
    let base_lat = lat.predict(&s.base_plan()).unwrap();
    assert!(t.predicted.prefill_s < base_lat.prefill_s);
    // The written plan round-trips and carries the record.
    let plan = s.finish_plan(&t, &"ab".repeat(32), None, None, "test", None);
    let back = runtime::plan::file::parse(&plan.to_toml(), "t.toml").unwrap().expand(4).unwrap();
    assert_eq!(back, plan);
    let info = plan.tuner.as_ref().unwrap();
    assert_eq!(info.measured_ppl, Some(t.heldout.ppl));
    assert!(info.budget.as_ref().unwrap().contains("50%"));

    // Zero budget: only free changes (f16 float kernels), and an explanation.
    let z = s.tune(Budget::Relative(0.0)).unwrap();
    assert!(z.kept.iter().all(|c| c.kl == 0.0), "{:?}", z.kept);
    assert!(z.heldout.ppl <= z.allowed_ppl || z.kept.is_empty());
    let e = z.explanation.expect("a zero budget is explained");
    assert!(e.contains("admits no quantization change"), "{e}");

    // A second session with the same text and model reuses every measurement.
    let mut s2 = mk();
    assert_eq!(s2.ensure_sensitivity().unwrap(), 0);

    // Per-layer granularity: one group per layer; the all-float option exists only as the
    // f16 kernels (free); MLP INT8, all INT8 and all INT4 are each faster than the last.
    let per_layer = Settings { granularity: Granularity::Layer, ..settings() };
    let mut s3 =
        Session::new(per_layer, &f.model, None, &f.gguf, &lat, &Quiet, &"ab".repeat(32), "synthetic", &"cd".repeat(32), &f.tokens, cache.path().to_path_buf())
            .unwrap();
    assert_eq!(s3.groups.len(), 4);
    assert!(s3.groups.iter().all(|g| g.options.len() == 4), "{:?}", s3.groups[0]);
    assert!(matches!(s3.groups[1].options[2], Change::Layer { layer: 1, bits: [8, 8, 8, 8], .. }));
    let t = s3.tune(Budget::Relative(0.5)).unwrap();
    assert!(t.within && t.heldout.ppl <= t.allowed_ppl);
}

#[test]
fn group_scheme_sets_block_scaled_sites_on_kernels_that_take_them() {
    let f = fixture();
    let cache = tempfile::tempdir().unwrap();
    let lat = Fake { prompt: 64 };
    let grouped = Settings { granularity: Granularity::Site, scheme: Scheme::Group, ..settings() };
    let mut s =
        Session::new(grouped, &f.model, None, &f.gguf, &lat, &Quiet, &"ab".repeat(32), "synthetic", &"cd".repeat(32), &f.tokens, cache.path().to_path_buf())
            .unwrap();
    let int_options: Vec<&Change> = s.groups.iter().flat_map(|g| &g.options).filter(|c| matches!(c, Change::Site { bits: 4 | 8, .. })).collect();
    assert!(!int_options.is_empty(), "{:?}", s.groups);
    for c in &int_options {
        let Change::Site { scheme, variant, .. } = c else { unreachable!() };
        assert_eq!(*scheme, Scheme::Group, "{c:?}");
        assert!(matches!(variant, Variant::W4A8 | Variant::W4A4Widen), "only these kernels take block scales: {c:?}");
        assert!(c.unit().unwrap().key().ends_with('g'), "{}", c.unit().unwrap().key());
    }
    // Measured units are keyed apart from the token scheme's, and the plans they build run.
    s.ensure_sensitivity().unwrap();
    let t = s.tune(Budget::Relative(0.5)).unwrap();
    let plan = s.finish_plan(&t, &"ab".repeat(32), None, None, "test", None);
    let int_sites: Vec<_> = plan.layers.iter().flat_map(|l| [l.qkv, l.o, l.gate_up, l.down]).filter(|sp| sp.bits < 16).collect();
    assert!(int_sites.iter().all(|sp| sp.scheme == Scheme::Group), "{int_sites:?}");
}
