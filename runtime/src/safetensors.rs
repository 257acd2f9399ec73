//! Hugging Face llama checkpoints (config.json + *.safetensors + tokenizer.json), exposed
//! with GGUF tensor names and ne0-first dims so model code serves both formats through
//! [`TensorSource`].
//!
//! HF stores Wq/Wk rows in the order the model was trained with, where RoPE rotates the two
//! halves of each head (i, i + d/2); GGUF converters permute those rows so RoPE rotates
//! adjacent pairs. Rows are left as stored here and the config says
//! [`RopePairing::HalfSplit`]; model code either uses half-split RoPE or permutes the rows.

use crate::config::{ConfigError, ModelConfig, RopePairing};
use crate::gguf::{GgmlType, GgufError, Tensor, TensorInfo, TensorSource};
use crate::tokenizer::{Tokenizer, TokenizerError};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {what}", .path.display())]
    Invalid { path: PathBuf, what: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// An HF checkpoint directory, memory-mapped.
pub struct HfCheckpoint {
    dir: PathBuf,
    maps: Vec<Mmap>,
    infos: Vec<TensorInfo>,
    /// GGUF name -> (map index, byte start, byte length).
    locations: HashMap<String, (usize, usize, usize)>,
    config: ModelConfig,
    /// HF tensors that have no GGUF counterpart (e.g. `rotary_emb.inv_freq`), ignored.
    ignored: Vec<String>,
}

impl std::fmt::Debug for HfCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfCheckpoint")
            .field("dir", &self.dir)
            .field("n_tensors", &self.infos.len())
            .finish()
    }
}

/// Whole-model tensors: (GGUF name, HF name).
const GLOBAL_NAMES: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];
/// Per-layer tensors: (GGUF `blk.N.` suffix, HF `model.layers.N.` suffix).
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// The GGUF name of an HF llama tensor, or `None` for tensors the model does not use.
pub fn gguf_name(hf: &str) -> Option<String> {
    if let Some((g, _)) = GLOBAL_NAMES.iter().find(|(_, h)| *h == hf) {
        return Some(g.to_string());
    }
    let (layer, rest) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (g, _) = LAYER_NAMES.iter().find(|(_, h)| *h == rest)?;
    Some(format!("blk.{layer}.{g}"))
}

/// The HF name of a GGUF llama tensor (inverse of [`gguf_name`]).
pub fn hf_name(gguf: &str) -> Option<String> {
    if let Some((_, h)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == gguf) {
        return Some(h.to_string());
    }
    let (layer, rest) = gguf.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, h) = LAYER_NAMES.iter().find(|(g, _)| *g == rest)?;
    Some(format!("model.layers.{layer}.{h}"))
}

/// Reorders the rows of a Wq/Wk matrix (`rows` x `cols`, row-major, `n_heads` heads) from
/// HF order (RoPE on halves) to GGUF order (RoPE on adjacent pairs), as llama.cpp's
/// converter does: GGUF row `2i + s` of a head is HF row `s * d/2 + i`.
pub fn permute_half_to_adjacent(w: &[f32], rows: usize, cols: usize, n_heads: usize) -> Vec<f32> {
    permute_rows(w, rows, cols, n_heads, true)
}

/// The inverse of [`permute_half_to_adjacent`].
pub fn permute_adjacent_to_half(w: &[f32], rows: usize, cols: usize, n_heads: usize) -> Vec<f32> {
    permute_rows(w, rows, cols, n_heads, false)
}

fn permute_rows(
    w: &[f32],
    rows: usize,
    cols: usize,
    n_heads: usize,
    to_adjacent: bool,
) -> Vec<f32> {
    assert_eq!(w.len(), rows * cols);
    assert!(
        n_heads > 0 && rows.is_multiple_of(2 * n_heads),
        "{rows} rows do not split into {n_heads} heads of even size"
    );
    let d = rows / n_heads;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_heads {
        for i in 0..d / 2 {
            for s in 0..2 {
                let (adj, half) = (h * d + 2 * i + s, h * d + s * d / 2 + i);
                let (dst, src) = if to_adjacent {
                    (adj, half)
                } else {
                    (half, adj)
                };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Writes `src` (e.g. a GGUF) as an HF llama checkpoint in `dir`: F32 `model.safetensors`
/// with HF names and shapes, `config.json`, and `tokenizer.json` when a tokenizer is given.
/// When `cfg` uses adjacent RoPE pairs, Wq/Wk rows are put back in HF (half-split) order,
/// so the checkpoint computes the same function as the source. Mainly for tests.
pub fn export_hf(
    src: &dyn TensorSource,
    cfg: &ModelConfig,
    tokenizer: Option<&Tokenizer>,
    dir: impl AsRef<Path>,
) -> Result<(), CheckpointError> {
    let dir = dir.as_ref();
    let io = |path: PathBuf| move |error| CheckpointError::Io { path, error };
    std::fs::create_dir_all(dir).map_err(io(dir.into()))?;
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, dims, _) in cfg.expected_tensors() {
        let t = src.tensor(&name).map_err(ConfigError::from)?;
        let mut v = t.to_f32().map_err(ConfigError::from)?;
        let (cols, rows) = (dims[0] as usize, dims.get(1).copied().unwrap_or(1) as usize);
        if cfg.rope_pairing == RopePairing::Adjacent {
            if name.ends_with("attn_q.weight") {
                v = permute_adjacent_to_half(&v, rows, cols, cfg.n_head);
            } else if name.ends_with("attn_k.weight") {
                v = permute_adjacent_to_half(&v, rows, cols, cfg.n_head_kv);
            }
        }
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        data.push((
            hf_name(&name).expect("expected tensors have HF names"),
            shape,
            bytes,
        ));
    }
    let views = data
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| CheckpointError::Invalid {
            path: dir.into(),
            what: e.to_string(),
        })?;
    let model = dir.join("model.safetensors");
    let bytes =
        safetensors::tensor::serialize(views, None).map_err(|e| CheckpointError::Invalid {
            path: model.clone(),
            what: e.to_string(),
        })?;
    crate::gguf::writer::write_atomic(&model, &bytes).map_err(io(model.clone()))?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.n_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head_kv,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_base,
        "max_position_embeddings": cfg.n_ctx_train,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tied_embeddings,
        "torch_dtype": "float32",
    });
    let path = dir.join("config.json");
    crate::gguf::writer::write_atomic(
        &path,
        serde_json::to_string_pretty(&config).unwrap().as_bytes(),
    )
    .map_err(io(path.clone()))?;
    if let Some(tk) = tokenizer {
        let path = dir.join("tokenizer.json");
        crate::gguf::writer::write_atomic(&path, tk.to_json()?.as_bytes())
            .map_err(io(path.clone()))?;
        let mut tc = serde_json::json!({ "add_bos_token": tk.add_bos() });
        let text = |id: Option<u32>| id.and_then(|i| tk.token_to_str(i)).map(String::from);
        if let Some(b) = text(tk.bos()) {
            tc["bos_token"] = b.into();
        }
        if let Some(e) = text(tk.eos()) {
            tc["eos_token"] = e.into();
        }
        if let Some(t) = tk.chat_template() {
            tc["chat_template"] = t.into();
        }
        let path = dir.join("tokenizer_config.json");
        crate::gguf::writer::write_atomic(
            &path,
            serde_json::to_string_pretty(&tc).unwrap().as_bytes(),
        )
        .map_err(io(path.clone()))?;
    }
    Ok(())
}

impl HfCheckpoint {
    /// Opens `dir` (config.json and every `*.safetensors` in it), maps tensor names and
    /// checks every expected tensor's shape and dtype.
    pub fn open(dir: impl AsRef<Path>) -> Result<HfCheckpoint, CheckpointError> {
        let dir = dir.as_ref().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| CheckpointError::Io { path, error }
        };
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid {
                path: config_path.clone(),
                what: format!("invalid JSON: {e}"),
            })?;
        let mut config = config_from_json(&json, &config_path)?;

        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CheckpointError::Invalid {
                path: dir,
                what: "no *.safetensors files".into(),
            });
        }

        let mut maps = Vec::new();
        let mut infos = Vec::new();
        let mut locations = HashMap::new();
        let mut ignored = Vec::new();
        for file in &files {
            let f = std::fs::File::open(file).map_err(io(file))?;
            // SAFETY: read-only map; see `Gguf::open`.
            let map = unsafe { Mmap::map(&f) }.map_err(io(file))?;
            let invalid = |what: String| CheckpointError::Invalid {
                path: file.clone(),
                what,
            };
            let st = SafeTensors::deserialize(&map)
                .map_err(|e| invalid(format!("malformed safetensors: {e}")))?;
            let mut views = st.tensors();
            views.sort_by(|a, b| a.0.cmp(&b.0));
            for (hf, view) in views {
                let Some(name) = gguf_name(&hf) else {
                    ignored.push(hf);
                    continue;
                };
                if name == "output.weight" && config.tied_embeddings {
                    ignored.push(hf);
                    continue;
                }
                let ty = match view.dtype() {
                    Dtype::F32 => GgmlType::F32,
                    Dtype::F16 => GgmlType::F16,
                    Dtype::BF16 => GgmlType::BF16,
                    other => {
                        return Err(invalid(format!(
                            "tensor `{hf}` has dtype {other:?}; F32, F16 or BF16 expected"
                        )))
                    }
                };
                if locations.contains_key(&name) {
                    return Err(invalid(format!(
                        "tensor `{hf}` appears in more than one file"
                    )));
                }
                let data = view.data();
                let start = data.as_ptr() as usize - map.as_ptr() as usize;
                // HF shapes are row-major [rows, cols]; ggml dims are ne0 (cols) first.
                let dims: Vec<u64> = view.shape().iter().rev().map(|&d| d as u64).collect();
                locations.insert(name.clone(), (maps.len(), start, data.len()));
                infos.push(TensorInfo {
                    name,
                    ty,
                    dims,
                    offset: start as u64,
                    n_bytes: Some(data.len() as u64),
                });
            }
            maps.push(map);
        }
        // Like GGUF: no separate LM head means it is tied to the embedding.
        if !locations.contains_key("output.weight") {
            config.tied_embeddings = true;
        }
        if config.vocab_size == 0 {
            config.vocab_size = infos
                .iter()
                .find(|t| t.name == "token_embd.weight")
                .map_or(0, |t| t.dims[1] as usize);
        }
        let ckpt = HfCheckpoint {
            dir,
            maps,
            infos,
            locations,
            config,
            ignored,
        };
        ckpt.config.validate(&ckpt)?;
        Ok(ckpt)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// HF tensor names that were present but not used.
    pub fn ignored_tensors(&self) -> &[String] {
        &self.ignored
    }

    /// The checkpoint's `tokenizer.json` (with `tokenizer_config.json` when present).
    pub fn tokenizer(&self) -> Result<Tokenizer, CheckpointError> {
        Ok(Tokenizer::from_file(self.dir.join("tokenizer.json"))?)
    }
}

impl TensorSource for HfCheckpoint {
    fn source_path(&self) -> &Path {
        &self.dir
    }

    fn tensor_infos(&self) -> &[TensorInfo] {
        &self.infos
    }

    fn tensor(&self, name: &str) -> Result<Tensor<'_>, GgufError> {
        let (&(map, start, len), info) = self
            .locations
            .get(name)
            .zip(self.infos.iter().find(|t| t.name == name))
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.dir.clone(),
                name: name.into(),
            })?;
        Ok(Tensor {
            path: &self.dir,
            name: &info.name,
            ty: info.ty,
            dims: &info.dims,
            data: &self.maps[map][start..start + len],
        })
    }
}

/// ModelConfig from an HF llama `config.json`.
fn config_from_json(j: &serde_json::Value, path: &Path) -> Result<ModelConfig, CheckpointError> {
    let invalid = |what: String| CheckpointError::Invalid {
        path: path.into(),
        what,
    };
    let model_type = j.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    if model_type != "llama" {
        return Err(invalid(format!(
            "model_type `{model_type}` is not supported (only `llama`)"
        )));
    }
    if j.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err(invalid("rope_scaling is not supported".into()));
    }
    let uint = |k: &str| -> Result<usize, CheckpointError> {
        j.get(k)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or_else(|| invalid(format!("`{k}` is missing or not an unsigned integer")))
    };
    let opt_uint = |k: &str| {
        j.get(k)
            .filter(|v| !v.is_null())
            .map(|_| uint(k))
            .transpose()
    };
    let opt_f32 = |k: &str| -> Result<Option<f32>, CheckpointError> {
        match j.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| invalid(format!("`{k}` is not a number"))),
        }
    };
    let n_embd = uint("hidden_size")?;
    let n_head = uint("num_attention_heads")?;
    if n_head == 0 || n_embd % n_head != 0 {
        return Err(invalid(format!(
            "hidden_size {n_embd} is not a multiple of num_attention_heads {n_head}"
        )));
    }
    let head_dim = n_embd / n_head;
    if let Some(h) = opt_uint("head_dim")? {
        if h != head_dim {
            return Err(invalid(format!("head_dim {h} differs from hidden_size/num_attention_heads {head_dim} (unsupported)")));
        }
    }
    Ok(ModelConfig {
        arch: "llama".into(),
        n_layer: uint("num_hidden_layers")?,
        n_embd,
        n_ff: uint("intermediate_size")?,
        n_head,
        n_head_kv: opt_uint("num_key_value_heads")?.unwrap_or(n_head),
        head_dim,
        rope_base: opt_f32("rope_theta")?.unwrap_or(10000.0),
        rope_dim: head_dim,
        rope_pairing: RopePairing::HalfSplit,
        rms_eps: opt_f32("rms_norm_eps")?.unwrap_or(1e-6),
        n_ctx_train: opt_uint("max_position_embeddings")?.unwrap_or(2048),
        vocab_size: opt_uint("vocab_size")?.unwrap_or(0),
        tied_embeddings: j
            .get("tie_word_embeddings")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}
