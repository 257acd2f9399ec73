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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => cmd::info::run(a),
        Command::Device(a) => cmd::device::run(a),
    };
    if let Err(e) = result {
        // One line: the context chain joined, outermost first.
        let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("agq: error: {}", msg.join(": "));
        std::process::exit(1);
    }
}
