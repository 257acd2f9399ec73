//! `agq info` through the built binary: the real model (table and JSON), and one-line errors
//! naming the file for a truncated copy, random bytes and a missing file.

use std::path::PathBuf;
use std::process::Command;

fn model() -> Option<PathBuf> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
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

fn agq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agq"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn info_on_the_real_model() {
    let Some(m) = model() else { return };
    let m = m.to_str().unwrap();
    let (ok, out, err) = agq(&["info", "--model", m]);
    assert!(ok, "{err}");
    for needle in [
        "llama",
        "576",
        "1536",
        "9 / 3",
        "272",
        "Q4_1",
        "49152",
        "<|im_start|>",
        "tied",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }

    let (ok, out, err) = agq(&["info", "--model", m, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON object on one line");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sha = runtime::hash::file_sha256(m).unwrap();
    assert_eq!(v["sha256"], sha.as_str());
    assert_eq!(v["format"]["kind"], "gguf");
    assert_eq!(v["format"]["version"], 3);
    assert_eq!(v["config"]["n_layer"], 30);
    assert_eq!(v["config"]["n_head_kv"], 3);
    assert_eq!(v["tensors"]["count"], 272);
    assert_eq!(v["tensors"]["by_type"]["Q4_1"]["tensors"], 210);
    assert_eq!(v["tensors"]["by_type"]["Q8_0"]["tensors"], 1);
    assert_eq!(v["tokenizer"]["vocab_size"], 49152);
    assert_eq!(v["tokenizer"]["bos"]["id"], 1);
    assert_eq!(v["tokenizer"]["add_bos"], false);
    let bytes: u64 = ["F32", "Q4_1", "Q8_0"]
        .iter()
        .map(|t| v["tensors"]["by_type"][t]["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(v["tensors"]["bytes"].as_u64().unwrap(), bytes);
}

fn assert_one_line_error(args: &[&str], file: &str, what: &str) {
    let (ok, out, err) = agq(args);
    assert!(!ok, "expected failure, got:\n{out}");
    assert!(out.is_empty(), "nothing on stdout on failure: {out}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(file) && err.contains(what), "{err}");
}

#[test]
fn info_on_bad_files_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(m) = model() {
        let bytes = std::fs::read(m).unwrap();
        let cut = dir.path().join("cut.gguf");
        std::fs::write(&cut, &bytes[..1 << 20]).unwrap();
        assert_one_line_error(
            &["info", "--model", cut.to_str().unwrap()],
            cut.to_str().unwrap(),
            "truncated",
        );
    }
    let rnd = dir.path().join("random.gguf");
    let mut x = 88172645463325252u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&rnd, noise).unwrap();
    assert_one_line_error(
        &["info", "--model", rnd.to_str().unwrap()],
        rnd.to_str().unwrap(),
        "bad magic",
    );
    let missing = dir.path().join("missing.gguf");
    assert_one_line_error(
        &["info", "-m", missing.to_str().unwrap()],
        missing.to_str().unwrap(),
        "No such file",
    );
}

#[test]
fn info_on_a_synthetic_gguf_and_an_hf_directory() {
    use runtime::gguf::synthetic::{tiny_config, tiny_llama};
    use runtime::gguf::{GgmlType, Gguf};
    let dir = tempfile::tempdir().unwrap();
    let g_path = dir.path().join("tiny.gguf");
    tiny_llama(&tiny_config(), GgmlType::Q4_1, 5)
        .write(&g_path)
        .unwrap();
    let (ok, out, err) = agq(&["info", "--json", "-m", g_path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config"]["n_layer"], 2);
    assert_eq!(v["tokenizer"]["vocab_size"], 320);

    // The same weights as an HF directory (F32 safetensors, no tokenizer).
    let g = Gguf::open(&g_path).unwrap();
    let hf = dir.path().join("hf");
    runtime::safetensors::export_hf(&g, &tiny_config(), None, &hf).unwrap();
    let (ok, out, err) = agq(&["info", "-m", hf.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("HalfSplit")
            && out.contains("HF safetensors")
            && out.contains("no tokenizer.json"),
        "{out}"
    );
    let (ok, out, _) = agq(&["info", "--json", "-m", hf.to_str().unwrap()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tensors"]["count"], g.tensor_infos().len());
    assert_eq!(
        v["tensors"]["by_type"]["F32"]["tensors"],
        g.tensor_infos().len()
    );
    assert!(v["tokenizer"].is_null() && v["sha256"].is_null());
}
