//! Model hyper-parameters read from GGUF metadata (or an HF config.json), checked against
//! each other and against the tensors actually present.

use crate::gguf::{GgmlType, Gguf, GgufError, TensorInfo, TensorSource};
use std::path::PathBuf;

/// Which dimensions RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RopePairing {
    /// Pairs (2i, 2i+1): GGUF llama models (the converter permuted Wq/Wk rows to get this).
    Adjacent,
    /// Pairs (i, i + d/2): HF checkpoints, as trained.
    HalfSplit,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub arch: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    /// Leading dimensions of each head that RoPE rotates (the rest pass through).
    pub rope_dim: usize,
    pub rope_pairing: RopePairing,
    pub rms_eps: f32,
    pub n_ctx_train: usize,
    pub vocab_size: usize,
    /// The LM head reuses `token_embd.weight` (no `output.weight` tensor).
    pub tied_embeddings: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{}: {what}", .path.display())]
    Invalid { path: PathBuf, what: String },
    #[error("{}: tensor `{name}`: expected {expected}, found {actual}", .path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        expected: String,
        actual: String,
    },
}

/// Types agq can load for the large matrices; norms must be F32 (or F16/BF16).
const MATRIX_TYPES: [GgmlType; 6] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
];
const NORM_TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

impl ModelConfig {
    /// Reads `{arch}.*` keys (llama only for now) and checks every tensor's shape and type.
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig, ConfigError> {
        let invalid = |what: String| ConfigError::Invalid {
            path: g.path().into(),
            what,
        };
        let arch = g.get_str("general.architecture")?.to_string();
        if arch != "llama" {
            return Err(invalid(format!(
                "architecture `{arch}` is not supported (only `llama`)"
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let n_layer = g.get_u32(&key("block_count"))? as usize;
        let n_embd = g.get_u32(&key("embedding_length"))? as usize;
        let n_ff = g.get_u32(&key("feed_forward_length"))? as usize;
        let n_head = g.get_u32(&key("attention.head_count"))? as usize;
        let n_head_kv = match g.get(&key("attention.head_count_kv")) {
            Some(_) => g.get_u32(&key("attention.head_count_kv"))? as usize,
            None => n_head,
        };
        if n_head == 0 || n_head_kv == 0 || n_embd == 0 || n_layer == 0 || n_ff == 0 {
            return Err(invalid(format!(
                "zero hyper-parameter: n_layer {n_layer}, n_embd {n_embd}, n_ff {n_ff}, n_head {n_head}, n_head_kv {n_head_kv}"
            )));
        }
        if !n_embd.is_multiple_of(n_head) {
            return Err(invalid(format!(
                "n_embd {n_embd} is not a multiple of n_head {n_head}"
            )));
        }
        let head_dim = n_embd / n_head;
        if g.get(&key("attention.key_length")).is_some() {
            let k = g.get_u32(&key("attention.key_length"))? as usize;
            if k != head_dim {
                return Err(invalid(format!(
                    "attention.key_length {k} differs from n_embd/n_head {head_dim} (unsupported)"
                )));
            }
        }
        let rope_base = opt_f32(g, &key("rope.freq_base"))?.unwrap_or(10000.0);
        let rope_dim = match g.get(&key("rope.dimension_count")) {
            Some(_) => g.get_u32(&key("rope.dimension_count"))? as usize,
            None => head_dim,
        };
        let rms_eps = g.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        let n_ctx_train = g.get_u32(&key("context_length"))? as usize;
        let embd = g
            .tensor_info("token_embd.weight")
            .ok_or_else(|| GgufError::MissingTensor {
                path: g.path().into(),
                name: "token_embd.weight".into(),
            })?;
        let vocab_size = match g.get(&key("vocab_size")) {
            Some(_) => g.get_u32(&key("vocab_size"))? as usize,
            None => embd.dims.get(1).copied().unwrap_or(0) as usize,
        };
        let cfg = ModelConfig {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            rope_base,
            rope_dim,
            rope_pairing: RopePairing::Adjacent,
            rms_eps,
            n_ctx_train,
            vocab_size,
            tied_embeddings: g.tensor_info("output.weight").is_none(),
        };
        cfg.validate(g)?;
        Ok(cfg)
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Every tensor a llama model needs, with its expected dims (ne0 first) and whether it is
    /// a norm vector (F32-like) or a matrix.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>, bool)> {
        let (e, f, v) = (self.n_embd as u64, self.n_ff as u64, self.vocab_size as u64);
        let (q, kv) = (self.q_dim() as u64, self.kv_dim() as u64);
        let mut t = vec![
            ("token_embd.weight".to_string(), vec![e, v], false),
            ("output_norm.weight".into(), vec![e], true),
        ];
        if !self.tied_embeddings {
            t.push(("output.weight".into(), vec![e, v], false));
        }
        for i in 0..self.n_layer {
            let b = |s: &str| format!("blk.{i}.{s}.weight");
            t.push((b("attn_norm"), vec![e], true));
            t.push((b("attn_q"), vec![e, q], false));
            t.push((b("attn_k"), vec![e, kv], false));
            t.push((b("attn_v"), vec![e, kv], false));
            t.push((b("attn_output"), vec![q, e], false));
            t.push((b("ffn_norm"), vec![e], true));
            t.push((b("ffn_gate"), vec![e, f], false));
            t.push((b("ffn_up"), vec![e, f], false));
            t.push((b("ffn_down"), vec![f, e], false));
        }
        t
    }

    /// Checks the hyper-parameters against each other and every expected tensor's presence,
    /// shape and type in `src`.
    pub fn validate(&self, src: &dyn TensorSource) -> Result<(), ConfigError> {
        let path = src.source_path().to_path_buf();
        let invalid = |what: String| ConfigError::Invalid {
            path: path.clone(),
            what,
        };
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(invalid(format!(
                "n_head {} is not a multiple of n_head_kv {}",
                self.n_head, self.n_head_kv
            )));
        }
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return Err(invalid(format!(
                "rope dimension {} must be even and <= head_dim {}",
                self.rope_dim, self.head_dim
            )));
        }
        // Written so that NaN fails too.
        let eps_ok = self.rms_eps > 0.0 && self.rms_eps < 1.0;
        let base_ok = self.rope_base > 0.0 && self.rope_base.is_finite();
        if !eps_ok || !base_ok {
            return Err(invalid(format!(
                "implausible rms_eps {} or rope_base {}",
                self.rms_eps, self.rope_base
            )));
        }
        if self.vocab_size == 0 {
            return Err(invalid("vocabulary size is 0".into()));
        }
        let infos: std::collections::HashMap<&str, &TensorInfo> = src
            .tensor_infos()
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        for (name, dims, is_norm) in self.expected_tensors() {
            let info = infos
                .get(name.as_str())
                .ok_or_else(|| GgufError::MissingTensor {
                    path: path.clone(),
                    name: name.clone(),
                })?;
            if info.dims != dims {
                return Err(ConfigError::Tensor {
                    path: path.clone(),
                    name,
                    expected: format!("shape {dims:?}"),
                    actual: format!("shape {:?}", info.dims),
                });
            }
            let allowed: &[GgmlType] = if is_norm { &NORM_TYPES } else { &MATRIX_TYPES };
            if !allowed.contains(&info.ty) {
                let list: Vec<String> = allowed.iter().map(|t| t.name()).collect();
                return Err(ConfigError::Tensor {
                    path: path.clone(),
                    name,
                    expected: format!("type {}", list.join("/")),
                    actual: format!("type {}", info.ty),
                });
            }
        }
        Ok(())
    }
}

fn opt_f32(g: &Gguf, key: &str) -> Result<Option<f32>, GgufError> {
    match g.get(key) {
        None => Ok(None),
        Some(_) => g.get_f32(key).map(Some),
    }
}
