//! `agq bench`: prefill and decode throughput in llama-bench's shape (same test names and
//! record fields), per plan and thread count, each record tagged with the device fingerprint.

use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use profiler::device::DeviceFingerprint;
use runtime::bench::{depth_suffix, mean_stddev, Test};
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
    /// KV-cache depths (comma-separated, llama-bench's `-d`): each test runs after an untimed
    /// prefill of this many tokens, so `-d 512 -n 128` times decode over a 512-token cache.
    #[arg(short = 'd', long = "n-depth", value_delimiter = ',', default_value = "0")]
    pub n_depth: Vec<usize>,
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
    /// For plans that prune tokens: print the tokens each layer keeps after the first `-p`
    /// prefill, and that prefill's time with token dropping off and on (same plan otherwise,
    /// `-r` interleaved runs each, first `-t`).
    #[arg(long)]
    pub prune_report: bool,
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
    pub n_depth: usize,
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
    let tests: Vec<(Test, usize)> = args.n_depth.iter().flat_map(|&d| tests.iter().map(move |&t| (t, d))).collect();
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
    let mut reports = Vec::new();
    for plan in &args.plan {
        let l = super::eval::load(&args.model, plan, args.calib.as_deref(), runtime::plan::exec::Prunable::All)?;
        // A test past the trained context would run (RoPE extrapolates) but time a model
        // state no user gets, so it is refused like `agq eval --ctx`.
        let n_ctx = l.model.config.n_ctx_train;
        if let Some((t, d)) = tests.iter().find(|(t, d)| d + t.tokens() > n_ctx) {
            return Err(anyhow!(
                "{}: -d {d} plus {} tokens of {} exceeds the model's context of {n_ctx} tokens",
                args.model.display(),
                t.tokens(),
                t.name()
            ));
        }
        if args.prune_report {
            if let (Some(&n), Some(&t)) = (args.n_prompt.iter().find(|&&n| n > 0), args.threads.first()) {
                bar.set_message(format!("{} pruning report", l.plan_name));
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().context("cannot start the thread pool")?;
                let r = pool.install(|| -> Result<_> {
                    let Some((off, on)) = runtime::bench::pruning_savings(&l.model, n, args.reps, &*l.hooks)? else { return Ok(None) };
                    Ok(Some((runtime::bench::kept_per_layer(&l.model, n, &*l.hooks)?, off, on)))
                })?;
                if let Some((kept, off, on)) = r {
                    reports.push(prune_report(&l.plan_name, n, t, &kept, &off, &on));
                }
            }
        }
        let n_params = l.model.blocks.iter().map(|b| (b.qkv.n() * b.qkv.k() + b.o.n() * b.o.k() + b.gate_up.n() * b.gate_up.k() + b.down.n() * b.down.k()) as u64).sum::<u64>()
            + (l.model.lm_head.n() * l.model.lm_head.k()) as u64;
        for &threads in &args.threads {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("cannot start the thread pool")?;
            for &(test, depth) in &tests {
                let name = format!("{}{}", test.name(), depth_suffix(depth));
                bar.set_message(format!("{} {name} t={threads}", l.plan_name));
                let done = bar.position();
                let samples_ns = pool
                    .install(|| runtime::bench::run_at(&l.model, test, depth, args.reps, &*l.hooks, |r| bar.set_position(done + r as u64)))
                    .with_context(|| format!("{} {name}", l.plan_name))?;
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
                    n_depth: depth,
                    test: name,
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
    for r in reports {
        // Markdown: with md output on stdout after the table, else on stderr (keeps json/csv parseable).
        if out_md {
            print!("\n{r}");
        } else {
            eprint!("{r}");
        }
    }
    Ok(())
}

/// The pruning table of one plan: tokens per layer and the prefill time saved.
fn prune_report(plan: &str, n: usize, threads: usize, kept: &[usize], off: &[u64], on: &[u64]) -> String {
    let med = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        (v[v.len() / 2] as f64 / 1e6, v[0] as f64 / 1e6, v[v.len() - 1] as f64 / 1e6)
    };
    let ((m_off, lo_off, hi_off), (m_on, lo_on, hi_on)) = (med(off), med(on));
    let mut s = format!("pruning: {plan}, pp{n}, {threads} threads: tokens that reach each layer (its KV cache length)\n\n| layer | tokens | share |\n| ---: | ---: | ---: |\n");
    for (l, &k) in kept.iter().enumerate() {
        s += &format!("| {l} | {k} | {:.1}% |\n", 100.0 * k as f64 / n as f64);
    }
    let total: usize = kept.iter().sum();
    s += &format!(
        "\nmean {:.1} tokens per layer ({:.1}% of {n}); prefill {m_on:.1} ms with pruning [{lo_on:.1}-{hi_on:.1}], {m_off:.1} ms without [{lo_off:.1}-{hi_off:.1}] (median [min-max] of {} interleaved runs): {:.1}% saved\n",
        total as f64 / kept.len().max(1) as f64,
        100.0 * total as f64 / (kept.len().max(1) * n) as f64,
        on.len(),
        100.0 * (1.0 - m_on / m_off)
    );
    s
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
                println!("model_filename,model_sha256,plan,n_threads,n_prompt,n_gen,n_depth,test,test_time,avg_ns,stddev_ns,avg_ts,stddev_ts,samples_ns,samples_ts,device_slug")
            });
            let join = |v: Vec<String>| v.join(" ");
            println!(
                "\"{}\",{},\"{}\",{},{},{},{},\"{}\",{},{},{},{:.6},{:.6},\"{}\",\"{}\",{}",
                r.model_filename.replace('"', "\"\""),
                r.model_sha256,
                r.plan.replace('"', "\"\""),
                r.n_threads,
                r.n_prompt,
                r.n_gen,
                r.n_depth,
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
