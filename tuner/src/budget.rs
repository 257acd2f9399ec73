//! Perplexity budgets: how much worse than the reference a tuned plan may be.
//!
//! Forms: `3%` (relative), `0.03` (relative, as a fraction), `+0.5ppl` (absolute). The
//! reference is the baseline plan's perplexity measured under the same protocol as the
//! candidate (same text, same chunks), so the budget compares like with like.

use std::fmt;

/// A perplexity budget relative to a baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// `ppl <= base * (1 + r)`.
    Relative(f64),
    /// `ppl <= base + d`.
    Absolute(f64),
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("budget `{input}`: {why} (examples: 3%, 0.03, +0.5ppl)")]
pub struct BudgetError {
    pub input: String,
    pub why: String,
}

impl Budget {
    pub fn parse(s: &str) -> Result<Budget, BudgetError> {
        let err = |why: &str| BudgetError { input: s.into(), why: why.into() };
        let t = s.trim();
        let num = |x: &str| -> Result<f64, BudgetError> {
            let v: f64 = x.trim().parse().map_err(|_| err("not a number"))?;
            if !v.is_finite() {
                return Err(err("not a finite number"));
            }
            if v < 0.0 {
                return Err(err("must not be negative"));
            }
            Ok(v)
        };
        if t.is_empty() {
            return Err(err("empty"));
        }
        let lower = t.to_ascii_lowercase();
        if let Some(x) = lower.strip_suffix("ppl") {
            let x = x.trim();
            let x = x.strip_prefix('+').unwrap_or(x);
            return Ok(Budget::Absolute(num(x)?));
        }
        if let Some(x) = lower.strip_suffix('%') {
            let v = num(x)?;
            if v >= 1000.0 {
                return Err(err("percent budgets must be below 1000%"));
            }
            return Ok(Budget::Relative(v / 100.0));
        }
        let v = num(&lower)?;
        if v >= 1.0 {
            return Err(err("a plain number is a fraction (0.03 = 3%); write 3% or +3ppl"));
        }
        Ok(Budget::Relative(v))
    }

    /// The largest perplexity allowed given the baseline's.
    pub fn allowed(&self, base_ppl: f64) -> f64 {
        match *self {
            Budget::Relative(r) => base_ppl * (1.0 + r),
            Budget::Absolute(d) => base_ppl + d,
        }
    }

    /// Allowed increase of the mean NLL (nats per token): `ln(allowed / base)`.
    pub fn allowed_dnll(&self, base_ppl: f64) -> f64 {
        (self.allowed(base_ppl) / base_ppl).ln()
    }

    /// File-name-safe label: `3pct`, `0.5ppl`.
    pub fn slug(&self) -> String {
        match *self {
            Budget::Relative(r) => format!("{}pct", trim_num(r * 100.0)),
            Budget::Absolute(d) => format!("{}ppl", trim_num(d)),
        }
    }
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Budget::Relative(r) => write!(f, "{}%", trim_num(r * 100.0)),
            Budget::Absolute(d) => write!(f, "+{}ppl", trim_num(d)),
        }
    }
}

/// The plan a budget is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// The model as shipped (4-bit weights, float activations).
    W4a16,
    /// The float model (weights dequantized to f16).
    Fp16,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::W4a16 => "w4a16",
            Baseline::Fp16 => "fp16",
        }
    }

    pub fn parse(s: &str) -> Result<Baseline, String> {
        match s {
            "w4a16" => Ok(Baseline::W4a16),
            "fp16" => Ok(Baseline::Fp16),
            _ => Err(format!("baseline `{s}`: expected w4a16 or fp16")),
        }
    }
}
