//! Runtime: loads models (GGUF; HF safetensors + tokenizer.json), tokenizes, runs the
//! forward pass with a KV cache, executes quantization plans, and measures perplexity and
//! generation speed. Matmuls go through `kernels`. Knows nothing of profiles or tuning.

pub mod config;
pub mod gguf;
pub mod hash;
pub mod text;
pub mod tokenizer;
pub mod plan;
pub mod quant;
pub mod prune;
pub mod calibrate;
pub mod safetensors;
pub mod model;
pub mod eval;
pub mod generate;
pub mod bench;
