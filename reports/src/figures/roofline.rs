//! Figure 2: kernel roofline. Each variant's achieved throughput at each linear site,
//! against the device's measured DRAM bandwidth and f32 / INT8 compute ceilings, at a
//! decode step (M = 1) and at prefill (largest M).

use crate::draw::{self, e};
use crate::lookup::{self, Records};
use crate::output::{cell, Figure};
use crate::palette;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

pub struct Point {
    pub variant: String,
    pub op: String,
    pub m: usize,
    pub ops: f64,
    pub bytes: f64,
    pub seconds: f64,
}

impl Point {
    pub fn intensity(&self) -> f64 {
        self.ops / self.bytes
    }
    pub fn gops(&self) -> f64 {
        self.ops / self.seconds / 1e9
    }
}

pub struct Roofline {
    pub threads: usize,
    pub bandwidth_gbs: Option<f64>,
    pub f32_gflops: Option<f64>,
    pub int8_gops: Option<f64>,
    pub ms: Vec<usize>,
    pub points: Vec<Point>,
    pub variants: Vec<String>,
    pub notes: Vec<String>,
}

impl Roofline {
    pub fn build(r: &Records) -> Roofline {
        let threads = r.max_threads();
        let mut notes = Vec::new();
        let ceiling = r.profile.ceilings.iter().find(|c| c.threads == threads);
        if ceiling.is_none() {
            notes.push(format!("no ceilings measured at {threads} threads; roofs left out"));
        }
        let ms = r.decode_prefill_m();
        let variants = r.variants();
        let mut points = Vec::new();
        match &r.profile.model {
            None => notes.push("the profile names no model shapes, so operations per call are unknown".into()),
            Some(shapes) => {
                for v in &variants {
                    for &m in &ms {
                        for op in lookup::LINEAR {
                            if let (Some(rec), Some((ops, bytes))) =
                                (r.linear(op, v, m, threads), lookup::work(op, v, m, shapes))
                            {
                                if rec.median_s > 0.0 {
                                    points.push(Point { variant: v.clone(), op: op.into(), m, ops, bytes, seconds: rec.median_s });
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(bw) = ceiling.map(|c| c.dram_read_gbs) {
            let above = points.iter().filter(|p| p.gops() > bw * p.intensity() * 1.05).count();
            if above > 0 {
                let cache = r
                    .profile
                    .device
                    .last_level_cache_bytes()
                    .map(|b| format!(" (largest cache {} MiB)", b >> 20))
                    .unwrap_or_default();
                notes.push(format!(
                    "{above} point(s) lie above the DRAM slope: their weights were served from cache{cache}, not DRAM"
                ));
            }
        }
        Roofline {
            threads,
            bandwidth_gbs: ceiling.map(|c| c.dram_read_gbs).filter(|x| *x > 0.0),
            f32_gflops: ceiling.map(|c| c.f32_gflops).filter(|x| *x > 0.0),
            int8_gops: ceiling.map(|c| c.int8_gops).filter(|x| *x > 0.0),
            ms,
            points,
            variants,
            notes,
        }
    }
}

impl Figure for Roofline {
    fn stem(&self) -> String {
        "fig2-roofline".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let title = format!("Kernel roofline: linear sites at {} thread{}", self.threads, if self.threads == 1 { "" } else { "s" });
        let body = draw::frame(root, &title, &self.notes)?;
        if self.points.is_empty() {
            return draw::empty_message(&body, "no linear-site records with model shapes in this profile");
        }
        let peaks = [self.f32_gflops, self.int8_gops];
        let ai_lo = self.points.iter().map(|p| p.intensity()).fold(f64::MAX, f64::min);
        let ai_hi = self.points.iter().map(|p| p.intensity()).fold(0.0, f64::max);
        let y_lo = self.points.iter().map(|p| p.gops()).fold(f64::MAX, f64::min);
        let y_hi = self.points.iter().map(|p| p.gops()).chain(peaks.iter().flatten().copied()).fold(0.0, f64::max);
        let (x0, x1) = (ai_lo * 0.4, ai_hi * 2.0);
        let (y0, y1) = (y_lo * 0.5, y_hi * 1.8);
        let mut chart = ChartBuilder::on(&body)
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(90)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| draw::num(*v))
            .y_label_formatter(&|v| draw::num(*v))
            .x_desc("arithmetic intensity (operations per byte of weights + activations)")
            .y_desc("achieved throughput (GOP/s)")
            .label_style(draw::font(draw::TICK))
            .axis_desc_style(draw::font(draw::LABEL))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;

        // Roofs: min(bandwidth x intensity, peak), sampled on the log axis.
        let xs: Vec<f64> = (0..=200).map(|i| x0 * (x1 / x0).powf(i as f64 / 200.0)).collect();
        let roofs = [("f32 FMA peak", self.f32_gflops, RGBColor(90, 90, 90)), ("INT8 peak", self.int8_gops, BLACK)];
        for (name, peak, color) in roofs {
            let (Some(peak), Some(bw)) = (peak, self.bandwidth_gbs) else { continue };
            let pts: Vec<(f64, f64)> = xs.iter().map(|&x| (x, (bw * x).min(peak))).filter(|p| p.1 >= y0).collect();
            let style = if name.starts_with("f32") { color.stroke_width(2) } else { color.stroke_width(3) };
            if name.starts_with("f32") {
                chart.draw_series(DashedLineSeries::new(pts, 10, 6, style)).map_err(e)?;
            } else {
                chart.draw_series(LineSeries::new(pts, style)).map_err(e)?;
            }
            let above = draw::font(draw::SMALL).pos(text_anchor::Pos::new(text_anchor::HPos::Right, text_anchor::VPos::Bottom));
            chart
                .plotting_area()
                .draw(&(EmptyElement::at((x1, peak)) + Text::new(format!("{name} {} GOP/s", draw::num(peak)), (-10, -4), above)))
                .map_err(e)?;
        }
        if let Some(bw) = self.bandwidth_gbs {
            // On the slope, left of and above the line, a third of the way up in log terms.
            let peak = self.f32_gflops.or(self.int8_gops).unwrap_or(y1);
            let (xs0, xs1) = ((y0 / bw).max(x0), (peak / bw).min(x1));
            let x = xs0 * (xs1 / xs0).powf(0.4);
            let left = draw::font(draw::SMALL).pos(text_anchor::Pos::new(text_anchor::HPos::Right, text_anchor::VPos::Bottom));
            chart
                .plotting_area()
                .draw(&(EmptyElement::at((x, bw * x)) + Text::new(format!("DRAM {} GB/s", draw::num(bw)), (-6, -6), left)))
                .map_err(e)?;
        }

        for v in &self.variants {
            let c = palette::variant(v);
            let pts: Vec<&Point> = self.points.iter().filter(|p| &p.variant == v).collect();
            if pts.is_empty() {
                continue;
            }
            let m_small = self.ms.first().copied().unwrap_or(1);
            chart
                .draw_series(pts.iter().map(|p| {
                    let at = (p.intensity(), p.gops());
                    if p.m == m_small {
                        EmptyElement::at(at) + Circle::new((0, 0), 7, c.filled())
                    } else {
                        EmptyElement::at(at) + Circle::new((0, 0), 7, c.stroke_width(3))
                    }
                }))
                .map_err(e)?
                .label(v.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 6, c.filled()));
        }
        if let (Some(&a), Some(&b)) = (self.ms.first(), self.ms.last()) {
            let dark = RGBColor(60, 60, 60);
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(e)?
                .label(format!("filled: M = {a}"))
                .legend(move |(x, y)| Circle::new((x + 8, y), 6, dark.filled()));
            if a != b {
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                    .map_err(e)?
                    .label(format!("ring: M = {b}"))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 6, dark.stroke_width(3)));
            }
        }
        draw::series_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    }

    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = [
            "variant", "op", "m", "threads", "ops", "bytes", "intensity_ops_per_byte", "seconds", "gops",
            "dram_read_gbs", "f32_gflops", "int8_gops",
        ]
        .map(String::from)
        .to_vec();
        let rows = self
            .points
            .iter()
            .map(|p| {
                vec![
                    p.variant.clone(),
                    p.op.clone(),
                    p.m.to_string(),
                    self.threads.to_string(),
                    format!("{}", p.ops),
                    format!("{}", p.bytes),
                    format!("{}", p.intensity()),
                    format!("{}", p.seconds),
                    format!("{}", p.gops()),
                    cell(self.bandwidth_gbs),
                    cell(self.f32_gflops),
                    cell(self.int8_gops),
                ]
            })
            .collect();
        (header, rows)
    }
}
