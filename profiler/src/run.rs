//! `agq profile`'s measurement run: machine ceilings, then every case (op x variant x M x
//! KV length x threads) in a seeded random order, the profile saved atomically as it grows
//! so that a killed run continues with `resume` and ends in the same file it would have
//! written uninterrupted (records are stored in a canonical order, not measurement order).

use crate::counters::{CounterKind, CounterName, CounterSet};
use crate::device::DeviceFingerprint;
use crate::measure::{self, Pools, TimingRules};
use crate::profile::{
    Ceiling, CeilingSpread, DeviceProfile, Measurement, ModelShapes, ProfileError, ProfileKind, Record, RecordKey, ToolInfo,
    PROFILE_SCHEMA,
};
use crate::stats::Summary;
use crate::in_forward::{self, InForwardError};
use crate::workbench::{Workbench, WorkbenchError, BLOCK_PRESETS};
use kernels::ceilings::{Probe, ReadBuffer};
use kernels::{Isa, Variant};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// The attention variants the presets use; `all` adds every other combination.
pub const DEFAULT_ATTENTION: [&str; 2] = ["f32", "qk8+pv8+log2"];
pub const ALL_ATTENTION: [&str; 8] = ["f32", "qk8", "pv8", "log2", "qk8+pv8", "qk8+log2", "pv8+log2", "qk8+pv8+log2"];

#[derive(Clone, Debug)]
pub struct Settings {
    pub model: PathBuf,
    pub out: PathBuf,
    pub threads: Vec<usize>,
    pub tokens: Vec<usize>,
    pub kv_lengths: Vec<usize>,
    pub attention: Vec<String>,
    pub blocks: Vec<String>,
    pub quick: bool,
    pub resume: bool,
    pub pin: bool,
    pub seed: u64,
    pub rules: TimingRules,
    /// Stop (with an error) after this many new records: simulates an interruption.
    pub stop_after: Option<usize>,
    /// Records at most every this many seconds are saved (and always at the end).
    pub save_every_s: f64,
    pub git_commit: Option<String>,
    /// Linear ops cycle through the weights of this many layers (see `Workbench::open`).
    pub rotate_layers: usize,
    /// `block` records run this many layers (time stored per layer).
    pub block_layers: usize,
    /// Decode steps timed per point by the in-forward runs (`forward.*` records; 0 = none
    /// of those runs at all).
    pub forward_steps: usize,
    /// Prefills timed per size by the in-forward runs (0 = decode points only).
    pub forward_prefills: usize,
}

impl Settings {
    /// Defaults of `agq profile` (full or `--quick`).
    pub fn defaults(model: PathBuf, out: PathBuf, quick: bool) -> Settings {
        Settings {
            model,
            out,
            threads: vec![1, 2],
            tokens: if quick { vec![1, 16] } else { vec![1, 16, 64, 128, 512] },
            kv_lengths: if quick { vec![16, 128] } else { vec![64, 128, 256, 512, 1024] },
            attention: DEFAULT_ATTENTION.iter().map(|s| s.to_string()).collect(),
            blocks: BLOCK_PRESETS.iter().map(|s| s.to_string()).collect(),
            quick,
            resume: false,
            pin: true,
            seed: 0x5eed,
            rules: if quick { TimingRules::quick() } else { TimingRules::full() },
            stop_after: None,
            save_every_s: 1.0,
            git_commit: None,
            rotate_layers: if quick { 4 } else { usize::MAX },
            block_layers: if quick { 2 } else { 6 },
            forward_steps: if quick { 3 } else { 7 },
            forward_prefills: in_forward::prefill_samples(quick),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Workbench(#[from] WorkbenchError),
    #[error(transparent)]
    InForward(#[from] InForwardError),
    #[error("{file}: {msg}")]
    Resume { file: String, msg: String },
    #[error("{0}")]
    Settings(String),
    #[error("cannot hash the model: {0}")]
    Hash(std::io::Error),
    #[error("cannot start thread pools: {0}")]
    Pool(String),
    #[error("stopped after {done} new records as asked (--stop-after); continue with --resume; partial profile in {file}")]
    Stopped { done: usize, file: String },
    #[error("writing the JSON lines stream: {0}")]
    Jsonl(std::io::Error),
}

/// What the run reports while it works (the CLI draws a progress bar from it).
pub trait Progress {
    fn phase(&mut self, what: &str);
    /// `done` of `total` cases finished (including those a resumed run had).
    fn cases(&mut self, done: usize, total: usize, current: &str);
}

/// A progress sink that ignores everything.
pub struct Quiet;
impl Progress for Quiet {
    fn phase(&mut self, _: &str) {}
    fn cases(&mut self, _: usize, _: usize, _: &str) {}
}

/// RFC 3339 UTC time now.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn key(op: &str, variant: &str, bits: u8, m: usize, kv: usize, k: usize, threads: usize) -> RecordKey {
    RecordKey { op: op.into(), variant: variant.into(), bits, m, kv, k, threads }
}

/// Every case of a profile with these settings, in canonical order.
pub fn cases(s: &Settings, shapes: &ModelShapes) -> Vec<RecordKey> {
    let mut out = BTreeSet::new();
    let variants: Vec<Variant> = Variant::ALL.to_vec();
    for &t in &s.threads {
        for &m in &s.tokens {
            for op in ["qkv", "o", "gate_up", "down"] {
                let k = shapes.linear_shape(op).map_or(0, |x| x.1);
                for v in &variants {
                    out.insert(key(op, v.name(), v.activation_bits(), m, 0, k, t));
                }
            }
            // The LM head runs on one row in generation and benchmarks; larger M only for
            // scoring many rows (perplexity), profiled up to 16.
            if m <= 16 {
                for v in &variants {
                    out.insert(key("lm_head", v.name(), v.activation_bits(), m, 0, shapes.d_model, t));
                }
            }
            for (scheme, bits) in [("token", 8u8), ("token", 4), ("tensor", 8), ("tensor", 4), ("group", 8), ("group", 4)] {
                for k in [shapes.d_model, shapes.d_ff] {
                    out.insert(key("quantize", scheme, bits, m, 0, k, t));
                }
            }
            for op in ["embed", "norm", "silu", "residual"] {
                out.insert(key(op, "f32", 16, m, 0, 0, t));
            }
            for v in ["f32", "int8-kv"] {
                out.insert(key("rope", v, 16, m, 0, 0, t));
            }
            if m >= 2 {
                out.insert(key("prune_select", "f32", 16, m, 0, 0, t));
            }
            for a in &s.attention {
                out.insert(key("attention", a, if a == "f32" { 16 } else { 8 }, m, m, 0, t));
            }
            for b in &s.blocks {
                out.insert(key("block", b, block_bits(b), m, m, 0, t));
            }
        }
        for &kv in &s.kv_lengths {
            for a in &s.attention {
                out.insert(key("attention", a, if a == "f32" { 16 } else { 8 }, 1, kv, 0, t));
            }
            for v in ["f32", "log2-4"] {
                out.insert(key("softmax", v, if v == "f32" { 16 } else { 4 }, 1, kv, 0, t));
            }
            for b in &s.blocks {
                out.insert(key("block", b, block_bits(b), 1, kv, 0, t));
            }
        }
    }
    out.into_iter().collect()
}

/// One profile record from a case's key, what the workbench says about its shape, and its
/// timing summary (per call).
fn record(k: &RecordKey, isa: String, n: usize, kk: usize, sum: &Summary, counters: std::collections::BTreeMap<String, f64>) -> Record {
    Record {
        op: k.op.clone(),
        variant: k.variant.clone(),
        isa,
        bits: k.bits,
        m: k.m,
        kv: k.kv,
        n,
        k: if kk > 0 { kk } else { k.k },
        threads: k.threads,
        median_s: sum.median,
        p10_s: sum.p10,
        p90_s: sum.p90,
        samples: sum.samples,
        cv: sum.cv.unwrap_or(0.0),
        counters,
    }
}

/// Appends a record to the `--jsonl` stream (flushed, so a killed run keeps every line).
fn stream(jsonl: Option<&mut (dyn std::io::Write + '_)>, device_slug: &str, sha: &str, rec: &Record) -> Result<(), RunError> {
    if let Some(w) = jsonl {
        let line = serde_json::json!({ "device_slug": device_slug, "model_sha256": sha, "record": rec });
        writeln!(w, "{line}").and_then(|_| w.flush()).map_err(RunError::Jsonl)?;
    }
    Ok(())
}

fn block_bits(preset: &str) -> u8 {
    match preset {
        "fp16" | "w4a16" => 16,
        "w4a4" => 4,
        _ => 8,
    }
}

fn check_settings(s: &Settings) -> Result<(), RunError> {
    let bad = |m: &str| Err(RunError::Settings(m.into()));
    if s.threads.is_empty() || s.threads.contains(&0) {
        return bad("--threads needs positive thread counts");
    }
    if s.tokens.is_empty() || s.tokens.contains(&0) {
        return bad("--tokens needs positive token counts");
    }
    if s.rules.clock == crate::measure::Clock::Cpu && s.threads != [1] {
        return bad("--clock cpu measures single-threaded runs only: use --threads 1");
    }
    if s.kv_lengths.contains(&0) {
        return bad("--kv needs positive KV lengths");
    }
    for a in &s.attention {
        if crate::workbench::attention_parts(a).is_none() {
            return bad(&format!("unknown attention variant `{a}` (known: {})", ALL_ATTENTION.join(", ")));
        }
    }
    for b in &s.blocks {
        if !BLOCK_PRESETS.contains(&b.as_str()) {
            return bad(&format!("unknown block preset `{b}` (known: {})", BLOCK_PRESETS.join(", ")));
        }
    }
    Ok(())
}

/// SplitMix64 shuffle: the measurement order, reproducible from the seed.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

fn counters_kind(device: &DeviceFingerprint) -> (String, Vec<CounterName>) {
    let avail: Vec<_> = device.counters.iter().filter(|c| c.available).collect();
    let kind = if avail.iter().any(|c| c.kind == CounterKind::Hardware) {
        "hardware"
    } else if avail.is_empty() {
        "none"
    } else {
        "software"
    };
    (kind.into(), avail.iter().map(|c| c.name).collect())
}

fn mem_buffer_bytes(device: &DeviceFingerprint, quick: bool) -> usize {
    let llc = device.last_level_cache_bytes().unwrap_or(0) as usize;
    let cap = device.memory_bytes.map_or(1 << 30, |m| (m as usize / 4).min(1 << 30));
    let floor = if quick { 64 << 20 } else { 256 << 20 };
    (2 * llc).max(floor).min(cap)
}

fn measure_ceilings(threads: &[usize], device: &DeviceFingerprint, quick: bool, pools: &Pools) -> Vec<Ceiling> {
    let buf = ReadBuffer::new(mem_buffer_bytes(device, quick));
    let reps = if quick { 3 } else { 9 };
    let sample = 2e-3;
    let isa = Isa::best();
    threads
        .iter()
        .map(|&t| {
            let probes = [Probe::f32_fma(t, isa, sample), Probe::int8(t, isa, sample), Probe::mem_read(t, &buf, 16 << 20)];
            let mut samples = vec![Vec::new(); 3];
            // Interleaved so the three see the same load.
            let _ = pools;
            for _ in 0..reps {
                for (i, p) in probes.iter().enumerate() {
                    samples[i].push(p.sample());
                }
            }
            let s: Vec<Summary> = samples.iter().map(|v| Summary::of(v).expect("reps >= 1")).collect();
            Ceiling {
                threads: t,
                f32_gflops: s[0].median,
                int8_gops: s[1].median,
                dram_read_gbs: s[2].median,
                spread: Some(CeilingSpread {
                    f32_gflops: [s[0].p10, s[0].p90],
                    int8_gops: [s[1].p10, s[1].p90],
                    dram_read_gbs: [s[2].p10, s[2].p90],
                    samples: reps,
                }),
            }
        })
        .collect()
}

/// Measures (or continues measuring) a profile and writes it to `s.out`. `jsonl` receives
/// every new record as one JSON line.
pub fn run(
    s: &Settings,
    progress: &mut dyn Progress,
    mut jsonl: Option<&mut dyn std::io::Write>,
) -> Result<DeviceProfile, RunError> {
    check_settings(s)?;
    let t_start = Instant::now();
    let out_name = s.out.display().to_string();
    progress.phase("reading the model");
    let device = DeviceFingerprint::detect();
    let sha = runtime::hash::file_sha256(&s.model).map_err(RunError::Hash)?;
    let mut bench = Workbench::open(&s.model, s.rotate_layers, s.block_layers)?;
    let model_name = s.model.file_name().map_or(s.model.display().to_string(), |n| n.to_string_lossy().into_owned());
    let shapes = ModelShapes::from_config(&bench.cfg, &model_name, &sha);
    let (counters, counter_names) = counters_kind(&device);
    let pools = Pools::new(&s.threads, s.pin).map_err(|e| RunError::Pool(e.to_string()))?;

    let mut profile = if s.resume {
        let p = DeviceProfile::read(&s.out)?;
        let resume_err = |msg: String| RunError::Resume { file: out_name.clone(), msg };
        if p.is_complete() {
            return Err(resume_err("the profile is already complete; nothing to resume (run without --resume to re-measure)".into()));
        }
        p.check_device(&device, &out_name)?;
        p.check_model_in(&sha, &out_name)?;
        let m = &p.measurement;
        if m.thread_counts != s.threads || m.token_counts != s.tokens || m.kv_lengths != s.kv_lengths || m.quick != s.quick
            || m.attention_variants != s.attention
            || m.clock != s.rules.clock
            || m.block_layers != bench.block_layers()
        {
            return Err(resume_err(format!(
                "the partial profile was started with other settings (threads {:?}, tokens {:?}, kv {:?}, quick {}, attention {:?}); resume with the same flags",
                m.thread_counts, m.token_counts, m.kv_lengths, m.quick, m.attention_variants
            )));
        }
        p
    } else {
        if let Ok(p) = DeviceProfile::read(&s.out) {
            if !p.is_complete() {
                return Err(RunError::Resume {
                    file: out_name.clone(),
                    msg: "holds a partial profile; continue it with --resume, or delete the file to start over".into(),
                });
            }
        }
        progress.phase("measuring machine ceilings");
        let ceilings = measure_ceilings(&s.threads, &device, s.quick, &pools);
        let p = DeviceProfile {
            schema: PROFILE_SCHEMA,
            kind: ProfileKind::Measured,
            device: device.clone(),
            tool: ToolInfo { version: env!("CARGO_PKG_VERSION").into(), git_commit: s.git_commit.clone() },
            model: Some(shapes.clone()),
            measurement: Measurement {
                started: now_utc(),
                finished: None,
                quick: s.quick,
                thread_counts: s.threads.clone(),
                token_counts: s.tokens.clone(),
                kv_lengths: s.kv_lengths.clone(),
                protocol: s.rules.describe(),
                min_samples: s.rules.min_samples,
                cv_threshold: s.rules.cv_threshold,
                pinned: s.pin,
                counters: counters.clone(),
                seed: s.seed,
                attention_variants: s.attention.clone(),
                seconds: 0.0,
                clock: s.rules.clock,
                block_layers: bench.block_layers(),
                lm_head_q4_variant: Some(bench.lm_head_variant()),
            },
            ceilings,
            spec: None,
            records: Vec::new(),
        };
        p.write_atomic(&s.out)?;
        p
    };

    let all = cases(s, &shapes);
    let done: BTreeSet<RecordKey> = profile.records.iter().map(Record::key).collect();
    let mut todo: Vec<RecordKey> = all.iter().filter(|k| !done.contains(k)).cloned().collect();
    // The order depends only on the seed and the full case list, so a resumed run visits
    // the remaining cases in the order the first run would have.
    let mut order: Vec<usize> = (0..all.len()).collect();
    shuffle(&mut order, profile.measurement.seed);
    let rank: std::collections::HashMap<&RecordKey, usize> = order.iter().enumerate().map(|(r, &i)| (&all[i], r)).collect();
    todo.sort_by_key(|k| rank[k]);

    let q4_head = bench.lm_head_variant();
    let groups: Vec<(in_forward::Group, Vec<RecordKey>)> = if s.forward_steps == 0 {
        Vec::new()
    } else {
        let tokens = if s.forward_prefills == 0 { vec![1] } else { s.tokens.clone() };
        in_forward::groups(&s.threads, &tokens, &s.attention)
            .into_iter()
            .map(|g| {
                let k = g.keys(&shapes, &tokens, &s.kv_lengths, &q4_head);
                (g, k)
            })
            .collect()
    };
    let groups_todo: Vec<&(in_forward::Group, Vec<RecordKey>)> =
        groups.iter().filter(|(_, keys)| keys.iter().any(|k| !done.contains(k))).collect();

    progress.phase("measuring");
    let total = all.len() + groups.len();
    let mut n_done = total - todo.len() - groups_todo.len();
    let mut new_records = 0usize;
    let mut last_save = Instant::now();
    let base_seconds = profile.measurement.seconds;
    let mut pinned = profile.measurement.pinned && s.pin;
    for k in &todo {
        let label = format!("{} {} m={} kv={} t={}", k.op, k.variant, k.m, k.kv, k.threads);
        progress.cases(n_done, total, &label);
        let (isa, n, kk) = bench.describe(k);
        let pool = pools.get(k.threads);
        let mut f = bench.prepare(k)?;
        let (timing, readings) = pool.install(|| {
            let timing = measure::time(&mut *f, &s.rules);
            let mut set = CounterSet::open(&counter_names);
            let runs = timing.runs_per_sample;
            let readings = set.measure(|| (0..runs).for_each(|_| f())).ok().map(|(_, r)| (r, runs));
            (timing, readings)
        });
        drop(f);
        let per = if k.op == "block" { profile.measurement.block_layers.max(1) as f64 } else { 1.0 };
        let samples: Vec<f64> = timing.samples.iter().map(|t| t / per).collect();
        let sum = Summary::of(&samples).expect("at least one sample");
        let mut counters = std::collections::BTreeMap::new();
        if let Some((r, runs)) = readings {
            for (name, v) in r.values {
                counters.insert(name.name().to_string(), v as f64 / runs as f64 / per);
            }
        }
        let rec = record(k, isa, n, kk, &sum, counters);
        stream(jsonl.as_deref_mut(), &device.slug, &sha, &rec)?;
        profile.records.push(rec);
        new_records += 1;
        n_done += 1;
        let stop = s.stop_after.is_some_and(|n| new_records >= n);
        if stop || last_save.elapsed().as_secs_f64() >= s.save_every_s {
            pinned = pinned && pools.pinning_held();
            profile.measurement.pinned = pinned;
            profile.measurement.seconds = base_seconds + t_start.elapsed().as_secs_f64();
            profile.write_atomic(&s.out)?;
            last_save = Instant::now();
        }
        if stop && n_done < total {
            return Err(RunError::Stopped { done: new_records, file: out_name });
        }
    }
    // Ops inside the real forward pass (see `in_forward`): after the isolated ones.
    let mut models: Option<in_forward::Models> = None;
    for (g, _) in groups_todo {
        progress.cases(n_done, total, &g.label());
        let models = match &mut models {
            Some(m) => m,
            None => models.insert(in_forward::Models::open(&s.model)?),
        };
        let n = in_forward::Samples {
            steps: s.forward_steps,
            warmup: if s.quick { 1 } else { 2 },
            prefills: s.forward_prefills,
            prefill_budget_s: in_forward::prefill_budget_s(s.quick),
        };
        let got = in_forward::measure_group(models, g, &s.tokens, &s.kv_lengths, &q4_head, n, s.rules.clock, pools.get(g.threads()))?;
        for (k, samples) in got {
            if done.contains(&k) {
                continue;
            }
            let base = RecordKey {
                op: k.op.trim_start_matches(in_forward::PREFIX).to_string(),
                variant: in_forward::kernel_of(&k.variant).to_string(),
                ..k.clone()
            };
            let (isa, n, kk) = bench.describe(&base);
            let sum = Summary::of(&samples).expect("at least one sample");
            let rec = record(&k, isa, n, kk, &sum, Default::default());
            stream(jsonl.as_deref_mut(), &device.slug, &sha, &rec)?;
            profile.records.push(rec);
            new_records += 1;
            if s.stop_after.is_some_and(|n| new_records >= n) {
                profile.measurement.seconds = base_seconds + t_start.elapsed().as_secs_f64();
                profile.write_atomic(&s.out)?;
                return Err(RunError::Stopped { done: new_records, file: out_name });
            }
        }
        n_done += 1;
        if last_save.elapsed().as_secs_f64() >= s.save_every_s {
            pinned = pinned && pools.pinning_held();
            profile.measurement.pinned = pinned;
            profile.measurement.seconds = base_seconds + t_start.elapsed().as_secs_f64();
            profile.write_atomic(&s.out)?;
            last_save = Instant::now();
        }
    }
    progress.cases(total, total, "done");
    profile.measurement.pinned = pinned && pools.pinning_held();
    profile.measurement.finished = Some(now_utc());
    profile.measurement.seconds = base_seconds + t_start.elapsed().as_secs_f64();
    profile.records.sort_by_key(Record::key);
    profile.write_atomic(&s.out)?;
    Ok(profile)
}
