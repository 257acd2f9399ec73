//! Diagnostic: where a real decode step's time goes, op by op, compared with the same ops
//! timed in isolation (as `agq profile` times them), in one process so machine load hits
//! both alike.
//!
//! ```text
//! cargo run --release -p profiler --example decode_breakdown -- [plan] [threads] [wall|cpu] [depth] [steps]
//! ```
//!
//! Prints per-call microseconds of each op: inside the real forward pass (decode from an
//! empty cache, and after a `depth`-token prefill), isolated, and attention alone over the
//! real 30-layer cache (cold vs hot).

use profiler::measure::{self, Clock, Pools, TimingRules};
use profiler::profile::RecordKey;
use profiler::workbench::Workbench;
use runtime::gguf::Gguf;
use runtime::model::attention::{attend, AttnShape};
use runtime::model::profile::{Op, Profile};
use runtime::model::{llama, FloatHooks, Hooks, LoadOptions, Logits, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::Plan;
use std::path::Path;

fn cpu() -> f64 {
    Clock::Cpu.now()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let plan_name = a.get(1).cloned().unwrap_or("w4a16".into());
    let threads: usize = a.get(2).map_or(1, |s| s.parse().unwrap());
    let clock = if a.get(3).map(String::as_str) == Some("wall") { Clock::Wall } else { Clock::Cpu };
    let depth: usize = a.get(4).map_or(512, |s| s.parse().unwrap());
    let steps: usize = a.get(5).map_or(64, |s| s.parse().unwrap());
    let path = Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let g = Gguf::open(path).unwrap();
    let cfg = runtime::config::ModelConfig::from_gguf(&g).unwrap();
    let plan = Plan::load(&plan_name, cfg.n_layer).unwrap();
    let model = llama::load(&g, &cfg, LoadOptions::new(plan.weights)).unwrap();
    let hooks: Box<dyn Hooks> = if runtime::model::float_plan_weights(&plan).is_ok() {
        Box::new(FloatHooks)
    } else {
        Box::new(PlanHooks::build(&model, &g, &plan, &plan_name, None, Prunable::All).unwrap())
    };
    let pools = Pools::new(&[threads], true).unwrap();
    let pool = pools.get(threads);
    let prof_clock = if clock == Clock::Cpu { Some(cpu as fn() -> f64) } else { None };
    let vocab = cfg.vocab_size;
    let nl = cfg.n_layer as f64;
    println!("plan {plan_name}, {threads} threads, clock {}, depth {depth}, {steps} steps", clock.name());

    let per_call = |p: &Profile, op: Op| if p.calls(op) == 0 { 0.0 } else { p.seconds(op) / p.calls(op) as f64 * 1e6 };
    let mut st = State::new();
    let mut cache = model.new_cache(depth + steps + 1);
    let mut rows: Vec<(String, Profile, f64)> = Vec::new();
    pool.install(|| {
        for (name, d) in [("empty", 0usize), ("after-prefill", depth), ("empty", 0), ("after-prefill", depth)] {
            cache.clear();
            let toks = runtime::bench::tokens(d + steps, vocab, 7);
            if d > 0 {
                st.profile = Profile::with_clock(prof_clock);
                let t0 = clock.now();
                model.forward(&toks[..d], &mut cache, &mut st, Logits::Last, &*hooks).unwrap();
                rows.push((format!("prefill-{d}"), st.profile.clone(), (clock.now() - t0) * 1e6));
            }
            st.profile = Profile::with_clock(prof_clock);
            let t0 = clock.now();
            for &t in &toks[d..] {
                model.forward(&[t], &mut cache, &mut st, Logits::Last, &*hooks).unwrap();
            }
            let step = (clock.now() - t0) / steps as f64 * 1e6;
            rows.push((name.into(), st.profile.clone(), step));
        }
    });
    rows.drain(..3);
    println!("\nin the real forward (us per call; step = whole decode step):");
    print!("{:<14} {:>9}", "run", "step");
    for op in Op::ALL {
        print!(" {:>9}", op.name());
    }
    println!("  {:>9}", "sum-ops");
    for (name, p, step) in &rows {
        print!("{:<14} {:>9.1}", name, step);
        for op in Op::ALL {
            print!(" {:>9.2}", per_call(p, op));
        }
        let n = if name.starts_with("prefill") { 1.0 } else { steps as f64 };
        println!("  {:>9.1}", p.total_seconds() / n * 1e6);
    }

    // The same ops in isolation.
    let mut wb = Workbench::open(path, usize::MAX, 6).unwrap();
    let rules = TimingRules { clock, ..TimingRules::full() };
    let lp = &plan.layers[0];
    let v = |s: runtime::plan::Site| profiler::predict::site_variant(lp.site(s), plan.weights);
    let (hv, hb) = profiler::predict::lm_head_variant(&plan, Some(&wb.lm_head_variant()));
    let att = profiler::predict::attention_variant(lp);
    let kv_mid = depth + steps / 2;
    let key = |op: &str, variant: &str, bits: u8, m: usize, kv: usize, k: usize| RecordKey {
        op: op.into(),
        variant: variant.into(),
        bits,
        m,
        kv,
        k,
        threads,
    };
    use runtime::plan::Site;
    let cases = vec![
        key("qkv", &v(Site::Qkv), lp.site(Site::Qkv).bits, 1, 0, 576),
        key("o", &v(Site::O), lp.site(Site::O).bits, 1, 0, 576),
        key("gate_up", &v(Site::GateUp), lp.site(Site::GateUp).bits, 1, 0, 576),
        key("down", &v(Site::Down), lp.site(Site::Down).bits, 1, 0, 1536),
        key("lm_head", &hv, hb, 1, 0, 576),
        key("attention", &att, if att == "f32" { 16 } else { 8 }, 1, steps / 2, 0),
        key("attention", &att, if att == "f32" { 16 } else { 8 }, 1, kv_mid, 0),
        key("norm", "f32", 16, 1, 0, 0),
        key("rope", "f32", 16, 1, 0, 0),
        key("silu", "f32", 16, 1, 0, 0),
        key("residual", "f32", 16, 1, 0, 0),
        key("quantize", "token", 8, 1, 0, 576),
        key("quantize", "token", 8, 1, 0, 1536),
    ];
    let mut cases = cases;
    if depth > 1 {
        let big: Vec<RecordKey> = cases.iter().filter(|k| k.op != "lm_head" && k.op != "attention").map(|k| RecordKey { m: depth, ..k.clone() }).collect();
        cases.extend(big);
        cases.push(key("attention", &att, if att == "f32" { 16 } else { 8 }, depth, depth, 0));
    }
    println!("\nisolated (us per call, median):");
    for k in &cases {
        let mut f = wb.prepare(k).unwrap();
        let t = pool.install(|| measure::time(&mut f, &rules));
        let med = profiler::stats::Summary::of(&t.samples).unwrap().median;
        println!("{:<10} {:<14} m {:>4} kv {:>4}: {:>9.2}", k.op, k.variant, k.m, k.kv, med * 1e6);
    }

    // Attention alone over the real cache: each layer once in turn (30 layers' KV), and one
    // layer over and over (hot).
    let shape = AttnShape { n_head: cfg.n_head, n_head_kv: cfg.n_head_kv, head_dim: cfg.head_dim };
    let qd = cfg.q_dim();
    let q = profiler::workbench::random_values(qd, 3);
    let pos = [cache.layers[0].positions().last().copied().unwrap_or(0)];
    let mut out = vec![0f32; qd];
    pool.install(|| {
        for _ in 0..3 {
            let t0 = clock.now();
            let reps = 20;
            for _ in 0..reps {
                for l in 0..cfg.n_layer {
                    attend(hooks.attn_ops(l), shape, &q, &pos, &cache.layers[l], &mut out, None);
                }
            }
            let all = (clock.now() - t0) / (reps as f64 * nl) * 1e6;
            let t0 = clock.now();
            for _ in 0..reps * cfg.n_layer {
                attend(hooks.attn_ops(0), shape, &q, &pos, &cache.layers[0], &mut out, None);
            }
            let one = (clock.now() - t0) / (reps as f64 * nl) * 1e6;
            println!("attention over the real cache (kv {}): 30 layers in turn {all:.1} us/call, layer 0 repeated {one:.1} us/call", cache.layers[0].len());
        }
    });
}
