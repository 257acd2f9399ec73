//! Figure 7: thread scaling per variant. Speedup of one block's linear sites from 1 thread
//! to the most threads measured, at a decode step and at prefill.

use crate::draw::{self, e};
use crate::lookup::Records;
use crate::output::{cell, Figure};
use crate::palette;
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct Row {
    pub variant: String,
    pub m: usize,
    pub t1_s: Option<f64>,
    pub tn_s: Option<f64>,
}

impl Row {
    pub fn speedup(&self) -> Option<f64> {
        Some(self.t1_s? / self.tn_s?)
    }
}

pub struct Threads {
    pub low: usize,
    pub high: usize,
    pub ms: Vec<usize>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Threads {
    pub fn build(r: &Records) -> Threads {
        let t = r.thread_counts();
        let (low, high) = (t.first().copied().unwrap_or(1), t.last().copied().unwrap_or(1));
        let mut notes = Vec::new();
        let ms = r.decode_prefill_m();
        let mut rows = Vec::new();
        if low == high {
            notes.push(format!("the profile was measured at {low} thread{} only: no scaling to show", if low == 1 { "" } else { "s" }));
        } else {
            for v in r.variants() {
                for &m in &ms {
                    rows.push(Row {
                        variant: v.clone(),
                        m,
                        t1_s: r.block_linear_s(&v, m, low),
                        tn_s: r.block_linear_s(&v, m, high),
                    });
                }
            }
            let missing: Vec<String> = rows
                .iter()
                .filter(|x| x.speedup().is_none())
                .map(|x| format!("{} M={}", x.variant, x.m))
                .collect();
            if !missing.is_empty() {
                notes.push(format!("not measured at both thread counts, left out: {}", missing.join(", ")));
            }
        }
        let slower: Vec<String> = rows
            .iter()
            .filter(|x| x.speedup().is_some_and(|s| s < 1.0))
            .map(|x| format!("{} M={}", x.variant, x.m))
            .collect();
        if !slower.is_empty() {
            notes.push(format!(
                "below 1x (more threads slower) for {}: expected when the other cores are busy or the work per call is tiny",
                slower.join(", ")
            ));
        }
        Threads { low, high, ms, rows, notes }
    }
}

impl Figure for Threads {
    fn stem(&self) -> String {
        "fig7-thread-scaling".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let title = if self.low == self.high {
            format!("Thread scaling: only {} thread{} measured", self.low, if self.low == 1 { "" } else { "s" })
        } else {
            format!("Thread scaling: speedup of one block's linear sites, {} → {} threads", self.low, self.high)
        };
        let body = draw::frame(root, &title, &self.notes)?;
        let mut variants: Vec<&str> = self.rows.iter().filter(|r| r.speedup().is_some()).map(|r| r.variant.as_str()).collect();
        variants.dedup();
        if variants.is_empty() {
            let msg = if self.low == self.high {
                format!("measured at {} thread{} only\nrun `agq profile` with more thread counts to see scaling", self.low, if self.low == 1 { "" } else { "s" })
            } else {
                "no variant measured at both thread counts".to_string()
            };
            return draw::empty_message(&body, &msg);
        }
        let n = variants.len();
        let ideal = self.high as f64 / self.low as f64;
        let ymax = self.rows.iter().filter_map(|r| r.speedup()).fold(ideal, f64::max) * 1.3;
        let (plot, legend_area) = body.split_horizontally(body.dim_in_pixel().0 as i32 - 230);
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(draw::categories(n), 0f64..ymax)
            .map_err(e)?;
        let names: Vec<String> = variants.iter().map(|s| s.to_string()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| names.get(draw::category(*v)).cloned().unwrap_or_default())
            .y_label_formatter(&|v| format!("{v:.1}×"))
            .x_desc("kernel variant")
            .y_desc(format!("speedup, {} vs {} thread{}", self.high, self.low, if self.low == 1 { "" } else { "s" }))
            .label_style(draw::font(draw::TICK))
            .axis_desc_style(draw::font(draw::LABEL))
            .draw()
            .map_err(e)?;
        let k = self.ms.len().max(1) as f64;
        let w = 0.7 / k;
        for (i, v) in variants.iter().enumerate() {
            for (j, &m) in self.ms.iter().enumerate() {
                let Some(s) = self.rows.iter().find(|r| r.variant == *v && r.m == m).and_then(|r| r.speedup()) else { continue };
                let x0 = i as f64 + 0.15 + j as f64 * w;
                let c = palette::variant(v);
                // Decode (small M) bars lighter, prefill solid: same hue, the variant's colour.
                let c = if j == 0 && self.ms.len() > 1 { c.mix(0.45) } else { c.mix(1.0) };
                chart.plotting_area().draw(&Rectangle::new([(x0, 0.0), (x0 + w * 0.92, s)], c.filled())).map_err(e)?;
                chart.plotting_area().draw(&Rectangle::new([(x0, 0.0), (x0 + w * 0.92, s)], BLACK.mix(0.6).stroke_width(1))).map_err(e)?;
                chart
                    .plotting_area()
                    .draw(&Text::new(format!("{s:.2}×"), (x0 + w * 0.05, s + ymax * 0.035), draw::font(draw::SMALL)))
                    .map_err(e)?;
            }
        }
        chart
            .draw_series(DashedLineSeries::new(vec![(0.0, ideal), (n as f64, ideal)], 10, 6, BLACK.stroke_width(2)))
            .map_err(e)?;
        let mut entries = vec![(draw::Mark::Line(BLACK), format!("ideal ({ideal:.0}×, dashed)"))];
        if self.ms.len() > 1 {
            let g = RGBColor(90, 90, 90);
            entries.push((draw::Mark::Band(g), format!("left, light: M = {}", self.ms[0])));
            entries.push((draw::Mark::Box(g), format!("right, solid: M = {}", self.ms[self.ms.len() - 1])));
        } else if let Some(m) = self.ms.first() {
            entries.push((draw::Mark::Text, format!("M = {m}")));
        }
        draw::legend(&legend_area.margin(40, 0, 0, 0), &entries)
    }

    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["variant", "m", "threads_low", "threads_high", "seconds_low", "seconds_high", "speedup"]
            .map(String::from)
            .to_vec();
        let rows = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.variant.clone(),
                    r.m.to_string(),
                    self.low.to_string(),
                    self.high.to_string(),
                    cell(r.t1_s),
                    cell(r.tn_s),
                    cell(r.speedup()),
                ]
            })
            .collect();
        (header, rows)
    }
}
