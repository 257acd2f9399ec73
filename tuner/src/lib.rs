//! Tuner: chooses per-layer activation bitwidths, kernel variants, attention precision and
//! a token-pruning schedule that minimise predicted latency under a perplexity budget, then
//! validates the plan for real. Reads device profiles through `profiler`, measures quality
//! through `runtime`; knows nothing of plotting.
//!
//! Flow ([`session::Session::tune`]): candidate changes ([`space`]) → predicted latency of
//! each ([`latency`], the device profile's predictor) → KL divergence of each on calibration
//! text ([`sensitivity`], cached) → exact knapsack search per prune schedule ([`search`]) →
//! combined-plan KL check → held-out perplexity with back-off ([`backoff`], [`validate`]) →
//! timing → a plan file with a `[tuner]` table; [`pareto`] writes the frontier as CSV.

pub mod backoff;
pub mod budget;
pub mod divergence;
pub mod latency;
pub mod pareto;
pub mod predictor;
pub mod search;
pub mod sensitivity;
pub mod session;
pub mod space;
pub mod validate;

pub use budget::{Baseline, Budget};
pub use latency::{Latency, LatencyModel, Objective};
pub use predictor::ProfileModel;

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{0}")]
    Runtime(String),
    #[error("latency model: {0}")]
    Latency(String),
    #[error("{0}")]
    Invalid(String),
}

/// The device fingerprint as the TOML table a plan's `[tuner] device` holds.
pub fn device_table(d: &profiler::device::DeviceFingerprint) -> Option<toml::Table> {
    toml::Table::try_from(d).ok()
}
