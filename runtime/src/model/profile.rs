//! Time per forward-pass operation, for finding where time goes (`AGQ_PROFILE=1`).
//! Costs one `Instant::now()` per op when on, nothing when off.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Embed,
    Norm,
    Qkv,
    Rope,
    Attention,
    O,
    GateUp,
    Silu,
    Down,
    LmHead,
    Other,
}

impl Op {
    pub const ALL: [Op; 11] =
        [Op::Embed, Op::Norm, Op::Qkv, Op::Rope, Op::Attention, Op::O, Op::GateUp, Op::Silu, Op::Down, Op::LmHead, Op::Other];
    pub fn name(self) -> &'static str {
        match self {
            Op::Embed => "embed",
            Op::Norm => "norm",
            Op::Qkv => "qkv",
            Op::Rope => "rope+kv",
            Op::Attention => "attention",
            Op::O => "o",
            Op::GateUp => "gate_up",
            Op::Silu => "silu",
            Op::Down => "down",
            Op::LmHead => "lm_head",
            Op::Other => "other",
        }
    }
}

/// Accumulated time per op.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    enabled: bool,
    totals: [Duration; 11],
    last: Option<Instant>,
}

impl Profile {
    /// On when the environment variable `AGQ_PROFILE` is set.
    pub fn from_env() -> Profile {
        Profile { enabled: std::env::var_os("AGQ_PROFILE").is_some(), ..Default::default() }
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// Starts the clock for the next op.
    #[inline]
    pub fn start(&mut self) {
        if self.enabled {
            self.last = Some(Instant::now());
        }
    }
    /// Charges the time since the last `start`/`mark` to `op` and restarts the clock.
    #[inline]
    pub fn mark(&mut self, op: Op) {
        if self.enabled {
            let now = Instant::now();
            if let Some(t) = self.last {
                self.totals[op as usize] += now - t;
            }
            self.last = Some(now);
        }
    }
    pub fn reset(&mut self) {
        self.totals = Default::default();
    }
    /// One line per op with time and share, largest first.
    pub fn report(&self) -> String {
        let total: Duration = self.totals.iter().sum();
        let mut v: Vec<(Op, Duration)> = Op::ALL.iter().map(|&o| (o, self.totals[o as usize])).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        let mut s = format!("forward profile: total {:.1} ms\n", total.as_secs_f64() * 1e3);
        for (o, d) in v {
            let share = if total.is_zero() { 0.0 } else { d.as_secs_f64() / total.as_secs_f64() * 100.0 };
            s += &format!("  {:<10} {:>9.1} ms {:>5.1}%\n", o.name(), d.as_secs_f64() * 1e3, share);
        }
        s
    }
}
