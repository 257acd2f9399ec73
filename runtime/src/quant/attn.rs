//! INT8 attention arithmetic: Q and K (and V) quantized per head and per token
//! (one symmetric scale per `head_dim` row), Q·Kᵀ as integer dot products, and P·V with
//! float or log2-coded probabilities against INT8 V.

use super::softmax::{log2_value, LOG2_ZERO};

/// Symmetric INT8 codes of one row (`x ≈ scale · q`, scale `amax / 127`, codes in
/// -127..=127); returns the scale.
pub fn quantize_i8_row(x: &[f32], out: &mut [i8]) -> f32 {
    debug_assert_eq!(x.len(), out.len());
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// Rows of `dim` INT8 codes, one scale per row (`x ≈ scale * q`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct I8Rows {
    pub dim: usize,
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
}

impl I8Rows {
    pub fn new(dim: usize) -> Self {
        I8Rows { dim, q: Vec::new(), scales: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Appends rows of `x` (a multiple of `dim` long), each with its own scale `amax / 127`.
    pub fn push(&mut self, x: &[f32]) {
        assert!(self.dim > 0 && x.len().is_multiple_of(self.dim), "rows must be {} wide", self.dim);
        for row in x.chunks_exact(self.dim) {
            let at = self.q.len();
            self.q.resize(at + self.dim, 0);
            let scale = quantize_i8_row(row, &mut self.q[at..]);
            self.scales.push(scale);
        }
    }

    /// Quantizes `x` in one go.
    pub fn from_f32(x: &[f32], dim: usize) -> Self {
        let mut r = I8Rows::new(dim);
        r.push(x);
        r
    }

    pub fn row(&self, i: usize) -> &[i8] {
        &self.q[i * self.dim..(i + 1) * self.dim]
    }

    /// Keep only rows `keep` (ascending), e.g. after pruning.
    pub fn retain_rows(&mut self, keep: &[usize]) {
        let d = self.dim;
        for (dst, &src) in keep.iter().enumerate() {
            if dst != src {
                self.q.copy_within(src * d..(src + 1) * d, dst * d);
                self.scales[dst] = self.scales[src];
            }
        }
        self.q.truncate(keep.len() * d);
        self.scales.truncate(keep.len());
    }

    pub fn dequantize_row(&self, i: usize) -> Vec<f32> {
        self.row(i).iter().map(|&q| q as f32 * self.scales[i]).collect()
    }
}

/// Integer dot product (exact in i32 for any `dim` below 2^17).
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// `scores[j] = scale * (q · k_j)` for keys `0..scores.len()`, `q` one quantized row.
pub fn qk_scores(q: &[i8], q_scale: f32, k: &I8Rows, scale: f32, scores: &mut [f32]) {
    for (j, s) in scores.iter_mut().enumerate() {
        *s = dot_i8(q, k.row(j)) as f32 * (q_scale * k.scales[j] * scale);
    }
}

/// `out = Σ_j p_j v_j` with float probabilities and INT8 V rows `0..p.len()`.
pub fn pv(p: &[f32], v: &I8Rows, out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (j, &pj) in p.iter().enumerate() {
        if pj == 0.0 {
            continue;
        }
        let w = pj * v.scales[j];
        for (o, &q) in out.iter_mut().zip(v.row(j)) {
            *o += w * q as f32;
        }
    }
}

/// `out = Σ_j 2^-c_j v_j` with log2 codes (zero codes skipped): the probability factor is a
/// power of two, a shift in integer hardware.
pub fn pv_log2(codes: &[u8], v: &I8Rows, out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (j, &c) in codes.iter().enumerate() {
        if c >= LOG2_ZERO {
            continue;
        }
        let w = log2_value(c) * v.scales[j];
        for (o, &q) in out.iter_mut().zip(v.row(j)) {
            *o += w * q as f32;
        }
    }
}
