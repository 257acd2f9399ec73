//! `agq auto`: the main job. Fetch the model if missing, reuse this device's profile (or
//! measure one), tune for each budget, then measure the tuned plans and the presets on
//! WikiText-2 test (perplexity) and in one interleaved timing run, and write the report
//! folder: plans, `pareto.csv`, `tuning.md`, and the reports crate's figures.

use super::tune::{settings, Bar, Effort, Env};
use anyhow::{anyhow, bail, Context, Result};
use profiler::predict::Workload;
use profiler::profile::DeviceProfile;
use runtime::plan::exec::Prunable;
use runtime::plan::{Plan, WeightFormat};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tuner::latency::{Latency, LatencyModel};
use tuner::pareto::{layer_summary, layer_table, write_csv, Row};
use tuner::session::{Progress, Tuned};
use tuner::validate::{chunk_nlls, hooks_for, ppl_of};
use tuner::{Baseline, Budget, Objective};

const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file (the default one is fetched when missing).
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Perplexity budget(s) vs w4a16, comma-separated: `3%`, `0.03`, `+0.5ppl`.
    #[arg(long, value_delimiter = ',', default_value = "3%")]
    pub budget: Vec<String>,
    /// Latency to minimise: prefill, decode or e2e.
    #[arg(long, default_value = "e2e")]
    pub objective: String,
    /// Report folder (default: reports-out/<device slug>).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Device profile to use (default: a matching one in device-profiles/, else `agq profile`).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    #[arg(long, short, default_value_t = 2)]
    pub threads: usize,
    /// Chunks (512 tokens) of WikiText-2 test for the reported perplexities.
    #[arg(long, default_value_t = 10)]
    pub test_chunks: usize,
    #[arg(long, default_value = "data/wikitext-2-raw-test.txt")]
    pub test_text: PathBuf,
    /// Presets measured alongside the tuned plans.
    #[arg(long, value_delimiter = ',', default_value = "fp16,w4a16,w4a8,agile8,agile4")]
    pub presets: Vec<String>,
    #[command(flatten)]
    pub effort: Effort,
}

/// A measured profile in `dir` for this model and device, complete, newest first.
fn find_profile(dir: &Path, sha: &str) -> Option<PathBuf> {
    let here = profiler::device::DeviceFingerprint::detect();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| {
            let prof = DeviceProfile::read(&p).ok()?;
            let f = p.display().to_string();
            (prof.is_measured() && prof.is_complete() && prof.check_model_in(sha, &f).is_ok() && prof.check_device(&here, &f).is_ok())
                .then(|| (std::fs::metadata(&p).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), p))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

fn sh(cmd: &mut std::process::Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

struct Measured {
    name: String,
    kind: &'static str,
    plan: Plan,
    file: String,
    budget: Option<Budget>,
    predicted: Latency,
    ppl: (f64, f64),
    time: Option<Latency>,
}

pub fn run(args: Args) -> Result<()> {
    let t0 = std::time::Instant::now();
    super::eval::install_threads(args.threads)?;
    let budgets = args.budget.iter().map(|b| Budget::parse(b)).collect::<Result<Vec<_>, _>>()?;
    if budgets.is_empty() {
        bail!("--budget: give at least one budget");
    }
    let objective = Objective::parse(&args.objective).map_err(|e| anyhow!(e))?;
    tuner::space::Granularity::parse(&args.effort.granularity).map_err(|e| anyhow!(e))?;
    tuner::space::parse_scheme(&args.effort.scheme).map_err(|e| anyhow!(e))?;
    // 1. The model.
    if !args.model.exists() {
        if args.model != Path::new(DEFAULT_MODEL) {
            bail!("{}: no such model file", args.model.display());
        }
        eprintln!("agq auto: fetching the model (scripts/fetch-model.sh)");
        sh(std::process::Command::new("scripts/fetch-model.sh").arg("models"), "scripts/fetch-model.sh")?;
    }
    let sha = runtime::hash::file_sha256(&args.model).with_context(|| args.model.display().to_string())?;
    // 2. The device profile.
    let slug = profiler::device::DeviceFingerprint::detect().slug;
    let profile = match &args.profile {
        Some(p) => p.clone(),
        None => match find_profile(Path::new("device-profiles"), &sha) {
            Some(p) => {
                eprintln!("agq auto: reusing device profile {}", p.display());
                p
            }
            None => {
                let p = PathBuf::from("device-profiles").join(format!("{slug}.toml"));
                eprintln!("agq auto: no matching device profile; measuring one: agq profile --threads {} --out {}", args.threads, p.display());
                let exe = std::env::current_exe().context("cannot find the agq executable")?;
                sh(
                    std::process::Command::new(exe)
                        .args(["profile", "--model"])
                        .arg(&args.model)
                        .args(["--threads", &args.threads.to_string(), "--out"])
                        .arg(&p),
                    "agq profile",
                )?;
                p
            }
        },
    };
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("reports-out").join(&slug));
    let plans_dir = out.join("plans");
    std::fs::create_dir_all(&plans_dir).with_context(|| plans_dir.display().to_string())?;
    // 3. Tune.
    let workload = Workload { prompt_tokens: args.prompt_tokens, gen_tokens: args.gen_tokens, threads: args.threads };
    let env = Env::load(&args.model, &profile, workload, true)?;
    let n = env.q4.config.n_layer;
    let bar = Bar::new();
    let mut s = env.session(settings(objective, Baseline::W4a16, &args.effort), &args.effort, &bar)?;
    let t_tune = std::time::Instant::now();
    let mut tuned: Vec<Tuned> = Vec::new();
    for b in &budgets {
        tuned.push(s.tune(*b)?);
    }
    let tune_s = t_tune.elapsed().as_secs_f64();
    bar.log(&format!("agq auto: tuned {} budget(s) in {tune_s:.0} s", budgets.len()));
    // 4. Everything to measure: tuned plans, then the presets.
    let mut rows: Vec<Measured> = Vec::new();
    for t in &tuned {
        let name = format!("tuned-{}", t.budget.slug());
        let file = plans_dir.join(format!("{}-{}-{}.toml", env.model_stem(), env.profile.device.slug, t.budget.slug()));
        rows.push(Measured { name, kind: "tuned", plan: t.plan.clone(), file: file.display().to_string(), budget: Some(t.budget), predicted: t.predicted, ppl: (0.0, 0.0), time: None });
    }
    for p in &args.presets {
        let plan = runtime::plan::presets::preset(p, n).ok_or_else(|| anyhow!("--presets: unknown preset `{p}`"))?;
        if plan.needs_calibration() {
            bail!("--presets: `{p}` needs calibration statistics; leave it out");
        }
        let predicted = env.latency.predict(&plan).map_err(|e| anyhow!("{}: {e}", profile.display()))?;
        rows.push(Measured { name: p.clone(), kind: "preset", plan, file: p.clone(), budget: None, predicted, ppl: (0.0, 0.0), time: None });
    }
    // 5. Perplexity on the test text (first N chunks, llama.cpp protocol).
    let toks = env.tokens(&args.test_text)?;
    let avail = toks.len() / 512;
    if avail == 0 || args.test_chunks == 0 {
        bail!("{}: need at least one chunk of 512 tokens", args.test_text.display());
    }
    let chunks: Vec<Vec<u32>> = toks.chunks_exact(512).take(args.test_chunks.min(avail)).map(<[u32]>::to_vec).collect();
    for r in rows.iter_mut() {
        let model = if r.plan.weights == WeightFormat::F16 { env.fp16.as_ref().expect("loaded") } else { &env.q4 };
        bar.stage(&format!("test perplexity: {}", r.name), chunks.len() as u64);
        let h = hooks_for(model, &env.gguf, &r.plan, Prunable::FirstHalf)?;
        let nlls = chunk_nlls(model, &*h, &chunks, |d| bar.set(d as u64))?;
        let m = ppl_of(&nlls);
        r.ppl = (m.ppl, m.stderr);
        bar.log(&format!("agq auto: {} test ppl {:.4} ± {:.4}", r.name, m.ppl, m.stderr));
    }
    // 6. One interleaved timing run.
    if args.effort.reps > 0 {
        let plans: Vec<Plan> = rows.iter().map(|r| r.plan.clone()).collect();
        let times = s.time(&plans, args.prompt_tokens, args.gen_tokens, args.effort.reps)?;
        for (r, t) in rows.iter_mut().zip(times) {
            r.time = Some(t);
        }
    }
    bar.0.finish_and_clear();
    // 7. Files.
    for (t, r) in tuned.iter().zip(&rows) {
        let plan = s.finish_plan(t, &env.sha256, tuner::device_table(&env.profile.device), Some(profile.display().to_string()), &env.workload_label(), r.time);
        plan.write(Path::new(&r.file))?;
    }
    let test_name = args.test_text.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let csv_rows: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            name: r.name.clone(),
            kind: r.kind.into(),
            plan_file: r.file.clone(),
            budget: r.budget.map(|b| b.to_string()).unwrap_or_default(),
            objective: objective.name().into(),
            predicted: Some(r.predicted),
            measured: r.time,
            ppl: Some(r.ppl.0),
            ppl_stderr: Some(r.ppl.1),
            ppl_text: test_name.clone(),
            ppl_chunks: Some(chunks.len()),
        })
        .collect();
    let csv = out.join("pareto.csv");
    write_csv(&csv, &csv_rows)?;
    let md = tuning_md(&rows, &tuned, chunks.len(), &test_name, objective, &env, tune_s, &s.protocol);
    runtime::plan::write_atomic(&out.join("tuning.md"), md.as_bytes()).with_context(|| out.display().to_string())?;
    print!("{md}");
    // 8. Figures from the reports crate.
    let inputs = reports::ReportInputs { profile: profile.clone(), plans: Vec::new(), pareto: Some(csv.clone()), validation: None };
    match reports::write_report(&inputs, &out) {
        Ok(_) => eprintln!("agq auto: report written to {}", out.display()),
        Err(e) => eprintln!("agq auto: warning: figures not drawn ({e}); tables are in {}", out.join("tuning.md").display()),
    }
    eprintln!("agq auto: done in {:.0} s ({})", t0.elapsed().as_secs_f64(), out.display());
    Ok(())
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

#[allow(clippy::too_many_arguments)]
fn tuning_md(rows: &[Measured], tuned: &[Tuned], chunks: usize, text: &str, objective: Objective, env: &Env, tune_s: f64, protocol: &str) -> String {
    let find = |n: &str| rows.iter().find(|r| r.name == n);
    let (w4, f16) = (find("w4a16"), find("fp16"));
    let mut s = String::new();
    let _ = writeln!(s, "# agq auto: tuned plans vs presets\n");
    let _ = writeln!(
        s,
        "Model `{}` (sha256 {}…), device `{}`, profile `{}`. Objective: {} latency of {}. Tuning took {tune_s:.0} s.\n",
        env.model_path.display(),
        &env.sha256[..12],
        env.profile.device.slug,
        env.profile_path.display(),
        objective.name(),
        env.workload_label()
    );
    let _ = writeln!(s, "Sensitivity / validation protocol: {protocol}.\n");
    let _ = writeln!(
        s,
        "Perplexity: first {chunks} chunks of 512 tokens of `{text}` (llama.cpp protocol, second half of each chunk scored). \
         Timing: prefill {} tokens and decode {} tokens (from an empty cache, llama-bench style), median of the interleaved repetitions, \
         all plans in one run; the machine may be shared, so compare the ratios, not the absolute times.\n",
        env.workload.prompt_tokens, env.workload.gen_tokens
    );
    let _ = writeln!(s, "| plan | budget | test ppl | vs w4a16 | pred. prefill s | meas. prefill s | pred. e2e s | meas. e2e s | prefill vs fp16 pred / meas | e2e vs fp16 pred / meas | prefill vs w4a16 pred / meas | e2e vs w4a16 pred / meas |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let mt = r.time.unwrap_or_default();
        let vs = |base: Option<&Measured>, pf: fn(&Latency) -> f64| match base {
            Some(b) => format!("{} / {}", ratio(pf(&b.predicted), pf(&r.predicted)), ratio(b.time.map_or(0.0, |t| pf(&t)), r.time.map_or(0.0, |t| pf(&t)))),
            None => "-".into(),
        };
        let pre = |l: &Latency| l.prefill_s;
        let e2e = |l: &Latency| l.e2e_s();
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} ± {:.4} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} |",
            r.name,
            r.budget.map(|b| b.to_string()).unwrap_or_default(),
            r.ppl.0,
            r.ppl.1,
            w4.map_or("-".into(), |w| format!("{:+.2}%", (r.ppl.0 / w.ppl.0 - 1.0) * 100.0)),
            r.predicted.prefill_s,
            mt.prefill_s,
            r.predicted.e2e_s(),
            mt.e2e_s(),
            vs(f16, pre),
            vs(f16, e2e),
            vs(w4, pre),
            vs(w4, e2e),
        );
    }
    // Tuned vs every preset that meets the same budget on the test text.
    if let Some(w4) = w4 {
        let _ = writeln!(s, "\n## Tuned plans vs presets within the same budget (test perplexity, measured {} latency)\n", objective.name());
        for (t, r) in tuned.iter().zip(rows) {
            let allowed = t.budget.allowed(w4.ppl.0);
            let obj = |x: &Measured| x.time.map(|l| objective.of(&l));
            let meets: Vec<&Measured> = rows.iter().filter(|p| p.kind == "preset" && p.ppl.0 <= allowed).collect();
            let names: Vec<String> = meets.iter().map(|p| p.name.clone()).collect();
            let faster: Vec<String> = meets
                .iter()
                .filter(|p| matches!((obj(p), obj(r)), (Some(a), Some(b)) if a < b))
                .map(|p| format!("{} ({:.3} s vs {:.3} s)", p.name, obj(p).unwrap(), obj(r).unwrap()))
                .collect();
            let _ = writeln!(
                s,
                "- **{}** (test ppl {:.4}, {} on test: allowed {:.4}): presets within budget: {}. {}",
                r.name,
                r.ppl.0,
                if r.ppl.0 <= allowed { "within budget" } else { "OVER budget" },
                allowed,
                if names.is_empty() { "none".into() } else { names.join(", ") },
                if faster.is_empty() { "No preset within the budget is measured faster.".to_string() } else { format!("Measured faster: {}.", faster.join(", ")) }
            );
            if let Some(e) = &t.explanation {
                let _ = writeln!(s, "  Note: {e}");
            }
        }
    }
    let _ = writeln!(s, "\n## Per-layer picture\n");
    for (t, r) in tuned.iter().zip(rows) {
        let _ = writeln!(s, "### {} (`{}`)\n\n{}\n", r.name, r.file, layer_summary(&t.plan));
        let _ = writeln!(
            s,
            "Held-out validation: ppl {:.4} (w4a16 {:.4}, allowed {:.4}) after {} evaluation(s); KL sum of parts {:.5}, combined {}.\n",
            t.heldout.ppl,
            t.base.ppl,
            t.allowed_ppl,
            t.steps.len(),
            t.predicted_kl,
            t.measured_kl.map_or("-".into(), |m| format!("{:.5}", m.kl))
        );
        let _ = writeln!(s, "<details><summary>layer table</summary>\n\n{}\n</details>\n", layer_table(&t.plan));
    }
    s
}
