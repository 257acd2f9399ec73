//! Block formats shared by every variant. The weight blocks are byte-identical to GGUF's, so
//! the default model's tensors are used as stored.

use half::f16;

/// Values per quantization block (GGUF's QK4_0 / QK4_1 / QK8_0).
pub const QK: usize = 32;

/// GGUF Q4_1: `value = d * q + m`, codes 0..=15. Low nibbles of `qs` are elements 0..16,
/// high nibbles elements 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// GGUF Q4_0: `value = d * (q - 8)`, codes 0..=15, same nibble order as Q4_1.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// GGUF Q8_0: `value = d * q`, q signed 8-bit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl BlockQ4_1 {
    /// The 4-bit code of element `i` (0..32).
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        if i < QK / 2 {
            self.qs[i] & 0x0f
        } else {
            self.qs[i - QK / 2] >> 4
        }
    }

    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (i, o) in out.iter_mut().enumerate() {
            *o = d * self.code(i) as f32 + m;
        }
    }

    /// Round-to-nearest asymmetric quantization over the block's [min, max] range.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK / 2];
        for j in 0..QK / 2 {
            let lo = ((x[j] - min) * id).round().clamp(0.0, 15.0) as u8;
            let hi = ((x[j + QK / 2] - min) * id).round().clamp(0.0, 15.0) as u8;
            qs[j] = lo | (hi << 4);
        }
        BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(min), qs }
    }
}

impl BlockQ4_0 {
    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for j in 0..QK / 2 {
            out[j] = d * ((self.qs[j] & 0x0f) as i32 - 8) as f32;
            out[j + QK / 2] = d * ((self.qs[j] >> 4) as i32 - 8) as f32;
        }
    }
}

impl BlockQ8_0 {
    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = d * q as f32;
        }
    }
}

/// Symmetric integer activations, row-major `m x k`, one row per token:
/// `x[r][c] ≈ scales[r] * q[r][c]`, with `|q| <= 127` (8 bits) or `|q| <= 7` (4 bits).
/// The dynamic per-token scheme gives each row its own scale; the static per-tensor scheme
/// gives every row the same one.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedActivations {
    pub m: usize,
    pub k: usize,
    pub bits: u8,
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
}

impl QuantizedActivations {
    /// Largest code magnitude for a bitwidth (127 or 7).
    pub fn qmax(bits: u8) -> i32 {
        assert!(bits == 8 || bits == 4, "activation bits must be 8 or 4, got {bits}");
        (1 << (bits - 1)) - 1
    }

    /// Dynamic per-token: each row's scale is `amax / qmax`.
    pub fn quantize_per_token(x: &[f32], m: usize, k: usize, bits: u8) -> Self {
        assert_eq!(x.len(), m * k);
        let qmax = Self::qmax(bits) as f32;
        let scales = x
            .chunks_exact(k.max(1))
            .take(m)
            .map(|row| row.iter().fold(0f32, |a, v| a.max(v.abs())) / qmax)
            .collect::<Vec<_>>();
        Self::quantize_with_scales(x, m, k, bits, scales)
    }

    /// Static per-tensor: one calibrated `scale` for every row; values beyond the range clip.
    pub fn quantize_per_tensor(x: &[f32], m: usize, k: usize, bits: u8, scale: f32) -> Self {
        Self::quantize_with_scales(x, m, k, bits, vec![scale; m])
    }

    fn quantize_with_scales(x: &[f32], m: usize, k: usize, bits: u8, scales: Vec<f32>) -> Self {
        assert_eq!(x.len(), m * k);
        let qmax = Self::qmax(bits) as f32;
        let mut q = vec![0i8; m * k];
        for r in 0..m {
            let inv = if scales[r] > 0.0 { 1.0 / scales[r] } else { 0.0 };
            for c in 0..k {
                q[r * k + c] = (x[r * k + c] * inv).round().clamp(-qmax, qmax) as i8;
            }
        }
        QuantizedActivations { m, k, bits, q, scales }
    }

    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.m * self.k];
        for r in 0..self.m {
            for c in 0..self.k {
                out[r * self.k + c] = self.scales[r] * self.q[r * self.k + c] as f32;
            }
        }
        out
    }
}
