//! Figure 4: the plan map. A layers x sites grid coloured by activation bits (with the
//! share of INT4 low-bit tokens marked), and the pruning ratio of each layer below it.

use crate::draw::{self, e};
use crate::inputs::NamedPlan;
use crate::output::Figure;
use crate::palette;
use plotters::coord::Shift;
use plotters::prelude::*;
use runtime::plan::{Scheme, Site, SoftmaxMode};

pub struct PlanMap<'a> {
    pub index: usize,
    pub plan: &'a NamedPlan,
    pub notes: Vec<String>,
}

/// File-name-safe form of a label.
pub fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

impl PlanMap<'_> {
    fn weights(&self) -> &'static str {
        match self.plan.plan.weights {
            runtime::plan::WeightFormat::F16 => "f16",
            runtime::plan::WeightFormat::Q4_1 => "Q4_1",
        }
    }
}

impl Figure for PlanMap<'_> {
    fn stem(&self) -> String {
        format!("fig4-plan-map-{}", slug(&self.plan.label))
    }

    fn size(&self) -> (u32, u32) {
        (1280, 760)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let p = &self.plan.plan;
        let n = p.n_layer();
        let title = format!("Plan map: {} ({} layers, {} weights)", self.plan.label, n, self.weights());
        let body = draw::frame(root, &title, &self.notes)?;
        let (main, side) = body.split_horizontally(body.dim_in_pixel().0 as i32 - 240);
        let (top, bottom) = main.split_vertically((main.dim_in_pixel().1 as f64 * 0.62) as i32);
        let every = n.div_ceil(30).max(1);
        let layer_label = |v: &f64| {
            let l = draw::category(*v);
            if l.is_multiple_of(every) {
                l.to_string()
            } else {
                String::new()
            }
        };
        let rows: Vec<Site> = Site::LAYER.to_vec();
        let nrows = rows.len();
        let mut grid = ChartBuilder::on(&top)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(90)
            .build_cartesian_2d(draw::categories(n), draw::categories(nrows + 1))
            .map_err(e)?;
        let row_names: Vec<String> =
            rows.iter().map(|s| s.name().to_string()).chain(std::iter::once("softmax".into())).collect();
        grid.configure_mesh()
            .disable_mesh()
            .x_label_formatter(&layer_label)
            .y_label_formatter(&|v| row_names.get(nrows - draw::category(*v)).cloned().unwrap_or_default())
            .x_desc("layer")
            .label_style(draw::font(draw::TICK))
            .axis_desc_style(draw::font(draw::LABEL))
            .draw()
            .map_err(e)?;
        for (l, lp) in p.layers.iter().enumerate() {
            for (ri, s) in rows.iter().enumerate() {
                let sp = lp.site(*s);
                let y = (nrows - ri) as f64; // first site on top
                let (x0, x1) = (l as f64 + 0.05, l as f64 + 0.95);
                let c = palette::bits(sp.bits);
                draw::bar(grid.plotting_area(), (x0, y + 0.08), (x1, y + 0.92), c, false)?;
                if sp.bits < 16 && sp.scheme == Scheme::Tensor {
                    // Static per-tensor scales: a white bar across the cell.
                    grid.plotting_area()
                        .draw(&Rectangle::new([(x0, y + 0.42), (x1, y + 0.58)], WHITE.filled()))
                        .map_err(e)?;
                }
                if sp.bits < 16 && sp.scheme == Scheme::Group {
                    // Per-block scales: a white bar down the middle of the cell.
                    let xm = l as f64 + 0.5;
                    grid.plotting_area()
                        .draw(&Rectangle::new([(xm - 0.08, y + 0.08), (xm + 0.08, y + 0.92)], WHITE.filled()))
                        .map_err(e)?;
                }
                if lp.low_bit > 0.0 && lp.low_bit_sites().contains(s) {
                    // Share of tokens in INT4: a red band from the bottom of the cell.
                    let top_y = y + 0.08 + 0.84 * lp.low_bit;
                    draw::bar(grid.plotting_area(), (x0, y + 0.08), (x1, top_y), palette::bits(4), true)?;
                }
            }
            let c = if lp.softmax == SoftmaxMode::Log2x4 { RGBColor(120, 120, 200) } else { palette::bits(16) };
            draw::bar(grid.plotting_area(), (l as f64 + 0.05, 0.08), (l as f64 + 0.95, 0.92), c, false)?;
        }
        let entries = vec![
            (draw::Mark::Box(palette::bits(16)), "float (f16/f32)".to_string()),
            (draw::Mark::Box(palette::bits(8)), "INT8".into()),
            (draw::Mark::Box(palette::bits(4)), "INT4".into()),
            (draw::Mark::Hatched(palette::bits(4)), "INT4 token share".into()),
            (draw::Mark::Box(RGBColor(120, 120, 200)), "log2 4-bit softmax".into()),
            (draw::Mark::Text, "white stripe: static".into()),
            (draw::Mark::Text, "per-tensor scales".into()),
            (draw::Mark::Text, "white bar down: per-".into()),
            (draw::Mark::Text, "32-block (group) scales".into()),
            (draw::Mark::Text, String::new()),
            (draw::Mark::Box(RGBColor(60, 60, 60)), "pruned share".into()),
            (draw::Mark::Text, "(of incoming prunable".into()),
            (draw::Mark::Text, "tokens, lower panel)".into()),
        ];
        draw::legend(&side.margin(50, 0, 0, 0), &entries)?;

        let maxr = p.layers.iter().map(|l| l.prune.max(l.low_bit)).fold(0.0, f64::max);
        let mut bars = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(90)
            .build_cartesian_2d(draw::categories(n), 0f64..(maxr * 1.15).max(0.1))
            .map_err(e)?;
        bars.configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&layer_label)
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .x_desc("layer")
            .y_desc("ratio per layer")
            .label_style(draw::font(draw::TICK))
            .axis_desc_style(draw::font(draw::LABEL))
            .draw()
            .map_err(e)?;
        let prune_c = RGBColor(60, 60, 60);
        for (l, lp) in p.layers.iter().enumerate() {
            if lp.prune > 0.0 {
                draw::bar(bars.plotting_area(), (l as f64 + 0.1, 0.0), (l as f64 + 0.5, lp.prune), prune_c, false)?;
            }
            if lp.low_bit > 0.0 {
                draw::bar(bars.plotting_area(), (l as f64 + 0.5, 0.0), (l as f64 + 0.9, lp.low_bit), palette::bits(4), true)?;
            }
        }
        if maxr == 0.0 {
            bottom
                .draw(&Text::new("no pruning and no INT4 tokens in this plan", (130, 30), draw::font(draw::LABEL)))
                .map_err(e)?;
        }
        Ok(())
    }

    fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut header: Vec<String> = vec!["layer".into()];
        for s in Site::LAYER {
            header.push(format!("{}_bits", s.name()));
            header.push(format!("{}_scheme", s.name()));
            header.push(format!("{}_variant", s.name()));
        }
        header.extend(["softmax", "prune", "low_bit"].map(String::from));
        let p = &self.plan.plan;
        let rows = p
            .layers
            .iter()
            .enumerate()
            .map(|(l, lp)| {
                let mut r = vec![l.to_string()];
                for s in Site::LAYER {
                    let sp = lp.site(s);
                    r.push(sp.bits.to_string());
                    r.push(if sp.bits == 16 { "float" } else { sp.scheme.name() }.into());
                    r.push(sp.variant.name().to_string());
                }
                r.push(if lp.softmax == SoftmaxMode::Log2x4 { "log2-4" } else { "f32" }.into());
                r.push(format!("{}", lp.prune));
                r.push(format!("{}", lp.low_bit));
                r
            })
            .collect();
        (header, rows)
    }
}
