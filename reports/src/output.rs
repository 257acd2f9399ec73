//! Writing a figure: PNG and SVG from one drawing routine, the CSV of its data beside them,
//! every file through a temporary name and a rename so readers never see half a file.

use crate::draw;
use crate::error::ReportError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// A figure that can draw itself on any plotters backend.
pub trait Figure {
    /// File stem, e.g. `fig1-block-breakdown`.
    fn stem(&self) -> String;
    fn size(&self) -> (u32, u32) {
        (1280, 720)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
    /// Header and rows of the data drawn.
    fn table(&self) -> (Vec<String>, Vec<Vec<String>>);
}

/// Write `bytes` to `path` atomically (temp file in the same directory + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    runtime::plan::write_atomic(path, bytes)
        .map_err(|e| ReportError::Io { file: path.display().to_string(), source: e })
}

fn tmp_name(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Keep the extension last: the bitmap encoder picks the format from it.
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Render `fig` as `<stem>.png`, `<stem>.svg` and `<stem>.csv` in `dir`; returns the names.
pub fn render<F: Figure>(fig: &F, dir: &Path) -> Result<Vec<String>, ReportError> {
    draw::register_fonts();
    let stem = fig.stem();
    let size = fig.size();

    let png = dir.join(format!("{stem}.png"));
    let tmp = tmp_name(&png);
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        fig.draw(&root)?;
        root.present().map_err(|e| e.to_string())
    })();
    let renamed = drawn.and_then(|_| std::fs::rename(&tmp, &png).map_err(|e| e.to_string()));
    if let Err(msg) = renamed {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReportError::Draw { file: png.display().to_string(), msg });
    }

    let svg = dir.join(format!("{stem}.svg"));
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        fig.draw(&root).map_err(|msg| ReportError::Draw { file: svg.display().to_string(), msg })?;
        root.present().map_err(|e| ReportError::Draw { file: svg.display().to_string(), msg: e.to_string() })?;
    }
    write_atomic(&svg, text.as_bytes())?;

    let csv_path = dir.join(format!("{stem}.csv"));
    let (header, rows) = fig.table();
    write_atomic(&csv_path, &csv_bytes(&header, &rows).map_err(|msg| ReportError::input(csv_path.display(), msg))?)?;
    Ok(vec![format!("{stem}.png"), format!("{stem}.svg"), format!("{stem}.csv")])
}

pub fn csv_bytes(header: &[String], rows: &[Vec<String>]) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(|e| e.to_string())?;
    for r in rows {
        w.write_record(r).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// A number for a CSV cell: full precision, empty for missing.
pub fn cell(x: Option<f64>) -> String {
    x.map(|v| format!("{v}")).unwrap_or_default()
}
