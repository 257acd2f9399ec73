//! ModelConfig from the real model and from synthetic files with wrong hyper-parameters or
//! tensor shapes.

mod a_support;

use runtime::config::{ModelConfig, RopePairing};
use runtime::gguf::Gguf;

#[test]
fn real_model_config() {
    let Some(path) = a_support::model_path() else {
        return;
    };
    let g = Gguf::open(&path).unwrap();
    let c = ModelConfig::from_gguf(&g).unwrap();
    assert_eq!(c.arch, "llama");
    assert_eq!(
        (
            c.n_layer,
            c.n_embd,
            c.n_ff,
            c.n_head,
            c.n_head_kv,
            c.head_dim
        ),
        (30, 576, 1536, 9, 3, 64)
    );
    assert_eq!(c.rope_base, 100000.0);
    assert_eq!(c.rope_dim, 64);
    assert_eq!(c.rope_pairing, RopePairing::Adjacent);
    assert!((c.rms_eps - 1e-5).abs() < 1e-9);
    assert_eq!((c.n_ctx_train, c.vocab_size), (8192, 49152));
    assert!(c.tied_embeddings);
}

use runtime::gguf::synthetic::{tiny_config, tiny_llama};
use runtime::gguf::{GgmlType, GgufWriter};

/// Writes the writer and returns ModelConfig::from_gguf's error text.
fn config_err(w: &GgufWriter) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    w.write(&p).unwrap();
    let g = Gguf::open(&p).unwrap();
    let msg = ModelConfig::from_gguf(&g).unwrap_err().to_string();
    assert!(
        msg.contains(&p.display().to_string()),
        "error does not name the file: {msg}"
    );
    msg
}

#[test]
fn synthetic_models_of_every_weight_type() {
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_1] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        tiny_llama(&tiny_config(), ty, 1).write(&p).unwrap();
        let g = Gguf::open(&p).unwrap();
        assert_eq!(ModelConfig::from_gguf(&g).unwrap(), tiny_config());
        assert_eq!(g.tensor("blk.1.ffn_up.weight").unwrap().ty, ty);
    }
    // An untied model has output.weight.
    let mut cfg = tiny_config();
    cfg.tied_embeddings = false;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.gguf");
    tiny_llama(&cfg, GgmlType::Q4_1, 1).write(&p).unwrap();
    assert!(
        !ModelConfig::from_gguf(&Gguf::open(&p).unwrap())
            .unwrap()
            .tied_embeddings
    );
}

#[test]
fn inconsistent_models_are_errors() {
    let base = || tiny_llama(&tiny_config(), GgmlType::Q4_1, 1);

    let mut w = base();
    w.set_u32("llama.attention.head_count", 5);
    assert!(config_err(&w).contains("not a multiple of n_head 5"));

    let mut w = base();
    w.set_u32("llama.attention.head_count_kv", 3);
    assert!(config_err(&w).contains("not a multiple of n_head_kv 3"));

    let mut w = base();
    w.set_str("general.architecture", "gpt2");
    assert!(config_err(&w).contains("`gpt2` is not supported"));

    let mut w = base();
    w.remove("llama.block_count");
    assert!(config_err(&w).contains("`llama.block_count` is missing"));

    let mut w = base();
    w.set_str("llama.embedding_length", "sixty-four");
    assert!(config_err(&w).contains("llama.embedding_length"));

    // A tensor with the wrong shape: named, with expected and actual shapes.
    let mut w = base();
    w.remove_tensor("blk.1.attn_k.weight").add_q4_1(
        "blk.1.attn_k.weight",
        &[64, 64],
        &vec![0.5; 64 * 64],
    );
    let msg = config_err(&w);
    assert!(
        msg.contains("blk.1.attn_k.weight") && msg.contains("[64, 32]") && msg.contains("[64, 64]"),
        "{msg}"
    );

    // A missing tensor and a norm of the wrong type.
    let mut w = base();
    w.remove_tensor("blk.0.ffn_gate.weight");
    assert!(config_err(&w).contains("`blk.0.ffn_gate.weight` not found"));
    let mut w = base();
    w.remove_tensor("blk.0.ffn_norm.weight")
        .add_q8_0("blk.0.ffn_norm.weight", &[64], &[1.0; 64]);
    let msg = config_err(&w);
    assert!(
        msg.contains("blk.0.ffn_norm.weight") && msg.contains("type Q8_0"),
        "{msg}"
    );
    let mut w = base();
    // A known ggml type agq cannot dequantize, with the right shape.
    w.remove_tensor("blk.0.ffn_up.weight").add_raw(
        "blk.0.ffn_up.weight",
        GgmlType::Q5_0,
        &[64, 128],
        vec![0; 64 * 128 / 32 * 22],
    );
    let msg = config_err(&w);
    assert!(
        msg.contains("blk.0.ffn_up.weight") && msg.contains("type Q5_0"),
        "{msg}"
    );
}
