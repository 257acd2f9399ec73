//! `agq plan`: print presets as plan files, and validate plan files against a model.

use anyhow::{Context, Result};
use runtime::plan::{file, presets, Plan, Site, SoftmaxMode};
use std::path::{Path, PathBuf};

/// Layers assumed without `--model` or `--layers` (SmolLM2-135M, the default model).
const DEFAULT_LAYERS: usize = 30;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Print a preset (or re-print a plan file) in the compact TOML form.
    Show {
        /// Preset name (fp16, w4a16, w4a8, w4a8-trip, w4a4, agile8, agile4) or plan file.
        plan: String,
        /// Expand for this many layers (default: the model's, else the file's, else 30).
        #[arg(long)]
        layers: Option<usize>,
        /// Take the layer count from this model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write to this file (atomically) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Validate a plan file (or preset); with --model, against that model's layers and hash.
    Check {
        plan: String,
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        layers: Option<usize>,
    },
    /// List the presets.
    List,
}

pub fn run(args: Args) -> Result<()> {
    match args.action {
        Action::List => {
            for name in presets::NAMES {
                let p = presets::preset(name, DEFAULT_LAYERS).expect("preset");
                println!("{name:<10} {}", p.description.unwrap_or_default());
            }
            Ok(())
        }
        Action::Show { plan, layers, model, output } => {
            let n = layer_count(&plan, layers, model.as_deref())?;
            let p = Plan::load(&plan, n)?;
            match output {
                Some(path) => {
                    p.write(&path)?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{}", p.to_toml()),
            }
            Ok(())
        }
        Action::Check { plan, model, layers } => check(&plan, model.as_deref(), layers),
    }
}

/// The model's layer count, else `--layers`, else the file's `n_layer`, else 30.
fn layer_count(spec: &str, layers: Option<usize>, model: Option<&Path>) -> Result<usize> {
    if let Some(m) = model {
        let g = runtime::gguf::Gguf::open(m)?;
        let cfg = runtime::config::ModelConfig::from_gguf(&g)?;
        if let Some(l) = layers.filter(|&l| l != cfg.n_layer) {
            anyhow::bail!("--layers {l} contradicts {} ({} layers)", m.display(), cfg.n_layer);
        }
        return Ok(cfg.n_layer);
    }
    if let Some(l) = layers {
        return Ok(l);
    }
    if presets::NAMES.contains(&spec) {
        return Ok(DEFAULT_LAYERS);
    }
    let text = std::fs::read_to_string(spec).with_context(|| spec.to_string())?;
    Ok(file::parse(&text, spec)?.file.n_layer.unwrap_or(DEFAULT_LAYERS))
}

fn check(spec: &str, model: Option<&Path>, layers: Option<usize>) -> Result<()> {
    let n = layer_count(spec, layers, model)?;
    let p = Plan::load(spec, n)?;
    if let Some(m) = model {
        if p.model_sha256.is_some() {
            eprintln!("hashing {} ...", m.display());
            let sha = runtime::hash::file_sha256(m)?;
            p.check_model(spec, m, &sha)?;
        }
    }
    // Every kernel the plan names must run here.
    let mut kernels_used = Vec::new();
    for l in &p.layers {
        for s in Site::LINEAR {
            kernels_used.push(l.site(s).resolve_variant(p.weights));
        }
        if l.low_bit > 0.0 {
            kernels_used.push(l.resolve_low_bit_variant(p.weights));
        }
    }
    kernels_used.push(p.lm_head.resolve_variant(p.weights));
    kernels_used.sort();
    kernels_used.dedup();
    let avail = kernels::available();
    for v in &kernels_used {
        if !avail.iter().any(|(a, _)| a == v) {
            anyhow::bail!("{spec}: kernel variant {v} is not available on this CPU");
        }
    }
    if p.needs_calibration() {
        match p.calibration.as_ref().and_then(|c| c.stats.as_ref()) {
            Some(stats) => {
                let base = Path::new(spec).parent().unwrap_or(Path::new("."));
                let path = base.join(stats);
                let st = runtime::calibrate::CalibStats::read(&path)?;
                if st.layers.len() != n {
                    anyhow::bail!("{}: statistics for {} layers, the plan has {n}", path.display(), st.layers.len());
                }
                if let Some(m) = model {
                    st.check_model(&path, m, &runtime::hash::file_sha256(m)?)?;
                }
            }
            None => eprintln!(
                "note: {spec} uses the static per-tensor scheme without [calibration] stats; \
                 `agq eval` will need --calib FILE (from `agq calibrate`)"
            ),
        }
    }
    summarize(spec, &p, &kernels_used);
    Ok(())
}

fn summarize(spec: &str, p: &Plan, kernels_used: &[kernels::Variant]) {
    let n = p.n_layer();
    println!("{spec}: OK ({n} layers, weights {:?}, positions {:?})", p.weights, p.positions);
    for s in Site::LAYER {
        let mut counts = std::collections::BTreeMap::new();
        for l in &p.layers {
            let sp = l.site(s);
            let label = if sp.is_float() {
                "float".to_string()
            } else {
                format!("int{}-{}", sp.bits, sp.scheme.name())
            };
            *counts.entry(label).or_insert(0usize) += 1;
        }
        let parts: Vec<String> = counts.into_iter().map(|(k, c)| format!("{k} x{c}")).collect();
        println!("  {:<8} {}", s.name(), parts.join(", "));
    }
    let log2 = p.layers.iter().filter(|l| l.softmax == SoftmaxMode::Log2x4).count();
    println!("  softmax  log2-4 on {log2} of {n} layers");
    let survive: f64 = p.layers.iter().map(|l| 1.0 - l.prune).product();
    let pruning = p.layers.iter().filter(|l| l.prune > 0.0).count();
    println!("  pruning  {pruning} layers, {:.1}% of prunable tokens survive", survive * 100.0);
    let max_low = p.layers.iter().map(|l| l.low_bit).fold(0.0, f64::max);
    println!("  low-bit  up to {:.0}% of tokens at INT4", max_low * 100.0);
    let names: Vec<&str> = kernels_used.iter().map(|v| v.name()).collect();
    println!("  kernels  {}", names.join(", "));
}
