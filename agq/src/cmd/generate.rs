//! `agq generate`: stream a continuation of a prompt (greedy or seeded sampling).

use anyhow::{Context, Result};
use runtime::generate::{generate, Sampler, SamplerConfig};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file.
    #[arg(long, short, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Plan: a preset (fp16, w4a16) or a plan file.
    #[arg(long, default_value = "fp16")]
    pub plan: String,
    /// Prompt text.
    #[arg(long, short)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 64)]
    pub n: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep the smallest set of tokens with this much probability (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Wrap the prompt in the model's ChatML template.
    #[arg(long)]
    pub chat: bool,
    /// Calibration statistics for plans with static per-tensor scales (default: the plan's).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, short, default_value_t = 2)]
    pub threads: usize,
}

pub fn run(args: Args) -> Result<()> {
    super::eval::install_threads(args.threads)?;
    let l = super::eval::load(&args.model, &args.plan, args.calib.as_deref(), runtime::plan::exec::Prunable::All)?;
    let tk = &l.tokenizer;
    let text = if args.chat { tk.chatml(&args.prompt) } else { args.prompt.clone() };
    let mut ids = tk.encode(&text, args.chat).context("cannot tokenize the prompt")?;
    if tk.add_bos() {
        if let Some(b) = tk.bos() {
            ids.insert(0, b);
        }
    }
    let mut sampler =
        Sampler::new(SamplerConfig { temperature: args.temp, top_k: args.top_k, top_p: args.top_p, seed: args.seed })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.chat {
        write!(out, "{}", args.prompt)?;
        out.flush()?;
    }
    let mut io_err = None;
    let stats = generate(&l.model, tk, &ids, args.n, &mut sampler, &*l.hooks, |piece| {
        if io_err.is_none() {
            if let Err(e) = write!(out, "{piece}").and_then(|_| out.flush()) {
                io_err = Some(e);
            }
        }
    })?;
    if let Some(e) = io_err {
        return Err(e).context("cannot write to stdout");
    }
    writeln!(out)?;
    eprintln!(
        "agq generate: prompt {} tokens, prefill {:.1} tok/s; generated {} tokens{}, decode {:.1} tok/s; plan {}, {} threads",
        stats.prompt_tokens,
        stats.prefill_tps(),
        stats.generated.len(),
        if stats.stopped_at_eos { " (stopped at EOS)" } else { "" },
        stats.decode_tps(),
        l.plan_name,
        args.threads
    );
    Ok(())
}
