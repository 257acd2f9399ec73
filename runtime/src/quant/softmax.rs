//! 4-bit log2 quantization of attention probabilities (method.md §3):
//! `q = clamp(round(-log2 p), 0, 15)`, `p' = 2^-q`, and `p` with `-log2 p >= 16` becomes 0.
//! Products with `2^-q` are shifts, which is why the paper uses it for P·V.
//!
//! The runtime codes `p` relative to its row's maximum ([`log2_weight`]: the max is exactly
//! code 0, no `exp` needed) and renormalises; [`log2_code`] and the functions on normalised
//! probabilities below are method.md's literal rule, kept for the profiler and the tests.
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

/// Rounding constant: `(t + 1.5·2^23) - 1.5·2^23` is `t` rounded to the nearest integer
/// (ties to even) for `0 <= t < 2^22`, in plain f32 arithmetic that vectorises.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// The log2-4 weight of a score `s` in a row whose maximum is `max` (`log2-4` softmax):
/// `t = (max - s) · log2 e` is `-log2` of the unnormalised probability `exp(s - max)`, the
/// code is `c = min(round(t), 15)` (nearest, ties to even), the weight `2^-c`, and values at
/// or below `2^-16` of the max (`t >= 16`) are 0, as in method.md's rule. The row's weights
/// are then divided by their sum.
///
/// Why relative to the max: coding the normalised `p` rounds the largest probability too
/// (0.7 becomes 0.5, and the whole row's mass drifts); coding `exp(s - max)` keeps the max
/// exactly (code 0) and needs no `exp` at all, and the sum is an exact integer
/// (`Σ 2^(15 - c)`), so the renormalisation is one division. Measured on SmolLM2-135M: see
/// README "INT8 attention".
#[inline(always)]
pub fn log2_weight(s: f32, max: f32) -> f32 {
    // `min` also maps NaN (and masked -inf scores, t = +inf) to 32: weight 0.
    let t = ((max - s) * std::f32::consts::LOG2_E).min(32.0);
    // `t + 1.5·2^23` has unit ulp, so its low mantissa bits are `round(t)` (0..=32): integer
    // operations only (a saturating float-to-int cast does not vectorise on baseline x86).
    let c = (((t + ROUND_MAGIC).to_bits() & 63) as i32).min(15);
    if t < 16.0 {
        f32::from_bits(((127 - c) as u32) << 23)
    } else {
        0.0
    }
}

/// The exact integer weight of [`log2_weight`] (`2^(15 - c)`, 0 for zero weights).
#[inline(always)]
fn log2_units(w: f32) -> u32 {
    // w * 2^15 is an integer in 0..=32768: exact, and in range for the unchecked cast.
    // SAFETY: finite and within i32.
    unsafe { (w * 32768.0).to_int_unchecked::<i32>() as u32 }
}

/// A row's total weight from its integer sum.
#[inline]
pub fn log2_total(units: u32) -> f32 {
    units as f32 * (1.0 / 32768.0)
}

/// One key's scores across lanes: `row[i] = log2_weight(row[i], max[i])`, and each lane's
/// integer sum `units[i] += 2^(15 - c)` (the row order does not matter: integers).
pub fn log2_weights_lanes(row: &mut [f32], max: &[f32], units: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::model::simd::use_avx2() {
        // SAFETY: AVX2 was detected; the same elementwise code, compiled for wider vectors.
        return unsafe { avx2::lanes(row, max, units) };
    }
    lanes_body(row, max, units)
}

#[inline(always)]
fn lanes_body(row: &mut [f32], max: &[f32], units: &mut [u32]) {
    for ((v, &m), u) in row.iter_mut().zip(max).zip(units.iter_mut()) {
        *v = log2_weight(*v, m);
        *u += log2_units(*v);
    }
}

#[inline(always)]
fn row_body(s: &mut [f32], max: f32) -> u32 {
    let mut units = 0u32;
    for v in s.iter_mut() {
        *v = log2_weight(*v, max);
        units = units.wrapping_add(log2_units(*v));
    }
    units
}

/// The same loops compiled for AVX2 (elementwise float ops and an integer sum: identical
/// results to the baseline build).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2")]
    pub unsafe fn lanes(row: &mut [f32], max: &[f32], units: &mut [u32]) {
        super::lanes_body(row, max, units)
    }
    #[target_feature(enable = "avx2")]
    pub unsafe fn row(s: &mut [f32], max: f32) -> u32 {
        super::row_body(s, max)
    }
}

/// In place: a row of scores to normalised log2-4 probabilities (`2^-c / Σ 2^-c`, see
/// [`log2_weight`]); an empty row or one without a finite maximum becomes all zeros.
pub fn log2_probs_from_scores(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        s.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let inv = 1.0 / log2_total(log2_weights_row(s, max));
    s.iter_mut().for_each(|v| *v *= inv);
}

/// In place: a row of scores with maximum `max` (finite) to its unnormalised log2-4
/// weights; returns their exact integer sum (`Σ 2^(15 - c)`, see [`log2_total`]).
pub fn log2_weights_row(s: &mut [f32], max: f32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if crate::model::simd::use_avx2() {
        // SAFETY: AVX2 was detected.
        return unsafe { avx2::row(s, max) };
    }
    row_body(s, max)
}
