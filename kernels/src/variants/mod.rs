//! The contract between `Matmul` (which validates shapes and splits work over threads) and
//! the per-variant modules (which own a packed weight layout and the per-ISA inner loops).
//!
//! A variant module provides:
//! - `pub fn implemented(isa: Isa) -> bool`: whether this build has an implementation for the
//!   ISA (compile-time only; CPU features are checked by the registry via `Isa::is_available`).
//! - `pub fn prepare(isa: Isa, w: &Q4Matrix) -> Result<Box<dyn Prepared>, KernelError>`:
//!   repack the weights once into whatever layout its kernels want (documented in the module).
//!   `isa` is guaranteed implemented and available when called through `Matmul`.
//! - a type implementing [`Prepared`], whose `gemm_into` computes one column tile straight
//!   into its place in `y` through an [`OutTile`].
//!
//! Threading: `Matmul::run` calls `prepare_act` once, cuts `0..n` into tiles whose boundaries
//! depend only on the shape (m, n, k) and `Prepared::col_align`, never on the thread count,
//! and hands each tile to one rayon task (`gemm_into_with`). An implementation therefore only
//! has to be deterministic for a given tile to make results bit-identical at every thread
//! count.

use crate::formats::QuantizedActivations;
use crate::matmul::{KernelError, Q4Matrix};
use crate::registry::{Isa, Variant};
use std::any::Any;
use std::marker::PhantomData;
use std::ops::Range;

pub mod f16;
pub mod w4a16;
pub mod w8a16;
pub mod w4a8;
pub mod w4a4_widen;
pub mod w4a4_packed;
pub mod w4a4_lut;

/// Activations as the variant kernels see them. `Matmul::run` has already checked that the
/// kind matches the variant (float for f16/w4a16, integer with the variant's bit width
/// otherwise) and that the shapes fit, so kernels may `debug_assert` rather than re-check.
#[derive(Clone, Copy, Debug)]
pub enum Act<'a> {
    /// Row-major `m x k` floats.
    F32 { x: &'a [f32], m: usize, k: usize },
    /// Row-major `m x k` integer codes with per-row (and, for variants that say so in
    /// `Prepared::block_scales`, per-block) scales.
    Int(&'a QuantizedActivations),
}

impl Act<'_> {
    pub fn m(&self) -> usize {
        match self {
            Act::F32 { m, .. } => *m,
            Act::Int(q) => q.m,
        }
    }
}

/// Weights repacked for one (variant, ISA).
pub trait Prepared: Send + Sync {
    fn variant(&self) -> Variant;
    fn isa(&self) -> Isa;
    /// Output columns (weight rows).
    fn n(&self) -> usize;
    /// Inner dimension.
    fn k(&self) -> usize;
    /// Tiles passed to `gemm_into` start at a multiple of this (and are a multiple of it long,
    /// except the last, which ends at `n`). Usually the micro-kernel's column width.
    fn col_align(&self) -> usize {
        1
    }
    /// Multiply-adds below which a tile is not worth a separate task. Depends only on the
    /// variant and ISA (never on the thread count), so tiling stays deterministic.
    fn min_tile_macs(&self) -> usize {
        crate::matmul::MIN_TILE_MACS
    }
    /// Whether the kernels honour `QuantizedActivations::block_scales` (`Matmul::try_run`
    /// refuses block-scaled activations otherwise).
    fn block_scales(&self) -> bool {
        false
    }
    /// Data derived once per `Matmul::run` from the activations (sums, offset codes, lookup
    /// tables) and shared read-only by every tile. Runs before the tiles, inside the caller's
    /// pool (it may use rayon itself).
    fn prepare_act(&self, _a: Act<'_>) -> Option<Box<dyn Any + Send + Sync>> {
        None
    }

    /// `gemm_into` given what `prepare_act` returned for the same activations.
    fn gemm_into_with(&self, a: Act<'_>, _prep: Option<&(dyn Any + Send + Sync)>, cols: Range<usize>, out: OutTile<'_>) {
        self.gemm_into(a, cols, out)
    }

    /// The tile `out` (rows `0..m` of `y`, columns `cols`, fully overwritten) = rows of `a`
    /// times weight rows `cols`, written in place in `y`. Called concurrently from several
    /// threads on disjoint tiles.
    fn gemm_into(&self, a: Act<'_>, cols: Range<usize>, out: OutTile<'_>);
}

/// Columns `cols` of every row of a row-major `m x ld` output, owned exclusively by one task.
pub struct OutTile<'a> {
    ptr: *mut f32,
    ld: usize,
    m: usize,
    cols: usize,
    _y: PhantomData<&'a mut [f32]>,
}

// SAFETY: an `OutTile` is the only handle to its elements (see `new`).
unsafe impl Send for OutTile<'_> {}

impl<'a> OutTile<'a> {
    /// # Safety
    /// `ptr` points at the tile's first column in row 0 of a row-major matrix with `m` rows
    /// of `ld` elements, the tile's `cols` columns fit in the row, and no other reference to
    /// these `m x cols` elements exists for `'a`.
    pub unsafe fn new(ptr: *mut f32, ld: usize, m: usize, cols: usize) -> Self {
        OutTile { ptr, ld, m, cols, _y: PhantomData }
    }

    pub fn m(&self) -> usize {
        self.m
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Distance between rows, in elements.
    pub fn ld(&self) -> usize {
        self.ld
    }
    /// Row `r`'s `cols` elements.
    pub fn row(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.m);
        // SAFETY: in bounds and exclusive by `new`'s contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.ld), self.cols) }
    }
    /// Raw pointer to element (0, 0), for kernels that write rows with stride `ld`.
    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.ptr
    }
}

/// Whether `variant` has an implementation for `isa` in this build.
pub fn implemented(variant: Variant, isa: Isa) -> bool {
    match variant {
        Variant::F16 => f16::implemented(isa),
        Variant::W4A16 => w4a16::implemented(isa),
        Variant::W8A16 => w8a16::implemented(isa),
        Variant::W4A8 => w4a8::implemented(isa),
        Variant::W4A4Widen => w4a4_widen::implemented(isa),
        Variant::W4A4Packed => w4a4_packed::implemented(isa),
        Variant::W4A4Lut => w4a4_lut::implemented(isa),
    }
}

/// Repack `w` for `variant` on `isa`. The caller has checked `implemented` and availability.
pub fn prepare(variant: Variant, isa: Isa, w: &Q4Matrix) -> Result<Box<dyn Prepared>, KernelError> {
    match variant {
        Variant::F16 => Ok(Box::new(f16::PreparedF16::from_q4(isa, w))),
        Variant::W4A16 => w4a16::prepare(isa, w),
        // Tools time every variant on Q4 weights: requantize them (round-to-nearest Q8_0).
        Variant::W8A16 => Ok(Box::new(w8a16::PreparedW8A16::new(isa, &crate::matmul::Q8Matrix::quantize(w.n, w.k, &w.dequantize())))),
        Variant::W4A8 => w4a8::prepare(isa, w),
        Variant::W4A4Widen => w4a4_widen::prepare(isa, w),
        Variant::W4A4Packed => w4a4_packed::prepare(isa, w),
        Variant::W4A4Lut => w4a4_lut::prepare(isa, w),
    }
}
