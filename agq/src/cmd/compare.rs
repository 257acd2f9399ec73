//! `agq compare`: several device profiles side by side (ceilings, kernel speedups over f16,
//! predicted tokens/s of a plan); spec-sheet devices are drawn hatched as predictions.

use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Device profiles (measured or spec-sheet TOML).
    #[arg(required = true)]
    profiles: Vec<PathBuf>,
    /// Plan (file or preset) whose tokens/s is predicted per device [default: w4a8].
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long, short)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let s = reports::write_compare(&a.profiles, &a.out, a.plan)?;
    super::report::print_summary(&s);
    Ok(())
}
