//! The one entry point the runtime and the profiler use: a weight matrix prepared for one
//! (variant, ISA) pair, multiplied by float or integer activations.
//!
//! Convention: weights are `n` output rows of `k` inputs (GGUF's layout, ne0 = k), and
//! `y[r][j] = sum_c x[r][c] * w[j][c]` for activation rows `r` in `0..m`.
//!
//! Threads: `run` splits the `n` outputs into column tiles over the current rayon pool (the
//! caller installs a pool of T threads). Tile boundaries depend only on the shape, and each
//! output element is computed by one task in a fixed order, so results are bit-identical at
//! any thread count.

use crate::formats::{BlockQ4_1, BlockQ8_0, QuantizedActivations, QK};
use crate::registry::{Isa, Variant};
use crate::variants::{self, Act, OutTile, Prepared};
use half::f16;
use rayon::prelude::*;
use std::ops::Range;

/// Why a matmul could not be prepared or run.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    Shape(String),
    Unsupported { variant: Variant, isa: Isa },
    /// Float activations given to an integer variant, or the wrong integer bit width.
    Activations { variant: Variant, want_bits: u8, got_bits: u8 },
    /// Per-block activation scales given to a variant whose kernels only apply one scale per
    /// row (only `w4a8` and `w4a4-widen` take them).
    BlockScales { variant: Variant, isa: Isa },
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Shape(s) => write!(f, "shape mismatch: {s}"),
            KernelError::Unsupported { variant, isa } => {
                write!(f, "kernel variant {variant} has no {isa} implementation on this CPU")
            }
            KernelError::Activations { variant, want_bits, got_bits } => {
                write!(f, "kernel variant {variant} cannot take these activations: it takes {want_bits}-bit, got {got_bits}-bit")
            }
            KernelError::BlockScales { variant, isa } => write!(
                f,
                "kernel variant {variant} ({isa}) does not support per-block activation scales (use w4a8 or w4a4-widen)"
            ),
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

/// 8-bit weights in canonical Q8_0 blocks (`w = d * q`), `n` rows of `ceil(k / 32)` blocks;
/// a short last block is padded with code 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Q8Matrix {
    pub n: usize,
    pub k: usize,
    pub blocks: Vec<BlockQ8_0>,
}

impl Q8Matrix {
    pub fn from_blocks(n: usize, k: usize, blocks: Vec<BlockQ8_0>) -> Result<Self, KernelError> {
        let want = n * Q4Matrix::blocks_per_row(k);
        if blocks.len() != want {
            return Err(KernelError::Shape(format!("{n}x{k} Q8_0 matrix needs {want} blocks, got {}", blocks.len())));
        }
        Ok(Q8Matrix { n, k, blocks })
    }

    /// Round-to-nearest quantization of a row-major `n x k` f32 matrix.
    pub fn quantize(n: usize, k: usize, w: &[f32]) -> Self {
        assert_eq!(w.len(), n * k);
        let bpr = Q4Matrix::blocks_per_row(k);
        let mut blocks = Vec::with_capacity(n * bpr);
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            for b in 0..bpr {
                let mut buf = [0f32; QK];
                let end = ((b + 1) * QK).min(k);
                buf[..end - b * QK].copy_from_slice(&row[b * QK..end]);
                blocks.push(BlockQ8_0::quantize(&buf));
            }
        }
        Q8Matrix { n, k, blocks }
    }

    pub fn row(&self, j: usize) -> &[BlockQ8_0] {
        let bpr = Q4Matrix::blocks_per_row(self.k);
        &self.blocks[j * bpr..(j + 1) * bpr]
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
    prepared: Box<dyn Prepared>,
}

impl std::fmt::Debug for Matmul {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Matmul({} on {}, n={}, k={})", self.variant, self.isa, self.n, self.k)
    }
}

impl Matmul {
    /// FP16 baseline from f32 weights (row-major `n x k`), rounded to f16.
    pub fn new_f16(isa: Isa, n: usize, k: usize, w: &[f32]) -> Result<Self, KernelError> {
        Self::check_isa(Variant::F16, isa)?;
        let p = variants::f16::PreparedF16::from_f32(isa, n, k, w)?;
        Ok(Self::wrap(Box::new(p)))
    }

    /// FP16 baseline from f16 weights (row-major `n x k`), used as stored.
    pub fn new_f16_from_f16(isa: Isa, n: usize, k: usize, w: &[f16]) -> Result<Self, KernelError> {
        Self::check_isa(Variant::F16, isa)?;
        let p = variants::f16::PreparedF16::from_f16(isa, n, k, w)?;
        Ok(Self::wrap(Box::new(p)))
    }

    /// Any variant from 4-bit weights; `Variant::F16` dequantizes them to f16.
    pub fn new_q4(variant: Variant, isa: Isa, w: &Q4Matrix) -> Result<Self, KernelError> {
        Self::check_isa(variant, isa)?;
        Ok(Self::wrap(variants::prepare(variant, isa, w)?))
    }

    /// Q8_0 weights used as stored, float activations (`Variant::W8A16`).
    pub fn new_q8(isa: Isa, w: &Q8Matrix) -> Result<Self, KernelError> {
        Self::check_isa(Variant::W8A16, isa)?;
        Ok(Self::wrap(Box::new(variants::w8a16::PreparedW8A16::new(isa, w))))
    }

    /// `new_q4` on the fastest ISA this CPU runs the variant on (see `registry::best_isa`).
    pub fn new_auto(variant: Variant, w: &Q4Matrix) -> Result<Self, KernelError> {
        Self::new_q4(variant, crate::registry::best_isa(variant), w)
    }

    fn wrap(prepared: Box<dyn Prepared>) -> Self {
        Matmul { variant: prepared.variant(), isa: prepared.isa(), n: prepared.n(), k: prepared.k(), prepared }
    }

    fn check_isa(variant: Variant, isa: Isa) -> Result<(), KernelError> {
        if variants::implemented(variant, isa) && isa.is_available() {
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
    /// Panics with [`Matmul::try_run`]'s error when the activations do not fit this matmul
    /// (kind, shape, or per-block scales on a variant without them); callers that can get
    /// such input use `try_run`.
    pub fn run(&self, a: Activations<'_>, y: &mut [f32]) {
        if let Err(e) = self.try_run(a, y) {
            panic!("{e}");
        }
    }

    /// [`Matmul::run`], returning a typed error instead of panicking when the activations'
    /// kind, bit width, shape or scale layout does not fit this matmul (`y` is then untouched).
    pub fn try_run(&self, a: Activations<'_>, y: &mut [f32]) -> Result<(), KernelError> {
        let (m, n, k) = (a.m(), self.n, self.k);
        let shape = |s: String| Err(KernelError::Shape(s));
        if y.len() != m * n {
            return shape(format!("output must be m x n = {m} x {n}, got {} elements", y.len()));
        }
        let want_bits = self.variant.activation_bits();
        let act = match a {
            Activations::F32 { x, m } if want_bits == 16 => {
                if x.len() != m * k {
                    return shape(format!("float activations must be m x k = {m} x {k}, got {} elements", x.len()));
                }
                Act::F32 { x, m, k }
            }
            Activations::Int(q) if want_bits == q.bits => {
                if q.k != k {
                    return shape(format!("integer activations have k = {}, matmul has k = {k}", q.k));
                }
                if q.q.len() != m * k || q.scales.len() != m {
                    return shape(format!(
                        "integer activations need m x k = {m} x {k} codes and {m} scales, got {} and {}",
                        q.q.len(),
                        q.scales.len()
                    ));
                }
                if q.is_blocked() {
                    if !self.prepared.block_scales() {
                        return Err(KernelError::BlockScales { variant: self.variant, isa: self.isa });
                    }
                    if q.block_scales.len() != m * q.blocks_per_row() {
                        return shape(format!(
                            "block-scaled activations need m x ceil(k/32) = {m} x {} block scales, got {}",
                            q.blocks_per_row(),
                            q.block_scales.len()
                        ));
                    }
                }
                Act::Int(q)
            }
            Activations::F32 { .. } => {
                return Err(KernelError::Activations { variant: self.variant, want_bits, got_bits: 16 })
            }
            Activations::Int(q) => {
                return Err(KernelError::Activations { variant: self.variant, want_bits, got_bits: q.bits })
            }
        };
        if m == 0 || n == 0 {
            return Ok(());
        }
        let tiles = tiles(m, n, k, self.prepared.col_align(), self.prepared.min_tile_macs());
        let prepared = &*self.prepared;
        let prep = prepared.prepare_act(act);
        let prep = prep.as_deref();
        let base = SharedOut(y.as_mut_ptr());
        tiles.into_par_iter().for_each(|cols| {
            // SAFETY: tiles are disjoint column ranges within `0..n` and `y` is `m x n`, so
            // every task gets an exclusive strided view of its own elements.
            let out = unsafe { OutTile::new(base.get().add(cols.start), n, m, cols.len()) };
            prepared.gemm_into_with(act, prep, cols, out);
        });
        Ok(())
    }
}

/// `y`'s base pointer, shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}
impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Minimum multiply-adds per tile, so that scheduling overhead stays small next to the work
/// (the default of `Prepared::min_tile_macs`; variants cheaper per multiply-add raise it).
pub(crate) const MIN_TILE_MACS: usize = 1 << 14;
/// Allowed tile counts: divisible by 2, 3, 4 and 6 as far as the work allows, so common pool
/// sizes get equal shares.
const TILE_COUNTS: [usize; 7] = [1, 2, 3, 4, 6, 12, 24];
#[cfg(test)]
const MAX_TILES: usize = 24;

/// Column tiles of `0..n`, each starting at a multiple of `align`, sizes differing by at most
/// one `align` unit. Depends only on the shape, never on the thread count, which keeps
/// results bit-identical across thread counts.
pub(crate) fn tiles(m: usize, n: usize, k: usize, align: usize, min_macs: usize) -> Vec<Range<usize>> {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let by_work = (m * n * k.max(1) / min_macs.max(1)).max(1);
    let t = TILE_COUNTS.into_iter().rev().find(|&t| t <= units && t <= by_work).unwrap_or(1);
    (0..t).map(|i| (i * units / t) * align..((i + 1) * units / t * align).min(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::tiles;

    #[test]
    fn tiles_cover_n_disjointly_aligned_and_ignore_threads() {
        for (m, n, k, align) in [(1, 576, 576, 16), (512, 49152, 576, 16), (3, 17, 5, 16), (1, 1, 1, 1), (9, 100, 3, 7)] {
            let t = tiles(m, n, k, align, super::MIN_TILE_MACS);
            assert!(t.len() <= super::MAX_TILES, "{t:?}");
            assert_eq!(t.first().unwrap().start, 0);
            assert_eq!(t.last().unwrap().end, n);
            for w in t.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            assert!(t.iter().all(|r| r.start % align == 0 && !r.is_empty()), "{t:?}");
            let units: Vec<usize> = t.iter().map(|r| r.len().div_ceil(align)).collect();
            assert!(units.iter().max().unwrap() - units.iter().min().unwrap() <= 1, "{t:?}");
        }
    }
}
