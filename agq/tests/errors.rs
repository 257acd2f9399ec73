//! The CLI's error line: one line, naming the file once, for errors whose own message already
//! includes their cause.

use std::process::Command;

#[test]
fn missing_profile_is_named_once_on_one_line() {
    let missing = std::env::temp_dir().join("agq-no-such-profile.toml");
    let out_dir = std::env::temp_dir().join("agq-errors-test-out");
    let out = Command::new(env!("CARGO_BIN_EXE_agq"))
        .args(["report", "--profile"])
        .arg(&missing)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run agq");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("agq: error: "), "{stderr}");
    let name = missing.display().to_string();
    assert_eq!(lines[0].matches(&name).count(), 1, "{stderr}");
    assert_eq!(lines[0].matches("No such file").count(), 1, "{stderr}");
}

/// `agq bench -d` past the model's context is refused with the file and the limit, not run.
#[test]
fn bench_depth_past_the_context_is_refused() {
    use runtime::gguf::synthetic::{tiny_config, tiny_llama};
    use runtime::gguf::GgmlType;
    let dir = std::env::temp_dir().join(format!("agq-errors-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    let cfg = tiny_config();
    tiny_llama(&cfg, GgmlType::Q4_1, 7).write(&model).unwrap();
    let depth = cfg.n_ctx_train.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_agq"))
        .args(["bench", "--model"])
        .arg(&model)
        .args(["-p", "0", "-n", "4", "-d", &depth, "-r", "1", "-t", "1", "--plan", "w4a16"])
        .output()
        .expect("run agq");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("agq: error: "), "{stderr}");
    assert!(last.contains("tiny.gguf"), "{stderr}");
    assert!(last.contains(&format!("-d {depth} plus 4 tokens of tg4 exceeds the model's context of {depth} tokens")), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An unknown `--scheme` is refused on one line naming the flag and the choices, before any
/// file is read.
#[test]
fn unknown_tuning_scheme_is_refused() {
    let missing = std::env::temp_dir().join("agq-no-such-profile.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_agq"))
        .args(["tune", "--scheme", "tensor", "--profile"])
        .arg(&missing)
        .output()
        .expect("run agq");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("agq: error: "), "{stderr}");
    assert!(lines[0].contains("--scheme `tensor`: expected token or group"), "{stderr}");
}
