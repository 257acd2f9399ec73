//! `agq info`: what a model holds (architecture, hyper-parameters, tensors by type,
//! tokenizer) and its sha256, as a table or one JSON object. Takes a GGUF file or an HF
//! checkpoint directory (config.json + *.safetensors [+ tokenizer.json]).

use anyhow::{Context, Result};
use runtime::config::ModelConfig;
use runtime::gguf::{Gguf, TensorSource};
use runtime::safetensors::HfCheckpoint;
use runtime::tokenizer::Tokenizer;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file, or an HF llama checkpoint directory.
    #[arg(long, short, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What both formats report.
struct Loaded {
    source: Box<dyn TensorSource>,
    cfg: ModelConfig,
    tokenizer: Option<Tokenizer>,
    name: String,
    format: String,
    file_bytes: u64,
    sha256: Option<String>,
    format_json: serde_json::Value,
}

fn load(args: &Args) -> Result<Loaded> {
    let path = &args.model;
    if path.is_dir() {
        let ck = HfCheckpoint::open(path).context("cannot read checkpoint")?;
        let tokenizer = if path.join("tokenizer.json").exists() {
            Some(ck.tokenizer()?)
        } else {
            None
        };
        let files: Vec<_> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            .collect();
        let file_bytes = files
            .iter()
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        return Ok(Loaded {
            cfg: ck.config().clone(),
            tokenizer,
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            format: format!(
                "HF safetensors, {} file(s), {} unused tensors",
                files.len(),
                ck.ignored_tensors().len()
            ),
            file_bytes,
            sha256: None,
            format_json: json!({"kind": "safetensors", "files": files.len(), "ignored_tensors": ck.ignored_tensors()}),
            source: Box::new(ck),
        });
    }
    let g = Gguf::open(path).context("cannot read model")?;
    let cfg = ModelConfig::from_gguf(&g).context("invalid model")?;
    let tokenizer = Some(Tokenizer::from_gguf(&g).context("invalid tokenizer")?);
    let sha256 = Some(runtime::hash::file_sha256(path)?);
    Ok(Loaded {
        cfg,
        tokenizer,
        name: g
            .get("general.name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string(),
        format: format!(
            "GGUF v{}, alignment {}, {} metadata keys",
            g.version(),
            g.alignment(),
            g.metadata().len()
        ),
        file_bytes: g.file_len(),
        sha256,
        format_json: json!({"kind": "gguf", "version": g.version(), "alignment": g.alignment(), "metadata_keys": g.metadata().len()}),
        source: Box::new(g),
    })
}

pub fn run(args: Args) -> Result<()> {
    let m = load(&args)?;
    let cfg = &m.cfg;
    let infos = m.source.tensor_infos();
    // Per type: (tensor count, bytes, elements).
    let mut by_type: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    for t in infos {
        let e = by_type.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes.unwrap_or(0);
        e.2 += t.n_elements();
    }
    let total_bytes: u64 = by_type.values().map(|v| v.1).sum();
    let n_params: u64 = by_type.values().map(|v| v.2).sum();
    let matrix_type = infos
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .map(|t| t.ty.name())
        .unwrap_or_default();
    let tk = m.tokenizer.as_ref();
    let tok = |id: u32| {
        tk.and_then(|t| t.token_to_str(id))
            .unwrap_or("")
            .to_string()
    };

    if args.json {
        let types: serde_json::Map<String, serde_json::Value> = by_type
            .iter()
            .map(|(k, (n, b, e))| (k.clone(), json!({"tensors": n, "bytes": b, "elements": e})))
            .collect();
        let tokenizer = tk.map(|tk| {
            json!({
                "vocab_size": tk.vocab_size(),
                "bos": tk.bos().map(|i| json!({"id": i, "text": tok(i)})),
                "eos": tk.eos().map(|i| json!({"id": i, "text": tok(i)})),
                "add_bos": tk.add_bos(),
                "special_tokens": tk.special_tokens().iter().map(|(i, t)| json!({"id": i, "text": t})).collect::<Vec<_>>(),
                "chat_template": tk.chat_template().is_some(),
                "default_system_prompt": tk.default_system_prompt(),
            })
        });
        let out = json!({
            "file": args.model.display().to_string(),
            "file_bytes": m.file_bytes,
            "sha256": m.sha256,
            "format": m.format_json,
            "name": m.name,
            "config": cfg,
            "tensors": {"count": infos.len(), "bytes": total_bytes, "parameters": n_params, "by_type": types},
            "tokenizer": tokenizer,
        });
        let mut text = serde_json::to_string(&out)?;
        text.push('\n');
        return print_all(&text);
    }

    let mut out = String::new();
    let o = &mut out;
    section(o, "model");
    row(o, "file", args.model.display().to_string());
    row(o, "name", m.name.clone());
    row(
        o,
        "size",
        format!(
            "{} bytes ({:.1} MiB)",
            m.file_bytes,
            m.file_bytes as f64 / (1 << 20) as f64
        ),
    );
    if let Some(sha) = &m.sha256 {
        row(o, "sha256", sha.clone());
    }
    row(o, "format", m.format.clone());
    section(o, "architecture");
    row(o, "arch", cfg.arch.clone());
    row(o, "layers", cfg.n_layer.to_string());
    row(o, "embedding", cfg.n_embd.to_string());
    row(o, "feed-forward", cfg.n_ff.to_string());
    row(
        o,
        "heads (q / kv)",
        format!(
            "{} / {} (GQA group {})",
            cfg.n_head,
            cfg.n_head_kv,
            cfg.n_head / cfg.n_head_kv
        ),
    );
    row(o, "head dim", cfg.head_dim.to_string());
    row(
        o,
        "rope",
        format!(
            "base {}, {} dims, {:?} pairs",
            cfg.rope_base, cfg.rope_dim, cfg.rope_pairing
        ),
    );
    row(o, "rms eps", format!("{:e}", cfg.rms_eps));
    row(o, "train context", cfg.n_ctx_train.to_string());
    row(o, "vocab", cfg.vocab_size.to_string());
    row(
        o,
        "lm head",
        if cfg.tied_embeddings {
            "tied to token_embd".into()
        } else {
            "output.weight".to_string()
        },
    );
    row(o, "matrix type", matrix_type);
    section(o, "tensors");
    row(o, "count", infos.len().to_string());
    row(
        o,
        "parameters",
        format!("{n_params} ({:.1} M)", n_params as f64 / 1e6),
    );
    row(
        o,
        "bytes",
        format!(
            "{total_bytes} ({:.1} MiB)",
            total_bytes as f64 / (1 << 20) as f64
        ),
    );
    for (ty, (n, b, e)) in &by_type {
        row(
            o,
            &format!("  {ty}"),
            format!("{n:>4} tensors, {e:>10} elements, {b:>10} bytes"),
        );
    }
    section(o, "tokenizer");
    match tk {
        None => row(o, "tokenizer", "none (no tokenizer.json)".into()),
        Some(tk) => {
            row(o, "vocab size", tk.vocab_size().to_string());
            row(
                o,
                "bos",
                tk.bos()
                    .map_or("none".into(), |i| format!("{i} {}", tok(i))),
            );
            row(
                o,
                "eos",
                tk.eos()
                    .map_or("none".into(), |i| format!("{i} {}", tok(i))),
            );
            row(o, "add bos", tk.add_bos().to_string());
            let specials: Vec<&str> = tk
                .special_tokens()
                .iter()
                .map(|(_, t)| t.as_str())
                .collect();
            row(
                o,
                "special tokens",
                format!("{}: {}", specials.len(), specials.join(" ")),
            );
            let template = match (tk.chat_template(), tk.default_system_prompt()) {
                (None, _) => "none".to_string(),
                (Some(_), None) => "present".to_string(),
                (Some(_), Some(s)) => format!("present; default system message {s:?}"),
            };
            row(o, "chat template", template);
        }
    }
    print_all(&out)
}

fn section(out: &mut String, title: &str) {
    out.push_str(title);
    out.push('\n');
}

fn row(out: &mut String, key: &str, value: String) {
    out.push_str(&format!("  {key:<22} {value}\n"));
}

/// Writes to stdout, turning a closed pipe (`agq info | head`) into an error, not a panic.
fn print_all(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .context("writing to stdout")
}
