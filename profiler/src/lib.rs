//! Profiler: the device fingerprint, the measurement loop and its statistics, perf
//! counters, the device-profile schema and the latency predictor. Uses `runtime` and
//! `kernels` to time real ops at real shapes; knows nothing of tuning or plotting.

pub mod counters;
pub mod device;
pub mod in_forward;
pub mod measure;
pub mod predict;
pub mod profile;
pub mod run;
pub mod stats;
pub mod synthetic;
pub mod validate;
pub mod workbench;
