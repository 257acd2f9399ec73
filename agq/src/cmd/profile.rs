//! `agq profile`: measure this device's per-op latency profile at the model's real shapes
//! (resumable, written atomically), validate the predictor against real runs of plans
//! (`--validate`), or print predictions from any profile, spec-sheet ones included
//! (`--predict`).

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use profiler::device::DeviceFingerprint;
use profiler::measure::{Clock, Pools};
use profiler::predict::{Basis, Predictor, Workload};
use profiler::profile::{DeviceProfile, ModelShapes};
use profiler::run::{Progress, Settings, ALL_ATTENTION};
use profiler::stats::Summary;
use profiler::validate::{self, Additivity, Case, ValidationReport};
use runtime::plan::exec::Prunable;
use runtime::plan::{presets, Plan};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file.
    #[arg(long, short, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// Where to write the profile (default: device-profiles/<device slug>.toml).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Thread counts to profile (with --validate: the largest is used).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Token counts M (rows per call; 1 = a decode step). Default 1,16,64,128,512 (--quick: 1,16).
    #[arg(long, value_delimiter = ',')]
    tokens: Vec<usize>,
    /// KV lengths for decode attention. Default 64,128,256,512,1024 (--quick: 16,128).
    #[arg(long = "kv", value_delimiter = ',')]
    kv_lengths: Vec<usize>,
    /// Attention variants: `f32`, `qk8`, `pv8`, `log2` joined by `+`, or `all`
    /// (default: f32,qk8+pv8+log2, the presets' two).
    #[arg(long, value_delimiter = ',')]
    attention: Vec<String>,
    /// Presets whose first layer is timed whole (`block` records, for the additivity check).
    #[arg(long, value_delimiter = ',')]
    blocks: Vec<String>,
    /// CI-sized run: few shapes, few samples (well under a minute).
    #[arg(long)]
    quick: bool,
    /// Continue the partial profile at --out (after Ctrl-C or a kill).
    #[arg(long)]
    resume: bool,
    /// Also append every record as one JSON line to this file (`-` = stdout).
    #[arg(long)]
    jsonl: Option<PathBuf>,
    /// Seed of the randomised measurement order.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Do not pin worker threads to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// `wall` (elapsed time) or `cpu` (process CPU time; single thread only: for a machine
    /// busy with other work, where elapsed times mostly measure the other work).
    #[arg(long, default_value = "wall", value_parser = ["wall", "cpu"])]
    clock: String,
    /// Stop after N new records (simulates an interruption; for tests).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,

    /// Run plans for real and compare with the predictions from --profile.
    #[arg(long)]
    validate: bool,
    /// Print predictions from --profile for --plans (measured or spec-sheet profiles).
    #[arg(long, conflicts_with = "validate")]
    predict: bool,
    /// The profile to validate or predict from.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Plans (presets or files) for --validate / --predict.
    #[arg(long, value_delimiter = ',', default_value = "fp16,w4a16,w4a8,agile8,agile4")]
    plans: Vec<String>,
    /// Prompt tokens (prefill) for --validate / --predict.
    #[arg(long, default_value_t = 512)]
    prompt: usize,
    /// Generated tokens (decode steps) for --validate / --predict.
    #[arg(long, default_value_t = 128)]
    gen: usize,
    /// Timed repetitions per plan for --validate (median taken; the plans run interleaved,
    /// one round of every plan per repetition, after a warm-up round).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// --validate: re-measure the in-step records the plans' predictions use (`forward.*`)
    /// in every round, interleaved with the plans' runs, and predict from those (the
    /// predictions from the stored profile are reported next to them).
    #[arg(long, requires = "validate")]
    fresh_ops: bool,
    /// Print one JSON object (--validate: the validation report; --predict: the predictions).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.validate {
        return validate_cmd(&args);
    }
    if args.predict {
        return predict_cmd(&args);
    }
    if args.json {
        bail!("--json goes with --validate or --predict (the profile itself is the TOML file; --jsonl streams records)");
    }
    profile_cmd(&args)
}

struct Bar {
    bar: ProgressBar,
}

impl Progress for Bar {
    fn phase(&mut self, what: &str) {
        self.bar.set_message(what.to_string());
        self.bar.tick();
    }
    fn cases(&mut self, done: usize, total: usize, current: &str) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.bar.set_message(current.to_string());
    }
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} eta {eta}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn profile_cmd(args: &Args) -> Result<()> {
    if !args.model.exists() {
        bail!("{}: model file not found (scripts/fetch-model.sh fetches the default one)", args.model.display());
    }
    let device = DeviceFingerprint::detect();
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("device-profiles/{}.toml", device.slug)));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    }
    let mut s = Settings::defaults(args.model.clone(), out.clone(), args.quick);
    s.threads = {
        let mut t = args.threads.clone();
        t.sort_unstable();
        t.dedup();
        t
    };
    if !args.tokens.is_empty() {
        s.tokens = sorted(&args.tokens);
    }
    if !args.kv_lengths.is_empty() {
        s.kv_lengths = sorted(&args.kv_lengths);
    }
    if args.attention.iter().any(|a| a == "all") {
        s.attention = ALL_ATTENTION.iter().map(|a| a.to_string()).collect();
    } else if !args.attention.is_empty() {
        s.attention = args.attention.clone();
    }
    if !args.blocks.is_empty() {
        s.blocks = args.blocks.clone();
    }
    s.resume = args.resume;
    s.pin = !args.no_pin;
    s.seed = args.seed;
    s.stop_after = args.stop_after;
    if args.clock == "cpu" {
        s.rules.clock = Clock::Cpu;
    }
    s.git_commit = git_commit();
    for &t in &s.threads {
        if t > device.logical_cores {
            eprintln!("agq: warning: {t} threads on {} logical cores", device.logical_cores);
        }
    }
    let mut jsonl_file: Option<Box<dyn std::io::Write>> = match &args.jsonl {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(
            std::fs::OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("{}", p.display()))?,
        )),
    };
    eprintln!(
        "agq profile: {} -> {}{} (threads {:?}, tokens {:?}, kv {:?})",
        args.model.display(),
        out.display(),
        if args.resume { ", resuming" } else { "" },
        s.threads,
        s.tokens,
        s.kv_lengths
    );
    let b = bar();
    let mut progress = Bar { bar: b.clone() };
    let result = profiler::run::run(&s, &mut progress, jsonl_file.as_deref_mut().map(|w| w as &mut dyn std::io::Write));
    b.finish_and_clear();
    let p = result?;
    print_summary(&p, &out);
    Ok(())
}

fn sorted(v: &[usize]) -> Vec<usize> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

fn ms(s: f64) -> String {
    let v = s * 1e3;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn print_summary(p: &DeviceProfile, out: &std::path::Path) {
    let m = &p.measurement;
    println!(
        "profile {} ({} records, {:.0} s, pinned {}, counters {})",
        out.display(),
        p.records.len(),
        m.seconds,
        m.pinned,
        m.counters
    );
    for c in &p.ceilings {
        println!(
            "ceilings t={}: f32 FMA {:.1} GFLOP/s, INT8 {:.1} GOP/s, read {:.1} GB/s",
            c.threads, c.f32_gflops, c.int8_gops, c.dram_read_gbs
        );
    }
    let t = *m.thread_counts.iter().max().unwrap_or(&1);
    let big = *m.token_counts.iter().max().unwrap_or(&1);
    println!("\nmedian ms per call at {t} threads (M = 1 | M = {big}; forward.* = inside real decode steps, forward.attention at the longest KV):");
    println!("{:<18} {:<14} {:>10} {:>10}", "op", "variant", "M=1", format!("M={big}"));
    let get = |op: &str, v: &str, mm: usize, kv: usize| {
        p.records.iter().find(|r| r.op == op && r.variant == v && r.m == mm && r.kv == kv && r.threads == t).map(|r| ms(r.median_s))
    };
    let mut seen = std::collections::BTreeSet::new();
    for r in &p.records {
        if r.threads != t || r.op == "quantize" || r.op == "softmax" || !seen.insert((r.op.clone(), r.variant.clone())) {
            continue;
        }
        // In-step decode attention: shown at the longest profiled KV length.
        let long = *m.kv_lengths.last().unwrap_or(&0);
        let (kv1, kvb) = match r.op.as_str() {
            "attention" | "block" => (1, big),
            "forward.attention" => (long, 0),
            _ => (0, 0),
        };
        println!(
            "{:<18} {:<14} {:>10} {:>10}",
            r.op,
            r.variant,
            get(&r.op, &r.variant, 1, kv1).unwrap_or("-".into()),
            get(&r.op, &r.variant, big, kvb).unwrap_or("-".into())
        );
    }
}

fn load_profile(args: &Args) -> Result<(DeviceProfile, String)> {
    let path = args.profile.as_ref().ok_or_else(|| anyhow!("--validate and --predict need --profile FILE"))?;
    let file = path.display().to_string();
    Ok((DeviceProfile::read(path)?, file))
}

fn model_shapes(args: &Args) -> Result<(ModelShapes, runtime::config::ModelConfig)> {
    let g = runtime::gguf::Gguf::open(&args.model).context("cannot read model")?;
    let cfg = runtime::config::ModelConfig::from_gguf(&g).context("invalid model")?;
    let sha = runtime::hash::file_sha256(&args.model)?;
    let name = args.model.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
    Ok((ModelShapes::from_config(&cfg, &name, &sha), cfg))
}

fn predict_cmd(args: &Args) -> Result<()> {
    let (p, file) = load_profile(args)?;
    let (shapes, _) = model_shapes(args)?;
    if p.is_measured() {
        p.check_model_in(&shapes.sha256, &file)?;
    }
    let pred = Predictor::with_shapes(&p, shapes.clone());
    let threads = *args.threads.iter().max().unwrap_or(&1);
    let threads = if p.thread_counts().contains(&threads) { threads } else { *p.thread_counts().last().unwrap_or(&1) };
    let w = Workload { prompt_tokens: args.prompt, gen_tokens: args.gen, threads };
    let label = match pred.basis() {
        Basis::Measured => "predicted from measured per-op latencies",
        Basis::Roofline => "PREDICTED from spec-sheet ceilings (roofline; nothing measured)",
    };
    let mut rows = Vec::new();
    for spec in &args.plans {
        let plan = Plan::load(spec, shapes.n_layer).context("cannot load plan")?;
        let r = pred.predict(&plan, &w).with_context(|| format!("{file}: predicting {spec}"))?;
        rows.push((spec.clone(), r));
    }
    if args.json {
        let v: Vec<_> = rows.iter().map(|(n, r)| serde_json::json!({ "plan": n, "prediction": r })).collect();
        println!("{}", serde_json::json!({ "device_slug": p.device.slug, "kind": p.kind, "basis": pred.basis(), "predictions": v }));
        return Ok(());
    }
    println!("device {} ({label}); prefill {} tokens, decode {} tokens, {threads} threads", p.device.slug, args.prompt, args.gen);
    println!("{:<12} {:>12} {:>12} {:>12} {:>10}", "plan", "prefill ms", "decode ms", "e2e ms", "tok/s gen");
    for (n, r) in &rows {
        let tg = if r.decode_s > 0.0 { args.gen as f64 / r.decode_s } else { 0.0 };
        println!("{:<12} {:>12.1} {:>12.1} {:>12.1} {:>10.1}", n, r.prefill_s * 1e3, r.decode_s * 1e3, r.e2e_s * 1e3, tg);
    }
    Ok(())
}

fn validate_cmd(args: &Args) -> Result<()> {
    let (p, file) = load_profile(args)?;
    if !p.is_measured() {
        bail!("{file}: a spec-sheet profile describes another device; it can only predict (--predict), not be validated here");
    }
    let here = DeviceFingerprint::detect();
    p.check_device(&here, &file)?;
    let (shapes, _) = model_shapes(args)?;
    p.check_model_in(&shapes.sha256, &file)?;
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let load_start = loadavg();
    let file_name = file.clone();
    let clock = p.measurement.clock;
    let threads = if clock == Clock::Cpu { 1 } else { *args.threads.iter().max().unwrap_or(&2) };
    let pred = Predictor::new(&p)?;
    let w = Workload { prompt_tokens: args.prompt, gen_tokens: args.gen, threads };
    // Predict first: a plan the profile cannot predict fails before minutes of measuring.
    let mut plans = Vec::new();
    for spec in &args.plans {
        let plan = Plan::load(spec, shapes.n_layer).context("cannot load plan")?;
        let r = pred.predict(&plan, &w).with_context(|| format!("{file}: predicting {spec}"))?;
        plans.push((spec.clone(), r, plan));
    }
    let pools = Pools::new(&[threads], p.measurement.pinned).map_err(|e| anyhow!("cannot start the thread pool: {e}"))?;
    let b = bar();
    let mut loaded = Vec::new();
    for (spec, _, _) in &plans {
        b.set_message(format!("loading {spec}"));
        loaded.push(super::eval::load(&args.model, spec, None, Prunable::All)?);
    }
    // --fresh-ops: the in-step records the plans need, re-measured once per round.
    let mut models = None;
    if args.fresh_ops {
        let mut m = profiler::in_forward::Models::open(&args.model)?;
        for l in &loaded {
            m.load(l.model.weights)?;
        }
        m.load(runtime::plan::WeightFormat::Q4_1)?;
        models = Some(m);
    }
    let plan_list: Vec<&Plan> = plans.iter().map(|(_, _, pl)| pl).collect();
    let groups = if args.fresh_ops { fresh_groups(&p, &plan_list, threads) } else { Vec::new() };
    let q4_head = p.measurement.lm_head_q4_variant.clone().unwrap_or_else(|| "w8a16".into());
    let mut runners = Vec::new();
    if let Some(m) = &models {
        for g in &groups {
            b.set_message(format!("preparing {}", g.label()));
            runners.push(profiler::in_forward::Runner::new(m, g, &p.measurement.token_counts, &p.measurement.kv_lengths, &q4_head, clock)?);
        }
    }
    let mut fresh: std::collections::BTreeMap<profiler::profile::RecordKey, Vec<f64>> = Default::default();
    b.set_length((args.plans.len() * args.reps) as u64);
    b.set_message(format!("running {} (interleaved)", args.plans.join(",")));
    let runs: Vec<(&runtime::model::Model, &dyn runtime::model::Hooks)> = loaded.iter().map(|l| (&l.model, &*l.hooks)).collect();
    let pool = pools.get(threads);
    let timings = {
        validate::measure_plans_interleaved::<anyhow::Error>(
            pool,
            &runs,
            &w,
            args.reps,
            clock,
            |_| {
                for r in runners.iter_mut() {
                    let n = profiler::in_forward::Samples { steps: 3, warmup: 1, prefills: 1, prefill_budget_s: 0.0 };
                    for (k, v) in r.run(n, pool)? {
                        fresh.entry(k).or_default().extend(v);
                    }
                }
                Ok(())
            },
            |k| b.set_position(k as u64),
        )
    }?;
    let fresh_profile = args.fresh_ops.then(|| validate::with_fresh_records(&p, &fresh));
    let fresh_pred = match &fresh_profile {
        Some(fp) => Some(Predictor::new(fp)?),
        None => None,
    };
    let mut cases = Vec::new();
    for ((spec, r, plan), t) in plans.iter().zip(&timings) {
        let fr = match &fresh_pred {
            Some(fpred) => Some(fpred.predict(plan, &w).with_context(|| format!("predicting {spec} from the re-measured ops"))?),
            None => None,
        };
        for (phase, stored_s, samples) in [("prefill", r.prefill_s, &t.prefill_s), ("decode", r.decode_s, &t.decode_s)] {
            if samples.is_empty() || (phase == "prefill" && w.prompt_tokens == 0) || (phase == "decode" && w.gen_tokens == 0) {
                continue;
            }
            let pred_s = match &fr {
                Some(f) if phase == "prefill" => f.prefill_s,
                Some(f) => f.decode_s,
                None => stored_s,
            };
            let s = Summary::of(samples).expect("reps >= 1");
            cases.push(Case {
                plan: spec.clone(),
                phase: phase.into(),
                predicted_s: pred_s,
                measured_s: s.median,
                error_pct: validate::error_pct(pred_s, s.median),
                measured_p10_s: s.p10,
                measured_p90_s: s.p90,
                predicted_from_profile_s: fr.as_ref().map(|_| stored_s),
            });
        }
    }
    b.finish_and_clear();
    let additivity = additivity(&p, &pred)?;
    let mut rep = ValidationReport {
        device_slug: p.device.slug.clone(),
        prompt_tokens: args.prompt,
        gen_tokens: args.gen,
        threads,
        cases,
        share_within_10pct: 0.0,
        additivity,
        profile: file,
        repetitions: args.reps,
        notes: vec![
            format!("clock: {} (the profile's)", clock.name()),
            format!("plans run interleaved: a warm-up round, then {} rounds of every plan in turn; medians over the rounds", args.reps),
            if args.fresh_ops {
                format!(
                    "predictions from in-step records re-measured in every round, interleaved with the plans ({} runs: {}); predicted_from_profile_s: from {} as stored",
                    groups.len(),
                    groups.iter().map(|g| g.label()).collect::<Vec<_>>().join("; "),
                    file_name
                )
            } else {
                format!("predictions from {file_name} as stored")
            },
            format!("load average at the start: {load_start}; at the end: {}", loadavg()),
        ],
        prediction_basis: if args.fresh_ops { "fresh-ops".into() } else { "profile".into() },
        share_within_10pct_from_profile: None,
    };
    rep.update_share();
    if args.json {
        println!("{}", serde_json::to_string(&rep)?);
        return Ok(());
    }
    println!(
        "device {}, prefill {} + decode {} tokens, {} threads, median of {} runs (profile {})",
        rep.device_slug, rep.prompt_tokens, rep.gen_tokens, rep.threads, rep.repetitions, rep.profile
    );
    println!(
        "{:<12} {:<8} {:>12} {:>12} {:>8}{}",
        "plan",
        "phase",
        "predicted ms",
        "measured ms",
        "error",
        if args.fresh_ops { "   (stored profile: predicted ms, error)" } else { "" }
    );
    for c in &rep.cases {
        let stored = c
            .predicted_from_profile_s
            .map_or(String::new(), |s| format!("   ({:.1}, {:+.1}%)", s * 1e3, validate::error_pct(s, c.measured_s)));
        println!("{:<12} {:<8} {:>12.1} {:>12.1} {:>7.1}%{stored}", c.plan, c.phase, c.predicted_s * 1e3, c.measured_s * 1e3, c.error_pct);
    }
    println!(
        "within ±10%: {:.0}% of {} cases (predictions from {})",
        rep.share_within_10pct,
        rep.cases.len(),
        if args.fresh_ops { "the ops re-measured in this run" } else { "the stored profile" }
    );
    if let Some(sh) = rep.share_within_10pct_from_profile {
        println!("within ±10% from the stored profile: {sh:.0}%");
    }
    println!("\nadditivity (sum of per-op medians vs a measured block: per-layer time of a forward pass through the first {} layers):", p.measurement.block_layers);
    println!("{:<8} {:>5} {:>5} {:>4} {:>12} {:>12} {:>8}", "block", "m", "kv", "thr", "sum ms", "block ms", "error");
    for a in &rep.additivity {
        println!(
            "{:<8} {:>5} {:>5} {:>4} {:>12.3} {:>12.3} {:>7.1}%",
            a.variant,
            a.m,
            a.kv,
            a.threads,
            a.sum_of_ops_s * 1e3,
            a.block_s * 1e3,
            a.error_pct
        );
    }
    println!("{}", rep.notes.join("\n"));
    Ok(())
}

/// The in-step runs whose records `plans` are predicted from: every linear site's
/// variant and scheme, the f16 and the base (`w4a16`) runs (per-row ops, LM heads), the
/// attention variants, and the mixed-rows pairs of plans with low-bit tokens.
fn fresh_groups(p: &DeviceProfile, plans: &[&Plan], threads: usize) -> Vec<profiler::in_forward::Group> {
    use profiler::in_forward::{groups, Group};
    use runtime::plan::{Scheme, Site};
    let mut attention: Vec<String> = Vec::new();
    let mut want_linear = std::collections::BTreeSet::new();
    let mut want_mixed = std::collections::BTreeSet::new();
    want_linear.insert((profiler::in_forward::BASE_VARIANT.name().to_string(), false));
    for plan in plans {
        if plan.weights == runtime::plan::WeightFormat::F16 {
            want_linear.insert(("f16".to_string(), false));
        }
        for lp in &plan.layers {
            let a = profiler::predict::attention_variant(lp);
            if !attention.contains(&a) {
                attention.push(a);
            }
            for s in Site::LINEAR {
                let sp = lp.site(s);
                want_linear.insert((sp.resolve_variant(plan.weights).name().to_string(), sp.scheme == Scheme::Group));
            }
            if lp.low_bit > 0.0 {
                let group = lp.low_bit_sites().iter().any(|&s| lp.site(s).scheme == Scheme::Group);
                want_linear.insert((lp.resolve_low_bit_variant(plan.weights).name().to_string(), group));
                want_mixed.insert(group);
            }
        }
    }
    // In the profile's order of attention variants, so the INT8 RoPE run is the same one.
    let mut order: Vec<String> = p.measurement.attention_variants.iter().filter(|a| attention.contains(a)).cloned().collect();
    order.extend(attention.into_iter().filter(|a| !p.measurement.attention_variants.contains(a)));
    groups(&[threads], &p.measurement.token_counts, &order)
        .into_iter()
        .filter(|g| match g {
            Group::Linear { variant, group, .. } => want_linear.contains(&(variant.clone(), *group)),
            Group::Attention { .. } => true,
            Group::Mixed { group, .. } => want_mixed.contains(group),
        })
        .collect()
}

/// Sum of the per-op predictions of one layer (plus its share of the embedding the block
/// call includes) against each measured `block` record (time per layer of a forward pass
/// through `block_layers` layers).
pub fn additivity(p: &DeviceProfile, pred: &Predictor) -> Result<Vec<Additivity>> {
    let n_layer = p.model.as_ref().map_or(1, |m| m.n_layer);
    let mut out = Vec::new();
    for r in p.records.iter().filter(|r| r.op == "block") {
        let Some(plan) = presets::preset(&r.variant, n_layer) else { continue };
        let ops = pred.layer(plan.weights, &plan.layers[0], r.m, r.kv, r.threads)?;
        let embed = p
            .records
            .iter()
            .find(|e| e.op == "embed" && e.m == r.m && e.threads == r.threads)
            .map_or(0.0, |e| e.median_s);
        let sum = ops.values().sum::<f64>() + embed / p.measurement.block_layers.max(1) as f64;
        out.push(Additivity {
            m: r.m,
            threads: r.threads,
            sum_of_ops_s: sum,
            block_s: r.median_s,
            error_pct: validate::error_pct(sum, r.median_s),
            variant: r.variant.clone(),
            kv: r.kv,
        });
    }
    Ok(out)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or("unknown".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
