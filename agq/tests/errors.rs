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
