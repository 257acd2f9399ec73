//! `agq bench`: prefill and decode throughput in llama-bench's shape (same test names and
//! record fields), per plan and thread count, each record tagged with the device fingerprint.

use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use profiler::device::DeviceFingerprint;
use runtime::bench::{mean_stddev, Test};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file.
    #[arg(long, short, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Prompt lengths to test (comma-separated; 0 = no prefill test).
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "512")]
    pub n_prompt: Vec<usize>,
    /// Decode lengths to test (comma-separated; 0 = no decode test).
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128")]
    pub n_gen: Vec<usize>,
    /// Thread counts (comma-separated).
    #[arg(short = 't', long = "threads", value_delimiter = ',', default_value = "2")]
    pub threads: Vec<usize>,
    /// Timed repetitions per test (after one untimed warm-up).
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Plans: presets or plan files (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "fp16,w4a16")]
    pub plan: Vec<String>,
    /// Calibration statistics for plans with static per-tensor scales (default: the plan's).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "csv", "json", "jsonl"])]
    pub output: String,
}

/// One result, with llama-bench's field names.
#[derive(Serialize)]
pub struct Record {
    pub model_filename: String,
    pub model_sha256: String,
    pub model_n_params: u64,
    pub plan: String,
    pub n_threads: usize,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub test: String,
    pub test_time: String,
    pub avg_ns: u64,
    pub stddev_ns: u64,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ns: Vec<u64>,
    pub samples_ts: Vec<f64>,
    pub device: DeviceFingerprint,
}

pub fn run(args: Args) -> Result<()> {
    if args.reps == 0 {
        return Err(anyhow!("-r must be at least 1"));
    }
    if let Some(t) = args.threads.iter().find(|&&t| t == 0) {
        return Err(anyhow!("-t {t}: thread counts must be at least 1"));
    }
    let mut tests: Vec<Test> = args.n_prompt.iter().filter(|&&n| n > 0).map(|&n| Test::Prompt(n)).collect();
    tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| Test::Gen(n)));
    if tests.is_empty() {
        return Err(anyhow!("nothing to run: -p and -n are all 0"));
    }
    let device = DeviceFingerprint::detect();
    let mut records = Vec::new();
    let total = (args.plan.len() * args.threads.len() * tests.len() * args.reps) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} runs  {msg}").expect("valid template"));
    let out_md = args.output == "md";
    if out_md {
        println!("| model | plan | threads | test | t/s |");
        println!("| --- | --- | ---: | ---: | ---: |");
    }
    for plan in &args.plan {
        let l = super::eval::load(&args.model, plan, args.calib.as_deref(), runtime::plan::exec::Prunable::All)?;
        let n_params = l.model.blocks.iter().map(|b| (b.qkv.n() * b.qkv.k() + b.o.n() * b.o.k() + b.gate_up.n() * b.gate_up.k() + b.down.n() * b.down.k()) as u64).sum::<u64>()
            + (l.model.lm_head.n() * l.model.lm_head.k()) as u64;
        for &threads in &args.threads {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start the thread pool")?;
            for &test in &tests {
                bar.set_message(format!("{} {} t={threads}", l.plan_name, test.name()));
                let done = bar.position();
                let samples_ns = pool
                    .install(|| runtime::bench::run(&l.model, test, args.reps, &*l.hooks, |r| bar.set_position(done + r as u64)))
                    .with_context(|| format!("{} {}", l.plan_name, test.name()))?;
                let samples_ts: Vec<f64> = samples_ns.iter().map(|&ns| test.tokens() as f64 * 1e9 / ns as f64).collect();
                let (avg_ns, sd_ns) = mean_stddev(&samples_ns.iter().map(|&v| v as f64).collect::<Vec<_>>());
                let (avg_ts, sd_ts) = mean_stddev(&samples_ts);
                let rec = Record {
                    model_filename: args.model.display().to_string(),
                    model_sha256: l.sha256.clone(),
                    model_n_params: n_params,
                    plan: l.plan_name.clone(),
                    n_threads: threads,
                    n_prompt: if let Test::Prompt(n) = test { n } else { 0 },
                    n_gen: if let Test::Gen(n) = test { n } else { 0 },
                    test: test.name(),
                    test_time: now_utc(),
                    avg_ns: avg_ns.round() as u64,
                    stddev_ns: sd_ns.round() as u64,
                    avg_ts,
                    stddev_ts: sd_ts,
                    samples_ns,
                    samples_ts,
                    device: device.clone(),
                };
                bar.suspend(|| emit_streaming(&args.output, &rec));
                records.push(rec);
            }
        }
    }
    bar.finish_and_clear();
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&records)?);
    }
    Ok(())
}

/// md, csv and jsonl print each record as soon as it is measured; json prints the array at the end.
fn emit_streaming(format: &str, r: &Record) {
    let model = std::path::Path::new(&r.model_filename).file_name().map_or(r.model_filename.clone(), |n| n.to_string_lossy().into_owned());
    match format {
        "md" => println!("| {} | {} | {} | {} | {:.2} ± {:.2} |", model, r.plan, r.n_threads, r.test, r.avg_ts, r.stddev_ts),
        "jsonl" => println!("{}", serde_json::to_string(r).expect("records serialize")),
        "csv" => {
            static HEADER: std::sync::Once = std::sync::Once::new();
            HEADER.call_once(|| {
                println!("model_filename,model_sha256,plan,n_threads,n_prompt,n_gen,test,test_time,avg_ns,stddev_ns,avg_ts,stddev_ts,samples_ns,samples_ts,device_slug")
            });
            let join = |v: Vec<String>| v.join(" ");
            println!(
                "\"{}\",{},\"{}\",{},{},{},{},{},{},{},{:.6},{:.6},\"{}\",\"{}\",{}",
                r.model_filename.replace('"', "\"\""),
                r.model_sha256,
                r.plan.replace('"', "\"\""),
                r.n_threads,
                r.n_prompt,
                r.n_gen,
                r.test,
                r.test_time,
                r.avg_ns,
                r.stddev_ns,
                r.avg_ts,
                r.stddev_ts,
                join(r.samples_ns.iter().map(|v| v.to_string()).collect()),
                join(r.samples_ts.iter().map(|v| format!("{v:.6}")).collect()),
                r.device.slug
            );
        }
        _ => {}
    }
}

/// ISO-8601 UTC time without a date crate (civil-from-days).
fn now_utc() -> String {
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
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
