//! `agq`: the command line over the agq crates. Results go to stdout, logs and progress to
//! stderr; every failure is one line naming the file and the problem.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agq", version, about = "Activation-guided quantization for fast LLM inference on edge CPUs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Model architecture, hyper-parameters, tensors and tokenizer summary.
    Info(cmd::info::Args),
    /// This device's fingerprint: CPU, ISA features, caches, memory, perf counters.
    Device(cmd::device::Args),
    /// Time every kernel variant on the model's layer shapes against f16 and the machine's ceilings.
    Kernels(cmd::kernels::Args),
    /// Quantization plans: list and print presets, validate plan files.
    Plan(cmd::plan::Args),
    /// Collect activation statistics and static scales / channel factors on calibration text.
    Calibrate(cmd::calibrate::Args),
    /// Perplexity on a text file (llama.cpp protocol: second half of each chunk scored).
    Eval(cmd::eval::Args),
    /// Generate a continuation of a prompt, streamed to stdout.
    Generate(cmd::generate::Args),
    /// Prefill/decode throughput, llama-bench style (pp512, tg128), per plan and thread count.
    Bench(cmd::bench::Args),
    /// Per-op latency profile of this device at the model's shapes; --validate / --predict the latency predictor.
    Profile(cmd::profile::Args),
    /// Choose per-layer activation bits, kernels and pruning under a perplexity budget (validated, timed).
    Tune(cmd::tune::Args),
    /// The main job: fetch the model, profile (or reuse a profile), tune, measure, write the report folder.
    Auto(cmd::auto::Args),
    /// Figures (PNG, SVG, CSV) and index.md for one device: profile, plans, Pareto front, validation.
    Report(cmd::report::Args),
    /// Several device profiles side by side; spec-sheet devices drawn as predictions.
    Compare(cmd::compare::Args),
}

fn main() {
    // Like other Unix tools, end quietly when stdout is a closed pipe (`agq kernels | head`)
    // instead of panicking inside `println!`.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => cmd::info::run(a),
        Command::Device(a) => cmd::device::run(a),
        Command::Kernels(a) => cmd::kernels::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Profile(a) => cmd::profile::run(a),
        Command::Tune(a) => cmd::tune::run(a),
        Command::Auto(a) => cmd::auto::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Calibrate(a) => cmd::calibrate::run(a),
    };
    if let Err(e) = result {
        // One line: the context chain joined, outermost first. Many errors already print
        // their source in their own message; skip a cause the line so far already says.
        let mut msg: Vec<String> = Vec::new();
        for cause in e.chain().map(|c| c.to_string()) {
            if !msg.last().is_some_and(|prev| prev.contains(&cause)) {
                msg.push(cause);
            }
        }
        eprintln!("agq: error: {}", msg.join(": "));
        std::process::exit(1);
    }
}
