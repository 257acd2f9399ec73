//! Diagnostic: where a real prefill's time goes, op by op, next to what the predictor
//! charges for each op from a device profile. Plans run interleaved (ABCABC), so the host's
//! drift hits every plan alike; medians over the repetitions.
//!
//! ```text
//! cargo run --release -p profiler --example prefill_breakdown -- PROFILE [plans] [threads] [prompt] [reps] [wall|cpu]
//! ```

use profiler::measure::{Clock, Pools};
use profiler::predict::{Predictor, Workload};
use profiler::profile::DeviceProfile;
use runtime::gguf::Gguf;
use runtime::model::profile::{Op, Profile};
use runtime::model::{llama, FloatHooks, Hooks, LoadOptions, Logits, Model, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{Plan, WeightFormat};
use std::collections::BTreeMap;
use std::path::Path;

fn cpu() -> f64 {
    Clock::Cpu.now()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let profile = DeviceProfile::read(a.get(1).expect("profile file")).unwrap();
    let plans: Vec<String> = a.get(2).map_or("w4a8,agile8,agile4".into(), |s| s.clone()).split(',').map(String::from).collect();
    let threads: usize = a.get(3).map_or(2, |s| s.parse().unwrap());
    let prompt: usize = a.get(4).map_or(512, |s| s.parse().unwrap());
    let reps: usize = a.get(5).map_or(3, |s| s.parse().unwrap());
    let clock = if a.get(6).map(String::as_str) == Some("cpu") { Clock::Cpu } else { Clock::Wall };
    let prof_clock: Option<fn() -> f64> = if clock == Clock::Cpu { Some(cpu) } else { None };
    let path = Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let g = Gguf::open(path).unwrap();
    let cfg = runtime::config::ModelConfig::from_gguf(&g).unwrap();
    let q4 = llama::load(&g, &cfg, LoadOptions::new(WeightFormat::Q4_1)).unwrap();
    let f16 = llama::load(&g, &cfg, LoadOptions::new(WeightFormat::F16)).unwrap();
    let model = |w: WeightFormat| -> &Model { if w == WeightFormat::F16 { &f16 } else { &q4 } };
    let loaded: Vec<(String, Plan, Box<dyn Hooks>)> = plans
        .iter()
        .map(|n| {
            let plan = Plan::load(n, cfg.n_layer).unwrap();
            let m = model(plan.weights);
            let hooks: Box<dyn Hooks> = if runtime::model::float_plan_weights(&plan).is_ok() {
                Box::new(FloatHooks)
            } else {
                Box::new(PlanHooks::build(m, &g, &plan, n, None, Prunable::All).unwrap())
            };
            (n.clone(), plan, hooks)
        })
        .collect();
    let pools = Pools::new(&[threads], true).unwrap();
    let toks = runtime::bench::tokens(prompt, cfg.vocab_size, 3);
    // [plan][rep] -> per-op seconds
    let mut meas: Vec<Vec<(Profile, f64)>> = vec![Vec::new(); loaded.len()];
    pools.get(threads).install(|| {
        for r in 0..=reps {
            for (i, (_, plan, hooks)) in loaded.iter().enumerate() {
                let m = model(plan.weights);
                let mut cache = m.new_cache(prompt);
                let mut st = State::new();
                st.profile = Profile::with_clock(prof_clock);
                let t0 = clock.now();
                m.forward(&toks, &mut cache, &mut st, Logits::Last, &**hooks).unwrap();
                let wall = clock.now() - t0;
                if r > 0 {
                    meas[i].push((st.profile.clone(), wall));
                }
            }
        }
    });
    let pred = Predictor::new(&profile).unwrap();
    let w = Workload { prompt_tokens: prompt, gen_tokens: 0, threads };
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (i, (name, plan, _)) in loaded.iter().enumerate() {
        let p = pred.predict(plan, &w).unwrap();
        let mut by: BTreeMap<String, f64> = BTreeMap::new();
        for l in &p.per_layer {
            for (k, v) in &l.by_op {
                *by.entry(k.clone()).or_default() += v;
            }
        }
        let wall = med(meas[i].iter().map(|x| x.1).collect());
        println!("\n{name}: measured prefill {:.1} ms (median of {reps}), predicted {:.1} ms ({:+.1}%)", wall * 1e3, p.prefill_s * 1e3, (p.prefill_s / wall - 1.0) * 100.0);
        println!("  {:<10} {:>10}   predicted by op (ms)", "op", "meas ms");
        for op in Op::ALL {
            let v = med(meas[i].iter().map(|x| x.0.seconds(op)).collect());
            println!("  {:<10} {:>10.2}", op.name(), v * 1e3);
        }
        let pred_line: Vec<String> = by.iter().map(|(k, v)| format!("{k} {:.2}", v * 1e3)).collect();
        println!("  predicted: {} | lm_head {:.2} other {:.2}", pred_line.join(", "), p.lm_head_s * 1e3, p.prefill_other_s * 1e3);
    }
}
