//! The measurement loop: warm up until two consecutive runs agree, repeat a fast call until
//! one sample is long enough to time, take samples until a minimum count and a time budget
//! are met, and re-measure a case whose coefficient of variation is too high (keeping the
//! steadiest attempt). Plus thread pools pinned one worker per CPU, with a check that the
//! pinning held.

use crate::stats;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a sample's duration is measured with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clock {
    /// Elapsed time: what a user waits for.
    #[default]
    Wall,
    /// CPU time of the whole process (every thread): on a machine shared with other work,
    /// close to what the elapsed time would be on an idle one, for single-threaded runs only
    /// (with more threads it sums the threads' time and counts spin-waiting).
    Cpu,
}

impl Clock {
    /// Seconds since an arbitrary origin.
    pub fn now(self) -> f64 {
        match self {
            Clock::Wall => {
                static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
            }
            Clock::Cpu => process_cpu_seconds(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Clock::Wall => "wall",
            Clock::Cpu => "cpu",
        }
    }
}

#[cfg(unix)]
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(not(unix))]
fn process_cpu_seconds() -> f64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// How hard to measure one case.
#[derive(Clone, Debug, PartialEq)]
pub struct TimingRules {
    pub min_samples: usize,
    pub max_samples: usize,
    /// A sample repeats the call until it lasts at least this long (timer resolution,
    /// call overhead).
    pub min_sample_s: f64,
    /// Stop sampling once this much time was spent (after `min_samples`).
    pub case_budget_s: f64,
    /// Re-measure when the samples' CV exceeds this.
    pub cv_threshold: f64,
    /// At most this many re-measurements.
    pub max_remeasure: usize,
    /// Warm-up stops when two consecutive runs differ by less than 10%, or after this long.
    pub warmup_s: f64,
    pub clock: Clock,
}

impl TimingRules {
    pub fn full() -> TimingRules {
        TimingRules {
            min_samples: 7,
            max_samples: 25,
            min_sample_s: 2e-3,
            case_budget_s: 0.12,
            cv_threshold: 0.10,
            max_remeasure: 2,
            warmup_s: 0.05,
            clock: Clock::Wall,
        }
    }

    pub fn quick() -> TimingRules {
        TimingRules {
            min_samples: 3,
            max_samples: 7,
            min_sample_s: 1e-3,
            case_budget_s: 0.02,
            cv_threshold: 0.25,
            max_remeasure: 1,
            warmup_s: 0.01,
            clock: Clock::Wall,
        }
    }

    /// One sentence for the profile's `protocol` field.
    pub fn describe(&self) -> String {
        format!(
            "{} clock; warm-up until two consecutive runs differ by <10% (at most {:.0} ms); a sample repeats the call until it lasts >= {:.1} ms; \
             {}..{} samples per case within a {:.0} ms budget; a case with CV > {:.0}% is re-measured up to {} times and the attempt \
             with the lowest CV kept; cases run in a seeded random order; statistics are per call (median, p10, p90, CV)",
            self.clock.name(),
            self.warmup_s * 1e3,
            self.min_sample_s * 1e3,
            self.min_samples,
            self.max_samples,
            self.case_budget_s * 1e3,
            self.cv_threshold * 100.0,
            self.max_remeasure
        )
    }
}

/// Samples of one case, seconds per call.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub samples: Vec<f64>,
    pub runs_per_sample: usize,
    pub remeasured: usize,
}

impl Timing {
    pub fn cv(&self) -> f64 {
        stats::cv(&self.samples).unwrap_or(0.0)
    }
}

fn timed(f: &mut dyn FnMut(), runs: usize, clock: Clock) -> f64 {
    let t0 = clock.now();
    for _ in 0..runs {
        f();
    }
    (clock.now() - t0) / runs as f64
}

/// Time `f` by `rules` (the caller runs this inside the thread pool it wants).
pub fn time(f: &mut dyn FnMut(), rules: &TimingRules) -> Timing {
    let start = Instant::now();
    let mut last = timed(f, 1, rules.clock);
    for _ in 0..50 {
        let t = timed(f, 1, rules.clock);
        let steady = (t - last).abs() <= 0.1 * last.max(t);
        last = t;
        if steady || start.elapsed().as_secs_f64() >= rules.warmup_s {
            break;
        }
    }
    let runs = ((rules.min_sample_s / last.max(1e-9)).ceil() as usize).clamp(1, 100_000);
    let mut best: Option<Vec<f64>> = None;
    let mut remeasured = 0;
    for attempt in 0..=rules.max_remeasure {
        let t0 = Instant::now();
        let mut samples = Vec::with_capacity(rules.min_samples);
        while samples.len() < rules.min_samples
            || (samples.len() < rules.max_samples && t0.elapsed().as_secs_f64() < rules.case_budget_s)
        {
            samples.push(timed(f, runs, rules.clock));
        }
        let cv = stats::cv(&samples).unwrap_or(0.0);
        if best.as_ref().is_none_or(|b| cv < stats::cv(b).unwrap_or(0.0)) {
            best = Some(samples);
        }
        remeasured = attempt;
        if cv <= rules.cv_threshold {
            break;
        }
    }
    Timing { samples: best.expect("at least one attempt"), runs_per_sample: runs, remeasured }
}

/// Rayon pools, one per thread count, whose workers are pinned to one CPU each (worker i to
/// the i-th CPU this process may use) where the OS allows it.
pub struct Pools {
    pools: Vec<(usize, rayon::ThreadPool)>,
    pin_failed: Arc<AtomicBool>,
}

impl Pools {
    pub fn new(thread_counts: &[usize], pin: bool) -> Result<Pools, rayon::ThreadPoolBuildError> {
        let pin_failed = Arc::new(AtomicBool::new(!pin || !cfg!(target_os = "linux")));
        let cpus = allowed_cpus();
        let mut pools = Vec::new();
        for &t in thread_counts {
            let failed = pin_failed.clone();
            let cpus = cpus.clone();
            let mut b = rayon::ThreadPoolBuilder::new().num_threads(t);
            if pin {
                b = b.start_handler(move |i| {
                    let ok = !cpus.is_empty() && pin_current_thread(cpus[i % cpus.len()]);
                    if !ok {
                        failed.store(true, Ordering::Relaxed);
                    }
                });
            }
            pools.push((t, b.build()?));
        }
        Ok(Pools { pools, pin_failed })
    }

    pub fn get(&self, threads: usize) -> &rayon::ThreadPool {
        &self.pools.iter().find(|p| p.0 == threads).expect("a pool per thread count").1
    }

    /// Whether every worker was pinned and still runs on its one CPU.
    pub fn pinning_held(&self) -> bool {
        if self.pin_failed.load(Ordering::Relaxed) {
            return false;
        }
        self.pools.iter().all(|(_, p)| p.broadcast(|_| still_pinned()).into_iter().all(|b| b))
    }
}

#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

#[cfg(target_os = "linux")]
fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: as above; the set names one CPU the process may use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(target_os = "linux")]
fn still_pinned() -> bool {
    // SAFETY: as above.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return false;
        }
        let n = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).count();
        let here = libc::sched_getcpu();
        n == 1 && here >= 0 && libc::CPU_ISSET(here as usize, &set)
    }
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}
#[cfg(not(target_os = "linux"))]
fn pin_current_thread(_: usize) -> bool {
    false
}
#[cfg(not(target_os = "linux"))]
fn still_pinned() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_takes_at_least_min_samples_and_reports_per_call() {
        let rules = TimingRules { min_samples: 4, max_samples: 6, min_sample_s: 1e-4, case_budget_s: 1e-3, ..TimingRules::quick() };
        let mut calls = 0u64;
        let mut f = || {
            calls += 1;
            std::hint::black_box((0..1000u64).sum::<u64>());
        };
        let t = time(&mut f, &rules);
        assert!(t.samples.len() >= 4 && t.samples.len() <= 6 * (rules.max_remeasure + 1));
        assert!(t.runs_per_sample >= 1);
        assert!(t.samples.iter().all(|&s| s > 0.0 && s < 1e-2));
    }

    #[test]
    fn pools_run_at_their_thread_counts() {
        let pools = Pools::new(&[1, 2], true).unwrap();
        assert_eq!(pools.get(1).current_num_threads(), 1);
        assert_eq!(pools.get(2).current_num_threads(), 2);
        // Pinning may be refused (containers); then it must say so rather than claim it.
        let held = pools.pinning_held();
        if cfg!(not(target_os = "linux")) {
            assert!(!held);
        }
    }
}
