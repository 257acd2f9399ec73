//! Figure 3: the Pareto front. Perplexity against end-to-end latency for the tuned plans,
//! with the presets and `fp16` marked. Measured latency where the tuner measured it,
//! otherwise the predicted one, drawn hollow.

use crate::draw::{self, e};
use crate::inputs::ParetoRow;
use crate::output::{cell, Figure};
use crate::palette;
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct Pareto {
    pub rows: Vec<ParetoRow>,
    pub notes: Vec<String>,
}

/// The latency plotted for a row and whether it was measured.
pub fn latency(r: &ParetoRow) -> Option<(f64, bool)> {
    r.measured_e2e_s.map(|s| (s, true)).or(r.predicted_e2e_s.map(|s| (s, false)))
}

/// Rows on the lower-left front (no other row both faster and lower perplexity).
pub fn front(rows: &[ParetoRow]) -> Vec<usize> {
    let pts: Vec<(usize, f64, f64)> =
        rows.iter().enumerate().filter_map(|(i, r)| Some((i, latency(r)?.0, r.ppl?))).collect();
    let mut f: Vec<(usize, f64, f64)> = pts
        .iter()
        .filter(|a| !pts.iter().any(|b| (b.1 <= a.1 && b.2 < a.2) || (b.1 < a.1 && b.2 <= a.2)))
        .copied()
        .collect();
    f.sort_by(|a, b| a.1.total_cmp(&b.1));
    f.into_iter().map(|p| p.0).collect()
}

impl Pareto {
    pub fn build(rows: Vec<ParetoRow>) -> Pareto {
        let mut notes = Vec::new();
        let unplotted: Vec<&str> =
            rows.iter().filter(|r| r.ppl.is_none() || latency(r).is_none()).map(|r| r.name.as_str()).collect();
        if !unplotted.is_empty() {
            notes.push(format!("no perplexity or latency, not plotted: {}", unplotted.join(", ")));
        }
        if rows.iter().any(|r| r.measured_e2e_s.is_none() && r.predicted_e2e_s.is_some()) {
            notes.push("hollow markers: latency predicted from the device profile, not measured".into());
        }
        Pareto { rows, notes }
    }

    /// Perplexity cap: a collapsed plan (thousands) would flatten every other point, so
    /// points above 2x the best (or fp16) perplexity are drawn at the top edge.
    fn off_scale(&self) -> (f64, Vec<(&ParetoRow, f64, bool, f64)>) {
        let pts = self.plotted();
        let best = pts.iter().map(|p| p.3).fold(f64::MAX, f64::min);
        let base = pts.iter().find(|p| p.0.name == "fp16").map(|p| p.3).unwrap_or(best);
        let cap = base.min(best) * 2.0;
        let off: Vec<_> = pts.into_iter().filter(|p| p.3 > cap).collect();
        if off.is_empty() {
            (f64::MAX, off)
        } else {
            (cap, off)
        }
    }

    fn plotted(&self) -> Vec<(&ParetoRow, f64, bool, f64)> {
        self.rows
            .iter()
            .filter_map(|r| {
                let (l, measured) = latency(r)?;
                Some((r, l, measured, r.ppl?))
            })
            .filter(|p| p.1 > 0.0 && p.3 > 0.0)
            .collect()
    }
}

impl Figure for Pareto {
    fn stem(&self) -> String {
        "fig3-pareto".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let pts = self.plotted();
        let (cap, off) = self.off_scale();
        let mut notes = self.notes.clone();
        if !off.is_empty() {
            let names: Vec<String> = off.iter().map(|p| format!("{} ({})", p.0.name, draw::num(p.3))).collect();
            notes.push(format!("perplexity above {} drawn at the top edge (▲): {}", draw::num(cap), names.join(", ")));
        }
        let body = draw::frame(root, "Perplexity vs end-to-end latency: tuned plans and presets", &notes)?;
        if pts.is_empty() {
            return draw::empty_message(&body, "no row of the Pareto CSV has both perplexity and latency");
        }
        let shown: Vec<_> = pts.iter().filter(|p| p.3 <= cap).collect();
        let (l0, l1) = (pts.iter().map(|p| p.1).fold(f64::MAX, f64::min), pts.iter().map(|p| p.1).fold(0.0, f64::max));
        let p0 = shown.iter().map(|p| p.3 - p.0.ppl_stderr.unwrap_or(0.0)).fold(f64::MAX, f64::min);
        let mut p1 = shown.iter().map(|p| p.3 + p.0.ppl_stderr.unwrap_or(0.0)).fold(0.0, f64::max);
        if !off.is_empty() {
            p1 = cap;
        }
        let p0 = if p0 == f64::MAX { cap * 0.5 } else { p0 };
        let xr = (l1 - l0).max(l1 * 0.05);
        let yr = (p1 - p0).max(p1 * 0.02);
        let y_top = p1 + 0.12 * yr;
        let (plot, side) = body.split_horizontally(body.dim_in_pixel().0 as i32 - 250);
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .margin_top(25)
            .x_label_area_size(55)
            .y_label_area_size(85)
            .build_cartesian_2d((l0 - 0.08 * xr).max(0.0)..l1 + 0.12 * xr, (p0 - 0.1 * yr)..y_top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| draw::num(*v))
            .y_label_formatter(&|v| draw::num(*v))
            .x_desc("end-to-end latency (s): prefill + decode")
            .y_desc("perplexity (lower is better)")
            .label_style(draw::font(draw::TICK))
            .axis_desc_style(draw::font(draw::LABEL))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        let navy = palette::TUNED;
        let line: Vec<(f64, f64)> = front(&self.rows)
            .iter()
            .filter_map(|&i| Some((latency(&self.rows[i])?.0, self.rows[i].ppl?)))
            .filter(|p| p.1 <= cap)
            .collect();
        chart.draw_series(LineSeries::new(line, navy.mix(0.6).stroke_width(2))).map_err(e)?;
        let mut entries = vec![(draw::Mark::Line(navy), "Pareto front".to_string())];
        for p in &shown {
            if let Some(se) = p.0.ppl_stderr.filter(|s| *s > 0.0) {
                let c = if p.0.kind == "tuned" { navy } else { palette::plan(&p.0.name) };
                chart
                    .plotting_area()
                    .draw(&PathElement::new(vec![(p.1, p.3 - se), (p.1, p.3 + se)], c.stroke_width(1)))
                    .map_err(e)?;
            }
        }
        for p in &pts {
            let tuned = p.0.kind == "tuned";
            let c = if tuned { navy } else { palette::plan(&p.0.name) };
            let style = if p.2 { c.filled() } else { c.stroke_width(2) };
            let y = p.3.min(y_top);
            let at = (p.1, if p.3 > cap { y_top } else { y });
            let size = if p.0.name == "fp16" { 11 } else if tuned { 6 } else { 9 };
            if tuned && p.3 <= cap {
                chart.plotting_area().draw(&Circle::new(at, size, style)).map_err(e)?;
            } else {
                chart.plotting_area().draw(&TriangleMarker::new(at, size, style)).map_err(e)?;
            }
            if !tuned || p.3 > cap {
                let dy = if p.3 > cap { 8 } else { -24 };
                chart
                    .plotting_area()
                    .draw(&(EmptyElement::at(at) + Text::new(if p.3 > cap { format!("{} ({}, off scale)", p.0.name, draw::num(p.3)) } else { p.0.name.clone() }, (8, dy), draw::font(draw::SMALL).color(&c))))
                    .map_err(e)?;
            }
        }
        if pts.iter().any(|p| p.0.kind == "tuned") {
            entries.push((draw::Mark::Dot(navy), "tuned plan".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in pts.iter().filter(|p| p.0.kind == "preset") {
            if seen.insert(p.0.name.clone()) {
                let base = if p.0.name == "fp16" { " (baseline)" } else { "" };
                entries.push((draw::Mark::Triangle(palette::plan(&p.0.name)), format!("preset {}{base}", p.0.name)));
            }
        }
        if pts.iter().any(|p| !p.2) {
            entries.push((draw::Mark::Ring(RGBColor(60, 60, 60)), "hollow: latency predicted".into()));
        }
        entries.push((draw::Mark::Text, "bars: ± 1 standard error".into()));
        draw::legend(&side.margin(40, 0, 0, 0), &entries)
    }

    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["name", "kind", "e2e_s", "e2e_measured", "ppl", "ppl_stderr", "on_front"].map(String::from).to_vec();
        let f = front(&self.rows);
        let rows = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let l = latency(r);
                vec![
                    r.name.clone(),
                    r.kind.clone(),
                    cell(l.map(|x| x.0)),
                    l.map(|x| x.1.to_string()).unwrap_or_default(),
                    cell(r.ppl),
                    cell(r.ppl_stderr),
                    f.contains(&i).to_string(),
                ]
            })
            .collect();
        (header, rows)
    }
}
