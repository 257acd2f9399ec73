//! Time per forward-pass operation, for finding where time goes (`AGQ_PROFILE=1`), and for
//! the profiler, which times ops inside the real forward pass (in their real sequence and
//! cache state) through [`Profile::with_clock`]. Costs one clock read per op when on,
//! nothing when off.

use std::time::Instant;

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

/// Seconds since an arbitrary origin (a custom clock: e.g. CPU time on a shared machine).
pub type ClockFn = fn() -> f64;

fn wall_seconds() -> f64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Accumulated time and call count per op.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    enabled: bool,
    clock: Option<ClockFn>,
    totals: [f64; 11],
    calls: [u64; 11],
    last: Option<f64>,
    /// Every charge in call order, when on (see [`Profile::with_log`]).
    log: Option<Vec<(Op, f64)>>,
}

impl Profile {
    /// On when the environment variable `AGQ_PROFILE` is set (wall clock).
    pub fn from_env() -> Profile {
        Profile { enabled: std::env::var_os("AGQ_PROFILE").is_some(), ..Default::default() }
    }
    /// On, timed with `clock` (`None`: wall clock).
    pub fn with_clock(clock: Option<ClockFn>) -> Profile {
        Profile { enabled: true, clock, ..Default::default() }
    }
    /// [`Profile::with_clock`] that also keeps every charge in call order, so a caller
    /// that knows the forward pass's call sequence can attribute a charge to its layer (the
    /// profiler: the `l`-th `o` call of a forward is layer `l`'s).
    pub fn with_log(clock: Option<ClockFn>) -> Profile {
        Profile { log: Some(Vec::new()), ..Profile::with_clock(clock) }
    }
    /// The charges in call order since the last reset (empty unless made with `with_log`).
    pub fn log(&self) -> &[(Op, f64)] {
        self.log.as_deref().unwrap_or(&[])
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    #[inline]
    fn now(&self) -> f64 {
        match self.clock {
            Some(c) => c(),
            None => wall_seconds(),
        }
    }
    /// Starts the clock for the next op.
    #[inline]
    pub fn start(&mut self) {
        if self.enabled {
            self.last = Some(self.now());
        }
    }
    /// Charges the time since the last `start`/`mark` to `op` and restarts the clock.
    #[inline]
    pub fn mark(&mut self, op: Op) {
        if self.enabled {
            let now = self.now();
            if let Some(t) = self.last {
                self.totals[op as usize] += now - t;
                self.calls[op as usize] += 1;
                if let Some(log) = &mut self.log {
                    log.push((op, now - t));
                }
            }
            self.last = Some(now);
        }
    }
    pub fn reset(&mut self) {
        self.totals = Default::default();
        self.calls = Default::default();
        if let Some(log) = &mut self.log {
            log.clear();
        }
    }
    /// Seconds charged to `op` since the last reset.
    pub fn seconds(&self, op: Op) -> f64 {
        self.totals[op as usize]
    }
    /// Times `op` was charged since the last reset.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op as usize]
    }
    /// Seconds charged to all ops.
    pub fn total_seconds(&self) -> f64 {
        self.totals.iter().sum()
    }
    /// One line per op with time and share, largest first.
    pub fn report(&self) -> String {
        let total = self.total_seconds();
        let mut v: Vec<(Op, f64)> = Op::ALL.iter().map(|&o| (o, self.totals[o as usize])).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut s = format!("forward profile: total {:.1} ms\n", total * 1e3);
        for (o, d) in v {
            let share = if total == 0.0 { 0.0 } else { d / total * 100.0 };
            s += &format!("  {:<10} {:>9.1} ms {:>5.1}%\n", o.name(), d * 1e3, share);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_time_and_calls_to_ops() {
        fn fake() -> f64 {
            use std::sync::atomic::{AtomicU64, Ordering};
            static T: AtomicU64 = AtomicU64::new(0);
            T.fetch_add(1, Ordering::Relaxed) as f64
        }
        let mut p = Profile::with_clock(Some(fake));
        p.start();
        p.mark(Op::Qkv);
        p.mark(Op::Qkv);
        p.mark(Op::Down);
        assert_eq!((p.seconds(Op::Qkv), p.calls(Op::Qkv)), (2.0, 2));
        assert_eq!((p.seconds(Op::Down), p.calls(Op::Down)), (1.0, 1));
        assert_eq!(p.total_seconds(), 3.0);
        p.reset();
        assert_eq!((p.total_seconds(), p.calls(Op::Qkv)), (0.0, 0));
        assert!(!Profile::default().enabled());
        assert!(p.log().is_empty());
    }

    #[test]
    fn log_keeps_each_charge_in_order() {
        fn fake() -> f64 {
            use std::sync::atomic::{AtomicU64, Ordering};
            static T: AtomicU64 = AtomicU64::new(0);
            T.fetch_add(2, Ordering::Relaxed) as f64
        }
        let mut p = Profile::with_log(Some(fake));
        p.start();
        p.mark(Op::Norm);
        p.mark(Op::Qkv);
        p.mark(Op::Norm);
        assert_eq!(p.log(), &[(Op::Norm, 2.0), (Op::Qkv, 2.0), (Op::Norm, 2.0)]);
        assert_eq!(p.calls(Op::Norm), 2);
        p.reset();
        assert!(p.log().is_empty());
    }
}
