//! What the search optimises: a latency model that predicts a plan's prefill and decode
//! time. The real one is the device profile's predictor ([`crate::ProfileModel`]); tests use
//! synthetic tables.

use runtime::plan::Plan;
use serde::{Deserialize, Serialize};

/// Predicted (or measured) latency of one workload, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// The whole prompt.
    pub prefill_s: f64,
    /// All generated tokens together.
    pub decode_s: f64,
}

impl Latency {
    pub fn e2e_s(&self) -> f64 {
        self.prefill_s + self.decode_s
    }
}

/// Which latency the search minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    Prefill,
    Decode,
    E2e,
}

impl Objective {
    pub fn of(self, l: &Latency) -> f64 {
        match self {
            Objective::Prefill => l.prefill_s,
            Objective::Decode => l.decode_s,
            Objective::E2e => l.e2e_s(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Objective::Prefill => "prefill",
            Objective::Decode => "decode",
            Objective::E2e => "e2e",
        }
    }

    pub fn parse(s: &str) -> Result<Objective, String> {
        match s {
            "prefill" => Ok(Objective::Prefill),
            "decode" => Ok(Objective::Decode),
            "e2e" => Ok(Objective::E2e),
            _ => Err(format!("objective `{s}`: expected prefill, decode or e2e")),
        }
    }
}

/// A latency predictor. Must be cheap: the search calls it a few hundred times.
pub trait LatencyModel {
    fn predict(&self, plan: &Plan) -> Result<Latency, String>;
}
