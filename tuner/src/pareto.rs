//! The Pareto CSV (read by `reports`; header fixed in CONTRACTS.md) and a per-layer text
//! picture of a plan.

use crate::latency::Latency;
use crate::TuneError;
use runtime::plan::{Plan, Site, SoftmaxMode};
use std::path::Path;

pub const HEADER: [&str; 15] = [
    "name",
    "kind",
    "plan_file",
    "budget",
    "objective",
    "predicted_prefill_s",
    "predicted_decode_s",
    "predicted_e2e_s",
    "measured_prefill_s",
    "measured_decode_s",
    "measured_e2e_s",
    "ppl",
    "ppl_stderr",
    "ppl_text",
    "ppl_chunks",
];

/// One row; `None` cells are written empty.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub name: String,
    /// `tuned` or `preset`.
    pub kind: String,
    pub plan_file: String,
    pub budget: String,
    pub objective: String,
    pub predicted: Option<Latency>,
    pub measured: Option<Latency>,
    pub ppl: Option<f64>,
    pub ppl_stderr: Option<f64>,
    pub ppl_text: String,
    pub ppl_chunks: Option<usize>,
}

fn f(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

/// Writes the CSV atomically.
pub fn write_csv(path: &Path, rows: &[Row]) -> Result<(), TuneError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| TuneError::Invalid(format!("{}: {e}", path.display()));
    w.write_record(HEADER).map_err(io)?;
    for r in rows {
        w.write_record([
            r.name.clone(),
            r.kind.clone(),
            r.plan_file.clone(),
            r.budget.clone(),
            r.objective.clone(),
            f(r.predicted.map(|l| l.prefill_s)),
            f(r.predicted.map(|l| l.decode_s)),
            f(r.predicted.map(|l| l.e2e_s())),
            f(r.measured.map(|l| l.prefill_s)),
            f(r.measured.map(|l| l.decode_s)),
            f(r.measured.map(|l| l.e2e_s())),
            f(r.ppl),
            f(r.ppl_stderr),
            r.ppl_text.clone(),
            r.ppl_chunks.map(|c| c.to_string()).unwrap_or_default(),
        ])
        .map_err(io)?;
    }
    let bytes = w.into_inner().map_err(|e| TuneError::Invalid(format!("{}: {e}", path.display())))?;
    runtime::plan::write_atomic(path, &bytes).map_err(|e| TuneError::Io { file: path.display().to_string(), source: e })
}

/// Markdown table: one line per layer with each site's activation bits and kernel,
/// attention precision and the prune ratio.
pub fn layer_table(plan: &Plan) -> String {
    let mut s = String::from("| layer | qkv | o | gate_up | down | attention | prune |\n|---:|---|---|---|---|---|---:|\n");
    for (i, l) in plan.layers.iter().enumerate() {
        let site = |x: Site| {
            let sp = l.site(x);
            let v = sp.resolve_variant(plan.weights);
            if sp.is_float() {
                format!("float ({})", v.name())
            } else {
                format!("INT{}-{} ({})", sp.bits, sp.scheme.name(), v.name())
            }
        };
        let attn = match (l.qk.bits, l.pv.bits, l.softmax) {
            (16, 16, SoftmaxMode::F32) => "float".to_string(),
            (q, p, sm) => format!("qk {q} / pv {p}{}", if sm == SoftmaxMode::Log2x4 { " / log2-4" } else { "" }),
        };
        s.push_str(&format!(
            "| {i} | {} | {} | {} | {} | {attn} | {} |\n",
            site(Site::Qkv),
            site(Site::O),
            site(Site::GateUp),
            site(Site::Down),
            if l.prune > 0.0 { format!("{:.3}", l.prune) } else { "0".into() }
        ));
    }
    s
}

/// One-paragraph summary: which layers use INT8/INT4 at which sites (and with which scale
/// scheme) and where pruning is.
pub fn layer_summary(plan: &Plan) -> String {
    let mut parts = Vec::new();
    let schemes: std::collections::BTreeSet<&str> =
        plan.layers.iter().flat_map(|l| Site::LINEAR.map(|s| l.site(s))).filter(|sp| !sp.is_float()).map(|sp| sp.scheme.name()).collect();
    if !schemes.is_empty() {
        parts.push(format!("activation scales: {}", schemes.into_iter().collect::<Vec<_>>().join(" / ")));
    }
    for bits in [8u8, 4] {
        for site in Site::LINEAR {
            let ls: Vec<usize> = plan.layers.iter().enumerate().filter(|(_, l)| l.site(site).bits == bits).map(|(i, _)| i).collect();
            if !ls.is_empty() {
                parts.push(format!("{site} INT{bits} in {} layers ({})", ls.len(), ranges(&ls)));
            }
        }
    }
    let f16: Vec<usize> = plan
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| Site::LINEAR.iter().any(|&s| l.site(s).is_float() && l.site(s).resolve_variant(plan.weights) == kernels::Variant::F16))
        .map(|(i, _)| i)
        .collect();
    if !f16.is_empty() && plan.weights != runtime::plan::WeightFormat::F16 {
        parts.push(format!("float sites on the f16 kernel in {} layers ({})", f16.len(), ranges(&f16)));
    }
    let attn: Vec<usize> = plan.layers.iter().enumerate().filter(|(_, l)| l.qk.bits == 8 || l.pv.bits == 8).map(|(i, _)| i).collect();
    if !attn.is_empty() {
        parts.push(format!("INT8 attention in {} layers ({})", attn.len(), ranges(&attn)));
    }
    let pr: Vec<usize> = plan.layers.iter().enumerate().filter(|(_, l)| l.prune > 0.0).map(|(i, _)| i).collect();
    if let Some(&first) = pr.first() {
        let keep: f64 = plan.layers.iter().map(|l| 1.0 - l.prune).product();
        parts.push(format!(
            "pruning from layer {first} ({} layers, {:.1}% of prompt tokens gone at the end)",
            pr.len(),
            (1.0 - keep) * 100.0
        ));
    }
    if parts.is_empty() {
        "all sites float (w4a16)".into()
    } else {
        parts.join("; ")
    }
}

fn ranges(v: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    out.join(", ")
}
