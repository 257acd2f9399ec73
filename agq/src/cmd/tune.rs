//! `agq tune`: per-layer activation bits, kernels, attention precision and a pruning
//! schedule that minimise predicted latency under a perplexity budget, validated on
//! held-out text and timed. Also the model/profile/session plumbing `agq auto` reuses.

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use profiler::predict::Workload;
use profiler::profile::DeviceProfile;
use runtime::gguf::Gguf;
use runtime::model::{llama, LoadOptions, Model};
use runtime::plan::{Plan, WeightFormat};
use runtime::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use tuner::latency::{Latency, LatencyModel};
use tuner::pareto::{layer_summary, write_csv, Row};
use tuner::session::{Progress, Session, Settings, Tuned};
use tuner::{Baseline, Budget, Objective, ProfileModel};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file.
    #[arg(long, short, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Device profile (`agq profile`) measured on this device with this model.
    #[arg(long)]
    pub profile: PathBuf,
    /// Perplexity budget vs the baseline: `3%`, `0.03` or `+0.5ppl`.
    #[arg(long, default_value = "3%")]
    pub budget: String,
    /// Latency to minimise: prefill, decode or e2e (prefill + decode).
    #[arg(long, default_value = "e2e")]
    pub objective: String,
    /// Prompt tokens of the workload (prefill).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Generated tokens of the workload (decode steps).
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Worker threads (the profile must have records at this count).
    #[arg(long, short, default_value_t = 2)]
    pub threads: usize,
    /// Plan file to write (default: plans/<model>-<device>-<budget>.toml).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Also tune for each of --pareto-budgets and write the frontier (CSV + plans) next to --out.
    #[arg(long)]
    pub pareto: bool,
    #[arg(long, value_delimiter = ',', default_value = "0.5%,1%,2%,3%,5%,10%,20%")]
    pub pareto_budgets: Vec<String>,
    /// Budget reference: w4a16 (the model as shipped) or fp16.
    #[arg(long, default_value = "w4a16")]
    pub baseline: String,
    #[command(flatten)]
    pub effort: Effort,
}

/// Text and effort settings shared by `tune` and `auto`.
#[derive(clap::Args, Clone)]
pub struct Effort {
    /// Tuning text (never the test set): first half calibration, second half held-out.
    #[arg(long, default_value = "data/wikitext-2-raw-valid.txt")]
    pub text: PathBuf,
    /// Calibration chunks for the KL sensitivity, and their context.
    #[arg(long, default_value_t = 2)]
    pub calib_chunks: usize,
    #[arg(long, default_value_t = 256)]
    pub calib_ctx: usize,
    /// Choose activation bits per `layer` (patterns: MLP INT8, all INT8, all INT4) or per `site`
    /// (four times the sensitivity runs).
    #[arg(long, default_value = "layer")]
    pub granularity: String,
    /// Scale scheme of the integer activation sites the search sets: `group` (one scale per
    /// token and 32-input block: near-float INT8 quality for ~5-10% more kernel time) or
    /// `token` (one per token, the paper's).
    #[arg(long, default_value = "group")]
    pub scheme: String,
    /// Held-out chunks for validation, and their context.
    #[arg(long, default_value_t = 8)]
    pub heldout_chunks: usize,
    #[arg(long, default_value_t = 512)]
    pub heldout_ctx: usize,
    /// Most held-out evaluations per budget while backing off.
    #[arg(long, default_value_t = 4)]
    pub max_evals: usize,
    /// Sensitivity cache (default: $AGQ_CACHE_DIR, else $XDG_CACHE_HOME/agq, else ~/.cache/agq).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Timed repetitions per plan (interleaved; median); 0 = do not time.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
}

/// Progress on stderr: one bar, stages replace each other; log lines print above it.
pub struct Bar(pub ProgressBar);

impl Bar {
    pub fn new() -> Bar {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}  eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Bar(b)
    }
}

impl Progress for Bar {
    fn stage(&self, msg: &str, total: u64) {
        if self.0.is_hidden() {
            eprintln!("agq: {msg}");
        }
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.reset_eta();
        self.0.set_message(msg.to_string());
    }
    fn set(&self, pos: u64) {
        self.0.set_position(pos);
    }
    fn log(&self, msg: &str) {
        self.0.suspend(|| eprintln!("{msg}"));
    }
}

pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AGQ_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("agq");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/agq"),
        None => PathBuf::from(".agq-cache"),
    }
}

/// Everything a tuning session borrows.
pub struct Env {
    pub model_path: PathBuf,
    pub sha256: String,
    pub gguf: Gguf,
    pub tokenizer: Tokenizer,
    pub q4: Model,
    pub fp16: Option<Model>,
    pub profile: DeviceProfile,
    pub profile_path: PathBuf,
    pub latency: ProfileModel,
    pub workload: Workload,
}

impl Env {
    pub fn load(model: &Path, profile_path: &Path, workload: Workload, with_fp16: bool) -> Result<Env> {
        let gguf = Gguf::open(model).context("cannot read model")?;
        let tokenizer = Tokenizer::from_gguf(&gguf).context("invalid tokenizer")?;
        let sha256 = runtime::hash::file_sha256(model).with_context(|| model.display().to_string())?;
        let profile = DeviceProfile::read(profile_path).context("cannot read device profile")?;
        profile.check_model_in(&sha256, &profile_path.display().to_string())?;
        let here = profiler::device::DeviceFingerprint::detect();
        profile.check_device(&here, &profile_path.display().to_string())?;
        if !profile.is_complete() {
            bail!("{}: the profile is partial (interrupted `agq profile`); finish it with `agq profile --resume --out {}`", profile_path.display(), profile_path.display());
        }
        let latency = ProfileModel::new(&profile, workload).map_err(|e| anyhow!("{}: {e}", profile_path.display()))?;
        let q4 = llama::load_gguf(&gguf, LoadOptions::new(WeightFormat::Q4_1)).context("cannot load model")?;
        let fp16 = if with_fp16 { Some(llama::load_gguf(&gguf, LoadOptions::new(WeightFormat::F16)).context("cannot load model")?) } else { None };
        Ok(Env { model_path: model.to_path_buf(), sha256, gguf, tokenizer, q4, fp16, profile, profile_path: profile_path.to_path_buf(), latency, workload })
    }

    pub fn tokens(&self, text: &Path) -> Result<Vec<u32>> {
        let t = runtime::text::read_text_file(text)?;
        let mut toks = self.tokenizer.encode(&t, false).with_context(|| format!("{}: cannot tokenize", text.display()))?;
        if self.tokenizer.add_bos() {
            if let Some(b) = self.tokenizer.bos() {
                toks.insert(0, b);
            }
        }
        Ok(toks)
    }

    /// `smollm2-135m-instruct` from `SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub fn model_stem(&self) -> String {
        let name = self.model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.split('.').next().unwrap_or("model").to_ascii_lowercase()
    }

    pub fn workload_label(&self) -> String {
        format!("prompt {} + gen {} tokens, {} threads", self.workload.prompt_tokens, self.workload.gen_tokens, self.workload.threads)
    }

    pub fn session<'a>(&'a self, settings: Settings, effort: &Effort, progress: &'a dyn Progress) -> Result<Session<'a>> {
        let text = runtime::text::read_text_file(&effort.text)?;
        let text_sha = runtime::hash::bytes_sha256(text.as_bytes());
        let tokens = self.tokens(&effort.text)?;
        let name = effort.text.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let cache_dir = effort.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Session::new(
            settings,
            &self.q4,
            self.fp16.as_ref(),
            &self.gguf,
            &self.latency,
            progress,
            &self.sha256,
            &name,
            &text_sha,
            &tokens,
            cache_dir,
        )
        .with_context(|| effort.text.display().to_string())
    }
}

pub fn settings(objective: Objective, baseline: Baseline, e: &Effort) -> Settings {
    Settings {
        objective,
        baseline,
        calib_ctx: e.calib_ctx,
        calib_chunks: e.calib_chunks,
        heldout_ctx: e.heldout_ctx,
        heldout_chunks: e.heldout_chunks,
        max_evals: e.max_evals.max(1),
        granularity: tuner::space::Granularity::parse(&e.granularity).unwrap_or(tuner::space::Granularity::Layer),
        scheme: tuner::space::parse_scheme(&e.scheme).unwrap_or_default(),
        ..Settings::default()
    }
}

fn speedup(base: f64, x: f64) -> String {
    if base > 0.0 && x > 0.0 {
        format!("{:.2}x", base / x)
    } else {
        "-".into()
    }
}

/// `prefill …, decode …, e2e …; vs w4a16 … / … / …; vs fp16 … / … / …` for one plan's latency.
fn latency_line(x: &Latency, w4: &Latency, fp16: &Latency) -> String {
    let ratios = |base: &Latency| {
        format!(
            "{} / {} / {}",
            speedup(base.prefill_s, x.prefill_s),
            speedup(base.decode_s, x.decode_s),
            speedup(base.e2e_s(), x.e2e_s())
        )
    };
    format!(
        "prefill {:.3} s, decode {:.3} s, e2e {:.3} s; vs w4a16 {}; vs fp16 {}",
        x.prefill_s,
        x.decode_s,
        x.e2e_s(),
        ratios(w4),
        ratios(fp16)
    )
}

/// A human summary of one tuned plan (stdout).
pub fn print_tuned(t: &Tuned, path: &Path, w4: &Latency, fp16: &Latency, measured: Option<(&Latency, &Latency, &Latency)>, objective: Objective) {
    println!("tuned plan {} (budget {}, objective {})", path.display(), t.budget, objective.name());
    println!(
        "  held-out ppl {:.4} ± {:.4}  (w4a16 {:.4}, reference {:.4}, allowed {:.4}; {} evaluation{})",
        t.heldout.ppl,
        t.heldout.stderr,
        t.base.ppl,
        t.reference.ppl,
        t.allowed_ppl,
        t.steps.len(),
        if t.steps.len() == 1 { "" } else { "s" }
    );
    println!(
        "  KL on calibration text: sum of parts {:.5}, combined {}",
        t.predicted_kl,
        t.measured_kl.map_or("-".into(), |m| format!("{:.5}", m.kl))
    );
    println!("  predicted: {}", latency_line(&t.predicted, w4, fp16));
    if let Some((m, mw4, mf16)) = measured {
        println!("  measured:  {} (same run)", latency_line(m, mw4, mf16));
    }
    println!("  layers: {}", layer_summary(&t.plan));
    if let Some(e) = &t.explanation {
        println!("  note: {e}");
    }
}

pub fn preset(name: &str, n_layer: usize) -> Plan {
    runtime::plan::presets::preset(name, n_layer).expect("known preset")
}

pub fn run(args: Args) -> Result<()> {
    super::eval::install_threads(args.threads)?;
    let budget = Budget::parse(&args.budget)?;
    tuner::space::Granularity::parse(&args.effort.granularity).map_err(|e| anyhow!(e))?;
    tuner::space::parse_scheme(&args.effort.scheme).map_err(|e| anyhow!(e))?;
    let objective = Objective::parse(&args.objective).map_err(|e| anyhow!(e))?;
    let baseline = Baseline::parse(&args.baseline).map_err(|e| anyhow!(e))?;
    let pareto_budgets = if args.pareto {
        args.pareto_budgets.iter().map(|b| Budget::parse(b)).collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let workload = Workload { prompt_tokens: args.prompt_tokens, gen_tokens: args.gen_tokens, threads: args.threads };
    let with_fp16 = baseline == Baseline::Fp16 || args.effort.reps > 0;
    let t0 = std::time::Instant::now();
    let env = Env::load(&args.model, &args.profile, workload, with_fp16)?;
    let bar = Bar::new();
    let mut s = env.session(settings(objective, baseline, &args.effort), &args.effort, &bar)?;
    bar.log(&format!(
        "agq tune: {} candidate groups, {} prune schedules, {} quality units ({} cached) ; cache {}",
        s.groups.len(),
        s.schedules.len(),
        s.units().len(),
        s.units().iter().filter(|u| s.cache.units.contains_key(&u.key())).count(),
        tuner::sensitivity::Cache::path(&s.cache_dir, &s.cache.key).display()
    ));
    let n = env.q4.config.n_layer;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("plans").join(format!("{}-{}-{}.toml", env.model_stem(), env.profile.device.slug, budget.slug()))
    });
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
    }
    let mut budgets = vec![budget];
    budgets.extend(pareto_budgets.iter().copied().filter(|b| *b != budget));
    let mut tuned = Vec::new();
    for b in &budgets {
        tuned.push(s.tune(*b)?);
    }
    let w4p = env.latency.predict(&preset("w4a16", n)).map_err(|e| anyhow!(e))?;
    let f16p = env.latency.predict(&preset("fp16", n)).map_err(|e| anyhow!(e))?;
    // Time every tuned plan with w4a16 and fp16 in one interleaved run.
    let measured: Option<Vec<Latency>> = if args.effort.reps > 0 {
        let mut plans: Vec<Plan> = tuned.iter().map(|t| t.plan.clone()).collect();
        plans.push(preset("w4a16", n));
        plans.push(preset("fp16", n));
        Some(s.time(&plans, args.prompt_tokens, args.gen_tokens, args.effort.reps)?)
    } else {
        None
    };
    bar.0.finish_and_clear();
    let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut rows = Vec::new();
    for (i, t) in tuned.iter().enumerate() {
        let path = if i == 0 { out.clone() } else { dir.join(format!("{}-{}-{}.toml", env.model_stem(), env.profile.device.slug, t.budget.slug())) };
        let m = measured.as_ref().map(|v| v[i]);
        let plan = s.finish_plan(t, &env.sha256, tuner::device_table(&env.profile.device), Some(env.profile_path.display().to_string()), &env.workload_label(), m);
        plan.write(&path)?;
        let mv = measured.as_ref().map(|v| (&v[i], &v[tuned.len()], &v[tuned.len() + 1]));
        print_tuned(t, &path, &w4p, &f16p, mv, objective);
        rows.push(Row {
            name: plan.name.clone().unwrap_or_default(),
            kind: "tuned".into(),
            plan_file: path.display().to_string(),
            budget: t.budget.to_string(),
            objective: objective.name().into(),
            predicted: Some(t.predicted),
            measured: m,
            ppl: Some(t.heldout.ppl),
            ppl_stderr: Some(t.heldout.stderr),
            ppl_text: text_label(&args.effort),
            ppl_chunks: Some(args.effort.heldout_chunks),
        });
    }
    if args.pareto {
        for (j, name) in ["w4a16", "fp16"].iter().enumerate() {
            let reference = if *name == "w4a16" { Some(tuned[0].base) } else if baseline == Baseline::Fp16 { Some(tuned[0].reference) } else { None };
            rows.push(Row {
                name: name.to_string(),
                kind: "preset".into(),
                plan_file: name.to_string(),
                budget: String::new(),
                objective: objective.name().into(),
                predicted: Some(if j == 0 { w4p } else { f16p }),
                measured: measured.as_ref().map(|v| v[tuned.len() + j]),
                ppl: reference.map(|r| r.ppl),
                ppl_stderr: reference.map(|r| r.stderr),
                ppl_text: if reference.is_some() { text_label(&args.effort) } else { String::new() },
                ppl_chunks: reference.map(|_| args.effort.heldout_chunks),
            });
        }
        let csv = dir.join(format!("{}-{}-pareto.csv", env.model_stem(), env.profile.device.slug));
        write_csv(&csv, &rows)?;
        println!("pareto: {} ({} tuned plans)", csv.display(), tuned.len());
    }
    eprintln!("agq tune: done in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// The `ppl_text` cell for held-out measurements.
pub fn text_label(e: &Effort) -> String {
    let name = e.text.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{name} (held-out half)")
}
