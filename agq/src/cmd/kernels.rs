//! `agq kernels`: time every available (variant, ISA) on SmolLM2-135M's layer shapes and
//! read each against the f16 baseline of the same run and against the machine's ceilings.
//!
//! Measurement: every case is prepared first, warmed up once (which also calibrates how many
//! runs make one sample of at least `--min-sample-ms`), then sampled in rounds; each round
//! visits the cases in a fresh random order so slow drifts of a shared machine spread over
//! all cases instead of landing on whichever ran last. The machine ceilings are sampled in
//! the same rounds, so kernels and ceilings see the same load.

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use kernels::ceilings::{Ceiling, Probe, ReadBuffer};
use kernels::{Activations, BlockQ4_1, Isa, Matmul, Q4Matrix, QuantizedActivations, Variant, QK};
use profiler::device::DeviceFingerprint;
use profiler::stats::Summary;
use serde::Serialize;
use std::collections::HashMap;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

/// (K, N) of SmolLM2-135M's matmuls: q/o, k/v (GQA), FFN up/gate, FFN down, LM head.
const SHAPES: [Shape; 5] = [
    Shape { k: 576, n: 576 },
    Shape { k: 576, n: 192 },
    Shape { k: 576, n: 1536 },
    Shape { k: 1536, n: 576 },
    Shape { k: 576, n: 49152 },
];
const QUICK_SHAPES: [Shape; 2] = [Shape { k: 576, n: 576 }, Shape { k: 1536, n: 576 }];
/// Bytes per memory-bandwidth sample (a few ms at DRAM speed).
const MEM_WINDOW_BYTES: usize = 16 << 20;
/// Scalar cases above this many multiply-adds take seconds per run; skipped unless asked.
const SCALAR_MAX_MACS: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Shape {
    pub k: usize,
    pub n: usize,
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad shape `{s}`: expected KxN with positive integers, e.g. 576x1536");
        let (k, n) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let (k, n) = (k.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        if k == 0 || n == 0 {
            return Err(bad());
        }
        Ok(Shape { k, n })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IsaChoice {
    /// Each variant on the fastest ISA it has here.
    Best,
    /// Every ISA each variant has here (including scalar).
    All,
}

/// How integer activations are scaled (`QuantizedActivations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActScales {
    /// One scale per row (token).
    Row,
    /// One scale per row and 32-input block.
    Block,
}

impl ActScales {
    fn name(self) -> &'static str {
        match self {
            ActScales::Row => "row",
            ActScales::Block => "block",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object (records, ceilings, device) instead of the table.
    #[arg(long)]
    json: bool,
    /// Thread counts to run at (a rayon pool each).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// A few seconds in total: two shapes, M = 1 and 16, fewer samples.
    #[arg(long)]
    quick: bool,
    /// Variants to run (default: all).
    #[arg(long, value_delimiter = ',', value_parser = parse_variant)]
    variants: Vec<Variant>,
    /// `best`: each variant on its fastest ISA; `all`: every available ISA.
    #[arg(long, value_enum, default_value_t = IsaChoice::Best)]
    isa: IsaChoice,
    /// Shapes as KxN (default: SmolLM2-135M's five; with --quick 576x576,1536x576).
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<Shape>,
    /// Token counts M (default 1,16,128,512; with --quick 1,16).
    #[arg(long = "m", value_delimiter = ',')]
    ms: Vec<usize>,
    /// Samples per case (default 10; with --quick 5). Slow cases get fewer (at least 3).
    #[arg(long)]
    samples: Option<usize>,
    /// Time budget per case in seconds, which caps the samples of slow cases.
    #[arg(long)]
    case_seconds: Option<f64>,
    /// Minimum duration of one sample; fast cases repeat the matmul until they reach it.
    #[arg(long, default_value_t = 2.0)]
    min_sample_ms: f64,
    /// Also run scalar cases above 2^30 multiply-adds (seconds each).
    #[arg(long)]
    no_skip: bool,
    /// Integer-activation scale layouts to time: `row` (one scale per token, the default) and
    /// `block` (one per token and 32-input block; only variants that take block scales, i.e.
    /// w4a8 and w4a4-widen). With both, block records carry their time over the row one.
    #[arg(long, value_delimiter = ',', value_enum, default_value = "row")]
    act_scales: Vec<ActScales>,
    /// Seed for the order of cases (default: from the clock; printed in the JSON).
    #[arg(long)]
    seed: Option<u64>,
}

fn parse_variant(s: &str) -> Result<Variant, String> {
    Variant::from_str(s)
}

/// One timed (variant, ISA, shape, M, threads).
#[derive(Serialize)]
pub struct Record {
    pub variant: String,
    pub isa: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub threads: usize,
    /// Integer activations' scale layout, `row` or `block`; absent for float variants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act_scales: Option<&'static str>,
    pub seconds_median: f64,
    pub seconds_p10: f64,
    pub seconds_p90: f64,
    pub seconds_cv: Option<f64>,
    pub samples: usize,
    /// Runs per sample (fast cases are repeated to exceed the timer's noise).
    pub runs_per_sample: usize,
    /// 2·M·N·K / median seconds / 1e9.
    pub gops: f64,
    /// f16 median time / this median time, same shape, M and threads in this run, f16 on the
    /// same ISA (or its fastest measured ISA where f16 has no path on this one, e.g. AVX-512):
    /// above 1 means faster than the f16 baseline. Absent when f16 was not run alongside.
    pub ratio_vs_f16: Option<f64>,
    /// Block records only: this median time / the same case's `row` median time in this run
    /// (the cost of per-block scales; absent when `row` was not run alongside).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_vs_row: Option<f64>,
    /// Which ceiling `ceiling_share` is relative to: `mem-read` (M = 1: weight bytes / time),
    /// `f32-fma` (float-activation variants), or `int8` (integer-activation variants).
    pub ceiling: &'static str,
    pub ceiling_share: Option<f64>,
    /// Size of the weights in their canonical format (f16, or Q4_1's 20 bytes per 32).
    pub weight_bytes: usize,
}

#[derive(Serialize)]
struct Skipped {
    variant: String,
    isa: String,
    m: usize,
    n: usize,
    k: usize,
    reason: String,
}

#[derive(Serialize)]
struct CeilingRecord {
    threads: usize,
    isa: String,
    f32_fma_gflops: Summary,
    int8_gops: Summary,
    mem_read_gbs: Summary,
    mem_buffer_bytes: usize,
    mem_window_bytes: usize,
}

#[derive(Serialize)]
struct Settings {
    quick: bool,
    isa: IsaChoice,
    threads: Vec<usize>,
    shapes: Vec<Shape>,
    m: Vec<usize>,
    act_scales: Vec<ActScales>,
    samples: usize,
    case_seconds: f64,
    min_sample_ms: f64,
    seed: u64,
}

#[derive(Serialize)]
struct Report {
    schema: u32,
    settings: Settings,
    device: DeviceFingerprint,
    ceilings: Vec<CeilingRecord>,
    records: Vec<Record>,
    skipped: Vec<Skipped>,
}

/// What one step of a round measures.
enum Item {
    Case(usize),
    Probe(usize),
}

/// A case being measured.
struct Case {
    pair: usize,
    scales: ActScales,
    shape: Shape,
    m: usize,
    threads: usize,
    runs_per_sample: usize,
    target: usize,
    times: Vec<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let settings = settings(&args)?;
    let device = DeviceFingerprint::detect();
    for &t in &settings.threads {
        if t > device.logical_cores {
            eprintln!("agq: warning: {t} threads on {} logical cores", device.logical_cores);
        }
    }
    let pairs = pairs(&args);
    if pairs.is_empty() {
        bail!("no (variant, ISA) pair selected is available on this CPU");
    }
    let runs = |v: Variant| {
        v.activation_bits() == 16 || settings.act_scales.contains(&ActScales::Row) || v.supports_block_scales()
    };
    if !pairs.iter().any(|&(v, _)| runs(v)) {
        bail!("nothing to time: --act-scales block applies only to w4a8 and w4a4-widen");
    }

    eprintln!("agq: calibrating machine ceilings");
    let buf = ReadBuffer::new(mem_buffer_bytes(&device));
    // Probe samples as short as kernel samples: on a shared machine, long samples absorb
    // preemption that short ones mostly escape, which would bias every share upwards.
    let probe_secs = settings.min_sample_ms / 1e3;
    let window = MEM_WINDOW_BYTES.min(buf.bytes());
    let probes: Vec<Probe> = settings
        .threads
        .iter()
        .flat_map(|&t| {
            let isa = Isa::best();
            [Probe::f32_fma(t, isa, probe_secs), Probe::int8(t, isa, probe_secs), Probe::mem_read(t, &buf, window)]
        })
        .collect();
    let mut probe_samples: Vec<Vec<f64>> = vec![Vec::new(); probes.len()];
    let pools = settings
        .threads
        .iter()
        .map(|&t| Ok((t, rayon::ThreadPoolBuilder::new().num_threads(t).build().context("building a thread pool")?)))
        .collect::<anyhow::Result<HashMap<usize, rayon::ThreadPool>>>()?;

    // Prepare weights, matmuls, activations and outputs up front (not timed).
    eprintln!("agq: preparing {} shapes x {} kernels", settings.shapes.len(), pairs.len());
    let mut matmuls: HashMap<(usize, Shape), Matmul> = HashMap::new();
    for (si, &shape) in settings.shapes.iter().enumerate() {
        let w = random_q4(shape.n, shape.k, 0x5eed + si as u64);
        for (pi, &(variant, isa)) in pairs.iter().enumerate() {
            let mm = Matmul::new_q4(variant, isa, &w).with_context(|| format!("preparing {variant} on {isa}"))?;
            matmuls.insert((pi, shape), mm);
        }
    }
    let mut inputs: HashMap<(u8, usize, usize, ActScales), Input> = HashMap::new();
    let mut outputs: HashMap<(usize, usize), Vec<f32>> = HashMap::new();
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for (pi, &(variant, isa)) in pairs.iter().enumerate() {
        for &shape in &settings.shapes {
            for &m in &settings.m {
                if isa == Isa::Scalar && !args.no_skip && m * shape.n * shape.k > SCALAR_MAX_MACS {
                    skipped.push(Skipped {
                        variant: variant.to_string(),
                        isa: isa.to_string(),
                        m,
                        n: shape.n,
                        k: shape.k,
                        reason: "scalar case above 2^30 multiply-adds (use --no-skip)".into(),
                    });
                    continue;
                }
                let bits = variant.activation_bits();
                outputs.entry((m, shape.n)).or_insert_with(|| vec![0f32; m * shape.n]);
                // Float variants have no integer scales; row-only variants run once.
                let layouts: Vec<ActScales> = if bits == 16 {
                    vec![ActScales::Row]
                } else if variant.supports_block_scales() {
                    settings.act_scales.clone()
                } else {
                    settings.act_scales.iter().copied().filter(|&s| s == ActScales::Row).collect()
                };
                for scales in layouts {
                    inputs.entry((bits, m, shape.k, scales)).or_insert_with(|| input(bits, m, shape.k, scales));
                    for &threads in &settings.threads {
                        cases.push(Case { pair: pi, scales, shape, m, threads, runs_per_sample: 1, target: 0, times: vec![] });
                    }
                }
            }
        }
    }
    if cases.is_empty() {
        bail!("nothing to time: every selected case was skipped");
    }
    if !skipped.is_empty() {
        eprintln!("agq: skipping {} scalar cases above 2^30 multiply-adds (--no-skip runs them)", skipped.len());
    }

    let mut rng = SplitMix(settings.seed);
    let run_case = |c: &Case, outputs: &mut HashMap<(usize, usize), Vec<f32>>, runs: usize| -> f64 {
        let (variant, _) = pairs[c.pair];
        let mm = &matmuls[&(c.pair, c.shape)];
        let a = inputs[&(variant.activation_bits(), c.m, c.shape.k, c.scales)].activations(c.m);
        let y = outputs.get_mut(&(c.m, c.shape.n)).expect("output prepared");
        pools[&c.threads].install(|| {
            let t0 = Instant::now();
            for _ in 0..runs {
                mm.run(black_box(a), black_box(&mut y[..]));
            }
            t0.elapsed().as_secs_f64() / runs as f64
        })
    };

    // Warm-up (one run each, shuffled), which also calibrates runs per sample and samples.
    eprintln!("agq: warming up {} cases", cases.len());
    let bar = progress(cases.len() as u64, "warm-up");
    let mut order: Vec<usize> = (0..cases.len()).collect();
    rng.shuffle(&mut order);
    for &i in &order {
        let t = run_case(&cases[i], &mut outputs, 1).max(1e-9);
        let c = &mut cases[i];
        c.runs_per_sample = ((settings.min_sample_ms / 1e3 / t).ceil() as usize).clamp(1, 100_000);
        let per_sample = t * c.runs_per_sample as f64;
        c.target = ((settings.case_seconds / per_sample) as usize).clamp(3.min(settings.samples), settings.samples);
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Rounds: every unfinished case and every ceiling probe once, in a fresh random order.
    let total = cases.iter().map(|c| c.target).sum::<usize>() + probes.len() * settings.samples;
    eprintln!("agq: timing {total} samples in {} rounds", settings.samples);
    let bar = progress(total as u64, "timing");
    let mut items: Vec<Item> = (0..cases.len()).map(Item::Case).chain((0..probes.len()).map(Item::Probe)).collect();
    for _round in 0..settings.samples {
        rng.shuffle(&mut items);
        for item in &items {
            match *item {
                Item::Case(i) if cases[i].times.len() < cases[i].target => {
                    let t = run_case(&cases[i], &mut outputs, cases[i].runs_per_sample);
                    cases[i].times.push(t);
                }
                Item::Probe(i) => probe_samples[i].push(probes[i].sample()),
                Item::Case(_) => continue,
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let ceilings: Vec<CeilingRecord> = settings
        .threads
        .iter()
        .map(|&t| {
            let summary = |kind: Ceiling| {
                let i = probes.iter().position(|p| p.threads() == t && p.ceiling() == kind).expect("one probe per kind");
                Summary::of(&probe_samples[i]).expect("probes are sampled every round")
            };
            CeilingRecord {
                threads: t,
                isa: probes[0].isa().to_string(),
                f32_fma_gflops: summary(Ceiling::F32Fma),
                int8_gops: summary(Ceiling::Int8),
                mem_read_gbs: summary(Ceiling::MemRead),
                mem_buffer_bytes: buf.bytes(),
                mem_window_bytes: window,
            }
        })
        .collect();
    let records = records(&cases, &pairs, &ceilings);
    if args.json {
        let report = Report { schema: 1, settings, device, ceilings, records, skipped };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&device, &ceilings, &records, &skipped);
    }
    Ok(())
}

fn settings(args: &Args) -> anyhow::Result<Settings> {
    let shapes = if !args.shapes.is_empty() {
        args.shapes.clone()
    } else if args.quick {
        QUICK_SHAPES.to_vec()
    } else {
        SHAPES.to_vec()
    };
    let m = if !args.ms.is_empty() {
        args.ms.clone()
    } else if args.quick {
        vec![1, 16]
    } else {
        vec![1, 16, 128, 512]
    };
    if m.contains(&0) {
        bail!("--m values must be at least 1");
    }
    if args.threads.is_empty() || args.threads.contains(&0) {
        bail!("--threads needs positive thread counts");
    }
    let samples = args.samples.unwrap_or(if args.quick { 5 } else { 10 });
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    let case_seconds = args.case_seconds.unwrap_or(if args.quick { 0.25 } else { 3.0 });
    if !(case_seconds > 0.0 && args.min_sample_ms > 0.0) {
        bail!("--case-seconds and --min-sample-ms must be positive");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let mut threads = args.threads.clone();
    threads.sort_unstable();
    threads.dedup();
    let mut act_scales = args.act_scales.clone();
    act_scales.sort_unstable();
    act_scales.dedup();
    if act_scales.is_empty() {
        bail!("--act-scales needs `row`, `block` or both");
    }
    Ok(Settings {
        act_scales,
        quick: args.quick,
        isa: args.isa,
        threads,
        shapes,
        m,
        samples,
        case_seconds,
        min_sample_ms: args.min_sample_ms,
        seed,
    })
}

/// The (variant, ISA) pairs to run.
fn pairs(args: &Args) -> Vec<(Variant, Isa)> {
    let variants: Vec<Variant> = if args.variants.is_empty() { Variant::ALL.to_vec() } else { args.variants.clone() };
    let available = kernels::available();
    let mut out: Vec<(Variant, Isa)> = match args.isa {
        IsaChoice::All => available.into_iter().filter(|(v, _)| variants.contains(v)).collect(),
        IsaChoice::Best => variants.iter().map(|&v| (v, kernels::best_isa(v))).collect(),
    };
    out.sort();
    out.dedup();
    out
}

fn mem_buffer_bytes(device: &DeviceFingerprint) -> usize {
    // Several times the last-level cache, at least 256 MiB, at most 1 GiB or a quarter of RAM.
    let llc = device.last_level_cache_bytes().unwrap_or(0) as usize;
    let cap = device.memory_bytes.map_or(1 << 30, |m| (m as usize / 4).min(1 << 30));
    (2 * llc).max(256 << 20).min(cap)
}

fn progress(len: u64, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(what);
    if let Ok(style) = ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len} {elapsed}<{eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn weight_bytes(variant: Variant, s: Shape) -> usize {
    match variant {
        Variant::F16 => s.n * s.k * 2,
        Variant::W8A16 => s.n * Q4Matrix::blocks_per_row(s.k) * std::mem::size_of::<kernels::BlockQ8_0>(),
        _ => s.n * Q4Matrix::blocks_per_row(s.k) * std::mem::size_of::<BlockQ4_1>(),
    }
}

fn records(cases: &[Case], pairs: &[(Variant, Isa)], ceilings: &[CeilingRecord]) -> Vec<Record> {
    // f16 ratios compare with the row-scaled integer case; block cases also get their own
    // ratio to f16 and their time over the row case.
    let medians: HashMap<(Variant, Isa, Shape, usize, usize, ActScales), f64> = cases
        .iter()
        .filter_map(|c| {
            let (v, i) = pairs[c.pair];
            Some(((v, i, c.shape, c.m, c.threads, c.scales), Summary::of(&c.times)?.median))
        })
        .collect();
    let mut out: Vec<Record> = cases
        .iter()
        .filter_map(|c| {
            let (variant, isa) = pairs[c.pair];
            let s = Summary::of(&c.times)?;
            let ops = 2.0 * (c.m * c.shape.n * c.shape.k) as f64;
            let gops = ops / s.median / 1e9;
            let wbytes = weight_bytes(variant, c.shape);
            let ceil = ceilings.iter().find(|x| x.threads == c.threads);
            let (ceiling, share) = if c.m == 1 {
                ("mem-read", ceil.map(|x| wbytes as f64 / s.median / 1e9 / x.mem_read_gbs.median))
            } else if variant.activation_bits() == 16 {
                ("f32-fma", ceil.map(|x| gops / x.f32_fma_gflops.median))
            } else {
                ("int8", ceil.map(|x| gops / x.int8_gops.median))
            };
            // f16 on the same ISA; where f16 has no such path (AVX-512), the fastest f16 measured.
            let f16 = medians.get(&(Variant::F16, isa, c.shape, c.m, c.threads, ActScales::Row)).or_else(|| {
                medians
                    .iter()
                    .filter(|((v, _, sh, m, t, _), _)| *v == Variant::F16 && *sh == c.shape && *m == c.m && *t == c.threads)
                    .map(|(_, t)| t)
                    .min_by(|a, b| a.total_cmp(b))
            });
            let integer = variant.activation_bits() != 16;
            let time_vs_row = match c.scales {
                ActScales::Block => medians.get(&(variant, isa, c.shape, c.m, c.threads, ActScales::Row)).map(|row| s.median / row),
                ActScales::Row => None,
            };
            Some(Record {
                variant: variant.to_string(),
                isa: isa.to_string(),
                m: c.m,
                n: c.shape.n,
                k: c.shape.k,
                threads: c.threads,
                act_scales: integer.then(|| c.scales.name()),
                seconds_median: s.median,
                seconds_p10: s.p10,
                seconds_p90: s.p90,
                seconds_cv: s.cv,
                samples: s.samples,
                runs_per_sample: c.runs_per_sample,
                gops,
                ratio_vs_f16: f16.map(|t| t / s.median),
                time_vs_row,
                ceiling,
                ceiling_share: share.filter(|v| v.is_finite()),
                weight_bytes: wbytes,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (a.k, a.n, a.m, a.threads, &a.variant, &a.isa, a.act_scales).cmp(&(b.k, b.n, b.m, b.threads, &b.variant, &b.isa, b.act_scales))
    });
    out
}

fn ms(s: f64) -> String {
    let v = s * 1e3;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else if v >= 0.001 {
        format!("{v:.4}")
    } else {
        format!("{v:.1e}")
    }
}

fn print_human(device: &DeviceFingerprint, ceilings: &[CeilingRecord], records: &[Record], skipped: &[Skipped]) {
    println!("device {}", device.slug);
    for c in ceilings {
        println!(
            "ceilings t={} ({}): f32 FMA {:.1} GFLOP/s [{:.1}-{:.1}], INT8 {:.1} GOP/s [{:.1}-{:.1}], read {:.1} GB/s [{:.1}-{:.1}]",
            c.threads,
            c.isa,
            c.f32_fma_gflops.median,
            c.f32_fma_gflops.p10,
            c.f32_fma_gflops.p90,
            c.int8_gops.median,
            c.int8_gops.p10,
            c.int8_gops.p90,
            c.mem_read_gbs.median,
            c.mem_read_gbs.p10,
            c.mem_read_gbs.p90
        );
    }
    println!();
    println!(
        "{:<12} {:<6} {:<5} {:>4} {:>6} {:>5} {:>3} {:>10} {:>19} {:>8} {:>6} {:>8} {:<8} {:>6}",
        "variant", "isa", "act", "m", "n", "k", "thr", "median ms", "p10-p90 ms", "GOPS", "x f16", "share", "of", "/ row"
    );
    for r in records {
        println!(
            "{:<12} {:<6} {:<5} {:>4} {:>6} {:>5} {:>3} {:>10} {:>19} {:>8.2} {:>6} {:>8} {:<8} {:>6}",
            r.variant,
            r.isa,
            r.act_scales.unwrap_or("-"),
            r.m,
            r.n,
            r.k,
            r.threads,
            ms(r.seconds_median),
            format!("{}-{}", ms(r.seconds_p10), ms(r.seconds_p90)),
            r.gops,
            r.ratio_vs_f16.map_or("-".into(), |v| format!("{v:.2}")),
            r.ceiling_share.map_or("-".into(), |v| format!("{:.1}%", v * 100.0)),
            r.ceiling,
            r.time_vs_row.map_or(String::new(), |v| format!("{v:.3}")),
        );
    }
    if !skipped.is_empty() {
        println!("\nskipped {} scalar cases above 2^30 multiply-adds (--no-skip runs them)", skipped.len());
    }
    if records.iter().any(|r| r.time_vs_row.is_some()) {
        println!("\n/ row = block-scaled median time / row-scaled median time of the same case (>1 is slower).");
    }
    println!("\nx f16 = f16 median time / this median time (same shape, M, threads; f16 on the same ISA, or its fastest one where f16 has no path on this ISA; >1 is faster).");
    println!("share = GOPS / ceiling (f32-fma, int8) or weight bytes per second / read bandwidth (mem-read,");
    println!("M = 1; above 100% when the weights are served from cache).");
}

/// SplitMix64: deterministic weights and a seedable case order.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Random weights in [-0.1, 0.1), quantized block by block (no full f32 copy of the matrix).
fn random_q4(n: usize, k: usize, seed: u64) -> Q4Matrix {
    let mut rng = SplitMix(seed);
    let blocks = (0..n * Q4Matrix::blocks_per_row(k))
        .map(|_| {
            let mut x = [0f32; QK];
            x.iter_mut().for_each(|v| *v = 0.1 * rng.unit());
            BlockQ4_1::quantize(&x)
        })
        .collect();
    Q4Matrix::from_blocks(n, k, blocks).expect("block count matches the shape")
}

enum Input {
    F32(Vec<f32>),
    Int(QuantizedActivations),
}

impl Input {
    fn activations(&self, m: usize) -> Activations<'_> {
        match self {
            Input::F32(x) => Activations::F32 { x, m },
            Input::Int(q) => Activations::Int(q),
        }
    }
}

/// Activations for `bits` (16 = float), quantized per token (or per token and block) for
/// the integer variants.
fn input(bits: u8, m: usize, k: usize, scales: ActScales) -> Input {
    let mut rng = SplitMix(0xac7 ^ ((m as u64) << 32) ^ k as u64);
    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
    match (bits, scales) {
        (16, _) => Input::F32(x),
        (b, ActScales::Row) => Input::Int(QuantizedActivations::quantize_per_token(&x, m, k, b)),
        (b, ActScales::Block) => Input::Int(QuantizedActivations::quantize_per_block(&x, m, k, b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        assert_eq!("576x1536".parse::<Shape>(), Ok(Shape { k: 576, n: 1536 }));
        assert!("576".parse::<Shape>().is_err());
        assert!("0x5".parse::<Shape>().is_err());
        assert!("ax5".parse::<Shape>().unwrap_err().contains("ax5"));
    }

    fn summary(v: f64) -> Summary {
        Summary::of(&[v]).unwrap()
    }

    #[test]
    fn records_pick_the_right_ceiling_and_baseline() {
        let shape = Shape { k: 64, n: 32 };
        let pairs = [(Variant::F16, Isa::Scalar), (Variant::W4A8, Isa::Scalar), (Variant::W4A16, Isa::Scalar)];
        let case = |pair, m, t: f64| Case { pair, scales: ActScales::Row, shape, m, threads: 1, runs_per_sample: 1, target: 1, times: vec![t, t] };
        let cases = [case(0, 1, 4e-6), case(1, 1, 2e-6), case(0, 8, 1e-5), case(1, 8, 5e-6), case(2, 8, 2e-5)];
        let ceilings = [CeilingRecord {
            threads: 1,
            isa: "scalar".into(),
            f32_fma_gflops: summary(10.0),
            int8_gops: summary(100.0),
            mem_read_gbs: summary(1.0),
            mem_buffer_bytes: 0,
            mem_window_bytes: 0,
        }];
        let recs = records(&cases, &pairs, &ceilings);
        let get = |v: &str, m: usize| recs.iter().find(|r| r.variant == v && r.m == m).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs();

        // M = 1: weight bytes / time / bandwidth. f16: 64*32*2 B in 4 us = 1.024 GB/s.
        let r = get("f16", 1);
        assert_eq!((r.ceiling, r.weight_bytes), ("mem-read", 4096));
        assert!(close(r.ceiling_share.unwrap(), 1.024));
        // Q4_1: 32 rows x 2 blocks x 20 B in 2 us = 0.64 GB/s; twice as fast as f16.
        let r = get("w4a8", 1);
        assert_eq!(r.weight_bytes, 1280);
        assert!(close(r.ceiling_share.unwrap(), 0.64) && close(r.ratio_vs_f16.unwrap(), 2.0));
        // M = 8: 2*8*32*64 = 32768 ops.
        let r = get("f16", 8);
        assert!(close(r.gops, 32768.0 / 1e-5 / 1e9) && r.ceiling == "f32-fma");
        assert!(close(r.ceiling_share.unwrap(), r.gops / 10.0));
        let r = get("w4a8", 8);
        assert!(r.ceiling == "int8" && close(r.ceiling_share.unwrap(), r.gops / 100.0));
        let r = get("w4a16", 8);
        assert!(r.ceiling == "f32-fma" && close(r.ratio_vs_f16.unwrap(), 0.5));
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..50).collect();
        SplitMix(7).shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(v, s);
    }
}
