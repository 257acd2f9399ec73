//! Reports: figures and tables drawn from profile, plan and Pareto files. Knows the file
//! schemas only, never how anything was measured.
//!
//! [`write_report`] draws one device's figures; [`write_compare`] puts several devices side
//! by side. Every figure is a PNG, an SVG and the CSV of its data, listed with a caption in
//! `index.md`.

pub mod compare;
pub mod describe;
pub mod draw;
pub mod error;
pub mod figures;
pub mod inputs;
pub mod lookup;
pub mod output;
pub mod palette;

pub use error::ReportError;

use figures::{
    breakdown::Breakdown, pareto::Pareto, plan_map::PlanMap, roofline::Roofline, threads::Threads, tokens::Tokens,
    validation::Validation,
};
use lookup::Records;
use output::{render, write_atomic, Figure};
use std::path::{Path, PathBuf};

/// What `agq report` was given.
#[derive(Clone, Debug, Default)]
pub struct ReportInputs {
    pub profile: PathBuf,
    /// Plan files or preset names.
    pub plans: Vec<PathBuf>,
    pub pareto: Option<PathBuf>,
    pub validation: Option<PathBuf>,
}

/// One figure written.
#[derive(Clone, Debug)]
pub struct FigureSummary {
    pub stem: String,
    /// File names inside the output directory (PNG, SVG, CSV).
    pub files: Vec<String>,
    pub size: (u32, u32),
    pub title: String,
    pub caption: String,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ReportSummary {
    pub out_dir: PathBuf,
    pub index: PathBuf,
    pub figures: Vec<FigureSummary>,
    /// Figures not drawn and why (a missing input).
    pub skipped: Vec<String>,
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Io { file: dir.display().to_string(), source: e })
}

/// Collects figures and their captions as they are written.
pub(crate) struct Writer<'a> {
    pub dir: &'a Path,
    pub figures: Vec<FigureSummary>,
    pub skipped: Vec<String>,
}

impl<'a> Writer<'a> {
    pub fn new(dir: &'a Path) -> Self {
        Writer { dir, figures: Vec::new(), skipped: Vec::new() }
    }

    pub fn add<F: Figure>(&mut self, fig: &F, title: &str, caption: String, notes: &[String]) -> Result<(), ReportError> {
        let files = render(fig, self.dir)?;
        self.figures.push(FigureSummary {
            stem: fig.stem(),
            files,
            size: fig.size(),
            title: title.into(),
            caption,
            notes: notes.to_vec(),
        });
        Ok(())
    }

    /// `index.md`: a heading, a preamble, then each figure with its caption and notes.
    pub fn finish(self, heading: &str, preamble: &str) -> Result<ReportSummary, ReportError> {
        let mut md = format!("# {heading}\n\n{preamble}\n");
        for f in &self.figures {
            md.push_str(&format!("\n## {}\n\n![{}]({})\n\n{}\n", f.title, f.title, f.files[0], f.caption));
            for n in &f.notes {
                md.push_str(&format!("\n> Note: {n}\n"));
            }
            md.push_str(&format!("\nFiles: [SVG]({}) · [data (CSV)]({})\n", f.files[1], f.files[2]));
        }
        if !self.skipped.is_empty() {
            md.push_str("\n## Not drawn\n\n");
            for s in &self.skipped {
                md.push_str(&format!("- {s}\n"));
            }
        }
        let index = self.dir.join("index.md");
        write_atomic(&index, md.as_bytes())?;
        Ok(ReportSummary { out_dir: self.dir.to_path_buf(), index, figures: self.figures, skipped: self.skipped })
    }
}

/// Draw the figures of one device into `out_dir` (created if missing) and write its
/// `index.md`. Figures whose input is absent are listed as not drawn; a profile with missing
/// variants or one thread count still renders, with a note saying what is missing.
pub fn write_report(inputs: &ReportInputs, out_dir: &Path) -> Result<ReportSummary, ReportError> {
    let profile = inputs::read_profile(&inputs.profile)?;
    let n_layer = profile.model.as_ref().map(|m| m.n_layer);
    let pareto = inputs.pareto.as_deref().map(inputs::read_pareto).transpose()?;
    let validation = inputs.validation.as_deref().map(inputs::read_validation).transpose()?;
    let mut plan_paths = inputs.plans.clone();
    let plans_from_csv = plan_paths.is_empty() && pareto.is_some();
    if plans_from_csv {
        plan_paths = inputs::pareto_plan_files(inputs.pareto.as_deref().unwrap(), pareto.as_deref().unwrap());
    }
    let plans = plan_paths.iter().map(|p| inputs::read_plan(p, n_layer)).collect::<Result<Vec<_>, _>>()?;
    create_dir(out_dir)?;

    let r = Records::new(&profile);
    let dev = describe::device(&profile);
    let proto = describe::protocol(&profile);
    let short = describe::protocol_short(&profile);
    let mut w = Writer::new(out_dir);

    let f1 = Breakdown::build(&r);
    let kv_note = f1.panels.iter().map(|p| format!("M = {} with KV = {}", p.m, p.kv)).collect::<Vec<_>>().join(", ");
    w.add(
        &f1,
        "1. Latency of one decoder block by op",
        format!(
            "Measured median time of each op of one decoder block on {dev}, at {} thread(s), for f16, w4a8 and the \
             fastest w4a4 variant at the same shapes ({kv_note}). qkv/o/gate_up/down are the linear sites; attention \
             is QK, softmax and PV together (float); quantize is the activation quantization of the linear inputs \
             (integer variants); other = the two RMSNorms, RoPE, SiLU and the residual adds. The profiler's \
             predictor composes the layer from the profile's records (at measured shapes these are the medians \
             themselves). The number on each bar is the block total. {short}",
            f1.threads
        ),
        &f1.notes.clone(),
    )?;

    let f2 = Roofline::build(&r);
    w.add(
        &f2,
        "2. Kernel roofline",
        format!(
            "Achieved throughput (2 operations per multiply-add, divided by the measured median time) of every \
             linear site (qkv, o, gate_up, down, lm_head) for every kernel variant on {dev}, at {} thread(s), \
             against the device's measured DRAM read bandwidth and f32 FMA / INT8 peaks. Intensity counts the \
             minimum bytes moved: the weights once (f16: 2 bytes, Q4_1: 0.625 bytes per weight), the input \
             activations at the variant's width and f32 outputs. {short}",
            f2.threads
        ),
        &f2.notes.clone(),
    )?;

    match &pareto {
        Some(rows) => {
            let f3 = Pareto::build(rows.clone());
            let text = rows.iter().find(|r| !r.ppl_text.is_empty());
            let ppl = text
                .map(|r| {
                    format!(
                        "perplexity on {}{}",
                        r.ppl_text,
                        r.ppl_chunks.map(|c| format!(" ({c} chunks)")).unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "perplexity".into());
            w.add(
                &f3,
                "3. Pareto front: perplexity vs latency",
                format!(
                    "Each point is a plan from the tuner's Pareto CSV (`{}`): {ppl} against end-to-end latency \
                     (prefill of the prompt plus decode of the generated tokens) on {dev}. Filled markers are \
                     measured latencies, hollow ones predicted from the device profile; circles are tuned plans, \
                     triangles the presets, fp16 the baseline; bars are ± one standard error of the perplexity.",
                    inputs.pareto.as_ref().unwrap().display()
                ),
                &f3.notes.clone(),
            )?;
        }
        None => w.skipped.push("3. Pareto front: no Pareto CSV given (`--pareto`)".into()),
    }

    if plans.is_empty() {
        w.skipped.push("4. Plan map and 5. tokens kept: no plans given (`--plan`)".into());
    }
    for (i, p) in plans.iter().enumerate() {
        let f4 = PlanMap { index: i, plan: p, notes: Vec::new() };
        w.add(
            &f4,
            &format!("4. Plan map: {}", p.label),
            format!(
                "The plan `{}` ({}): activation bits of every site of every layer (rows qkv, o, gate_up, down, \
                 QK, PV; last row the softmax), the share of INT4 low-importance tokens at o/gate_up/down \
                 (hatched), and below, the fraction of incoming prunable tokens each layer drops and its INT4 \
                 token share. Read from the plan file; nothing measured.",
                p.label,
                if runtime::plan::presets::NAMES.contains(&p.source.as_str()) { "built-in preset".to_string() } else { format!("file `{}`", p.source) }
            ),
            &[],
        )?;
    }
    if !plans.is_empty() {
        let prompt = r.token_counts().last().copied().filter(|&m| m > 1).unwrap_or(512);
        let f5 = Tokens::build(&plans, prompt);
        w.add(
            &f5,
            "5. Tokens kept per layer",
            format!(
                "Rows alive after each layer for a {prompt}-token prompt (the profile's prefill length) under each \
                 plan's pruning schedule, counted with the runtime's selection rule (which tokens go depends on \
                 attention, how many does not; the first and last prompt tokens are never pruned). Dashed: rows \
                 computed in INT4 at o/gate_up/down."
            ),
            &f5.notes.clone(),
        )?;
    }

    match Validation::build(validation.as_ref(), pareto.as_deref()) {
        Some(f6) => {
            let src = match (&inputs.validation, &validation) {
                (Some(p), Some(v)) => format!(
                    "the validation run `{}` (device `{}`, {} prompt + {} generated tokens, {} thread(s))",
                    p.display(),
                    v.device_slug,
                    v.prompt_tokens,
                    v.gen_tokens,
                    v.threads
                ),
                _ => format!("the measured rows of the Pareto CSV on {dev}"),
            };
            w.add(
                &f6,
                "6. Predicted vs measured latency",
                format!(
                    "Latency the profile-based predictor gave for each plan and phase against the latency measured \
                     running it, from {src}. Points inside the grey band are within ±10%. Squares (if any) test \
                     additivity: the sum of one block's op times against the whole block timed at once."
                ),
                &f6.notes.clone(),
            )?;
        }
        None => w.skipped.push(
            "6. Predicted vs measured: no validation JSON (`--validation`) and no Pareto row with both".into(),
        ),
    }

    let f7 = Threads::build(&r);
    w.add(
        &f7,
        "7. Thread scaling",
        format!(
            "Speedup of the summed median times of one block's four linear sites from {} to {} thread(s), per \
             kernel variant, on {dev}; the dashed line is linear scaling. {short}",
            f7.low, f7.high
        ),
        &f7.notes.clone(),
    )?;

    let heading = format!("agq report: {}", profile.device.slug);
    let preamble = format!(
        "Device: {dev}.\n\nModel: {}.\n\nProfile: `{}` ({}).\n\n{proto}\n\nThe machine may have been shared while \
         measuring: compare ratios within one figure rather than absolute times across reports.{}",
        describe::model(&profile),
        inputs.profile.display(),
        if profile.kind == profiler::profile::ProfileKind::Measured { "measured" } else { "spec sheet" },
        if plans_from_csv && !plans.is_empty() { "\n\nPlans: the plan files the Pareto CSV names." } else { "" }
    );
    w.finish(&heading, &preamble)
}

pub use compare::write_compare;
