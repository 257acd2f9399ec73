//! Loading a llama-architecture model from a tensor source (GGUF names) into [`Model`]:
//! fused `qkv` and `gate_up` matrices, weights prepared for the chosen storage (f16, or the
//! file's Q4_1 blocks as stored); the tied or separate LM head in f16 with f16 weights, and
//! in its stored quantized format (Q8_0 or Q4_1) with Q4_1 weights.

use super::{Block, BlockKind, Linear, MlpKind, Model, ModelError, Norm, NormKind, PositionKind};
use crate::config::ModelConfig;
use crate::gguf::{GgmlType, TensorSource};
use crate::plan::{Site, WeightFormat};
use kernels::{best_isa, BlockQ8_0, Isa, Matmul, Q4Matrix, Q8Matrix, Variant, QK};

/// How to load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadOptions {
    pub weights: WeightFormat,
    /// Force an instruction set (tests compare ISAs); `None` = fastest available per variant.
    pub isa: Option<Isa>,
}

impl LoadOptions {
    pub fn new(weights: WeightFormat) -> LoadOptions {
        LoadOptions { weights, isa: None }
    }
}

/// Token embedding rows, kept in the file's format and expanded per lookup.
pub enum Embedding {
    Q8_0 { blocks: Vec<BlockQ8_0>, dim: usize },
    F32 { rows: Vec<f32>, dim: usize },
}

impl Embedding {
    pub fn dim(&self) -> usize {
        match self {
            Embedding::Q8_0 { dim, .. } | Embedding::F32 { dim, .. } => *dim,
        }
    }

    /// Writes row `id` into `out` (`dim` values). `id` must be checked by the caller.
    pub fn row(&self, id: u32, out: &mut [f32]) {
        match self {
            Embedding::Q8_0 { blocks, dim } => {
                let bpr = dim / QK;
                let mut buf = [0f32; QK];
                for (b, blk) in blocks[id as usize * bpr..(id as usize + 1) * bpr].iter().enumerate() {
                    blk.dequantize(&mut buf);
                    out[b * QK..(b + 1) * QK].copy_from_slice(&buf);
                }
            }
            Embedding::F32 { rows, dim } => out.copy_from_slice(&rows[id as usize * dim..(id as usize + 1) * dim]),
        }
    }
}

fn kernel_err(src: &dyn TensorSource, tensor: &str, e: kernels::KernelError) -> ModelError {
    ModelError::Kernel { file: src.source_path().display().to_string(), tensor: tensor.into(), source: e }
}

/// Stacks the output rows of `names` (each `ne0 = k` inputs) into one matmul. Q4_1 sources are
/// used block-for-block; other types go through f32 (and round-to-nearest Q4_1 when the
/// storage is Q4_1). `force_f16` keeps the matrix f16 whatever the storage (LM head).
fn load_stacked(
    src: &dyn TensorSource,
    names: &[String],
    opts: LoadOptions,
    force_f16: bool,
) -> Result<Matmul, ModelError> {
    let tensors = names.iter().map(|n| src.tensor(n)).collect::<Result<Vec<_>, _>>()?;
    let k = tensors[0].dims[0] as usize;
    let mut n = 0usize;
    for t in &tensors {
        let (cols, rows) = t.matrix_shape()?;
        if cols != k {
            return Err(ModelError::Unsupported {
                file: src.source_path().display().to_string(),
                what: format!("tensor `{}` has {cols} inputs, `{}` has {k}; cannot fuse", t.name, names[0]),
            });
        }
        n += rows;
    }
    let f16 = force_f16 || opts.weights == WeightFormat::F16;
    let variant = if f16 { Variant::F16 } else { Variant::W4A16 };
    let isa = opts.isa.unwrap_or_else(|| best_isa(variant));
    let all_q4 = tensors.iter().all(|t| t.ty == GgmlType::Q4_1) && k.is_multiple_of(QK);
    let mm = if all_q4 {
        let mut blocks = Vec::with_capacity(n * k / QK);
        for t in &tensors {
            blocks.extend_from_slice(t.q4_1_slice()?);
        }
        let q = Q4Matrix::from_blocks(n, k, blocks).map_err(|e| kernel_err(src, &names[0], e))?;
        Matmul::new_q4(variant, isa, &q)
    } else {
        let mut w = Vec::with_capacity(n * k);
        for t in &tensors {
            w.extend(t.to_f32()?);
        }
        if f16 {
            Matmul::new_f16(isa, n, k, &w)
        } else {
            Matmul::new_q4(variant, isa, &Q4Matrix::quantize(n, k, &w))
        }
    };
    mm.map_err(|e| kernel_err(src, &names[0], e))
}

/// The LM head. Its activations stay float in every plan (method.md §1). Its weights: f16 for
/// f16 storage (`fp16` means every matrix in f16); with Q4_1 storage, the file's own format
/// when that is Q8_0 (`w8a16`: SmolLM2's tied embedding, read at 34 B per 32 weights instead
/// of f16's 64: the largest matrix of a decode step) or Q4_1 (`w4a16`), f16 otherwise.
fn load_head(src: &dyn TensorSource, name: &str, opts: LoadOptions) -> Result<Matmul, ModelError> {
    let t = src.tensor(name)?;
    let (k, n) = t.matrix_shape()?;
    if opts.weights == WeightFormat::Q4_1 && t.ty == GgmlType::Q8_0 && k % QK == 0 {
        let q = Q8Matrix::from_blocks(n, k, t.q8_0_blocks()?).map_err(|e| kernel_err(src, name, e))?;
        let isa = opts.isa.unwrap_or_else(|| best_isa(Variant::W8A16));
        return Matmul::new_q8(isa, &q).map_err(|e| kernel_err(src, name, e));
    }
    let keep_f16 = !(opts.weights == WeightFormat::Q4_1 && t.ty == GgmlType::Q4_1);
    load_stacked(src, &[name.to_string()], opts, keep_f16)
}

/// The GGUF tensors whose output rows a site stacks, in order (`qkv` = q, k, v; `gate_up` =
/// gate, up). For plans that re-prepare a site's weights (other kernel variants, TRIP factors).
pub fn site_tensors(layer: Option<usize>, site: Site, tied: bool) -> Vec<String> {
    let b = |s: &str| format!("blk.{}.{s}.weight", layer.unwrap_or(0));
    match site {
        Site::Qkv => vec![b("attn_q"), b("attn_k"), b("attn_v")],
        Site::O => vec![b("attn_output")],
        Site::GateUp => vec![b("ffn_gate"), b("ffn_up")],
        Site::Down => vec![b("ffn_down")],
        Site::LmHead => vec![if tied { "token_embd.weight".into() } else { "output.weight".into() }],
        Site::Qk | Site::Pv => vec![],
    }
}

/// The stacked weights of `names` as row-major f32 `(n, k, w)` (dequantized as stored).
pub fn stacked_f32(src: &dyn TensorSource, names: &[String]) -> Result<(usize, usize, Vec<f32>), ModelError> {
    let mut w = Vec::new();
    let (mut n, mut k) = (0, 0);
    for name in names {
        let t = src.tensor(name)?;
        let (cols, rows) = t.matrix_shape()?;
        if n > 0 && cols != k {
            return Err(ModelError::Unsupported {
                file: src.source_path().display().to_string(),
                what: format!("tensor `{name}` has {cols} inputs, `{}` has {k}; cannot fuse", names[0]),
            });
        }
        k = cols;
        n += rows;
        w.extend(t.to_f32()?);
    }
    Ok((n, k, w))
}

/// The stacked weights of `names` as Q4_1 blocks: the file's blocks when it stores Q4_1,
/// round-to-nearest otherwise.
pub fn stacked_q4(src: &dyn TensorSource, names: &[String]) -> Result<Q4Matrix, ModelError> {
    let tensors = names.iter().map(|n| src.tensor(n)).collect::<Result<Vec<_>, _>>()?;
    if tensors.iter().all(|t| t.ty == GgmlType::Q4_1) && (tensors[0].dims[0] as usize).is_multiple_of(QK) {
        let k = tensors[0].dims[0] as usize;
        let mut blocks = Vec::new();
        let mut n = 0;
        for t in &tensors {
            n += t.matrix_shape()?.1;
            blocks.extend_from_slice(t.q4_1_slice()?);
        }
        return Q4Matrix::from_blocks(n, k, blocks).map_err(|e| kernel_err(src, &names[0], e));
    }
    let (n, k, w) = stacked_f32(src, names)?;
    Ok(Q4Matrix::quantize(n, k, &w))
}

fn load_norm(src: &dyn TensorSource, name: &str, kind: NormKind) -> Result<Norm, ModelError> {
    Ok(Norm { kind, weight: src.tensor(name)?.to_f32()?, bias: None })
}

/// Loads a llama model. `cfg` must have been validated against `src`.
pub fn load(src: &dyn TensorSource, cfg: &ModelConfig, opts: LoadOptions) -> Result<Model, ModelError> {
    cfg.validate(src)?;
    let kind = BlockKind { norm: NormKind::Rms { eps: cfg.rms_eps }, positions: PositionKind::Rope, mlp: MlpKind::SwiGlu };
    let norm = kind.norm;
    let emb_t = src.tensor("token_embd.weight")?;
    let embed = match emb_t.ty {
        GgmlType::Q8_0 if cfg.n_embd.is_multiple_of(QK) => Embedding::Q8_0 { blocks: emb_t.q8_0_blocks()?, dim: cfg.n_embd },
        _ => Embedding::F32 { rows: emb_t.to_f32()?, dim: cfg.n_embd },
    };
    let mut blocks = Vec::with_capacity(cfg.n_layer);
    for l in 0..cfg.n_layer {
        let b = |s: &str| format!("blk.{l}.{s}.weight");
        let lin = |site: Site, names: &[&str]| -> Result<Linear, ModelError> {
            let names: Vec<String> = names.iter().map(|s| b(s)).collect();
            Ok(Linear { site, layer: Some(l), mm: load_stacked(src, &names, opts, false)?, bias: None })
        };
        blocks.push(Block {
            attn_norm: load_norm(src, &b("attn_norm"), norm)?,
            qkv: lin(Site::Qkv, &["attn_q", "attn_k", "attn_v"])?,
            o: lin(Site::O, &["attn_output"])?,
            ffn_norm: load_norm(src, &b("ffn_norm"), norm)?,
            gate_up: lin(Site::GateUp, &["ffn_gate", "ffn_up"])?,
            down: lin(Site::Down, &["ffn_down"])?,
        });
    }
    let head_name = if cfg.tied_embeddings { "token_embd.weight" } else { "output.weight" };
    let lm_head = Linear { site: Site::LmHead, layer: None, mm: load_head(src, head_name, opts)?, bias: None };
    Ok(Model {
        config: cfg.clone(),
        kind,
        weights: opts.weights,
        embed,
        rope: super::ops::Rope::new(cfg.head_dim, cfg.rope_dim, cfg.rope_base, cfg.rope_pairing),
        blocks,
        out_norm: load_norm(src, "output_norm.weight", norm)?,
        lm_head,
    })
}

/// Opens a GGUF llama model file.
pub fn load_gguf(g: &crate::gguf::Gguf, opts: LoadOptions) -> Result<Model, ModelError> {
    let cfg = ModelConfig::from_gguf(g)?;
    load(g, &cfg, opts)
}
