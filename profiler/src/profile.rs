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
    /// Seed of the randomised measurement order (a resumed run keeps it).
    #[serde(default)]
    pub seed: u64,
    /// Attention variants profiled (`f32`, `qk8+pv8+log2`, ...).
    #[serde(default)]
    pub attention_variants: Vec<String>,
    /// Wall-clock seconds the measurement took (summed over resumed runs).
    #[serde(default)]
    pub seconds: f64,
    /// What the timings measure: `wall` (elapsed) or `cpu` (process CPU time, single
    /// thread only: for a machine busy with other work).
    #[serde(default)]
    pub clock: crate::measure::Clock,
    /// `block` records time a forward pass (no LM head) through this many layers and store
    /// the time per layer, embedding included (divided by this too).
    #[serde(default = "one_usize")]
    pub block_layers: usize,
    /// The kernel the runtime runs the LM head with when the other weights are Q4_1 (it
    /// keeps the file's format: `w8a16` for a Q8_0 embedding); f16 plans use `f16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lm_head_q4_variant: Option<String>,
}

fn one_usize() -> usize {
    1
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
    /// p10 / p90 of the measured samples (`[bandwidth, f32, int8]`); absent for spec sheets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<CeilingSpread>,
}

/// Spread of the measured ceiling samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CeilingSpread {
    pub dram_read_gbs: [f64; 2],
    pub f32_gflops: [f64; 2],
    pub int8_gops: [f64; 2],
    pub samples: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecSource {
    pub citation: String,
    #[serde(default)]
    pub notes: Option<String>,
    /// Share of the compute peaks a real kernel reaches (roofline derating), default 1.
    #[serde(default = "one")]
    pub compute_efficiency: f64,
    /// Share of the read bandwidth a real kernel reaches, default 1.
    #[serde(default = "one")]
    pub memory_efficiency: f64,
}

fn one() -> f64 {
    1.0
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
    /// Output width of a linear op (0 where it does not apply).
    #[serde(default)]
    pub n: usize,
    /// Input width: of a linear op, or the row length `quantize` works on (0 where it does
    /// not apply). `quantize` records are keyed on it (576 for qkv/o/gate_up, 1536 for down).
    #[serde(default)]
    pub k: usize,
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

/// Why a profile file could not be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: not a device profile: {msg}")]
    Toml { file: String, msg: String },
    #[error("{file}: device profile schema {found}, this agq reads schema {PROFILE_SCHEMA} (re-run `agq profile`)")]
    Schema { file: String, found: i64 },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("{file}: the profile was measured with model {profiled} (sha256 {profiled_sha}), not {model_sha}; profile this model with `agq profile --model ...`")]
    ModelMismatch { file: String, profiled: String, profiled_sha: String, model_sha: String },
    #[error("{file}: the profile was measured on device `{profiled}`, this is `{here}`; profile this device with `agq profile`")]
    DeviceMismatch { file: String, profiled: String, here: String },
    #[error("{file}: a spec-sheet profile holds no measurements of model {model_sha}; its numbers are roofline predictions only")]
    SpecSheet { file: String, model_sha: String },
}

impl ModelShapes {
    /// Shapes of a loaded model config, identified by file name and sha256.
    pub fn from_config(cfg: &runtime::config::ModelConfig, name: &str, sha256: &str) -> ModelShapes {
        ModelShapes {
            name: name.to_string(),
            sha256: sha256.to_string(),
            arch: cfg.arch.clone(),
            n_layer: cfg.n_layer,
            d_model: cfg.n_embd,
            n_head: cfg.n_head,
            n_kv_head: cfg.n_head_kv,
            head_dim: cfg.head_dim,
            d_ff: cfg.n_ff,
            vocab: cfg.vocab_size,
            ctx: cfg.n_ctx_train,
        }
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// `(n, k)` of a linear op (`qkv`, `o`, `gate_up`, `down`, `lm_head`).
    pub fn linear_shape(&self, op: &str) -> Option<(usize, usize)> {
        match op {
            "qkv" => Some((self.q_dim() + 2 * self.kv_dim(), self.d_model)),
            "o" => Some((self.d_model, self.q_dim())),
            "gate_up" => Some((2 * self.d_ff, self.d_model)),
            "down" => Some((self.d_model, self.d_ff)),
            "lm_head" => Some((self.vocab, self.d_model)),
            _ => None,
        }
    }
}

impl DeviceProfile {
    /// Reads and checks a profile: TOML syntax, schema version, and that a measured profile
    /// names its model and a spec-sheet one its source.
    pub fn read(path: impl AsRef<std::path::Path>) -> Result<DeviceProfile, ProfileError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io { file: file.clone(), source })?;
        Self::parse(&text, &file)
    }

    /// [`DeviceProfile::read`] from a string; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<DeviceProfile, ProfileError> {
        let value: toml::Table =
            toml::from_str(text).map_err(|e| ProfileError::Toml { file: file.into(), msg: one_line(&e.to_string()) })?;
        match value.get("schema") {
            Some(toml::Value::Integer(v)) if *v == PROFILE_SCHEMA as i64 => {}
            Some(toml::Value::Integer(v)) => return Err(ProfileError::Schema { file: file.into(), found: *v }),
            _ => {
                return Err(ProfileError::Toml { file: file.into(), msg: "no integer `schema` key at the top".into() })
            }
        }
        let p: DeviceProfile =
            toml::from_str(text).map_err(|e| ProfileError::Toml { file: file.into(), msg: one_line(&e.to_string()) })?;
        p.validate(file)?;
        Ok(p)
    }

    fn validate(&self, file: &str) -> Result<(), ProfileError> {
        let bad = |msg: String| Err(ProfileError::Invalid { file: file.into(), msg });
        match self.kind {
            ProfileKind::Measured if self.model.is_none() => return bad("a measured profile needs a [model] table".into()),
            ProfileKind::SpecSheet if self.spec.is_none() => {
                return bad("a spec-sheet profile needs a [spec] table citing its source".into())
            }
            ProfileKind::SpecSheet if !self.records.is_empty() => {
                return bad("a spec-sheet profile must not hold measured records".into())
            }
            _ => {}
        }
        if self.device.slug.is_empty() {
            return bad("`device.slug` is empty".into());
        }
        for c in &self.ceilings {
            if c.threads == 0 || [c.dram_read_gbs, c.f32_gflops, c.int8_gops].iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return bad(format!("ceilings for {} threads: every ceiling must be a positive number", c.threads));
            }
        }
        for (i, r) in self.records.iter().enumerate() {
            if r.threads == 0 || !(r.median_s.is_finite() && r.median_s >= 0.0) {
                return bad(format!("record {} ({} {} m={}): needs threads >= 1 and a finite median", i + 1, r.op, r.variant, r.m));
            }
        }
        Ok(())
    }

    /// The TOML text (what [`DeviceProfile::write_atomic`] writes).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a device profile always serializes")
    }

    /// Writes the profile through a temporary file and a rename: readers (and a resumed run
    /// after a kill) never see half a file.
    pub fn write_atomic(&self, path: impl AsRef<std::path::Path>) -> Result<(), ProfileError> {
        let path = path.as_ref();
        runtime::plan::write_atomic(path, self.to_toml().as_bytes())
            .map_err(|source| ProfileError::Io { file: path.display().to_string(), source })
    }

    pub fn is_measured(&self) -> bool {
        self.kind == ProfileKind::Measured
    }

    /// Refuses a profile measured with another model file. Spec-sheet profiles hold no
    /// measurements and are refused too: use them only where roofline predictions are wanted.
    pub fn check_model(&self, sha256: &str) -> Result<(), ProfileError> {
        self.check_model_in(sha256, &format!("device profile `{}`", self.device.slug))
    }

    /// [`DeviceProfile::check_model`] naming the profile's file in the error.
    pub fn check_model_in(&self, sha256: &str, file: &str) -> Result<(), ProfileError> {
        match (&self.kind, &self.model) {
            (ProfileKind::SpecSheet, _) => Err(ProfileError::SpecSheet { file: file.into(), model_sha: sha256.into() }),
            (_, Some(m)) if m.sha256.eq_ignore_ascii_case(sha256) => Ok(()),
            (_, m) => Err(ProfileError::ModelMismatch {
                file: file.into(),
                profiled: m.as_ref().map_or("(none)".into(), |m| m.name.clone()),
                profiled_sha: m.as_ref().map_or("(none)".into(), |m| m.sha256.clone()),
                model_sha: sha256.into(),
            }),
        }
    }

    /// Refuses a measured profile from another kind of device (slug and core count differ).
    pub fn check_device(&self, here: &DeviceFingerprint, file: &str) -> Result<(), ProfileError> {
        if self.kind == ProfileKind::Measured
            && (self.device.slug != here.slug || self.device.logical_cores != here.logical_cores)
        {
            return Err(ProfileError::DeviceMismatch { file: file.into(), profiled: self.device.slug.clone(), here: here.slug.clone() });
        }
        Ok(())
    }

    /// Whether `agq profile` completed (a partial profile has no `finished` time).
    pub fn is_complete(&self) -> bool {
        self.measurement.finished.is_some()
    }

    pub fn ceiling(&self, threads: usize) -> Option<&Ceiling> {
        self.ceilings.iter().find(|c| c.threads == threads)
    }

    /// Thread counts with records (or ceilings, for spec sheets), ascending.
    pub fn thread_counts(&self) -> Vec<usize> {
        let mut t: Vec<usize> = if self.records.is_empty() {
            self.ceilings.iter().map(|c| c.threads).collect()
        } else {
            self.records.iter().map(|r| r.threads).collect()
        };
        t.sort_unstable();
        t.dedup();
        t
    }
}

impl Record {
    /// Identity of the measured case (everything but the statistics).
    pub fn key(&self) -> RecordKey {
        RecordKey {
            op: self.op.clone(),
            variant: self.variant.clone(),
            bits: self.bits,
            m: self.m,
            kv: self.kv,
            k: self.k,
            threads: self.threads,
        }
    }
}

/// What identifies a record within a profile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub op: String,
    pub variant: String,
    pub bits: u8,
    pub m: usize,
    pub kv: usize,
    pub k: usize,
    pub threads: usize,
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
