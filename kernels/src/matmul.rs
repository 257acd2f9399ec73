//! The one entry point the runtime and the profiler use: a weight matrix prepared for one
//! (variant, ISA) pair, multiplied by float or integer activations.
//!
//! Convention: weights are `n` output rows of `k` inputs (GGUF's layout, ne0 = k), and
//! `y[r][j] = sum_c x[r][c] * w[j][c]` for activation rows `r` in `0..m`.
//!
//! Threads: `run` splits the `n` outputs over the current rayon pool; each output element is
//! computed by one thread in a fixed order, so results are bit-identical at any thread count.

use crate::formats::{BlockQ4_1, QuantizedActivations, QK};
use crate::registry::{Isa, Variant};
use half::f16;

/// Why a matmul could not be prepared.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    Shape(String),
    Unsupported { variant: Variant, isa: Isa },
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Shape(s) => write!(f, "shape mismatch: {s}"),
            KernelError::Unsupported { variant, isa } => {
                write!(f, "kernel variant {variant} has no {isa} implementation on this CPU")
            }
        }
    }
}
impl std::error::Error for KernelError {}

/// 4-bit weights in canonical Q4_1 blocks, `n` rows of `ceil(k / 32)` blocks each. When `k`
/// is not a multiple of 32 the last block of a row is padded with code 0 (the padding only
/// ever meets zero activations).
#[derive(Clone, Debug, PartialEq)]
pub struct Q4Matrix {
    pub n: usize,
    pub k: usize,
    pub blocks: Vec<BlockQ4_1>,
}

impl Q4Matrix {
    pub fn blocks_per_row(k: usize) -> usize {
        k.div_ceil(QK)
    }

    pub fn from_blocks(n: usize, k: usize, blocks: Vec<BlockQ4_1>) -> Result<Self, KernelError> {
        let want = n * Self::blocks_per_row(k);
        if blocks.len() != want {
            return Err(KernelError::Shape(format!(
                "{n}x{k} Q4_1 matrix needs {want} blocks, got {}",
                blocks.len()
            )));
        }
        Ok(Q4Matrix { n, k, blocks })
    }

    /// Round-to-nearest quantization of a row-major `n x k` f32 matrix.
    pub fn quantize(n: usize, k: usize, w: &[f32]) -> Self {
        assert_eq!(w.len(), n * k);
        let bpr = Self::blocks_per_row(k);
        let mut blocks = Vec::with_capacity(n * bpr);
        for row in w.chunks_exact(k.max(1)).take(n) {
            for b in 0..bpr {
                let mut buf = [0f32; QK];
                let end = ((b + 1) * QK).min(k);
                buf[..end - b * QK].copy_from_slice(&row[b * QK..end]);
                if end - b * QK < QK {
                    // Keep the padded tail inside the block's range so it cannot widen it.
                    let fill = buf[0];
                    buf[end - b * QK..].iter_mut().for_each(|v| *v = fill);
                }
                blocks.push(BlockQ4_1::quantize(&buf));
            }
        }
        Q4Matrix { n, k, blocks }
    }

    pub fn row(&self, j: usize) -> &[BlockQ4_1] {
        let bpr = Self::blocks_per_row(self.k);
        &self.blocks[j * bpr..(j + 1) * bpr]
    }

    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.k];
        let mut buf = [0f32; QK];
        for j in 0..self.n {
            for (b, blk) in self.row(j).iter().enumerate() {
                blk.dequantize(&mut buf);
                let end = ((b + 1) * QK).min(self.k);
                out[j * self.k + b * QK..j * self.k + end].copy_from_slice(&buf[..end - b * QK]);
            }
        }
        out
    }
}

/// Activations handed to a matmul: float rows, or integer rows with per-row scales.
#[derive(Clone, Copy, Debug)]
pub enum Activations<'a> {
    F32 { x: &'a [f32], m: usize },
    Int(&'a QuantizedActivations),
}

impl Activations<'_> {
    pub fn m(&self) -> usize {
        match self {
            Activations::F32 { m, .. } => *m,
            Activations::Int(q) => q.m,
        }
    }
}

/// A weight matrix prepared for one (variant, ISA).
pub struct Matmul {
    variant: Variant,
    isa: Isa,
    n: usize,
    k: usize,
    weights: Weights,
}

enum Weights {
    F16(Vec<f16>),
    Q4(Q4Matrix),
}

impl Matmul {
    /// FP16 baseline from f32 weights (row-major `n x k`), rounded to f16.
    pub fn new_f16(isa: Isa, n: usize, k: usize, w: &[f32]) -> Result<Self, KernelError> {
        if w.len() != n * k {
            return Err(KernelError::Shape(format!("{n}x{k} weights need {} values, got {}", n * k, w.len())));
        }
        Self::check_isa(Variant::F16, isa)?;
        let data = w.iter().map(|&v| f16::from_f32(v)).collect();
        Ok(Matmul { variant: Variant::F16, isa, n, k, weights: Weights::F16(data) })
    }

    /// Any variant from 4-bit weights; `Variant::F16` dequantizes them to f16.
    pub fn new_q4(variant: Variant, isa: Isa, w: &Q4Matrix) -> Result<Self, KernelError> {
        if variant == Variant::F16 {
            return Self::new_f16(isa, w.n, w.k, &w.dequantize());
        }
        Self::check_isa(variant, isa)?;
        Ok(Matmul { variant, isa, n: w.n, k: w.k, weights: Weights::Q4(w.clone()) })
    }

    fn check_isa(variant: Variant, isa: Isa) -> Result<(), KernelError> {
        if isa.is_available() {
            Ok(())
        } else {
            Err(KernelError::Unsupported { variant, isa })
        }
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn k(&self) -> usize {
        self.k
    }

    /// `y` (row-major `m x n`) = activations (`m x k`) times the weights transposed.
    /// Panics when the activations' kind or shape does not fit this matmul: that is a bug in
    /// the caller, not bad input.
    pub fn run(&self, a: Activations<'_>, y: &mut [f32]) {
        let m = a.m();
        assert_eq!(y.len(), m * self.n, "output must be m x n");
        match (&self.weights, a) {
            (Weights::F16(w), Activations::F32 { x, m }) => {
                assert_eq!(x.len(), m * self.k);
                scalar_f16(x, m, self.k, self.n, w, y)
            }
            (Weights::Q4(w), Activations::F32 { x, m }) if self.variant == Variant::W4A16 => {
                assert_eq!(x.len(), m * self.k);
                scalar_w4a16(x, m, w, y)
            }
            (Weights::Q4(w), Activations::Int(q)) if self.variant.activation_bits() == q.bits => {
                assert_eq!(q.k, self.k);
                scalar_w4_int(q, w, y)
            }
            _ => panic!("{} matmul cannot take these activations", self.variant),
        }
    }
}

fn scalar_f16(x: &[f32], m: usize, k: usize, n: usize, w: &[f16], y: &mut [f32]) {
    for r in 0..m {
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            y[r * n + j] = row.iter().zip(&x[r * k..(r + 1) * k]).map(|(w, x)| w.to_f32() * x).sum();
        }
    }
}

fn scalar_w4a16(x: &[f32], m: usize, w: &Q4Matrix, y: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    let mut buf = [0f32; QK];
    for r in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for (b, blk) in w.row(j).iter().enumerate() {
                blk.dequantize(&mut buf);
                let end = ((b + 1) * QK).min(k);
                acc += buf.iter().zip(&x[r * k + b * QK..r * k + end]).map(|(w, x)| w * x).sum::<f32>();
            }
            y[r * n + j] = acc;
        }
    }
}

/// Integer dot per block, then `d * dot + m * sum(a)` in float, times the row scale.
fn scalar_w4_int(a: &QuantizedActivations, w: &Q4Matrix, y: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    for r in 0..a.m {
        let xr = &a.q[r * k..(r + 1) * k];
        for j in 0..n {
            let mut acc = 0f32;
            for (b, blk) in w.row(j).iter().enumerate() {
                let end = ((b + 1) * QK).min(k);
                let (mut dot, mut sum) = (0i32, 0i32);
                for (i, &q) in xr[b * QK..end].iter().enumerate() {
                    dot += blk.code(i) as i32 * q as i32;
                    sum += q as i32;
                }
                acc += blk.d.to_f32() * dot as f32 + blk.m.to_f32() * sum as f32;
            }
            y[r * n + j] = acc * a.scales[r];
        }
    }
}
