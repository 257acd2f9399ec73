//! Reading the report's input files: the device profile, plans, the Pareto CSV and the
//! validation JSON. Each failure names the file and what is wrong with it.

use crate::error::ReportError;
use profiler::profile::DeviceProfile;
use runtime::plan::Plan;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Layers assumed when neither the profile nor the plan file says (SmolLM2-135M).
const DEFAULT_LAYERS: usize = 30;

pub fn read_profile(path: &Path) -> Result<DeviceProfile, ReportError> {
    DeviceProfile::read(path).map_err(ReportError::Profile)
}

/// A plan with the label figures use for it.
pub struct NamedPlan {
    pub label: String,
    pub source: String,
    pub plan: Plan,
}

/// A plan file (or preset name), expanded for the profile's model (else the file's own
/// `n_layer`, else 30 layers).
pub fn read_plan(spec: &Path, n_layer: Option<usize>) -> Result<NamedPlan, ReportError> {
    let s = spec.display().to_string();
    let n = match n_layer {
        Some(n) => n,
        None if spec.exists() => {
            let text =
                std::fs::read_to_string(spec).map_err(|e| ReportError::Io { file: s.clone(), source: e })?;
            runtime::plan::file::parse(&text, &s)
                .map_err(|e| ReportError::input(&s, e))?
                .file
                .n_layer
                .unwrap_or(DEFAULT_LAYERS)
        }
        None => DEFAULT_LAYERS,
    };
    let plan = Plan::load(&s, n).map_err(|e| ReportError::Usage(e.to_string()))?;
    let label = plan.name.clone().unwrap_or_else(|| {
        spec.file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| s.clone())
    });
    Ok(NamedPlan { label, source: s, plan })
}

/// One row of the tuner's Pareto CSV (header in CONTRACTS.md); empty cells are `None`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ParetoRow {
    pub name: String,
    pub kind: String,
    pub plan_file: String,
    pub budget: String,
    pub objective: String,
    pub predicted_prefill_s: Option<f64>,
    pub predicted_decode_s: Option<f64>,
    pub predicted_e2e_s: Option<f64>,
    pub measured_prefill_s: Option<f64>,
    pub measured_decode_s: Option<f64>,
    pub measured_e2e_s: Option<f64>,
    pub ppl: Option<f64>,
    pub ppl_stderr: Option<f64>,
    pub ppl_text: String,
    pub ppl_chunks: Option<u64>,
}

/// The tuner writes the Pareto CSV; its header is defined once, there.
pub use tuner::pareto::HEADER as PARETO_HEADER;

pub fn read_pareto(path: &Path) -> Result<Vec<ParetoRow>, ReportError> {
    let file = path.display().to_string();
    let mut r = csv::Reader::from_path(path).map_err(|e| ReportError::input(&file, e))?;
    let header = r.headers().map_err(|e| ReportError::input(&file, e))?.clone();
    for want in PARETO_HEADER {
        if !header.iter().any(|h| h == want) {
            return Err(ReportError::input(&file, format!("Pareto CSV lacks column `{want}`")));
        }
    }
    let mut rows = Vec::new();
    for (i, rec) in r.deserialize::<ParetoRow>().enumerate() {
        let row = rec.map_err(|e| ReportError::input(&file, format!("row {}: {e}", i + 2)))?;
        if row.kind != "tuned" && row.kind != "preset" {
            return Err(ReportError::input(
                &file,
                format!("row {}: kind `{}` (expected `tuned` or `preset`)", i + 2, row.kind),
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The plan files a Pareto CSV names that exist, relative to the CSV's directory.
pub fn pareto_plan_files(csv: &Path, rows: &[ParetoRow]) -> Vec<PathBuf> {
    let base = csv.parent().unwrap_or(Path::new("."));
    rows.iter()
        .filter(|r| !r.plan_file.is_empty())
        .map(|r| {
            let p = Path::new(&r.plan_file);
            if p.is_absolute() || p.exists() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        })
        .filter(|p| p.exists())
        .collect()
}

pub use profiler::validate::ValidationReport;

pub fn read_validation(path: &Path) -> Result<ValidationReport, ReportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReportError::Io { file: path.display().to_string(), source: e })?;
    serde_json::from_str(&text).map_err(|e| ReportError::input(path.display(), format!("bad validation JSON: {e}")))
}
