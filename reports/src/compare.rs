//! `agq compare`: several device profiles side by side — ceilings, per-variant kernel
//! speedups over f16, and predicted tokens/s for a plan. Spec-sheet devices (nothing
//! measured) are drawn hatched and labelled "predicted", measured ones filled.

use crate::draw::{self, e};
use crate::error::ReportError;
use crate::lookup::Records;
use crate::output::{cell, Figure};
use crate::{describe, inputs, palette, ReportSummary, Writer};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;
use profiler::predict::{Predictor, Workload};
use profiler::profile::{DeviceProfile, ModelShapes, ProfileKind};
use std::path::{Path, PathBuf};

/// One device of the comparison.
pub struct Device {
    pub name: String,
    pub file: String,
    pub profile: DeviceProfile,
}

impl Device {
    pub fn predicted(&self) -> bool {
        self.profile.kind == ProfileKind::SpecSheet
    }
    /// Axis label: name, thread count the bars use, and "spec sheet" where nothing was measured.
    pub fn label(&self) -> String {
        let t = Records::new(&self.profile).max_threads();
        let t = format!("{t} thread{}", if t == 1 { "" } else { "s" });
        if self.predicted() {
            format!("{} ({t}, spec sheet)", self.name)
        } else {
            format!("{} ({t})", self.name)
        }
    }
    fn max_ceiling(&self) -> Option<&profiler::profile::Ceiling> {
        self.profile.ceilings.iter().max_by_key(|c| c.threads)
    }
}

/// Horizontal bar panels: one row per device, several bars per row (one per series).
struct HBars {
    title: String,
    axis: String,
    devices: Vec<(String, bool)>,
    /// (series name, colour, value per device).
    series: Vec<(String, RGBColor, Vec<Option<f64>>)>,
    reference: Option<(f64, String)>,
    /// Word after the value of a spec-sheet bar (`predicted`, `spec sheet`).
    word: &'static str,
    fmt: fn(f64) -> String,
    /// Legend text for filled bars, where "filled" alone would mislead.
    solid_means: Option<&'static str>,
}

fn draw_hbars<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &HBars, legend: bool) -> Result<(), String> {
    let n = p.devices.len();
    let k = p.series.len().max(1);
    let max = p.series.iter().flat_map(|s| s.2.iter().flatten()).fold(0.0f64, |a, b| a.max(*b));
    let max = p.reference.as_ref().map(|r| r.0).unwrap_or(0.0).max(max).max(1e-9);
    // Every panel keeps the legend column so the axes of stacked panels line up.
    let (plot, side) = area.split_horizontally(area.dim_in_pixel().0 as i32 - 230);
    let mut chart = ChartBuilder::on(&plot)
        .caption(&p.title, draw::font(draw::LABEL))
        .margin(10)
        .margin_left(20)
        .x_label_area_size(45)
        .y_label_area_size(5)
        .build_cartesian_2d(0f64..max * 1.25, 0f64..n.max(1) as f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_label_formatter(&|v| draw::num(*v))
        .x_desc(p.axis.clone())
        .label_style(draw::font(draw::TICK))
        .axis_desc_style(draw::font(draw::LABEL))
        .draw()
        .map_err(e)?;
    // Each device gets one unit of height: its name on top (names can be long, so not on
    // the axis), its bars below.
    let h = 0.66 / k as f64;
    for (i, (name, predicted)) in p.devices.iter().enumerate() {
        let row = (n - 1 - i) as f64; // first device on top
        let style = draw::bold(draw::SMALL).pos(text_anchor::Pos::new(text_anchor::HPos::Left, text_anchor::VPos::Center));
        chart.plotting_area().draw(&Text::new(name.clone(), (max * 0.005, row + 0.87), style)).map_err(e)?;
        for (j, (_, c, vals)) in p.series.iter().enumerate() {
            let Some(v) = vals.get(i).copied().flatten() else { continue };
            let y1 = row + 0.76 - j as f64 * h;
            let y0 = y1 - h * 0.88;
            draw::bar(chart.plotting_area(), (0.0, y0), (v, y1), *c, *predicted)?;
            let label = if *predicted { format!("{} {}", (p.fmt)(v), p.word) } else { (p.fmt)(v) };
            let style = draw::font(draw::SMALL).pos(text_anchor::Pos::new(text_anchor::HPos::Left, text_anchor::VPos::Center));
            chart.plotting_area().draw(&Text::new(label, (v + max * 0.01, (y0 + y1) / 2.0), style)).map_err(e)?;
        }
        if i + 1 < n {
            chart
                .plotting_area()
                .draw(&PathElement::new(vec![(0.0, row), (max * 1.25, row)], RGBColor(200, 200, 200).stroke_width(1)))
                .map_err(e)?;
        }
    }
    if let Some((x, _)) = &p.reference {
        chart
            .draw_series(DashedLineSeries::new(vec![(*x, 0.0), (*x, n as f64)], 8, 5, BLACK.stroke_width(2)))
            .map_err(e)?;
    }
    if legend {
        let mut entries: Vec<(draw::Mark, String)> =
            p.series.iter().filter(|s| !s.0.is_empty()).map(|s| (draw::Mark::Box(s.1), s.0.clone())).collect();
        if let Some((_, name)) = &p.reference {
            entries.push((draw::Mark::Line(BLACK), name.clone()));
        }
        if p.devices.iter().any(|d| d.1) {
            entries.push((draw::Mark::Hatched(RGBColor(90, 90, 90)), format!("hatched: {}", p.word)));
            entries.push((draw::Mark::Text, "(spec-sheet device)".into()));
        }
        if let Some(note) = p.solid_means {
            entries.push((draw::Mark::Box(RGBColor(90, 90, 90)), note.into()));
        }
        draw::legend(&side.margin(40, 0, 0, 0), &entries)?;
    }
    Ok(())
}

/// (panel title, unit, value of a ceiling).
type Metric = (&'static str, &'static str, fn(&profiler::profile::Ceiling) -> f64);
/// (panel title, value of (threads, prefill tok/s, decode tok/s)).
type Phase = (&'static str, fn(&(usize, f64, f64)) -> f64);

/// Compare figure 1: ceilings.
pub struct Ceilings<'a> {
    pub devices: &'a [Device],
}

impl Figure for Ceilings<'_> {
    fn stem(&self) -> String {
        "compare1-ceilings".into()
    }
    fn size(&self) -> (u32, u32) {
        (1280, 200 + 3 * (110 + 90 * self.devices.len().max(1) as u32))
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = draw::frame(root, "Machine ceilings (most threads of each device)", &[])?;
        let devices: Vec<(String, bool)> = self.devices.iter().map(|d| (d.label(), d.predicted())).collect();
        let panels = body.split_evenly((3, 1));
        let metrics: [Metric; 3] = [
            ("DRAM read bandwidth", "GB/s", |c| c.dram_read_gbs),
            ("f32 FMA peak", "GFLOP/s", |c| c.f32_gflops),
            ("INT8 multiply-add peak", "GOP/s", |c| c.int8_gops),
        ];
        for (i, (name, unit, f)) in metrics.iter().enumerate() {
            let vals = self.devices.iter().map(|d| d.max_ceiling().map(f)).collect();
            let series = self.devices.iter().enumerate().map(|(j, _)| j).collect::<Vec<_>>();
            let _ = series;
            let hb = HBars {
                title: name.to_string(),
                axis: unit.to_string(),
                devices: devices.clone(),
                series: vec![(String::new(), palette::device(i), vals)],
                reference: None,
                word: "spec sheet",
                fmt: draw::num,
                solid_means: Some("solid: measured"),
            };
            draw_hbars(&panels[i], &hb, i == 0)?;
        }
        Ok(())
    }
    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["device", "kind", "threads", "dram_read_gbs", "f32_gflops", "int8_gops"].map(String::from).to_vec();
        let mut rows = Vec::new();
        for d in self.devices {
            for c in &d.profile.ceilings {
                rows.push(vec![
                    d.name.clone(),
                    if d.predicted() { "spec-sheet" } else { "measured" }.into(),
                    c.threads.to_string(),
                    format!("{}", c.dram_read_gbs),
                    format!("{}", c.f32_gflops),
                    format!("{}", c.int8_gops),
                ]);
            }
        }
        (header, rows)
    }
}

/// The default model's shapes (SmolLM2-135M), for comparisons with no measured profile.
pub fn default_shapes() -> ModelShapes {
    ModelShapes {
        name: "SmolLM2-135M-Instruct (default shapes)".into(),
        sha256: String::new(),
        arch: "llama".into(),
        n_layer: 30,
        d_model: 576,
        n_head: 9,
        n_kv_head: 3,
        head_dim: 64,
        d_ff: 1536,
        vocab: 49152,
        ctx: 8192,
    }
}

/// Seconds of one decoder layer (all ops) with `variant` at every linear site, composed by
/// the profiler's predictor: measured medians for measured profiles, its roofline model for
/// spec-sheet ones.
pub fn layer_s(pr: &Predictor, variant: &str, m: usize, threads: usize) -> Result<f64, String> {
    let (w, lp) = crate::figures::breakdown::layer_for(variant).ok_or_else(|| format!("unknown variant {variant}"))?;
    let kv = if m > 1 { m } else { 512 };
    pr.layer(w, &lp, m, kv, threads).map(|ops| ops.values().sum()).map_err(|e| e.to_string())
}

fn predictor(d: &Device, shapes: &ModelShapes) -> Predictor {
    match &d.profile.model {
        Some(_) => Predictor::new(&d.profile).expect("profile has shapes"),
        None => Predictor::with_shapes(&d.profile, shapes.clone()),
    }
}

/// Compare figure 2: per-variant speedup of one block's linear sites over f16.
pub struct Speedups<'a> {
    pub devices: &'a [Device],
    pub shapes: ModelShapes,
    pub ms: Vec<usize>,
    pub variants: Vec<String>,
    /// [m][variant][device] -> (speedup, predicted)
    pub values: Vec<Vec<Vec<Option<f64>>>>,
    pub notes: Vec<String>,
}

impl<'a> Speedups<'a> {
    pub fn build(devices: &'a [Device]) -> Speedups<'a> {
        let mut notes = Vec::new();
        let shapes = devices.iter().find_map(|d| d.profile.model.clone()).unwrap_or_else(|| {
            notes.push("no profile names model shapes: spec-sheet estimates use SmolLM2-135M's".into());
            default_shapes()
        });
        let mut ms: Vec<usize> = devices
            .iter()
            .filter(|d| !d.predicted())
            .flat_map(|d| Records::new(&d.profile).decode_prefill_m())
            .collect();
        ms.sort_unstable();
        ms.dedup();
        if ms.len() > 2 {
            ms = vec![ms[0], ms[ms.len() - 1]];
        }
        if ms.is_empty() {
            ms = vec![1, 512];
        }
        let mut variants: Vec<String> = devices
            .iter()
            .flat_map(|d| Records::new(&d.profile).variants())
            .filter(|v| v != "f16")
            .collect();
        if devices.iter().any(|d| d.predicted()) {
            variants.extend(["w4a16", "w4a8", "w4a4-packed"].map(String::from));
        }
        // Attention and the other ops are in every bar: this is the whole layer.
        variants.sort_by_key(|v| palette::variant_rank(v));
        variants.dedup();
        let mut failures = std::collections::BTreeSet::new();
        let values = ms
            .iter()
            .map(|&m| {
                variants
                    .iter()
                    .map(|v| {
                        devices
                            .iter()
                            .map(|d| {
                                let pr = predictor(d, &shapes);
                                let t = Records::new(&d.profile).max_threads();
                                match (layer_s(&pr, "f16", m, t), layer_s(&pr, v, m, t)) {
                                    (Ok(a), Ok(b)) if b > 0.0 => Some(a / b),
                                    (Err(e), _) | (_, Err(e)) => {
                                        failures.insert(format!("{}: {e}", d.name));
                                        None
                                    }
                                    _ => None,
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        for d in devices.iter().filter(|d| !d.predicted()) {
            let have = Records::new(&d.profile).variants();
            let missing: Vec<&str> = variants.iter().filter(|v| !have.contains(v)).map(|v| v.as_str()).collect();
            if !missing.is_empty() {
                notes.push(format!("{}: not in its profile: {}", d.name, missing.join(", ")));
                failures.retain(|f: &String| !f.starts_with(&format!("{}:", d.name)));
            }
        }
        if !failures.is_empty() {
            let n = failures.len();
            let first: Vec<String> = failures.into_iter().take(2).collect();
            notes.push(format!("{n} more bar(s) missing, e.g. {}", first.join("; ")));
        }
        if devices.iter().any(|d| d.predicted()) {
            notes.push("spec-sheet speedups are the predictor's roofline estimates, not measurements".into());
        }
        Speedups { devices, shapes, ms, variants, values, notes }
    }
}

impl Figure for Speedups<'_> {
    fn stem(&self) -> String {
        "compare2-speedup-over-f16".into()
    }
    fn size(&self) -> (u32, u32) {
        let rows = self.devices.len().max(1) as u32 * self.variants.len().max(1) as u32;
        (1280, 150 + self.ms.len() as u32 * (110 + 30 * rows + 40 * self.devices.len().max(1) as u32))
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = draw::frame(root, "Speedup of one decoder layer over f16, by kernel variant (most threads)", &self.notes)?;
        let devices: Vec<(String, bool)> = self.devices.iter().map(|d| (d.label(), d.predicted())).collect();
        let panels = body.split_evenly((self.ms.len(), 1));
        for (i, &m) in self.ms.iter().enumerate() {
            let series = self
                .variants
                .iter()
                .enumerate()
                .map(|(j, v)| (v.clone(), palette::variant(v), self.values[i][j].clone()))
                .collect();
            let hb = HBars {
                title: if m == 1 { "decode step, M = 1".into() } else { format!("prefill, M = {m}") },
                axis: "speedup over f16 (×)".into(),
                devices: devices.clone(),
                series,
                reference: Some((1.0, "f16 = 1×".into())),
                word: "predicted",
                fmt: |v| format!("{v:.2}×"),
                solid_means: Some("solid: measured ops"),
            };
            draw_hbars(&panels[i], &hb, true)?;
        }
        Ok(())
    }
    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["device", "kind", "m", "variant", "speedup_over_f16"].map(String::from).to_vec();
        let mut rows = Vec::new();
        for (i, &m) in self.ms.iter().enumerate() {
            for (j, v) in self.variants.iter().enumerate() {
                for (k, d) in self.devices.iter().enumerate() {
                    rows.push(vec![
                        d.name.clone(),
                        if d.predicted() { "predicted" } else { "measured" }.into(),
                        m.to_string(),
                        v.clone(),
                        cell(self.values[i][j][k]),
                    ]);
                }
            }
        }
        (header, rows)
    }
}

/// Draw the comparison of `profiles` into `out_dir` and write its `index.md`. `plan` is the
/// plan (file or preset) whose end-to-end tokens/s is predicted per device (default `w4a8`).
pub fn write_compare(profiles: &[PathBuf], out_dir: &Path, plan: Option<PathBuf>) -> Result<ReportSummary, ReportError> {
    if profiles.is_empty() {
        return Err(ReportError::Usage("compare needs at least one device profile".into()));
    }
    let mut devices = Vec::new();
    for p in profiles {
        let profile = inputs::read_profile(p)?;
        let mut name = profile.device.slug.clone();
        if name.is_empty() {
            name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        }
        devices.push(Device { name, file: p.display().to_string(), profile });
    }
    // Two profiles of one device (e.g. two runs): tell them apart by file name.
    for i in 0..devices.len() {
        if devices.iter().filter(|d| d.name == devices[i].name).count() > 1 {
            let stem = Path::new(&devices[i].file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            devices[i].name = format!("{} [{}]", devices[i].name, stem);
        }
    }
    crate::create_dir(out_dir)?;
    let mut w = Writer::new(out_dir);
    let list: Vec<String> = devices
        .iter()
        .map(|d| format!("- `{}` ({}): {}", d.name, d.file, describe::device(&d.profile)))
        .collect();

    let c1 = Ceilings { devices: &devices };
    w.add(
        &c1,
        "1. Machine ceilings",
        "DRAM read bandwidth, f32 FMA peak and INT8 multiply-add peak of each device at its largest thread \
         count. Measured devices: the profiler's microbenchmarks; spec-sheet devices (hatched): the published \
         figures their profile cites."
            .into(),
        &[],
    )?;
    let c2 = Speedups::build(&devices);
    w.add(
        &c2,
        "2. Kernel speedup over f16",
        format!(
            "Time of one whole decoder layer with f16 weights and float activations divided by its time with \
             each integer kernel variant at the four linear sites (attention and the other ops in float in both), \
             at a decode step (KV 512) and at prefill (KV = M), at each device's largest thread count, at the \
             shapes of {}. Measured devices: the profile's medians composed by the profiler's predictor. \
             Spec-sheet devices (hatched, \"predicted\"): the predictor's roofline model of the published \
             ceilings.",
            c2.shapes.name
        ),
        &c2.notes.clone(),
    )?;
    let c3 = Throughput::build(&devices, plan.as_deref())?;
    w.add(&c3, &c3.title(), c3.caption(), &c3.notes.clone())?;
    let preamble = format!("Devices:\n\n{}\n\nHatched bars are predicted (spec-sheet devices), filled bars come from measured profiles.", list.join("\n"));
    w.finish("agq compare", &preamble)
}

/// Prompt and generated tokens of the throughput comparison (llama-bench's pp512 / tg128).
pub const PROMPT_TOKENS: usize = 512;
pub const GEN_TOKENS: usize = 128;

/// Compare figure 3: predicted prefill and decode tokens/s of one plan per device.
pub struct Throughput<'a> {
    pub devices: &'a [Device],
    pub plan_label: String,
    /// Per device: (threads, prefill tokens/s, decode tokens/s).
    pub values: Vec<Option<(usize, f64, f64)>>,
    pub notes: Vec<String>,
}

impl<'a> Throughput<'a> {
    pub fn build(devices: &'a [Device], plan: Option<&Path>) -> Result<Throughput<'a>, ReportError> {
        let spec = plan.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("w4a8"));
        let mut notes = Vec::new();
        let mut values = Vec::new();
        let mut label = String::new();
        for d in devices {
            let n_layer = d.profile.model.as_ref().map(|m| m.n_layer).unwrap_or(default_shapes().n_layer);
            let p = inputs::read_plan(&spec, Some(n_layer))?;
            label = p.label.clone();
            let threads = Records::new(&d.profile).max_threads();
            match predict_tokens_per_s(d, &p.plan, threads) {
                Ok(v) => values.push(Some((threads, v.0, v.1))),
                Err(msg) => {
                    notes.push(format!("{}: no prediction: {msg}", d.name));
                    values.push(None);
                }
            }
        }
        Ok(Throughput { devices, plan_label: label, values, notes })
    }

    pub fn title(&self) -> String {
        format!("3. Predicted tokens/s of plan {}", self.plan_label)
    }

    pub fn caption(&self) -> String {
        format!(
            "Prefill ({PROMPT_TOKENS}-token prompt) and decode ({GEN_TOKENS} generated tokens) throughput of the plan \
             `{}` on each device at its largest thread count, as the profiler's latency predictor computes it from \
             the device profile: from measured op times for measured devices, from the published ceilings for \
             spec-sheet devices (hatched). Every bar here is a prediction; `agq bench` measures.",
            self.plan_label
        )
    }
}

/// (prefill tokens/s, decode tokens/s) the predictor gives for `plan` on `profile`.
fn predict_tokens_per_s(d: &Device, plan: &runtime::plan::Plan, threads: usize) -> Result<(f64, f64), String> {
    let w = Workload { prompt_tokens: PROMPT_TOKENS, gen_tokens: GEN_TOKENS, threads };
    let p = predictor(d, &default_or_own_shapes(d)).predict(plan, &w).map_err(|e| e.to_string())?;
    if !(p.prefill_s > 0.0 && p.decode_s > 0.0) {
        return Err("zero predicted time".into());
    }
    Ok((PROMPT_TOKENS as f64 / p.prefill_s, GEN_TOKENS as f64 / p.decode_s))
}

fn default_or_own_shapes(d: &Device) -> ModelShapes {
    d.profile.model.clone().unwrap_or_else(default_shapes)
}

impl Figure for Throughput<'_> {
    fn stem(&self) -> String {
        "compare3-predicted-tokens-per-s".into()
    }
    fn size(&self) -> (u32, u32) {
        (1280, 200 + 2 * (110 + 90 * self.devices.len().max(1) as u32))
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let title = format!("Predicted throughput of plan {} (each device at its most threads)", self.plan_label);
        let body = draw::frame(root, &title, &self.notes)?;
        if self.values.iter().all(|v| v.is_none()) {
            return draw::empty_message(&body, "no device has a prediction");
        }
        let devices: Vec<(String, bool)> = self.devices.iter().map(|d| (d.label(), d.predicted())).collect();
        let panels = body.split_evenly((2, 1));
        let phases: [Phase; 2] = [
            ("prefill, tokens/s", |v| v.1),
            ("decode, tokens/s", |v| v.2),
        ];
        for (i, (name, f)) in phases.iter().enumerate() {
            let hb = HBars {
                title: format!("{name} ({})", if i == 0 { format!("{PROMPT_TOKENS}-token prompt") } else { format!("{GEN_TOKENS} tokens") }),
                axis: "tokens/s (predicted)".into(),
                devices: devices.clone(),
                series: vec![(String::new(), palette::plan(&self.plan_label), self.values.iter().map(|v| v.as_ref().map(f)).collect())],
                reference: None,
                word: "predicted",
                fmt: |v| format!("{v:.0}"),
                solid_means: Some("solid: from measured ops"),
            };
            draw_hbars(&panels[i], &hb, i == 0)?;
        }
        Ok(())
    }
    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["device", "kind", "plan", "threads", "prompt_tokens", "gen_tokens", "prefill_tokens_per_s", "decode_tokens_per_s"]
            .map(String::from)
            .to_vec();
        let rows = self
            .devices
            .iter()
            .zip(&self.values)
            .map(|(d, v)| {
                vec![
                    d.name.clone(),
                    if d.predicted() { "spec-sheet" } else { "measured" }.into(),
                    self.plan_label.clone(),
                    v.map(|x| x.0.to_string()).unwrap_or_default(),
                    PROMPT_TOKENS.to_string(),
                    GEN_TOKENS.to_string(),
                    cell(v.map(|x| x.1)),
                    cell(v.map(|x| x.2)),
                ]
            })
            .collect();
        (header, rows)
    }
}
