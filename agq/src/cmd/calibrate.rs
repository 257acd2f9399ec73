//! `agq calibrate`: activation statistics and static per-tensor scales with channel
//! factors, from calibration text (WikiText-2 valid by default, never test).

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use runtime::calibrate::{self, DEFAULT_SAMPLE_ROWS};
use runtime::plan::{Site, WeightFormat};
use runtime::quant::trip;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model file (GGUF).
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// Calibration text.
    #[arg(long, default_value = "data/wikitext-2-raw-valid.txt")]
    text: PathBuf,
    /// Tokens of the text to use (from the start).
    #[arg(long, default_value_t = 8192)]
    tokens: usize,
    /// Chunk length (fresh KV cache per chunk).
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Largest channel-factor exponent (factors 1..2^kmax).
    #[arg(long, default_value_t = trip::DEFAULT_KMAX)]
    kmax: u8,
    /// Input channels sharing one factor exponent: 32 (one Q4_1 block, folds exactly into
    /// the weights) or 1 (per channel; the fold re-quantizes the 4-bit weights).
    #[arg(long, default_value_t = trip::GROUP)]
    factor_group: usize,
    /// Rows sampled per site for percentiles and the factor search.
    #[arg(long, default_value_t = DEFAULT_SAMPLE_ROWS)]
    sample_rows: usize,
    /// Output statistics file (JSON, written atomically).
    #[arg(long, short)]
    output: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    if a.kmax > 7 {
        anyhow::bail!("--kmax {} is too large (at most 7)", a.kmax);
    }
    if a.factor_group == 0 {
        anyhow::bail!("--factor-group must be at least 1");
    }
    let g = runtime::gguf::Gguf::open(&a.model)?;
    let tok = runtime::tokenizer::Tokenizer::from_gguf(&g)?;
    let text = runtime::text::read_text_file(&a.text)?;
    let mut ids = tok.encode(&text, false).with_context(|| a.text.display().to_string())?;
    ids.truncate(a.tokens);
    if ids.len() < 2 {
        anyhow::bail!("{}: fewer than 2 tokens", a.text.display());
    }
    eprintln!("hashing model and text ...");
    let model_sha = runtime::hash::file_sha256(&a.model)?;
    let text_sha = runtime::hash::file_sha256(&a.text)?;
    let model = runtime::model::llama::load_gguf(&g, runtime::model::LoadOptions::new(WeightFormat::Q4_1))?;

    let bar = ProgressBar::new(ids.len() as u64).with_style(
        ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} tokens {elapsed}<{eta}").expect("template"),
    );
    let collector = calibrate::collect(&model, &ids, a.ctx, a.sample_rows, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    eprintln!("searching scales and channel factors ...");
    let stats = collector.finish_grouped(a.kmax, a.factor_group, &model_sha, &a.text.display().to_string(), &text_sha, ids.len() as u64);
    stats.write(&a.output)?;
    eprintln!("wrote {}", a.output.display());

    println!(
        "calibration: {} tokens of {}, kmax {}, one factor per {} input channels",
        ids.len(),
        a.text.display(),
        a.kmax,
        a.factor_group
    );
    println!(
        "{:<6} {:<8} {:>9} {:>9} {:>8} {:>9} {:>10} {:>10}",
        "layer", "site", "amax", "p99.9", "max/med", "int8 s", "f>0 int8", "f>0 int4"
    );
    let show = |l: String, s: Site, st: &calibrate::SiteStats| {
        let nz = |f: &[u8]| f.iter().filter(|&&a| a > 0).count();
        println!(
            "{l:<6} {:<8} {:>9.3} {:>9.3} {:>8.1} {:>9.5} {:>5}/{:<4} {:>5}/{:<4}",
            s.name(),
            st.amax,
            st.p999,
            st.channel_ratio,
            st.int8.scale,
            nz(&st.int8.factors),
            st.k,
            nz(&st.int4.factors),
            st.k
        );
    };
    for l in &stats.layers {
        for s in Site::LINEAR {
            show(l.index.to_string(), s, l.site(s).expect("linear site"));
        }
    }
    show("-".into(), Site::LmHead, &stats.lm_head);
    println!();
    println!("outliers: max / median of the per-channel absmax, per layer");
    println!("{:<6} {:>8} {:>8} {:>8} {:>8}", "layer", "qkv", "o", "gate_up", "down");
    for l in &stats.layers {
        let r = |s: Site| l.site(s).expect("linear site").channel_ratio;
        println!(
            "{:<6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            l.index,
            r(Site::Qkv),
            r(Site::O),
            r(Site::GateUp),
            r(Site::Down)
        );
    }
    Ok(())
}
