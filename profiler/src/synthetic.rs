//! Synthetic device profiles with chosen per-op costs, for tests of everything that reads
//! profiles (the predictor, the tuner, the reports) without timing anything. Labelled
//! `synthetic` in the tool version so one is never mistaken for a measurement.

use crate::device::DeviceFingerprint;
use crate::profile::{Ceiling, DeviceProfile, Measurement, ModelShapes, ProfileKind, Record, RecordKey, ToolInfo, PROFILE_SCHEMA};
use std::collections::BTreeMap;

/// Linear variants, attention variants and the other ops a synthetic profile covers.
pub const LINEAR_VARIANTS: [&str; 7] = ["f16", "w4a16", "w8a16", "w4a8", "w4a4-packed", "w4a4-widen", "w4a4-lut"];
pub const ATTENTION_VARIANTS: [&str; 8] =
    ["f32", "qk8", "pv8", "log2", "qk8+pv8", "qk8+log2", "pv8+log2", "qk8+pv8+log2"];
pub const FLOAT_OPS: [&str; 6] = ["embed", "norm", "rope", "silu", "residual", "prune_select"];

fn variant_bits(v: &str) -> u8 {
    match v {
        "f16" | "w4a16" | "w8a16" => 16,
        "w4a8" => 8,
        _ => 4,
    }
}

/// The shapes of SmolLM2-135M (the default model), for tests.
pub fn smollm2_shapes() -> ModelShapes {
    ModelShapes {
        name: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
        arch: "llama".into(),
        n_layer: 30,
        d_model: 576,
        n_head: 9,
        n_kv_head: 3,
        head_dim: 64,
        d_ff: 1536,
        vocab: 49152,
        ctx: 8192,
    }
}

/// A measured-kind profile whose every record's median is `cost(key)`: linear ops for every
/// variant, `quantize` (token/tensor/group, 8/4 bits, k = d_model and d_ff), every attention
/// variant at prefill (`m = kv` for `m` in `ms`) and decode (`m = 1`, `kv` in `kvs`), and the
/// float ops, at each thread count.
pub fn synthetic_profile(
    shapes: ModelShapes,
    threads: &[usize],
    ms: &[usize],
    kvs: &[usize],
    cost: impl Fn(&RecordKey) -> f64,
) -> DeviceProfile {
    let mut keys = Vec::new();
    let key = |op: &str, variant: &str, bits: u8, m: usize, kv: usize, k: usize, t: usize| RecordKey {
        op: op.into(),
        variant: variant.into(),
        bits,
        m,
        kv,
        k,
        threads: t,
    };
    for &t in threads {
        for &m in ms {
            for op in ["qkv", "o", "gate_up", "down", "lm_head"] {
                for v in LINEAR_VARIANTS {
                    keys.push(key(op, v, variant_bits(v), m, 0, shapes.linear_shape(op).map_or(0, |s| s.1), t));
                }
            }
            for scheme in ["token", "tensor", "group"] {
                for bits in [8u8, 4] {
                    for k in [shapes.d_model, shapes.d_ff] {
                        keys.push(key("quantize", scheme, bits, m, 0, k, t));
                    }
                }
            }
            for op in FLOAT_OPS {
                keys.push(key(op, "f32", 16, m, 0, 0, t));
            }
            keys.push(key("rope", "int8-kv", 16, m, 0, 0, t));
            for v in ATTENTION_VARIANTS {
                keys.push(key("attention", v, if v == "f32" { 16 } else { 8 }, m, m, 0, t));
            }
        }
        for &kv in kvs {
            for v in ATTENTION_VARIANTS {
                if !ms.contains(&1) || kv != 1 {
                    keys.push(key("attention", v, if v == "f32" { 16 } else { 8 }, 1, kv, 0, t));
                }
            }
        }
    }
    let records = keys
        .into_iter()
        .map(|k| {
            let s = cost(&k);
            let n = shapes.linear_shape(&k.op).map_or(0, |s| s.0);
            exact_record(k.op, k.variant, k.bits, (k.m, k.kv, n, k.k), k.threads, s)
        })
        .collect();
    let mut device = DeviceFingerprint::detect();
    device.slug = "synthetic".into();
    DeviceProfile {
        schema: PROFILE_SCHEMA,
        kind: ProfileKind::Measured,
        device,
        tool: ToolInfo { version: "synthetic".into(), git_commit: None },
        model: Some(shapes),
        measurement: Measurement {
            started: "1970-01-01T00:00:00Z".into(),
            finished: Some("1970-01-01T00:00:00Z".into()),
            quick: true,
            thread_counts: threads.to_vec(),
            token_counts: ms.to_vec(),
            kv_lengths: kvs.to_vec(),
            protocol: "synthetic: chosen costs, nothing measured".into(),
            min_samples: 1,
            cv_threshold: 0.0,
            pinned: false,
            counters: "none".into(),
            seed: 0,
            attention_variants: ATTENTION_VARIANTS.iter().map(|s| s.to_string()).collect(),
            seconds: 0.0,
            clock: crate::measure::Clock::Wall,
            block_layers: 1,
            lm_head_q4_variant: Some("w8a16".into()),
        },
        ceilings: threads
            .iter()
            .map(|&t| Ceiling { threads: t, dram_read_gbs: 10.0, f32_gflops: 100.0, int8_gops: 400.0, spread: None })
            .collect(),
        spec: None,
        records,
    }
}

/// A `forward.<op>` record (timed inside the forward pass) with median `s`, for tests.
pub fn forward_record(op: &str, variant: &str, bits: u8, m: usize, kv: usize, threads: usize, s: f64) -> Record {
    exact_record(format!("{}{op}", crate::in_forward::PREFIX), variant.into(), bits, (m, kv, 0, 0), threads, s)
}

/// One sample whose every statistic is `s`: synthetic profiles know their answer exactly.
fn exact_record(op: String, variant: String, bits: u8, (m, kv, n, k): (usize, usize, usize, usize), threads: usize, s: f64) -> Record {
    Record {
        op,
        variant,
        isa: "synthetic".into(),
        bits,
        m,
        kv,
        n,
        k,
        threads,
        median_s: s,
        p10_s: s,
        p90_s: s,
        samples: 1,
        cv: 0.0,
        counters: BTreeMap::new(),
    }
}
