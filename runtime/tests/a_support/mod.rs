//! Shared by the runtime's test files: locating the real model and data files (a missing
//! model skips locally and fails under CI=true).
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
