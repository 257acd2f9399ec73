//! The device profile: the versioned TOML file `agq profile` writes and the predictor, the
//! tuner and the reports read. One record per (op, variant, bits, M, KV length, threads).
//!
//! This file is the contract between the profiler, the tuner and the reports; change a
//! field's meaning only together with `PROFILE_SCHEMA`.

use crate::device::DeviceFingerprint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped when a field changes meaning; readers refuse other versions.
pub const PROFILE_SCHEMA: u32 = 1;

/// Whether the numbers were measured on the device or derived from public figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileKind {
    /// Measured by `agq profile` on the device named in `device`.
    Measured,
    /// Described by published ceilings only (`spec`); everything derived is "predicted".
    SpecSheet,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    pub schema: u32,
    pub kind: ProfileKind,
    /// Full fingerprint for measured profiles; for spec-sheet devices only the fields the
    /// source states (slug, arch, cores) are meaningful.
    pub device: DeviceFingerprint,
    pub tool: ToolInfo,
    /// The model whose shapes were timed; `None` for spec-sheet devices.
    pub model: Option<ModelShapes>,
    pub measurement: Measurement,
    /// One entry per thread count.
    pub ceilings: Vec<Ceiling>,
    /// Spec-sheet devices: where the figures come from (URL or citation).
    #[serde(default)]
    pub spec: Option<SpecSource>,
    #[serde(default)]
    pub records: Vec<Record>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// `agq` crate version.
    pub version: String,
    /// `git rev-parse --short HEAD` at build or run time, if known.
    pub git_commit: Option<String>,
}

/// The model shapes every record was measured at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelShapes {
    pub name: String,
    pub sha256: String,
    pub arch: String,
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab: usize,
    pub ctx: usize,
}

/// How the records were taken, so a reader can judge them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// RFC 3339 UTC.
    pub started: String,
    /// `None` while a run is in progress (a resumable partial profile).
    pub finished: Option<String>,
    pub quick: bool,
    pub thread_counts: Vec<usize>,
    pub token_counts: Vec<usize>,
    pub kv_lengths: Vec<usize>,
    /// Free-text statement of the hygiene: warm-up rule, samples, CV threshold, re-measure
    /// rule, randomised order, pinning.
    pub protocol: String,
    pub min_samples: usize,
    pub cv_threshold: f64,
    /// Did pinning threads to CPUs succeed for the whole run.
    pub pinned: bool,
    /// `hardware`, `software` or `none`: which perf counters the records carry.
    pub counters: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    pub threads: usize,
    /// Sustained read bandwidth from DRAM, GB/s (1e9 bytes/s).
    pub dram_read_gbs: f64,
    /// f32 FMA peak, GFLOP/s.
    pub f32_gflops: f64,
    /// INT8 multiply-add peak, GOP/s (one multiply-add = 2 ops).
    pub int8_gops: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecSource {
    pub citation: String,
    #[serde(default)]
    pub notes: Option<String>,
}

/// One measured operation at one shape.
///
/// `op` names (stable; the predictor and the reports key on them):
/// linear sites `qkv`, `o`, `gate_up`, `down`, `lm_head`; float ops `embed`, `norm`,
/// `rope`, `attention` (QK, softmax and PV together, at KV length `kv`), `softmax`,
/// `silu`, `quantize` (activations to `bits`), `prune_select`; and `block` (one whole
/// transformer layer, for the additivity check).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub op: String,
    /// Kernel variant name from `kernels::registry` for linear sites (`f16`, `w4a16`,
    /// `w4a8`, `w4a4-packed`, ...); for other ops the implementation (`f32`, `log2-4`,
    /// `int8`, ...).
    pub variant: String,
    /// ISA the variant ran on (`scalar`, `avx2`, `neon`).
    pub isa: String,
    /// Activation bits: 16 = float, 8, 4.
    pub bits: u8,
    /// Tokens (rows) in the call: 1 for a decode step.
    pub m: usize,
    /// KV length for attention; 0 where it does not apply.
    pub kv: usize,
    pub threads: usize,
    /// Seconds per call.
    pub median_s: f64,
    pub p10_s: f64,
    pub p90_s: f64,
    pub samples: usize,
    /// Coefficient of variation of the samples.
    pub cv: f64,
    /// Perf counter readings per call (name -> value), hardware or software as
    /// `Measurement::counters` says.
    #[serde(default)]
    pub counters: BTreeMap<String, f64>,
}
