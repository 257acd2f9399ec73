//! Device profile files: round trip, schema and consistency checks, refusal of a profile
//! from another model or device, the spec-sheet examples in the repository.

use profiler::device::DeviceFingerprint;
use profiler::profile::{DeviceProfile, ProfileError, ProfileKind};
use profiler::synthetic::{smollm2_shapes, synthetic_profile};

fn profile() -> DeviceProfile {
    synthetic_profile(smollm2_shapes(), &[1, 2], &[1, 16], &[1, 64], |k| 1e-6 * (k.m + k.kv + k.k) as f64 + 1e-9)
}

#[test]
fn round_trip_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let p = profile();
    p.write_atomic(&path).unwrap();
    let back = DeviceProfile::read(&path).unwrap();
    assert_eq!(back, p);
    // Atomic: no temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let text = profile().to_toml();
    std::fs::write(&path, text.replacen("schema = 1", "schema = 7", 1)).unwrap();
    let e = DeviceProfile::read(&path).unwrap_err();
    assert!(matches!(e, ProfileError::Schema { found: 7, .. }), "{e}");
    assert!(e.to_string().contains("p.toml"), "{e}");
    std::fs::write(&path, "hello = [").unwrap();
    let e = DeviceProfile::read(&path).unwrap_err();
    assert!(e.to_string().contains("p.toml") && e.to_string().contains("not a device profile"), "{e}");
    std::fs::write(&path, "schema = 1\n").unwrap();
    assert!(DeviceProfile::read(&path).is_err());
    let e = DeviceProfile::read(dir.path().join("missing.toml")).unwrap_err();
    assert!(e.to_string().contains("missing.toml"), "{e}");
    let mut p = profile();
    p.records[0].median_s = f64::NAN;
    std::fs::write(&path, p.to_toml()).unwrap();
    assert!(matches!(DeviceProfile::read(&path).unwrap_err(), ProfileError::Invalid { .. }));
}

#[test]
fn mismatched_model_and_device_are_refused() {
    let p = profile();
    p.check_model(&smollm2_shapes().sha256).unwrap();
    let e = p.check_model_in(&"0".repeat(64), "x.toml").unwrap_err();
    assert!(matches!(e, ProfileError::ModelMismatch { .. }), "{e}");
    assert!(e.to_string().contains("x.toml") && e.to_string().contains("SmolLM2"), "{e}");
    // The synthetic profile carries the slug `synthetic`, not this machine's.
    let here = DeviceFingerprint::detect();
    let e = p.check_device(&here, "x.toml").unwrap_err();
    assert!(matches!(e, ProfileError::DeviceMismatch { .. }), "{e}");
    let mut same = p.clone();
    same.device = here.clone();
    same.check_device(&here, "x.toml").unwrap();
}

#[test]
fn spec_sheet_examples_parse_and_are_labelled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../device-profiles/spec");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            let p = DeviceProfile::read(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.kind, ProfileKind::SpecSheet, "{}", path.display());
            assert!(!p.is_measured());
            assert!(p.spec.as_ref().is_some_and(|s| s.citation.contains("http")), "{}: cite a source", path.display());
            assert!(p.check_model(&smollm2_shapes().sha256).is_err());
            let w = profiler::predict::Workload { prompt_tokens: 128, gen_tokens: 16, threads: p.ceilings[0].threads };
            let plan = runtime::plan::presets::preset("w4a8", 30).unwrap();
            let pr = profiler::predict::predict_with_shapes(&p, &smollm2_shapes(), &plan, &w).unwrap();
            assert_eq!(pr.basis, profiler::predict::Basis::Roofline);
            assert!(pr.prefill_s > 0.0 && pr.decode_s > 0.0 && pr.e2e_s.is_finite());
            n += 1;
        }
    }
    assert!(n >= 2, "expected at least two spec-sheet profiles in {}", dir.display());
}
