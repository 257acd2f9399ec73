//! Tiny synthetic llama models for tests: every tensor a real model has, random weights from
//! a seed, and a small byte-level BPE vocabulary, so loaders, the forward pass and the
//! tokenizer can be exercised without the real model.

use super::{GgmlType, GgufWriter};
use crate::config::ModelConfig;

/// Special tokens at ids 0, 1, 2 (as in SmolLM2): endoftext, im_start (BOS), im_end (EOS).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// A small config with every dimension a multiple of 32 (so Q4_1/Q8_0 blocks fit) and GQA.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        arch: "llama".into(),
        n_layer: 2,
        n_embd: 64,
        n_ff: 128,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 16,
        rope_base: 10000.0,
        rope_dim: 16,
        rope_pairing: crate::config::RopePairing::Adjacent,
        rms_eps: 1e-5,
        n_ctx_train: 256,
        vocab_size: 320,
        tied_embeddings: true,
    }
}

/// splitmix64: deterministic, dependency-free randomness for weights.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The GPT-2 byte-level alphabet: the character each byte is written as in the vocabulary.
pub fn byte_level_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = vec!['\0'; 256];
    for &b in &printable {
        chars[b as usize] = char::from_u32(b).unwrap();
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            chars[b as usize] = char::from_u32(256 + n).unwrap();
            printable.push(b);
            n += 1;
        }
    }
    chars
}

/// Vocabulary (specials, 256 bytes, then merged pairs of lower-case letters and "Ġ"+letter)
/// and merges, `vocab_size` tokens in all (at least 259).
pub fn tiny_vocab(vocab_size: usize) -> (Vec<String>, Vec<String>, Vec<i32>) {
    assert!(
        vocab_size >= 259,
        "vocab_size must be >= 259 (3 specials + 256 bytes)"
    );
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut types = vec![3i32; 3];
    tokens.extend(byte_level_chars().into_iter().map(String::from));
    types.extend(std::iter::repeat_n(1, 256));
    let letters: Vec<char> = "etaoinshrdlcumwfgypbvkjxqz".chars().collect();
    let firsts: Vec<String> = std::iter::once("Ġ".to_string())
        .chain(letters.iter().map(|c| c.to_string()))
        .collect();
    let mut merges = Vec::new();
    'outer: for a in &firsts {
        for b in &letters {
            if tokens.len() >= vocab_size {
                break 'outer;
            }
            merges.push(format!("{a} {b}"));
            tokens.push(format!("{a}{b}"));
            types.push(1);
        }
    }
    assert_eq!(
        tokens.len(),
        vocab_size,
        "vocab_size too large for the synthetic merge set"
    );
    (tokens, merges, types)
}

/// A complete llama GGUF for `cfg`: norms F32 (near 1), token embedding Q8_0 (or F32 when
/// `weight_type` is F32/F16), matrices in `weight_type` (F32, F16, Q8_0 or Q4_1), random
/// weights of scale ~1/sqrt(fan_in) from `seed`, and tokenizer metadata.
pub fn tiny_llama(cfg: &ModelConfig, weight_type: GgmlType, seed: u64) -> GgufWriter {
    let mut rng = Rng(seed);
    let mut w = GgufWriter::new();
    let a = &cfg.arch;
    w.set_str("general.architecture", a)
        .set_str("general.name", "agq synthetic tiny llama")
        .set_u32(&format!("{a}.block_count"), cfg.n_layer as u32)
        .set_u32(&format!("{a}.context_length"), cfg.n_ctx_train as u32)
        .set_u32(&format!("{a}.embedding_length"), cfg.n_embd as u32)
        .set_u32(&format!("{a}.feed_forward_length"), cfg.n_ff as u32)
        .set_u32(&format!("{a}.attention.head_count"), cfg.n_head as u32)
        .set_u32(
            &format!("{a}.attention.head_count_kv"),
            cfg.n_head_kv as u32,
        )
        .set_f32(&format!("{a}.rope.freq_base"), cfg.rope_base)
        .set_f32(
            &format!("{a}.attention.layer_norm_rms_epsilon"),
            cfg.rms_eps,
        )
        .set_u32(&format!("{a}.vocab_size"), cfg.vocab_size as u32)
        .set_u32(&format!("{a}.rope.dimension_count"), cfg.rope_dim as u32);
    let (tokens, merges, types) = tiny_vocab(cfg.vocab_size);
    w.set_str("tokenizer.ggml.model", "gpt2")
        .set_bool("tokenizer.ggml.add_bos_token", false)
        .set_str_array("tokenizer.ggml.tokens", &tokens)
        .set_i32_array("tokenizer.ggml.token_type", &types)
        .set_str_array("tokenizer.ggml.merges", &merges)
        .set_u32("tokenizer.ggml.bos_token_id", 1)
        .set_u32("tokenizer.ggml.eos_token_id", 2);
    for (name, dims, is_norm) in cfg.expected_tensors() {
        let n: u64 = dims.iter().product();
        if is_norm {
            let v: Vec<f32> = (0..n).map(|_| 1.0 + 0.1 * rng.uniform()).collect();
            w.add_f32(&name, &dims, &v);
            continue;
        }
        let scale = 1.0 / (dims[0] as f32).sqrt();
        let v: Vec<f32> = (0..n).map(|_| scale * rng.uniform()).collect();
        let ty = match (name.as_str(), weight_type) {
            ("token_embd.weight", GgmlType::F32 | GgmlType::F16) => weight_type,
            ("token_embd.weight", _) => GgmlType::Q8_0,
            (_, t) => t,
        };
        match ty {
            GgmlType::F32 => w.add_f32(&name, &dims, &v),
            GgmlType::F16 => w.add_f16(&name, &dims, &v),
            GgmlType::Q8_0 => w.add_q8_0(&name, &dims, &v),
            GgmlType::Q4_1 => w.add_q4_1(&name, &dims, &v),
            other => panic!("tiny_llama: weight type {other} not supported (F32, F16, Q8_0, Q4_1)"),
        };
    }
    w
}
