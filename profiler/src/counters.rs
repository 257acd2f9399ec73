//! Linux perf counters. Which counters open depends on the kernel, the PMU the hypervisor
//! exposes and `perf_event_paranoid`, so every counter is probed alone (a failed member
//! would otherwise spoil a whole group) and an unavailable one is a reported fact with its
//! reason, never an error.
//!
//! Counters observe the calling thread and the threads it spawns after opening them
//! (`inherit`); threads of an already running rayon pool are not counted.

use perf_event::events::{Event, Hardware, Software};
use perf_event::{Builder, Counter};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The counters the profiler knows about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterName {
    Cycles,
    Instructions,
    CacheReferences,
    CacheMisses,
    BranchMisses,
    TaskClock,
    PageFaults,
    ContextSwitches,
    CpuMigrations,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterKind {
    Hardware,
    Software,
}

impl CounterName {
    pub const ALL: [CounterName; 9] = [
        CounterName::Cycles,
        CounterName::Instructions,
        CounterName::CacheReferences,
        CounterName::CacheMisses,
        CounterName::BranchMisses,
        CounterName::TaskClock,
        CounterName::PageFaults,
        CounterName::ContextSwitches,
        CounterName::CpuMigrations,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CounterName::Cycles => "cycles",
            CounterName::Instructions => "instructions",
            CounterName::CacheReferences => "cache-references",
            CounterName::CacheMisses => "cache-misses",
            CounterName::BranchMisses => "branch-misses",
            CounterName::TaskClock => "task-clock",
            CounterName::PageFaults => "page-faults",
            CounterName::ContextSwitches => "context-switches",
            CounterName::CpuMigrations => "cpu-migrations",
        }
    }

    pub fn kind(self) -> CounterKind {
        match self {
            CounterName::Cycles
            | CounterName::Instructions
            | CounterName::CacheReferences
            | CounterName::CacheMisses
            | CounterName::BranchMisses => CounterKind::Hardware,
            _ => CounterKind::Software,
        }
    }

    /// task-clock counts nanoseconds; the others count events.
    pub fn unit(self) -> &'static str {
        if self == CounterName::TaskClock {
            "ns"
        } else {
            "events"
        }
    }

    fn builder(self) -> Builder<'static> {
        fn b(e: impl Event) -> Builder<'static> {
            let mut b = Builder::new(e);
            b.inherit(true);
            b
        }
        match self {
            CounterName::Cycles => b(Hardware::CPU_CYCLES),
            CounterName::Instructions => b(Hardware::INSTRUCTIONS),
            CounterName::CacheReferences => b(Hardware::CACHE_REFERENCES),
            CounterName::CacheMisses => b(Hardware::CACHE_MISSES),
            CounterName::BranchMisses => b(Hardware::BRANCH_MISSES),
            CounterName::TaskClock => b(Software::TASK_CLOCK),
            CounterName::PageFaults => b(Software::PAGE_FAULTS),
            CounterName::ContextSwitches => b(Software::CONTEXT_SWITCHES),
            CounterName::CpuMigrations => b(Software::CPU_MIGRATIONS),
        }
    }

    /// Open, enable, read and disable this counter once.
    fn open(self) -> Result<Counter, String> {
        let mut c = self.builder().build().map_err(|e| explain_open_error(&e))?;
        c.enable().map_err(|e| format!("enable failed: {e}"))?;
        c.read().map_err(|e| format!("read failed: {e}"))?;
        c.disable().map_err(|e| format!("disable failed: {e}"))?;
        Ok(c)
    }
}

impl fmt::Display for CounterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn explain_open_error(e: &std::io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(2) => " (the kernel has no PMU for this event, typical in a VM)",
        Some(13) | Some(1) => " (not permitted; see /proc/sys/kernel/perf_event_paranoid)",
        Some(38) => " (perf_event_open is not supported by this kernel)",
        Some(95) => " (event not supported by this CPU)",
        _ => "",
    };
    format!("perf_event_open failed: {e}{hint}")
}

/// Whether one counter can be used here, and why not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterStatus {
    pub name: CounterName,
    pub kind: CounterKind,
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Probe every known counter, each alone.
pub fn probe() -> Vec<CounterStatus> {
    CounterName::ALL
        .iter()
        .map(|&name| {
            let r = name.open();
            CounterStatus { name, kind: name.kind(), available: r.is_ok(), reason: r.err() }
        })
        .collect()
}

/// Counter deltas over one measured region.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Readings {
    pub values: Vec<(CounterName, u64)>,
}

impl Readings {
    pub fn get(&self, name: CounterName) -> Option<u64> {
        self.values.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("perf counter {name}: {what} failed: {source}")]
    Io { name: CounterName, what: &'static str, source: std::io::Error },
}

/// The counters that opened, measured together around a closure. Counters are independent
/// (no group), so one that the kernel multiplexes is scaled by enabled/running time.
pub struct CounterSet {
    counters: Vec<(CounterName, Counter)>,
    unavailable: Vec<CounterStatus>,
}

impl CounterSet {
    /// Open whichever of `names` can be opened; the rest are kept as statuses with reasons.
    pub fn open(names: &[CounterName]) -> CounterSet {
        let mut counters = Vec::new();
        let mut unavailable = Vec::new();
        for &name in names {
            match name.open() {
                Ok(c) => counters.push((name, c)),
                Err(reason) => unavailable.push(CounterStatus {
                    name,
                    kind: name.kind(),
                    available: false,
                    reason: Some(reason),
                }),
            }
        }
        CounterSet { counters, unavailable }
    }

    /// Every counter that opens here.
    pub fn open_available() -> CounterSet {
        Self::open(&CounterName::ALL)
    }

    pub fn names(&self) -> Vec<CounterName> {
        self.counters.iter().map(|(n, _)| *n).collect()
    }

    pub fn unavailable(&self) -> &[CounterStatus] {
        &self.unavailable
    }

    /// Run `f` with every open counter enabled; return its result and the counter deltas.
    pub fn measure<R>(&mut self, f: impl FnOnce() -> R) -> Result<(R, Readings), CounterError> {
        for (name, c) in &mut self.counters {
            let name = *name;
            c.reset().map_err(|source| CounterError::Io { name, what: "reset", source })?;
            c.enable().map_err(|source| CounterError::Io { name, what: "enable", source })?;
        }
        let r = f();
        for (name, c) in &mut self.counters {
            let name = *name;
            c.disable().map_err(|source| CounterError::Io { name, what: "disable", source })?;
        }
        let mut values = Vec::with_capacity(self.counters.len());
        for (name, c) in &mut self.counters {
            let name = *name;
            let d = c.read_full().map_err(|source| CounterError::Io { name, what: "read", source })?;
            let scaled = match (d.time_enabled(), d.time_running()) {
                (Some(en), Some(run)) if !run.is_zero() && run < en => {
                    (d.count() as f64 * en.as_secs_f64() / run.as_secs_f64()).round() as u64
                }
                _ => d.count(),
            };
            values.push((name, scaled));
        }
        Ok((r, Readings { values }))
    }
}
