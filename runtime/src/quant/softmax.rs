//! 4-bit log2 quantization of attention probabilities (method.md §3):
//! `q = clamp(round(-log2 p), 0, 15)`, `p' = 2^-q`, and `p` with `-log2 p >= 16` becomes 0.
//! Products with `2^-q` are shifts, which is why the paper uses it for P·V.
//!
//! Rounding stays in the log domain as method.md says (threshold `√2 · 2^-(q+1)` between
//! `2^-q` and `2^-(q+1)`). The nearest-level rule (threshold at the arithmetic midpoint
//! `0.75 · 2^-q`, least squared error per probability) was measured and not adopted: on
//! SmolLM2-135M it helped w4a8 + log2-4 with float attention (ppl 27.68 vs 28.10, 10
//! WikiText-2 test chunks) but hurt `agile8` (28.27 vs 27.91 on 10 chunks, 30.52 vs 30.22
//! on 20): per-element error is not what the renormalised P·V output depends on.

/// Code for "rounded to zero". Codes 0..=15 are `2^-q`; together with this flag that is
/// 17 states, i.e. 4 bits plus a zero mask (the design leaves the packing open; agq keeps
/// codes unpacked, one byte each).
pub const LOG2_ZERO: u8 = 16;

/// The log2 code of a probability. Non-positive and NaN inputs are zero.
///
/// Computed from the float's bits, without a `log2`: with `p = 2^E · 1.m`, `-log2 p` lies
/// in `(-E-1, -E]` and rounds to `-E - 1` exactly when `1.m > √2` (the tie `1.m = √2`
/// cannot occur in binary). One compare per probability instead of a transcendental call:
/// attention at 512 tokens quantizes millions of them.
#[inline]
pub fn log2_code(p: f32) -> u8 {
    // NaN, p <= 0 and p <= 2^-16 (where -log2 p >= 16) are all "zero".
    if p.is_nan() || p <= TWO_POW_M16 {
        return LOG2_ZERO;
    }
    let b = p.to_bits();
    let e = ((b >> 23) & 0xff) as i32 - 127; // p > 2^-16: a normal float
    let up = ((b & 0x7f_ffff) > SQRT2_MANTISSA) as i32;
    (-e - up).clamp(0, 15) as u8
}

/// `2^-16`.
const TWO_POW_M16: f32 = 1.0 / 65536.0;
/// Mantissa bits of the largest f32 below √2 (1.41421354 = 0x3FB504F3).
const SQRT2_MANTISSA: u32 = 0x35_04F3;

/// The probability a code stands for.
#[inline]
pub fn log2_value(code: u8) -> f32 {
    if code >= LOG2_ZERO {
        0.0
    } else {
        f32::from_bits((127 - code as u32) << 23)
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

/// In place `p <- 2^-q / Σ 2^-q`: the log2 probabilities P·V uses. Rounding in the log
/// domain biases the row's mass (one row's codes can sum to anywhere in about 0.7..1.4), so
/// the row is renormalized: in integer arithmetic one division of the row's output by the
/// integer sum of its shifted ones. Measured on SmolLM2-135M (10 WikiText-2 chunks):
/// w4a8 + log2-4 softmax 28.59 without renormalization, 27.89 with (w4a8: 27.33).
pub fn quantize_log2_normalized(p: &mut [f32]) {
    // Branch-free form of `log2_value(log2_code(p))`, so the loop vectorises.
    for v in p.iter_mut() {
        let b = v.to_bits();
        let e = ((b >> 23) & 0xff) as i32 - 127;
        let up = ((b & 0x7f_ffff) > SQRT2_MANTISSA) as i32;
        let c = (-e - up).clamp(0, 15) as u32;
        let q = f32::from_bits((127 - c) << 23);
        *v = if *v > TWO_POW_M16 { q } else { 0.0 };
    }
    let total: f32 = p.iter().sum();
    if total > 0.0 {
        let inv = 1.0 / total;
        p.iter_mut().for_each(|v| *v *= inv);
    }
}
