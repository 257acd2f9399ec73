//! Runtime: loads models (GGUF; HF safetensors + tokenizer.json), tokenizes, runs the
//! forward pass with a KV cache, executes quantization plans, and measures perplexity and
//! generation speed. Matmuls go through `kernels`. Knows nothing of profiles or tuning.
