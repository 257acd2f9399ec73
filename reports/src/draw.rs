//! Drawing helpers every figure shares: the embedded font, the frame (title on top, notes
//! at the bottom), bars that show whether a value is measured (filled) or predicted
//! (hatched outline), and number formatting for axes.

use crate::palette;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor;

pub const TITLE: u32 = 28;
pub const LABEL: u32 = 21;
pub const TICK: u32 = 17;
pub const SMALL: u32 = 15;

/// Plotters has no fonts of its own without fontconfig: register DejaVu Sans (embedded in
/// the binary) once, for both backends.
pub fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Oblique, dejavu::sans::oblique());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Italic, dejavu::sans::oblique());
    });
}

pub fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

pub fn bold(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().style(FontStyle::Bold).color(&BLACK)
}

pub fn e<T: std::fmt::Display>(x: T) -> String {
    x.to_string()
}

/// White background, `title` on top, `notes` (one line each, dark red) at the bottom;
/// returns the area between.
pub fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    notes: &[String],
) -> Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(e)?;
    let top = root.titled(title, bold(TITLE)).map_err(e)?;
    // Long notes wrap at roughly the width of the figure (DejaVu Sans ~0.55 em per char).
    let width_chars = (root.dim_in_pixel().0 as f64 / (SMALL as f64 * 0.56)) as usize - 10;
    let lines: Vec<String> = notes
        .iter()
        .flat_map(|n| {
            wrap(&format!("Note: {n}"), width_chars.max(40)).into_iter().enumerate().map(|(i, l)| {
                if i == 0 {
                    l
                } else {
                    format!("    {l}")
                }
            })
        })
        .collect();
    let note_h = (lines.len() as u32) * (SMALL + 7) + if lines.is_empty() { 0 } else { 8 };
    let (body, foot) = top.split_vertically(top.dim_in_pixel().1.saturating_sub(note_h) as i32);
    let style = font(SMALL).color(&palette::NOTE);
    for (i, n) in lines.iter().enumerate() {
        foot.draw(&Text::new(n.clone(), (14, 2 + i as i32 * (SMALL as i32 + 7)), style.clone())).map_err(e)?;
    }
    Ok(body)
}

/// Greedy word wrap to at most `width` characters per line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// A big centred message where a chart would be (nothing to plot).
pub fn empty_message<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, msg: &str) -> Result<(), String> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Rectangle::new([(20, 20), (w as i32 - 20, h as i32 - 20)], RGBColor(200, 200, 200).stroke_width(1)))
        .map_err(e)?;
    let style = font(LABEL).color(&palette::NOTE).pos(text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Center));
    for (i, line) in msg.lines().enumerate() {
        area.draw(&Text::new(line.to_string(), (w as i32 / 2, h as i32 / 2 + i as i32 * 30), style.clone()))
            .map_err(e)?;
    }
    Ok(())
}

/// A bar from (x0, y0) to (x1, y1) in data coordinates. Measured values are filled;
/// predicted ones are drawn as a hatched outline so they cannot be mistaken for measurements.
pub fn bar<DB: DrawingBackend, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    area: &DrawingArea<DB, Cartesian2d<X, Y>>,
    (x0, y0): (f64, f64),
    (x1, y1): (f64, f64),
    color: RGBColor,
    predicted: bool,
) -> Result<(), String> {
    if !predicted {
        area.draw(&Rectangle::new([(x0, y0), (x1, y1)], color.filled())).map_err(e)?;
        return area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.mix(0.6).stroke_width(1))).map_err(e);
    }
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.filled())).map_err(e)?;
    let (a, b) = (area.map_coordinate(&(x0, y0)), area.map_coordinate(&(x1, y1)));
    hatch(area, (a.0.min(b.0), a.1.min(b.1)), (a.0.max(b.0), a.1.max(b.1)), color)?;
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], color.stroke_width(2))).map_err(e)
}

/// Diagonal lines inside a pixel rectangle (absolute backend coordinates).
pub fn hatch<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    (l, t): (i32, i32),
    (r, b): (i32, i32),
    color: RGBColor,
) -> Result<(), String> {
    let raw = area.strip_coord_spec();
    let (bx, by) = area.get_base_pixel();
    let h = b - t;
    let mut c = l - h;
    while c < r {
        // Line y = b - (x - c), for x in [c, c + h], clipped to [l, r].
        let xa = c.max(l);
        let xb = (c + h).min(r);
        if xa < xb {
            let pa = (xa - bx, b - (xa - c) - by);
            let pb = (xb - bx, b - (xb - c) - by);
            raw.draw(&PathElement::new(vec![pa, pb], color.stroke_width(1))).map_err(e)?;
        }
        c += 7;
    }
    Ok(())
}

/// Legend entry for a bar colour (a series with no points, only a label).
pub fn legend_bar<'a, DB: DrawingBackend + 'a, X: Ranged<ValueType = f64>, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    label: &str,
    color: RGBColor,
    predicted: bool,
) -> Result<(), String> {
    chart
        .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
        .map_err(e)?
        .label(label.to_string())
        .legend(move |(x, y)| {
            let style = if predicted { color.stroke_width(2) } else { color.filled() };
            Rectangle::new([(x, y - 7), (x + 16, y + 7)], style)
        });
    Ok(())
}

/// The series legend box every figure draws the same way (only its corner differs).
pub fn series_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .label_font(font(SMALL))
        .draw()
        .map_err(e)
}

/// Axes with readable numbers and light grid lines, for linear and log axes alike.
pub fn numeric_mesh<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
    grid: RGBColor,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_label_formatter(&|v| num(*v))
        .y_label_formatter(&|v| num(*v))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(font(TICK))
        .axis_desc_style(font(LABEL))
        .light_line_style(grid)
        .draw()
        .map_err(e)
}

/// A seconds value in a readable unit for labels.
pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        return "-".into();
    }
    let a = s.abs();
    if a >= 1.0 {
        format!("{s:.2} s")
    } else if a >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// The time unit (name, factor) that makes `max_s` a number between 1 and 1000.
pub fn time_unit(max_s: f64) -> (&'static str, f64) {
    if max_s >= 1.0 {
        ("s", 1.0)
    } else if max_s >= 1e-3 {
        ("ms", 1e3)
    } else {
        ("µs", 1e6)
    }
}

/// Tick label: few significant digits, no trailing zeros, no exponent down to 1e-4.
pub fn num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1e-4 {
        // Three significant digits.
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        return format!("{v:.1e}");
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A categorical axis: `n` categories centred on 0.5, 1.5, ... with a tick at each centre
/// (label them with a formatter that maps the centre back through [`category`]).
#[derive(Clone)]
pub struct Categories {
    n: usize,
    inner: RangedCoordf64,
}

impl Ranged for Categories {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(v, limit)
    }
    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.n).map(|i| i as f64 + 0.5).collect()
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

pub fn categories(n: usize) -> Categories {
    Categories { n, inner: (0f64..n.max(1) as f64).into() }
}

/// Index of the category whose centre is `v` (for label formatters).
pub fn category(v: f64) -> usize {
    v.floor().max(0.0) as usize
}

/// A log-axis range padded to whole decades around [lo, hi].
pub fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = if lo > 0.0 && lo.is_finite() { lo } else { 1e-3 };
    let hi = if hi > lo && hi.is_finite() { hi } else { lo * 10.0 };
    (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()))
}

/// Legend marks for a legend drawn in its own area (beside a plot, never over data).
#[derive(Clone, Copy)]
pub enum Mark {
    Box(RGBColor),
    Hatched(RGBColor),
    Band(RGBColor),
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
    Ring(RGBColor),
    Triangle(RGBColor),
    Square(RGBColor),
    Text,
}

/// A legend as a column of (mark, label) in `area`, starting at its top-left.
pub fn legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[(Mark, String)]) -> Result<(), String> {
    let row = SMALL as i32 + 10;
    for (i, (m, label)) in entries.iter().enumerate() {
        let y = 14 + i as i32 * row;
        let x = 10;
        match *m {
            Mark::Box(c) => area.draw(&Rectangle::new([(x, y - 7), (x + 18, y + 7)], c.filled())).map_err(e)?,
            Mark::Band(c) => area.draw(&Rectangle::new([(x, y - 7), (x + 18, y + 7)], c.mix(0.35).filled())).map_err(e)?,
            Mark::Hatched(c) => {
                let (bx, by) = area.get_base_pixel();
                hatch(area, (bx + x, by + y - 7), (bx + x + 18, by + y + 7), c)?;
                area.draw(&Rectangle::new([(x, y - 7), (x + 18, y + 7)], c.stroke_width(2))).map_err(e)?
            }
            Mark::Line(c) => area.draw(&PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))).map_err(e)?,
            Mark::Dashed(c) => {
                area.draw(&PathElement::new(vec![(x, y), (x + 7, y)], c.stroke_width(2))).map_err(e)?;
                area.draw(&PathElement::new(vec![(x + 11, y), (x + 18, y)], c.stroke_width(2))).map_err(e)?
            }
            Mark::Dot(c) => area.draw(&Circle::new((x + 9, y), 6, c.filled())).map_err(e)?,
            Mark::Ring(c) => area.draw(&Circle::new((x + 9, y), 6, c.stroke_width(2))).map_err(e)?,
            Mark::Triangle(c) => area.draw(&TriangleMarker::new((x + 9, y), 7, c.filled())).map_err(e)?,
            Mark::Square(c) => area.draw(&Rectangle::new([(x + 3, y - 6), (x + 15, y + 6)], c.stroke_width(2))).map_err(e)?,
            Mark::Text => {}
        }
        let style = font(SMALL).pos(text_anchor::Pos::new(text_anchor::HPos::Left, text_anchor::VPos::Center));
        area.draw(&Text::new(label.clone(), (x + 28, y), style)).map_err(e)?;
    }
    Ok(())
}
