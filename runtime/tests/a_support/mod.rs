//! Shared by the runtime's test files: locating the real model and data files (a missing
//! model skips locally and fails under CI=true), and deterministic noise for synthetic inputs.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The default model, or `None` (after printing why) when it is missing outside CI.
/// With CI=true a missing model fails the test.
pub fn model_path() -> Option<PathBuf> {
    let p = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} is missing (run scripts/fetch-model.sh)", p.display());
    }
    eprintln!(
        "SKIPPED: {} is missing (run scripts/fetch-model.sh)",
        p.display()
    );
    None
}

pub fn data_path(name: &str) -> PathBuf {
    repo_root().join("data").join(name)
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A tiny synthetic llama with Q4_1 weights (seed 7), written to a temp dir and loaded; the
/// dir must outlive the `Gguf`.
pub fn tiny_q4_model(n_layer: usize) -> (tempfile::TempDir, runtime::gguf::Gguf, runtime::model::Model) {
    use runtime::gguf::synthetic::{tiny_config, tiny_llama};
    use runtime::gguf::{GgmlType, Gguf};
    use runtime::model::{llama, LoadOptions};
    use runtime::plan::WeightFormat;
    let mut cfg = tiny_config();
    cfg.n_layer = n_layer;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    tiny_llama(&cfg, GgmlType::Q4_1, 7).write(&p).unwrap();
    let g = Gguf::open(&p).unwrap();
    let model = llama::load_gguf(&g, LoadOptions::new(WeightFormat::Q4_1)).unwrap();
    (dir, g, model)
}
