//! `agq report`: one device's figures (PNG + SVG + CSV each) and an index.md, from a device
//! profile and optionally plans, the tuner's Pareto CSV and a validation JSON.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Device profile (TOML, from `agq profile`).
    #[arg(long)]
    profile: PathBuf,
    /// Plan files or preset names for the plan map and tokens-kept figures (repeatable;
    /// default: the plan files the Pareto CSV names).
    #[arg(long, num_args = 1..)]
    plan: Vec<PathBuf>,
    /// The tuner's Pareto CSV (perplexity vs latency figure).
    #[arg(long)]
    pareto: Option<PathBuf>,
    /// `agq profile --validate --json` output (predicted vs measured figure).
    #[arg(long)]
    validation: Option<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long, short)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let inputs = reports::ReportInputs { profile: a.profile, plans: a.plan, pareto: a.pareto, validation: a.validation };
    let s = reports::write_report(&inputs, &a.out)?;
    print_summary(&s);
    Ok(())
}

/// Figures written (stdout), notes and skipped figures (stderr).
pub fn print_summary(s: &reports::ReportSummary) {
    for f in &s.figures {
        println!("{}", s.out_dir.join(&f.files[0]).display());
        for n in &f.notes {
            eprintln!("note: {}: {n}", f.stem);
        }
    }
    for k in &s.skipped {
        eprintln!("not drawn: {k}");
    }
    println!("{}", s.index.display());
}
