//! `agq eval`: perplexity of a model under a plan on a text file (llama.cpp's protocol),
//! plus the model loading shared by `eval`, `generate` and `bench`.

use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use runtime::gguf::Gguf;
use runtime::model::{llama, FloatHooks, Hooks, LoadOptions, Model};
use runtime::plan::exec::{load_calibration, paper_perplexity, PlanHooks, Prunable};
use runtime::plan::Plan;
use runtime::tokenizer::Tokenizer;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file.
    #[arg(long, short, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Plan: a preset (fp16, w4a16) or a plan file.
    #[arg(long, default_value = "fp16")]
    pub plan: String,
    /// Text file to score (UTF-8).
    #[arg(long)]
    pub text: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score only the first N chunks (default: all).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Worker threads.
    #[arg(long, short, default_value_t = 2)]
    pub threads: usize,
    /// Calibration statistics for plans with static per-tensor scales (default: the plan's).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// With pruning plans: the paper's protocol (every token prunable, loss averaged over
    /// surviving positions). Not comparable with dense perplexity; labelled in the output.
    #[arg(long)]
    pub paper_protocol: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A model loaded under a plan, with what records need to identify it.
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub plan_name: String,
    pub sha256: String,
    /// `FloatHooks` for float plans (fp16, w4a16), the plan executor otherwise.
    pub hooks: Box<dyn Hooks>,
}

/// Installs the global rayon pool with `threads` workers (once per process).
pub fn install_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(anyhow!("--threads must be at least 1"));
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().context("cannot start the thread pool")
}

pub fn load(model: &Path, plan_spec: &str, calib: Option<&Path>, prunable: Prunable) -> Result<Loaded> {
    let g = Gguf::open(model).context("cannot read model")?;
    let tokenizer = Tokenizer::from_gguf(&g).context("invalid tokenizer")?;
    let cfg = runtime::config::ModelConfig::from_gguf(&g).context("invalid model")?;
    let plan = Plan::load(plan_spec, cfg.n_layer).context("cannot load plan")?;
    let sha256 = runtime::hash::file_sha256(model).with_context(|| format!("{}", model.display()))?;
    plan.check_model(plan_spec, model, &sha256)?;
    let model = llama::load(&g, &cfg, LoadOptions::new(plan.weights)).context("cannot load model")?;
    let plan_name = plan.name.clone().unwrap_or_else(|| plan_spec.to_string());
    let hooks: Box<dyn Hooks> = if runtime::model::float_plan_weights(&plan).is_ok() {
        Box::new(FloatHooks)
    } else {
        let calib = load_calibration(&plan, plan_spec, calib)?;
        Box::new(PlanHooks::build(&model, &g, &plan, &plan_name, calib.as_ref().map(|(s, p)| (s, p.as_path())), prunable)?)
    };
    Ok(Loaded { model, tokenizer, plan_name, sha256, hooks })
}

pub fn run(args: Args) -> Result<()> {
    install_threads(args.threads)?;
    let text = runtime::text::read_text_file(&args.text)?;
    let prunable = if args.paper_protocol { Prunable::All } else { Prunable::FirstHalf };
    let l = load(&args.model, &args.plan, args.calib.as_deref(), prunable)?;
    let mut tokens = l.tokenizer.encode(&text, false).context("cannot tokenize the text")?;
    if l.tokenizer.add_bos() {
        if let Some(b) = l.tokenizer.bos() {
            tokens.insert(0, b);
        }
    }
    let avail = runtime::eval::chunk_count(tokens.len(), args.ctx, l.model.config.n_ctx_train)
        .with_context(|| format!("{}", args.text.display()))?;
    if args.chunks == Some(0) {
        return Err(anyhow!("--chunks must be at least 1"));
    }
    let total = args.chunks.map_or(avail, |c| c.min(avail));
    eprintln!(
        "agq eval: {} tokens, {} chunks of {} (scoring {}), plan {}, {} threads",
        tokens.len(),
        avail,
        args.ctx,
        total,
        l.plan_name,
        args.threads
    );
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} chunks  {msg}  eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let progress = |done: usize, _: usize, s: &runtime::eval::NllSums| {
        bar.set_position(done as u64);
        bar.set_message(format!("ppl {:.4}", s.ppl()));
    };
    let r = if args.paper_protocol {
        paper_perplexity(&l.model, &tokens, args.ctx, args.chunks, &*l.hooks, progress)
    } else {
        runtime::eval::perplexity(&l.model, &tokens, args.ctx, args.chunks, &*l.hooks, progress)
    }
    .with_context(|| format!("{}", args.text.display()))?;
    let protocol = if args.paper_protocol { "paper (surviving positions; not comparable with dense ppl)" } else { "llama.cpp (second half of each chunk)" };
    bar.finish_and_clear();
    if args.json {
        let out = json!({
            "ppl": r.ppl,
            "ppl_stderr": r.ppl_stderr,
            "nll_mean": r.nll_mean,
            "chunks": r.chunks,
            "tokens_scored": r.tokens_scored,
            "ctx": r.ctx,
            "protocol": protocol,
            "plan": l.plan_name,
            "model": args.model.display().to_string(),
            "model_sha256": l.sha256,
            "text": args.text.display().to_string(),
            "threads": args.threads,
            "seconds": r.seconds,
            "tokens_per_second": r.tokens_per_second,
        });
        println!("{out}");
    } else {
        println!(
            "ppl {:.4} ± {:.4}  ({} chunks of {}, {} tokens scored, plan {}, {:.1} s, {:.1} tok/s; protocol {protocol})",
            r.ppl, r.ppl_stderr, r.chunks, r.ctx, r.tokens_scored, l.plan_name, r.seconds, r.tokens_per_second
        );
    }
    Ok(())
}
