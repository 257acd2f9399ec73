//! `agq kernels` and `agq device` end to end: the JSON they print has the documented shape.

use serde_json::Value;
use std::process::Command;

fn agq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agq")).args(args).output().expect("run agq");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

#[test]
fn kernels_quick_json_has_records_ceilings_and_device() {
    let (ok, stdout, stderr) =
        agq(&["kernels", "--quick", "--json", "--shapes", "576x192", "--m", "1,4", "--threads", "1,2", "--samples", "3"]);
    assert!(ok, "agq kernels failed: {stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");

    let records = v["records"].as_array().expect("records array");
    let variants: Vec<&str> = records.iter().map(|r| r["variant"].as_str().unwrap()).collect();
    // Every registry variant runs on its best ISA, at 2 M values x 2 thread counts.
    assert_eq!(records.len(), kernels::Variant::ALL.len() * 2 * 2, "{variants:?}");
    for v in kernels::Variant::ALL {
        assert!(variants.contains(&v.name()), "{} missing from {variants:?}", v.name());
    }
    for r in records {
        for key in ["variant", "isa"] {
            assert!(r[key].is_string(), "{key} in {r}");
        }
        assert_eq!((r["n"].as_u64(), r["k"].as_u64()), (Some(192), Some(576)));
        assert!(matches!(r["m"].as_u64(), Some(1 | 4)));
        assert!(matches!(r["threads"].as_u64(), Some(1 | 2)));
        let (p10, med, p90) = (num(r, "seconds_p10"), num(r, "seconds_median"), num(r, "seconds_p90"));
        assert!(p10 > 0.0 && p10 <= med && med <= p90, "{r}");
        assert_eq!(r["samples"].as_u64(), Some(3));
        let gops = num(r, "gops");
        let want = 2.0 * num(r, "m") * 192.0 * 576.0 / med / 1e9;
        assert!((gops - want).abs() <= 1e-9 * want, "{r}");
        assert!(num(r, "ceiling_share") > 0.0, "{r}");
        if r["variant"] == "f16" {
            assert_eq!(num(r, "ratio_vs_f16"), 1.0);
        } else {
            // Against f16 on the same ISA, or f16's fastest ISA where f16 has no path on this
            // one (w4a4-lut runs AVX2 on AVX-512 machines): f16 ran at every (m, threads).
            let f16_ran = records.iter().any(|f| f["variant"] == "f16" && f["m"] == r["m"] && f["threads"] == r["threads"]);
            assert!(f16_ran, "{r}");
            let ratio = num(r, "ratio_vs_f16");
            assert!(ratio.is_finite() && ratio > 0.0, "{r}");
        }
    }

    let ceilings = v["ceilings"].as_array().expect("ceilings array");
    assert_eq!(ceilings.iter().map(|c| c["threads"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    for c in ceilings {
        for key in ["f32_fma_gflops", "int8_gops", "mem_read_gbs"] {
            let m = num(&c[key], "median");
            assert!(m.is_finite() && m > 0.0, "{key} in {c}");
        }
    }
    assert!(v["device"]["slug"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["device"]["counters"].is_array());
}

#[test]
fn kernels_rejects_bad_arguments_with_one_line() {
    let (ok, _, stderr) = agq(&["kernels", "--shapes", "576by192"]);
    assert!(!ok);
    assert!(stderr.contains("576by192"), "{stderr}");
    let (ok, _, stderr) = agq(&["kernels", "--variants", "w9a9"]);
    assert!(!ok);
    assert!(stderr.contains("w9a9"), "{stderr}");
    let (ok, _, stderr) = agq(&["kernels", "--threads", "0", "--quick"]);
    assert!(!ok);
    assert!(stderr.lines().count() == 1 && stderr.contains("--threads"), "{stderr}");
}

#[test]
fn device_json_and_human() {
    let (ok, stdout, stderr) = agq(&["device", "--json"]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("device --json prints JSON");
    for key in ["slug", "arch", "cpu", "logical_cores", "features", "caches", "counters", "os"] {
        assert!(!v[key].is_null(), "missing {key}");
    }
    let (ok, stdout, _) = agq(&["device"]);
    assert!(ok);
    assert!(stdout.starts_with("device ") && stdout.contains("counter"), "{stdout}");
}

#[test]
fn kernels_times_row_and_block_scales_side_by_side() {
    let (ok, stdout, stderr) = agq(&[
        "kernels", "--quick", "--json", "--shapes", "576x192", "--m", "4", "--threads", "1", "--samples", "3",
        "--variants", "f16,w4a8,w4a4-widen,w4a4-packed", "--act-scales", "row,block",
    ]);
    assert!(ok, "agq kernels failed: {stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");
    let records = v["records"].as_array().expect("records array");
    let layouts = |name: &str| {
        let mut l: Vec<String> =
            records.iter().filter(|r| r["variant"] == name).map(|r| r["act_scales"].as_str().unwrap_or("none").to_string()).collect();
        l.sort();
        l
    };
    // Float variants have no integer scales; only w4a8 and w4a4-widen take block scales.
    assert_eq!(layouts("f16"), vec!["none"]);
    assert_eq!(layouts("w4a8"), vec!["block", "row"]);
    assert_eq!(layouts("w4a4-widen"), vec!["block", "row"]);
    assert_eq!(layouts("w4a4-packed"), vec!["row"]);
    for r in records {
        let block = r["act_scales"] == "block";
        // Block records carry their time over the same case with row scales.
        assert_eq!(r["time_vs_row"].is_number(), block, "{r}");
        if block {
            let row = records.iter().find(|x| x["variant"] == r["variant"] && x["act_scales"] == "row").unwrap();
            let want = num(r, "seconds_median") / num(row, "seconds_median");
            assert!((num(r, "time_vs_row") - want).abs() <= 1e-9 * want, "{r}");
        }
    }
    // A row-only integer variant with only block scales asked for leaves nothing to time.
    let (ok, _, stderr) = agq(&["kernels", "--quick", "--variants", "w4a4-packed", "--act-scales", "block"]);
    assert!(!ok && stderr.lines().count() == 1 && stderr.contains("block"), "{stderr}");
}
