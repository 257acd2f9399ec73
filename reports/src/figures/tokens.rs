//! Figure 5: tokens kept after each layer under each plan's pruning schedule, for a prompt
//! of the profile's prefill length, counted with the runtime's own selection rule.

use crate::draw::{self, e};
use crate::inputs::NamedPlan;
use crate::output::Figure;
use crate::palette;
use plotters::coord::Shift;
use plotters::prelude::*;
use runtime::prune::PruneState;

pub struct Series {
    pub label: String,
    /// Per layer: (tokens in, tokens kept, of those at INT4).
    pub layers: Vec<(usize, usize, usize)>,
}

pub struct Tokens {
    pub prompt: usize,
    pub series: Vec<Series>,
    pub notes: Vec<String>,
}

/// Row counts through the layers. Which tokens go depends on attention, how many does not:
/// `PruneState::select` drops `round(prune * prunable)` whatever the scores, so constant
/// scores give the exact counts.
pub fn kept_per_layer(plan: &runtime::plan::Plan, prompt: usize) -> Vec<(usize, usize, usize)> {
    let mut st = PruneState::new(prompt, 0..prompt);
    let mut out = Vec::new();
    for l in &plan.layers {
        let n_in = st.n_rows();
        let sel = st.select(&vec![0.0; n_in], l.prune, if l.low_bit_sites().is_empty() { 0.0 } else { l.low_bit });
        st.apply(&sel);
        out.push((n_in, st.n_rows(), st.low_bit().iter().filter(|b| **b).count()));
    }
    out
}

impl Tokens {
    pub fn build(plans: &[NamedPlan], prompt: usize) -> Tokens {
        let mut notes = Vec::new();
        let series: Vec<Series> =
            plans.iter().map(|p| Series { label: p.label.clone(), layers: kept_per_layer(&p.plan, prompt) }).collect();
        if !plans.iter().any(|p| p.plan.prunes()) {
            notes.push("no plan prunes tokens: every line stays at the prompt length".into());
        }
        Tokens { prompt, series, notes }
    }
}

impl Figure for Tokens {
    fn stem(&self) -> String {
        "fig5-tokens-kept".into()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let title = format!("Tokens kept per layer, prompt of {} tokens", self.prompt);
        let body = draw::frame(root, &title, &self.notes)?;
        let n = self.series.iter().map(|s| s.layers.len()).max().unwrap_or(0);
        if n == 0 {
            return draw::empty_message(&body, "no plans given");
        }
        let (plot, side) = body.split_horizontally(body.dim_in_pixel().0 as i32 - 250);
        let mut entries = Vec::new();
        let mut chart = ChartBuilder::on(&plot)
            .margin(15)
            .x_label_area_size(55)
            .y_label_area_size(85)
            .build_cartesian_2d(0f64..(n - 1).max(1) as f64, 0f64..self.prompt as f64 * 1.08)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(n.min(16))
            .x_label_formatter(&|v| format!("{}", v.round() as usize))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("layer")
            .y_desc("tokens after the layer")
            .label_style(draw::font(draw::TICK))
            .axis_desc_style(draw::font(draw::LABEL))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        let mut any_low = false;
        for (i, s) in self.series.iter().enumerate() {
            let c = palette::plan(&s.label);
            // Offset coinciding lines by a pixel's worth so every plan stays visible.
            let dy = i as f64 * self.prompt as f64 * 0.004;
            let pts: Vec<(f64, f64)> = s.layers.iter().enumerate().map(|(l, t)| (l as f64, t.1 as f64 + dy)).collect();
            chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(3))).map_err(e)?;
            entries.push((draw::Mark::Line(c), format!("{}: kept", s.label)));
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled()))).map_err(e)?;
            if s.layers.iter().any(|t| t.2 > 0) {
                any_low = true;
                let low: Vec<(f64, f64)> = s.layers.iter().enumerate().map(|(l, t)| (l as f64, t.2 as f64)).collect();
                chart.draw_series(DashedLineSeries::new(low, 8, 5, c.stroke_width(2))).map_err(e)?;
                entries.push((draw::Mark::Dashed(c), format!("{}: at INT4", s.label)));
            }
        }
        let _ = any_low;
        draw::legend(&side.margin(40, 0, 0, 0), &entries)
    }

    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["plan", "layer", "prompt_tokens", "tokens_in", "tokens_kept", "int4_tokens"].map(String::from).to_vec();
        let mut rows = Vec::new();
        for s in &self.series {
            for (l, t) in s.layers.iter().enumerate() {
                rows.push(vec![
                    s.label.clone(),
                    l.to_string(),
                    self.prompt.to_string(),
                    t.0.to_string(),
                    t.1.to_string(),
                    t.2.to_string(),
                ]);
            }
        }
        (header, rows)
    }
}
