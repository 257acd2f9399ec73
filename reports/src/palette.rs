//! The one colour table: a kernel variant, a plan, an op or a bit width has the same colour
//! in every figure, so readers can match them across a report and across reports.

use plotters::style::RGBColor;

/// Fallbacks for names the table does not know, picked by a stable hash of the name.
const EXTRA: [RGBColor; 6] = [
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(57, 59, 121),
    RGBColor(99, 121, 57),
];

fn hashed(name: &str) -> RGBColor {
    let h = name.bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    EXTRA[h as usize % EXTRA.len()]
}

/// Kernel variants (registry names), in the order figures list them.
pub const VARIANT_ORDER: [&str; 7] = ["f16", "w4a16", "w4a8", "w4a4-packed", "w4a4-widen", "w4a4-lut", "w8a16"];

pub fn variant(name: &str) -> RGBColor {
    match name {
        "f16" => RGBColor(90, 90, 90),
        "w4a16" => RGBColor(31, 119, 180),
        "w4a8" => RGBColor(44, 160, 44),
        "w4a4-packed" => RGBColor(214, 39, 40),
        "w4a4-widen" => RGBColor(255, 127, 14),
        "w4a4-lut" => RGBColor(148, 103, 189),
        "w8a16" => RGBColor(140, 86, 75),
        _ => hashed(name),
    }
}

/// Sort key: known variants first in `VARIANT_ORDER`, then the rest by name.
pub fn variant_rank(name: &str) -> (usize, String) {
    (VARIANT_ORDER.iter().position(|v| *v == name).unwrap_or(VARIANT_ORDER.len()), name.to_string())
}

/// Plans: a preset shares the colour of the kernel it mostly runs, so `w4a8` the plan and
/// `w4a8` the kernel match; tuned plans share one navy.
pub fn plan(name: &str) -> RGBColor {
    match name {
        "fp16" => variant("f16"),
        "w4a16" => variant("w4a16"),
        "w4a8" => variant("w4a8"),
        "w4a4" => variant("w4a4-packed"),
        "w4a8-trip" => RGBColor(188, 189, 34),
        "agile8" => RGBColor(23, 190, 207),
        "agile4" => RGBColor(227, 119, 194),
        _ => hashed(name),
    }
}

/// Colour of tuned plans (one family; they are told apart by position, not colour).
pub const TUNED: RGBColor = RGBColor(31, 48, 94);

/// Segments of a block's latency (figure 1).
pub fn op(name: &str) -> RGBColor {
    match name {
        "qkv" => RGBColor(102, 194, 165),
        "attention" => RGBColor(252, 141, 98),
        "o" => RGBColor(141, 160, 203),
        "gate_up" => RGBColor(231, 138, 195),
        "down" => RGBColor(166, 216, 84),
        "other" => RGBColor(179, 179, 179),
        _ => hashed(name),
    }
}

/// Activation bits in the plan map: float pale, INT8 the w4a8 green, INT4 the w4a4 red.
pub fn bits(b: u8) -> RGBColor {
    match b {
        16 => RGBColor(215, 215, 215),
        8 => variant("w4a8"),
        4 => variant("w4a4-packed"),
        _ => RGBColor(255, 215, 0),
    }
}

/// Devices in compare figures, by position.
pub fn device(i: usize) -> RGBColor {
    const D: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(23, 190, 207),
    ];
    D[i % D.len()]
}

pub const NOTE: RGBColor = RGBColor(160, 30, 30);
