//! Fixtures: a small synthetic device profile (times from a simple roofline, so the
//! figures have sensible shapes), plans, a Pareto CSV and a validation JSON.
#![allow(dead_code)]

use profiler::device::{CpuInfo, DeviceFingerprint, OsInfo};
use profiler::profile::RecordKey;
use profiler::profile::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn shapes() -> ModelShapes {
    ModelShapes {
        name: "tiny-test".into(),
        sha256: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into(),
        arch: "llama".into(),
        n_layer: 8,
        d_model: 576,
        n_head: 9,
        n_kv_head: 3,
        head_dim: 64,
        d_ff: 1536,
        vocab: 49152,
        ctx: 2048,
    }
}

pub fn fingerprint(slug: &str) -> DeviceFingerprint {
    DeviceFingerprint {
        schema: 1,
        slug: slug.into(),
        arch: "x86_64".into(),
        cpu: CpuInfo { brand: Some("Test CPU 9000".into()), ..Default::default() },
        logical_cores: 2,
        physical_cores: Some(1),
        features: BTreeMap::new(),
        kernel_isas: vec!["scalar".into(), "avx2".into()],
        caches: vec![],
        memory_bytes: Some(8 << 30),
        os: OsInfo::default(),
        cpu_mhz: None,
        cpu_mhz_source: None,
        counters: vec![],
        notes: vec![],
    }
}

/// A measured profile with the given variants and thread counts (the profiler's synthetic
/// builder with roofline-like costs, then the linear records of other variants removed).
pub fn profile(variants: &[&str], threads: &[usize]) -> DeviceProfile {
    let sh = shapes();
    let cost = |k: &RecordKey| -> f64 {
        let t = k.threads as f64;
        let (bw, f32p, i8p) = (10e9 * t, 90e9 * t, 360e9 * t);
        if let Some((ops, bytes)) = reports::lookup::work(&k.op, &k.variant, k.m, &sh) {
            let peak = if matches!(k.variant.as_str(), "f16" | "w4a16") { f32p } else { i8p };
            // Roofline over a per-variant efficiency, so the variants differ.
            let eff = match k.variant.as_str() { "f16" => 0.8, "w4a16" => 0.6, "w4a8" => 0.7, "w4a4-packed" => 0.5, _ => 0.4 };
            return (ops / peak).max(bytes / bw) / eff;
        }
        let m = k.m as f64;
        match k.op.as_str() {
            "attention" => (2e-9 * m * k.kv as f64 * 64.0 + 2e-6) / t * if k.variant == "f32" { 1.0 } else { 0.8 },
            "quantize" => 1e-10 * m * k.k as f64 + 5e-7,
            _ => 1e-7 * m + 1e-6,
        }
    };
    let mut p = profiler::synthetic::synthetic_profile(shapes(), threads, &[1, 64, 512], &[64, 512], cost);
    p.records.retain(|r| !reports::lookup::is_linear(&r.op) || variants.contains(&r.variant.as_str()));
    p.device = fingerprint("test-cpu-2c-avx2");
    p.tool = ToolInfo { version: "0.1.0".into(), git_commit: Some("abc1234".into()) };
    p.measurement.protocol = "synthetic fixture: warm-up 1 call, median of 10".into();
    p.ceilings = threads
        .iter()
        .map(|&t| Ceiling { threads: t, dram_read_gbs: 10.0 * t as f64, f32_gflops: 90.0 * t as f64, int8_gops: 360.0 * t as f64, spread: None })
        .collect();
    p
}

pub fn full_profile() -> DeviceProfile {
    profile(&["f16", "w4a16", "w4a8", "w4a4-packed", "w4a4-widen", "w4a4-lut"], &[1, 2])
}

pub fn spec_profile(slug: &str) -> DeviceProfile {
    // Start from a synthetic profile (so new fields keep their defaults), strip what a spec
    // sheet does not have.
    let mut p = profile(&[], &[4]);
    p.kind = ProfileKind::SpecSheet;
    p.device = DeviceFingerprint { logical_cores: 4, arch: "aarch64".into(), kernel_isas: vec![], ..fingerprint(slug) };
    p.tool = ToolInfo { version: "0.1.0".into(), git_commit: None };
    p.model = None;
    p.records.clear();
    p.measurement.protocol = "spec sheet".into();
    p.measurement.token_counts.clear();
    p.measurement.kv_lengths.clear();
    p.ceilings = vec![Ceiling { threads: 4, dram_read_gbs: 17.0, f32_gflops: 60.0, int8_gops: 240.0, spread: None }];
    p.spec = Some(SpecSource { citation: "vendor datasheet".into(), notes: None, compute_efficiency: 0.7, memory_efficiency: 0.8 });
    p
}

pub fn write_profile(dir: &Path, name: &str, p: &DeviceProfile) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml::to_string(p).unwrap()).unwrap();
    path
}

pub const PARETO_HEADER: &str = "name,kind,plan_file,budget,objective,predicted_prefill_s,predicted_decode_s,predicted_e2e_s,measured_prefill_s,measured_decode_s,measured_e2e_s,ppl,ppl_stderr,ppl_text,ppl_chunks";

pub fn write_pareto(dir: &Path) -> PathBuf {
    let rows = [
        "fp16,preset,,,,0.90,1.80,2.70,0.95,1.85,2.80,26.6,0.9,wikitext-2-raw-test.txt,10",
        "w4a8,preset,,,,0.70,0.90,1.60,0.72,0.95,1.67,27.3,0.9,wikitext-2-raw-test.txt,10",
        "agile8,preset,,,,0.60,0.88,1.48,0.66,0.93,1.59,29.5,1.0,wikitext-2-raw-test.txt,10",
        "t-0.5,tuned,tuned-0.5.toml,latency <= 0.5 x fp16,ppl,0.50,0.85,1.35,,,,31.0,1.1,wikitext-2-raw-test.txt,10",
        "t-0.6,tuned,tuned-0.6.toml,latency <= 0.6 x fp16,ppl,0.55,0.87,1.42,0.57,0.90,1.47,28.1,1.0,wikitext-2-raw-test.txt,10",
        "t-0.7,tuned,,latency <= 0.7 x fp16,ppl,0.62,0.90,1.52,0.61,0.92,1.53,27.9,1.0,wikitext-2-raw-test.txt,10",
        "w4a4,preset,,,,0.65,1.00,1.65,,,,8508,300,wikitext-2-raw-test.txt,10",
        "nothing,tuned,,,,,,,,,,,,,",
    ];
    let path = dir.join("pareto.csv");
    std::fs::write(&path, format!("{PARETO_HEADER}\n{}\n", rows.join("\n"))).unwrap();
    path
}

pub fn write_validation(dir: &Path) -> PathBuf {
    let json = r#"{"device_slug":"test-cpu-2c-avx2","prompt_tokens":512,"gen_tokens":128,"threads":2,
      "cases":[
        {"plan":"fp16","phase":"prefill","predicted_s":0.9,"measured_s":0.95,"error_pct":-5.3},
        {"plan":"fp16","phase":"decode","predicted_s":1.8,"measured_s":1.85,"error_pct":-2.7},
        {"plan":"w4a8","phase":"prefill","predicted_s":0.7,"measured_s":0.61,"error_pct":14.8},
        {"plan":"w4a8","phase":"decode","predicted_s":0.9,"measured_s":0.95,"error_pct":-5.3},
        {"plan":"agile8","phase":"prefill","predicted_s":0.6,"measured_s":0.66,"error_pct":-9.1}],
      "share_within_10pct":80.0,
      "additivity":[{"m":512,"threads":2,"sum_of_ops_s":0.021,"block_s":0.02,"error_pct":5.0},
                    {"m":1,"threads":2,"sum_of_ops_s":0.0004,"block_s":0.00042,"error_pct":-4.8}]}"#;
    let path = dir.join("validation.json");
    std::fs::write(&path, json).unwrap();
    path
}

/// A tuned-looking plan file: INT8 with some INT4 sites and pruning late.
pub fn write_plan(dir: &Path, name: &str) -> PathBuf {
    let text = format!(
        r#"schema = 1
name = "{name}"
weights = "q4_1"
[defaults.qkv]
bits = 8
[defaults.o]
bits = 8
[defaults.gate_up]
bits = 8
[defaults.down]
bits = 8
[[layers]]
index = [0, 7]
[layers.down]
bits = 16
[[layers]]
index = [3, 4]
[layers.gate_up]
bits = 4
[[layers]]
index = [4, 5, 6, 7]
prune = 0.1
low_bit = 0.2
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
