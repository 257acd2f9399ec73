//! 4-bit log2 quantization of attention probabilities (method.md §3):
//! `q = clamp(round(-log2 p), 0, 15)`, `p' = 2^-q`, and `p` with `-log2 p >= 16` becomes 0.
//! Products with `2^-q` are shifts, which is why the paper uses it for P·V.

/// Code for "rounded to zero". Codes 0..=15 are `2^-q`; together with this flag that is
/// 17 states, i.e. 4 bits plus a zero mask (the design leaves the packing open; agq keeps
/// codes unpacked, one byte each).
pub const LOG2_ZERO: u8 = 16;

/// The log2 code of a probability. Non-positive and NaN inputs are zero.
#[inline]
pub fn log2_code(p: f32) -> u8 {
    if p.is_nan() || p <= 0.0 {
        return LOG2_ZERO;
    }
    let e = -p.log2();
    if e >= 16.0 {
        LOG2_ZERO
    } else {
        e.round().clamp(0.0, 15.0) as u8
    }
}

/// The probability a code stands for.
#[inline]
pub fn log2_value(code: u8) -> f32 {
    if code >= LOG2_ZERO {
        0.0
    } else {
        1.0 / (1u32 << code) as f32
    }
}

/// Codes for a row of probabilities.
pub fn log2_codes(p: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.extend(p.iter().map(|&v| log2_code(v)));
}

/// In place `p <- 2^-q`: what P·V sees when the plan asks for `log2-4`.
pub fn fake_quantize_log2(p: &mut [f32]) {
    for v in p.iter_mut() {
        *v = log2_value(log2_code(*v));
    }
}
