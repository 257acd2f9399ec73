//! Figure 6: the predictor checked against measurement. Predicted vs measured latency per
//! plan and phase with the ±10% band, plus the additivity check (sum of the ops' times vs
//! one whole block).

use crate::draw::{self, e};
use crate::inputs::{ParetoRow, ValidationReport};
use crate::output::Figure;
use crate::palette;
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct Case {
    pub label: String,
    /// Plan name that picks the colour (the block's plan for additivity cases).
    pub plan: String,
    /// `prefill`, `decode`, `e2e` or `additivity`.
    pub phase: String,
    pub predicted_s: f64,
    pub measured_s: f64,
}

impl Case {
    pub fn error_pct(&self) -> f64 {
        (self.predicted_s - self.measured_s) / self.measured_s * 100.0
    }
}

pub struct Validation {
    pub cases: Vec<Case>,
    pub title: String,
    /// Workload lines shown under the legend.
    pub subtitle: Vec<String>,
    pub notes: Vec<String>,
}

impl Validation {
    /// From the validation JSON if given, else from the Pareto rows the tuner measured.
    pub fn build(v: Option<&ValidationReport>, pareto: Option<&[ParetoRow]>) -> Option<Validation> {
        let mut cases = Vec::new();
        let mut notes = Vec::new();
        let title;
        let mut subtitle = Vec::new();
        if let Some(v) = v {
            for c in &v.cases {
                cases.push(Case {
                    label: c.plan.clone(),
                    plan: c.plan.clone(),
                    phase: c.phase.clone(),
                    predicted_s: c.predicted_s,
                    measured_s: c.measured_s,
                });
            }
            for a in &v.additivity {
                cases.push(Case {
                    label: format!("block {} M={} KV={} t={}", a.variant, a.m, a.kv, a.threads),
                    plan: a.variant.clone(),
                    phase: "additivity".into(),
                    predicted_s: a.sum_of_ops_s,
                    measured_s: a.block_s,
                });
            }
            title = format!("Predicted vs measured latency: {:.0}% of plan cases within ±10%", v.share_within_10pct);
            subtitle = vec![
                String::new(),
                format!("prompt {} tokens,", v.prompt_tokens),
                format!("{} generated,", v.gen_tokens),
                format!("{} thread{}", v.threads, if v.threads == 1 { "" } else { "s" }),
            ];
        } else {
            for r in pareto.unwrap_or(&[]) {
                let pairs = [
                    ("prefill", r.predicted_prefill_s, r.measured_prefill_s),
                    ("decode", r.predicted_decode_s, r.measured_decode_s),
                ];
                for (phase, p, m) in pairs {
                    if let (Some(p), Some(m)) = (p, m) {
                        cases.push(Case { label: r.name.clone(), plan: r.name.clone(), phase: phase.into(), predicted_s: p, measured_s: m });
                    }
                }
            }
            if cases.is_empty() {
                return None;
            }
            notes.push("no validation JSON given: cases are the Pareto CSV's measured plans".into());
            let within = cases.iter().filter(|c| c.error_pct().abs() <= 10.0).count();
            title = format!(
                "Predicted vs measured latency: {within} of {} cases within ±10%",
                cases.len()
            );
        }
        let bad = cases.iter().filter(|c| !(c.predicted_s > 0.0 && c.measured_s > 0.0)).count();
        if bad > 0 {
            notes.push(format!("{bad} case(s) with a zero or missing time are not drawn"));
        }
        cases.retain(|c| c.predicted_s > 0.0 && c.measured_s > 0.0);
        Some(Validation { cases, title, subtitle, notes })
    }
}

const GREY: RGBColor = RGBColor(160, 160, 160);
const DARK: RGBColor = RGBColor(60, 60, 60);

/// The ±10% band, the diagonal and the cases, on either kind of axes; `(a, b)` is the span
/// of the diagonal in display units.
fn points<DB: DrawingBackend, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    area: &DrawingArea<DB, Cartesian2d<X, Y>>,
    cases: &[&Case],
    f: f64,
    (a, b): (f64, f64),
    additivity: bool,
) -> Result<(), String> {
    let xs: Vec<f64> = (0..=60).map(|i| a * (b / a).powf(i as f64 / 60.0)).collect();
    let band: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(xs.iter().map(|&x| (x, x * 1.1)))
        .chain(xs.iter().rev().map(|&x| (x, x * 0.9)))
        .filter(|p| p.0 >= a)
        .collect();
    area.draw(&Polygon::new(band, GREY.mix(0.3).filled())).map_err(e)?;
    area.draw(&PathElement::new(xs.iter().map(|&x| (x, x)).collect::<Vec<_>>(), BLACK.stroke_width(1))).map_err(e)?;
    for k in cases {
        let at = (k.measured_s * f, k.predicted_s * f);
        let _ = additivity;
        let c = palette::plan(&k.plan);
        match k.phase.as_str() {
            "decode" => area.draw(&(EmptyElement::at(at) + TriangleMarker::new((0, 0), 9, c.filled()))),
            "additivity" => area.draw(&(EmptyElement::at(at) + Rectangle::new([(-6, -6), (6, 6)], c.stroke_width(2)))),
            _ => area.draw(&(EmptyElement::at(at) + Circle::new((0, 0), 7, c.filled()))),
        }
        .map_err(e)?;
    }
    Ok(())
}

impl Figure for Validation {
    fn stem(&self) -> String {
        "fig6-predicted-vs-measured".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let body = draw::frame(root, &self.title, &self.notes)?;
        if self.cases.is_empty() {
            return draw::empty_message(&body, "no case with both a predicted and a measured time");
        }
        let (plots, side) = body.split_horizontally(body.dim_in_pixel().0 as i32 - 270);
        let plans: Vec<&Case> = self.cases.iter().filter(|c| c.phase != "additivity").collect();
        let add: Vec<&Case> = self.cases.iter().filter(|c| c.phase == "additivity").collect();
        // Plan cases and the additivity check live at different scales (seconds vs a block's
        // milliseconds): one panel each, so the ±10% band stays visible in both.
        let panels: Vec<(&str, Vec<&Case>)> =
            [("plans", plans), ("additivity: one block", add)].into_iter().filter(|p| !p.1.is_empty()).collect();
        let areas = plots.split_evenly((1, panels.len()));
        for ((name, cases), area) in panels.iter().zip(&areas) {
            let lo = cases.iter().map(|c| c.predicted_s.min(c.measured_s)).fold(f64::MAX, f64::min);
            let hi = cases.iter().map(|c| c.predicted_s.max(c.measured_s)).fold(0.0, f64::max);
            let (unit, f) = draw::time_unit(hi);
            let (a, b) = (lo * f / 1.35, hi * f * 1.35);
            let additivity = name.starts_with("additivity");
            let xd = if additivity { format!("whole block, measured ({unit})") } else { format!("measured ({unit})") };
            let yd = if additivity { format!("sum of its ops ({unit})") } else { format!("predicted ({unit})") };
            let mut builder = ChartBuilder::on(area);
            builder.caption(*name, draw::font(draw::LABEL)).margin(15).x_label_area_size(55).y_label_area_size(80);
            // Linear axes from zero when the times span less than a decade (the band is then a
            // clean wedge); log axes when they span more.
            if b / a < 10.0 {
                let top = hi * f * 1.15;
                let mut chart = builder.build_cartesian_2d(0f64..top, 0f64..top).map_err(e)?;
                draw::numeric_mesh(&mut chart, &xd, &yd, RGBColor(235, 235, 235))?;
                points(chart.plotting_area(), cases, f, (top * 1e-3, top), additivity)?;
            } else {
                let mut chart = builder.build_cartesian_2d((a..b).log_scale(), (a..b).log_scale()).map_err(e)?;
                draw::numeric_mesh(&mut chart, &xd, &yd, RGBColor(240, 240, 240))?;
                points(chart.plotting_area(), cases, f, (a, b), additivity)?;
            }
        }
        let (grey, dark) = (GREY, DARK);
        let mut entries = vec![
            (draw::Mark::Band(grey), "±10% band".to_string()),
            (draw::Mark::Line(BLACK), "y = x".to_string()),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.cases {
            if !c.plan.is_empty() && seen.insert(c.plan.clone()) {
                entries.push((draw::Mark::Box(palette::plan(&c.plan)), c.plan.clone()));
            }
        }
        for (p, mark, name) in [
            ("prefill", draw::Mark::Dot(dark), "prefill"),
            ("decode", draw::Mark::Triangle(dark), "decode"),
            ("e2e", draw::Mark::Dot(dark), "end to end"),
            ("additivity", draw::Mark::Square(dark), "block: ops vs whole"),
        ] {
            if self.cases.iter().any(|c| c.phase == p) {
                entries.push((mark, name.to_string()));
            }
        }
        for line in &self.subtitle {
            entries.push((draw::Mark::Text, line.clone()));
        }
        draw::legend(&side.margin(40, 0, 0, 0), &entries)
    }

    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["label", "plan", "phase", "predicted_s", "measured_s", "error_pct"].map(String::from).to_vec();
        let rows = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.label.clone(),
                    c.plan.clone(),
                    c.phase.clone(),
                    format!("{}", c.predicted_s),
                    format!("{}", c.measured_s),
                    format!("{:.2}", c.error_pct()),
                ]
            })
            .collect();
        (header, rows)
    }
}
