//! Element-wise and per-row operations of a decoder block: normalisation, rotary position
//! embedding, residual adds. Rows are tokens; all loops run in a fixed order (no
//! thread-count dependence).

use crate::config::RopePairing;

/// RMSNorm of each `x` row into `out`: `out = x / sqrt(mean(x^2) + eps) * w`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    assert_eq!(x.len(), out.len());
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        // f64 sum: the row is short, and the mean of squares is where float error would hide.
        let ss: f64 = xr.iter().map(|v| (*v as f64) * (*v as f64)).sum();
        let scale = (1.0 / (ss / d as f64 + eps as f64).sqrt()) as f32;
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// LayerNorm with optional bias (OPT/BLOOM blocks; unused by llama).
pub fn layer_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean: f64 = xr.iter().map(|v| *v as f64).sum::<f64>() / d as f64;
        let var: f64 = xr.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, (o, v)) in or.iter_mut().zip(xr).enumerate() {
            *o = ((*v as f64 - mean) * inv) as f32 * w[j] + b.map_or(0.0, |b| b[j]);
        }
    }
}

/// `x += y`.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Rotary position embedding: frequencies `base^(-2i/rope_dim)` and the pairing of
/// dimensions within a head.
#[derive(Clone, Debug)]
pub struct Rope {
    pub head_dim: usize,
    pub rope_dim: usize,
    pub pairing: RopePairing,
    inv_freq: Vec<f64>,
}

impl Rope {
    pub fn new(head_dim: usize, rope_dim: usize, base: f32, pairing: RopePairing) -> Rope {
        let inv_freq = (0..rope_dim / 2).map(|i| (base as f64).powf(-(2.0 * i as f64) / rope_dim as f64)).collect();
        Rope { head_dim, rope_dim, pairing, inv_freq }
    }

    /// cos/sin of each frequency at `pos`, written to `cs` (`rope_dim/2` pairs).
    pub fn angles(&self, pos: u32, cs: &mut [(f32, f32)]) {
        for (c, f) in cs.iter_mut().zip(&self.inv_freq) {
            let t = pos as f64 * f;
            *c = (t.cos() as f32, t.sin() as f32);
        }
    }

    /// Rotates every head of one token row (`n_heads * head_dim` values) by the angles `cs`.
    pub fn rotate_row(&self, row: &mut [f32], cs: &[(f32, f32)]) {
        let half = self.rope_dim / 2;
        for head in row.chunks_exact_mut(self.head_dim) {
            for (i, &(c, s)) in cs.iter().enumerate().take(half) {
                let (a, b) = match self.pairing {
                    RopePairing::Adjacent => (2 * i, 2 * i + 1),
                    RopePairing::HalfSplit => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_matches_direct_formula_both_pairings() {
        let (hd, base) = (16usize, 10000f32);
        for pairing in [RopePairing::Adjacent, RopePairing::HalfSplit] {
            let rope = Rope::new(hd, hd, base, pairing);
            let x: Vec<f32> = (0..2 * hd).map(|i| (i as f32 * 0.37).sin()).collect();
            for pos in [0u32, 1, 7, 300] {
                let mut cs = vec![(0f32, 0f32); hd / 2];
                rope.angles(pos, &mut cs);
                let mut y = x.clone();
                rope.rotate_row(&mut y, &cs);
                for h in 0..2 {
                    for i in 0..hd / 2 {
                        let th = pos as f64 * (base as f64).powf(-2.0 * i as f64 / hd as f64);
                        let (a, b) = if pairing == RopePairing::Adjacent { (2 * i, 2 * i + 1) } else { (i, i + hd / 2) };
                        let (x0, x1) = (x[h * hd + a] as f64, x[h * hd + b] as f64);
                        let (w0, w1) = (x0 * th.cos() - x1 * th.sin(), x0 * th.sin() + x1 * th.cos());
                        assert!((y[h * hd + a] as f64 - w0).abs() < 1e-5, "{pairing:?} pos {pos}");
                        assert!((y[h * hd + b] as f64 - w1).abs() < 1e-5, "{pairing:?} pos {pos}");
                    }
                }
                if pos == 0 {
                    assert_eq!(y, x, "position 0 is the identity");
                }
            }
        }
    }

    #[test]
    fn rms_norm_unit_rows() {
        let x = vec![3.0f32, 4.0, 0.0, 0.0];
        let mut out = vec![0f32; 4];
        rms_norm(&x, &[1.0, 1.0, 2.0, 2.0], 0.0, &mut out);
        let r = (25.0f32 / 4.0).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 4.0 / r).abs() < 1e-6 && out[2] == 0.0);
    }
}
