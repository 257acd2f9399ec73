//! `agq profile` end to end on a tiny synthetic model (fast): a complete profile, resume
//! after a simulated interruption, refusal of mismatched profiles, validation and spec-sheet
//! predictions, CLI errors; and a `--quick` run on the real model (skipped without it, unless
//! CI=true).

use profiler::profile::{DeviceProfile, RecordKey};
use runtime::gguf::synthetic::{tiny_config, tiny_llama};
use runtime::gguf::GgmlType;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn agq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agq")).args(args).output().expect("run agq");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn tiny_model(dir: &Path, seed: u64) -> PathBuf {
    let p = dir.join(format!("tiny-{seed}.gguf"));
    tiny_llama(&tiny_config(), GgmlType::Q4_1, seed).write(&p).unwrap();
    p
}

/// Few shapes, few samples: a tiny profile takes a second or two.
const SMALL: [&str; 12] =
    ["--quick", "--threads", "1", "--tokens", "1,4,16", "--kv", "8,32", "--blocks", "w4a8,agile8", "--seed", "7", "--no-pin"];

fn profile(model: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut a = vec!["profile", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap()];
    a.extend_from_slice(&SMALL);
    a.extend_from_slice(extra);
    agq(&a)
}

fn keys(p: &DeviceProfile) -> BTreeSet<RecordKey> {
    p.records.iter().map(|r| r.key()).collect()
}

#[test]
fn profile_resume_and_refusals_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 1);
    let full = dir.path().join("full.toml");
    let jsonl = dir.path().join("records.jsonl");
    let (ok, stdout, stderr) = profile(&model, &full, &["--jsonl", jsonl.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("records"), "{stdout}");
    let p = DeviceProfile::read(&full).unwrap();
    assert!(p.is_measured() && p.is_complete());
    assert_eq!(p.model.as_ref().unwrap().d_model, 64);
    assert_eq!(p.measurement.thread_counts, vec![1]);
    assert_eq!(p.ceilings.len(), 1);
    for op in ["qkv", "o", "gate_up", "down", "lm_head", "quantize", "embed", "norm", "rope", "attention", "softmax", "silu", "residual", "prune_select", "block"] {
        assert!(p.records.iter().any(|r| r.op == op), "no `{op}` record");
    }
    for r in &p.records {
        assert!(r.p10_s <= r.median_s && r.median_s <= r.p90_s && r.median_s > 0.0, "{r:?}");
        assert!(r.samples >= 3, "{r:?}");
    }
    // Decode attention at each KV length, prefill attention at each M.
    assert!(p.records.iter().any(|r| r.op == "attention" && r.m == 1 && r.kv == 32));
    assert!(p.records.iter().any(|r| r.op == "attention" && r.m == 16 && r.kv == 16));
    // Ops timed inside real decode steps: every linear variant, attention at each KV length.
    assert!(p.records.iter().any(|r| r.op == "forward.attention" && r.m == 1 && r.kv == 32));
    assert!(p.records.iter().any(|r| r.op == "forward.gate_up" && r.variant == "w4a8"));
    assert!(p.records.iter().any(|r| r.op == "forward.lm_head"));
    // ... and inside real prefills of each M > 1: sites, causal attention, the mixed INT8/INT4
    // rows of the presets' low-bit tokens, the group scheme; plus the group quantizer.
    for m in [4, 16] {
        assert!(p.records.iter().any(|r| r.op == "forward.gate_up" && r.variant == "w4a8" && r.m == m));
        assert!(p.records.iter().any(|r| r.op == "forward.attention" && r.m == m && r.kv == m));
        assert!(p.records.iter().any(|r| r.op == "forward.down" && r.variant == "w4a8+w4a4-widen" && r.m == m));
        assert!(p.records.iter().any(|r| r.op == "forward.norm" && r.m == m));
    }
    assert!(p.records.iter().any(|r| r.op == "forward.qkv" && r.variant == "w4a8@group" && r.m == 1));
    assert!(p.records.iter().any(|r| r.op == "forward.o" && r.variant == "w4a8@group+w4a4-widen@group" && r.m == 16));
    assert!(p.records.iter().any(|r| r.op == "quantize" && r.variant == "group" && r.bits == 4));
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(lines.lines().count(), p.records.len());
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["record"]["op"].is_string() && first["device_slug"].is_string());

    // Interrupted after 10 records: a partial file that refuses a plain re-run, then resumes
    // to the same set of records as the uninterrupted run.
    let part = dir.path().join("part.toml");
    let (ok, _, stderr) = profile(&model, &part, &["--stop-after", "10"]);
    assert!(!ok && stderr.contains("--resume"), "{stderr}");
    let partial = DeviceProfile::read(&part).unwrap();
    assert!(!partial.is_complete());
    assert_eq!(partial.records.len(), 10);
    let (ok, _, stderr) = profile(&model, &part, &[]);
    assert!(!ok && stderr.contains("partial profile") && stderr.contains("part.toml"), "{stderr}");
    let (ok, _, stderr) = profile(&model, &part, &["--resume", "--clock", "cpu"]);
    assert!(!ok && stderr.contains("other settings"), "{stderr}");
    let (ok, _, stderr) = profile(&model, &part, &["--resume"]);
    assert!(ok, "{stderr}");
    let resumed = DeviceProfile::read(&part).unwrap();
    assert!(resumed.is_complete());
    assert_eq!(keys(&resumed), keys(&p));
    // The first run's records were kept, not re-measured.
    for r in &partial.records {
        assert!(resumed.records.contains(r), "{r:?} lost on resume");
    }
    // Same schema and canonical record order as the uninterrupted file.
    let order = |p: &DeviceProfile| p.records.iter().map(|r| r.key()).collect::<Vec<_>>();
    assert_eq!(order(&resumed), order(&p));
    let (ok, _, stderr) = profile(&model, &part, &["--resume"]);
    assert!(!ok && stderr.contains("already complete"), "{stderr}");

    // Validation on the tiny model: runs the plans, prints the documented JSON.
    let (ok, stdout, stderr) = agq(&[
        "profile", "--validate", "--profile", full.to_str().unwrap(), "--model", model.to_str().unwrap(),
        "--plans", "w4a8,agile8", "--prompt", "16", "--gen", "4", "--reps", "1", "--threads", "1", "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("one JSON object");
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        assert!(matches!(c["phase"].as_str(), Some("prefill" | "decode")));
        let (p, m) = (c["predicted_s"].as_f64().unwrap(), c["measured_s"].as_f64().unwrap());
        assert!(p > 0.0 && m > 0.0);
        assert!((c["error_pct"].as_f64().unwrap() - (p - m) / m * 100.0).abs() < 1e-6);
    }
    let share = v["share_within_10pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&share));
    assert_eq!(v["prompt_tokens"], 16);
    let add = v["additivity"].as_array().unwrap();
    assert!(!add.is_empty());
    assert!(add.iter().all(|a| a["block_s"].as_f64().unwrap() > 0.0 && a["sum_of_ops_s"].as_f64().unwrap() > 0.0));

    // Interleaved rounds with the in-step ops re-measured in each: predictions from those,
    // the stored profile's next to them.
    let (ok, stdout, stderr) = agq(&[
        "profile", "--validate", "--profile", full.to_str().unwrap(), "--model", model.to_str().unwrap(),
        "--plans", "w4a8,agile4,w4a8-g32", "--prompt", "16", "--gen", "4", "--reps", "2", "--threads", "1", "--json", "--fresh-ops",
    ]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["prediction_basis"], "fresh-ops");
    assert_eq!(v["repetitions"], 2);
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    assert!(cases.iter().all(|c| c["predicted_from_profile_s"].as_f64().is_some_and(|s| s > 0.0)));
    assert!(v["share_within_10pct_from_profile"].as_f64().is_some());
    let notes = v["notes"].to_string();
    assert!(notes.contains("interleaved") && notes.contains("mixed rows"), "{notes}");

    // A profile of another model is refused, naming the file.
    let other = tiny_model(dir.path(), 2);
    let (ok, _, stderr) = agq(&[
        "profile", "--validate", "--profile", full.to_str().unwrap(), "--model", other.to_str().unwrap(), "--plans", "w4a8",
    ]);
    assert!(!ok && stderr.contains("full.toml") && stderr.contains("model"), "{stderr}");
    // ... and so is one from another device.
    let moved = dir.path().join("moved.toml");
    let mut q = p.clone();
    q.device.slug = "some-other-device-4c".into();
    q.write_atomic(&moved).unwrap();
    let (ok, _, stderr) = agq(&[
        "profile", "--validate", "--profile", moved.to_str().unwrap(), "--model", model.to_str().unwrap(), "--plans", "w4a8",
    ]);
    assert!(!ok && stderr.contains("some-other-device-4c"), "{stderr}");
}

#[test]
fn spec_sheet_profiles_predict_and_are_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 3);
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../device-profiles/spec/raspberry-pi-4b.toml");
    let (ok, stdout, stderr) = agq(&[
        "profile", "--predict", "--profile", spec.to_str().unwrap(), "--model", model.to_str().unwrap(),
        "--plans", "fp16,w4a8", "--prompt", "32", "--gen", "8", "--threads", "4",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("PREDICTED") && stdout.contains("w4a8"), "{stdout}");
    let (ok, _, stderr) = agq(&["profile", "--validate", "--profile", spec.to_str().unwrap(), "--model", model.to_str().unwrap()]);
    assert!(!ok && stderr.contains("spec-sheet"), "{stderr}");
}

#[test]
fn cli_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 4);
    let out = dir.path().join("p.toml");
    let m = model.to_str().unwrap();
    let o = out.to_str().unwrap();
    for (args, want) in [
        (vec!["profile", "--model", m, "--out", o, "--tokens", "0"], "--tokens"),
        (vec!["profile", "--model", m, "--out", o, "--attention", "qk9"], "qk9"),
        (vec!["profile", "--model", m, "--out", o, "--json"], "--json"),
        (vec!["profile", "--validate", "--model", m], "--profile"),
        (vec!["profile", "--model", "/nonexistent/model.gguf", "--out", o], "/nonexistent/model.gguf"),
        (vec!["profile", "--model", m, "--out", o, "--resume"], "p.toml"),
    ] {
        let (ok, _, stderr) = agq(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        // One error line (an info line may precede it), no panic.
        assert_eq!(stderr.lines().filter(|l| l.starts_with("agq: error:")).count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The real model, `--quick`: must finish well under a minute and write a complete profile.
#[test]
fn quick_profile_of_the_real_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{} is missing (run scripts/fetch-model.sh)", model.display());
        }
        eprintln!("SKIPPED: {} is missing (run scripts/fetch-model.sh)", model.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quick.toml");
    let t0 = std::time::Instant::now();
    let (ok, _, stderr) =
        agq(&["profile", "--quick", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"]);
    assert!(ok, "{stderr}");
    let secs = t0.elapsed().as_secs_f64();
    let p = DeviceProfile::read(&out).unwrap();
    assert!(p.is_complete());
    assert_eq!(p.model.as_ref().unwrap().n_layer, 30);
    assert!(p.records.iter().any(|r| r.op == "gate_up" && r.variant == "w4a8" && r.n == 3072 && r.k == 576));
    eprintln!("quick profile of the real model: {secs:.1} s, {} records", p.records.len());
    assert!(secs < 90.0, "--quick took {secs:.0} s");
}
