//! Figure 1: where one decoder block's time goes, per op, for f16, w4a8 and the fastest
//! w4a4 variant (the paper's latency-profile figure), at a decode step and at prefill.

use crate::draw::{self, e};
use crate::lookup::Records;
use crate::output::Figure;
use crate::palette;
use plotters::coord::Shift;
use plotters::prelude::*;
use profiler::predict::Predictor;
use runtime::plan::{LayerPlan, Site, VariantChoice, WeightFormat};

pub const SEGMENTS: [&str; 7] = ["qkv", "attention", "o", "gate_up", "down", "quantize", "other"];

pub struct Bar {
    pub variant: String,
    /// Seconds per segment, `SEGMENTS` order.
    pub seg: Vec<f64>,
}

pub struct Panel {
    pub m: usize,
    pub kv: usize,
    pub bars: Vec<Bar>,
}

pub struct Breakdown {
    pub threads: usize,
    pub panels: Vec<Panel>,
    pub notes: Vec<String>,
}

/// The one-layer plan that runs `variant` at every linear site (attention in float).
pub fn layer_for(variant: &str) -> Option<(WeightFormat, LayerPlan)> {
    // A fixed variant decides the kernel whatever the weight format says; only `f16`
    // needs f16 weights (for the other sites' `auto`).
    let weights = if variant == "f16" { WeightFormat::F16 } else { WeightFormat::Q4_1 };
    let bits = bits_of(variant);
    let mut lp = LayerPlan::default();
    for s in Site::LINEAR {
        let sp = lp.site_mut(s);
        sp.bits = bits;
        sp.variant = VariantChoice::parse(variant).ok()?;
    }
    Some((weights, lp))
}

impl Breakdown {
    /// Per-op times of one unpruned layer from the profile, composed by the profiler's
    /// predictor (which knows how many norms, residuals and quantizations a layer runs) at
    /// measured shapes, so the bars are the profile's medians, summed per segment.
    pub fn build(r: &Records) -> Breakdown {
        let threads = r.max_threads();
        let mut notes = Vec::new();
        let ms = r.decode_prefill_m();
        let have = r.variants();
        let mut variants: Vec<String> = Vec::new();
        for v in ["f16", "w4a8"] {
            if have.iter().any(|h| h == v) {
                variants.push(v.into());
            } else {
                notes.push(format!("variant {v} is not in the profile; its bar is left out"));
            }
        }
        match ms.last().and_then(|&m| r.best_w4a4(m, threads)) {
            Some(v) => variants.push(v),
            None => notes.push("no w4a4 variant has all four linear sites measured; its bar is left out".into()),
        }
        let predictor = match Predictor::new(r.profile) {
            Ok(p) => Some(p),
            Err(e) => {
                notes.push(format!("cannot compose a layer: {e}"));
                None
            }
        };
        let kvs = r.kv_lengths();
        let max_kv = kvs.last().copied().unwrap_or(0);
        let mut panels = Vec::new();
        for &m in &ms {
            // Prefill attends over its own tokens; a decode step over the longest KV timed.
            let kv = if m > 1 { m } else { max_kv.max(1) };
            let mut bars = Vec::new();
            for v in &variants {
                let (Some(pr), Some((w, lp))) = (predictor.as_ref(), layer_for(v)) else { continue };
                match pr.layer(w, &lp, m, kv, threads) {
                    Ok(by_op) => {
                        let mut seg = vec![0.0; SEGMENTS.len()];
                        for (op, s) in by_op {
                            let i = SEGMENTS.iter().position(|x| *x == op).unwrap_or(SEGMENTS.len() - 1);
                            seg[i] += s;
                        }
                        bars.push(Bar { variant: v.clone(), seg });
                    }
                    Err(e) => notes.push(format!("{v} at M = {m}: {e}")),
                }
            }
            panels.push(Panel { m, kv, bars });
        }
        Breakdown { threads, panels, notes }
    }
}

/// Activation bits of a kernel variant, from its registry name (`w<W>a<A>[-...]`).
pub fn bits_of(variant: &str) -> u8 {
    variant
        .split('-')
        .next()
        .and_then(|v| v.split_once('a'))
        .and_then(|(_, a)| a.parse::<u8>().ok())
        .filter(|b| matches!(b, 4 | 8))
        .unwrap_or(16)
}

impl Figure for Breakdown {
    fn stem(&self) -> String {
        "fig1-block-breakdown".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let title = format!("One decoder block: latency by op ({} thread{})", self.threads, if self.threads == 1 { "" } else { "s" });
        let body = draw::frame(root, &title, &self.notes)?;
        if self.panels.is_empty() || self.panels.iter().all(|p| p.bars.is_empty()) {
            return draw::empty_message(&body, "no linear-site records for f16, w4a8 or w4a4 in this profile");
        }
        let areas = body.split_evenly((1, self.panels.len()));
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            let total = |b: &Bar| b.seg.iter().sum::<f64>();
            let max = panel.bars.iter().map(total).fold(0.0, f64::max);
            let (unit, f) = draw::time_unit(max.max(1e-9));
            let n = panel.bars.len();
            let names: Vec<String> = panel.bars.iter().map(|b| b.variant.clone()).collect();
            let caption = if panel.m == 1 {
                format!("decode step (M = 1, KV = {})", panel.kv)
            } else {
                format!("prefill (M = {}, KV = {})", panel.m, panel.kv)
            };
            let mut chart = ChartBuilder::on(area)
                .caption(caption, draw::font(draw::LABEL))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(85)
                .build_cartesian_2d(draw::categories(n), 0f64..(max * f * 1.45).max(1e-9))
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&|v| names.get(draw::category(*v)).cloned().unwrap_or_default())
                .y_label_formatter(&|v| draw::num(*v))
                .x_desc("kernel variant")
                .y_desc(format!("time per block ({unit})"))
                .label_style(draw::font(draw::TICK))
                .axis_desc_style(draw::font(draw::LABEL))
                .draw()
                .map_err(e)?;
            for (i, b) in panel.bars.iter().enumerate() {
                let mut y = 0.0;
                for (s, v) in SEGMENTS.iter().zip(&b.seg) {
                    let h = v * f;
                    if h > 0.0 {
                        draw::bar(chart.plotting_area(), (i as f64 + 0.2, y), (i as f64 + 0.8, y + h), palette::op(s), false)?;
                    }
                    y += h;
                }
                chart
                    .plotting_area()
                    .draw(&Text::new(
                        draw::num(y),
                        (i as f64 + 0.36, y + max * f * 0.06),
                        draw::font(draw::TICK),
                    ))
                    .map_err(e)?;
            }
            // Legend top to bottom in stacking order seen from the top.
            for s in SEGMENTS.iter().rev() {
                draw::legend_bar(&mut chart, s, palette::op(s), false)?;
            }
            draw::series_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
        Ok(())
    }

    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["variant", "m", "kv", "threads", "segment", "seconds"].map(String::from).to_vec();
        let mut rows = Vec::new();
        for p in &self.panels {
            for b in &p.bars {
                for (s, v) in SEGMENTS.iter().zip(&b.seg) {
                    rows.push(vec![
                        b.variant.clone(),
                        p.m.to_string(),
                        p.kv.to_string(),
                        self.threads.to_string(),
                        s.to_string(),
                        format!("{v}"),
                    ]);
                }
            }
        }
        (header, rows)
    }
}
