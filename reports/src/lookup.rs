//! Questions the figures ask of a device profile's records: the time of one op for one
//! variant at one shape, which variants and shapes were measured, and the work (operations
//! and bytes) a linear site does at a shape.

use crate::palette;
use profiler::profile::{DeviceProfile, ModelShapes, Record};

/// The linear sites of one decoder block, in execution order.
pub const BLOCK_LINEAR: [&str; 4] = ["qkv", "o", "gate_up", "down"];
/// Linear sites incl. the LM head.
pub const LINEAR: [&str; 5] = ["qkv", "o", "gate_up", "down", "lm_head"];

pub fn is_linear(op: &str) -> bool {
    LINEAR.contains(&op)
}

pub struct Records<'a> {
    pub profile: &'a DeviceProfile,
}

impl<'a> Records<'a> {
    pub fn new(profile: &'a DeviceProfile) -> Self {
        Records { profile }
    }

    /// Thread counts with records (else the measurement's list), ascending.
    pub fn thread_counts(&self) -> Vec<usize> {
        let mut t: Vec<usize> = self.profile.records.iter().map(|r| r.threads).collect();
        if t.is_empty() {
            t = self.profile.measurement.thread_counts.clone();
        }
        t.sort_unstable();
        t.dedup();
        t
    }

    pub fn max_threads(&self) -> usize {
        self.thread_counts().last().copied().unwrap_or(1)
    }

    /// Token counts (M) of linear-site records, ascending.
    pub fn token_counts(&self) -> Vec<usize> {
        let mut m: Vec<usize> = self.profile.records.iter().filter(|r| is_linear(&r.op)).map(|r| r.m).collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// The two shapes figures contrast: a decode step (smallest M) and the largest prefill M.
    pub fn decode_prefill_m(&self) -> Vec<usize> {
        let m = self.token_counts();
        match (m.first(), m.last()) {
            (Some(&a), Some(&b)) if a != b => vec![a, b],
            (Some(&a), _) => vec![a],
            _ => vec![],
        }
    }

    /// Variants measured at linear sites, in palette order.
    pub fn variants(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.profile.records.iter().filter(|r| is_linear(&r.op)).map(|r| r.variant.clone()).collect();
        v.sort_by_key(|n| palette::variant_rank(n));
        v.dedup();
        v
    }

    /// The fastest record of a linear site for a variant at (M, threads): a variant can be
    /// timed on several ISAs, and dispatch runs the best one.
    pub fn linear(&self, op: &str, variant: &str, m: usize, threads: usize) -> Option<&'a Record> {
        self.profile
            .records
            .iter()
            .filter(|r| r.op == op && r.variant == variant && r.m == m && r.threads == threads)
            .min_by(|a, b| a.median_s.total_cmp(&b.median_s))
    }

    /// Sum over the block's four linear sites, or `None` if any is missing.
    pub fn block_linear_s(&self, variant: &str, m: usize, threads: usize) -> Option<f64> {
        BLOCK_LINEAR.iter().map(|op| self.linear(op, variant, m, threads).map(|r| r.median_s)).sum()
    }

    /// A non-linear op at (M, threads): prefers the float implementation, and for attention
    /// the KV length nearest `kv`.
    pub fn other(&self, op: &str, m: usize, threads: usize, kv: usize) -> Option<&'a Record> {
        let mut c: Vec<&Record> =
            self.profile.records.iter().filter(|r| r.op == op && r.m == m && r.threads == threads).collect();
        c.sort_by_key(|r| (r.kv.abs_diff(kv), r.variant != "f32", r.bits != 16, r.variant.clone()));
        c.first().copied()
    }

    /// Fastest 4-bit-activation variant for the block at (M, threads).
    pub fn best_w4a4(&self, m: usize, threads: usize) -> Option<String> {
        self.variants()
            .into_iter()
            .filter(|v| v.starts_with("w4a4"))
            .filter_map(|v| self.block_linear_s(&v, m, threads).map(|s| (v, s)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(v, _)| v)
    }

    /// KV lengths with attention records, ascending.
    pub fn kv_lengths(&self) -> Vec<usize> {
        let mut k: Vec<usize> =
            self.profile.records.iter().filter(|r| r.op == "attention").map(|r| r.kv).collect();
        k.sort_unstable();
        k.dedup();
        k
    }
}

/// (N, K) of a linear site: output features, input features.
pub fn site_dims(op: &str, s: &ModelShapes) -> Option<(usize, usize)> {
    let q = s.n_head * s.head_dim;
    let kv = s.n_kv_head * s.head_dim;
    match op {
        "qkv" => Some((q + 2 * kv, s.d_model)),
        "o" => Some((s.d_model, q)),
        "gate_up" => Some((2 * s.d_ff, s.d_model)),
        "down" => Some((s.d_model, s.d_ff)),
        "lm_head" => Some((s.vocab, s.d_model)),
        _ => None,
    }
}

/// Bytes of one weight: f16 stores 2; 8-bit weights read Q8_0 blocks (34 bytes per 32); the
/// 4-bit ones Q4_1 blocks (20 bytes per 32).
pub fn weight_bytes(variant: &str) -> f64 {
    if variant == "f16" {
        2.0
    } else if variant.starts_with("w8") {
        34.0 / 32.0
    } else {
        20.0 / 32.0
    }
}

/// Bytes of one input activation as the kernel reads it.
pub fn activation_bytes(variant: &str) -> f64 {
    match crate::figures::breakdown::bits_of(variant) {
        8 => 1.0,
        4 => 0.5,
        _ => 4.0,
    }
}

/// Operations (2 per multiply-add) and minimum bytes moved (weights once, inputs, f32
/// outputs) of a linear site at M rows.
pub fn work(op: &str, variant: &str, m: usize, s: &ModelShapes) -> Option<(f64, f64)> {
    let (n, k) = site_dims(op, s)?;
    let (m, n, k) = (m as f64, n as f64, k as f64);
    let ops = 2.0 * m * n * k;
    let bytes = n * k * weight_bytes(variant) + m * k * activation_bytes(variant) + m * n * 4.0;
    Some((ops, bytes))
}
