//! W4A8: unsigned 4-bit weight codes times signed 8-bit activation codes. Integer dot per
//! 32-block, then `d * dot + m * sum(a)` in f32 (Q4_1: `sum_c a_c (d w_c + m)`), times the
//! activation row's scale. Also runs W4A4-widen (INT4 codes are stored as i8 already).
//!
//! Weight layout ([`PackedW4`]): columns (weight rows) in tiles of 16; per (tile, 32-block)
//! one 320-byte record, records in (tile, block) order so a tile is one contiguous stream:
//! 256 bytes of codes = 4 "quad pairs" x 2 halves of 8 columns x 32 bytes, where byte
//! `4i + e` of a 32-byte row holds, for column `8*half + i` of the tile, the code of input
//! `4q + e` in its low nibble (q = 2*pair) and of input `4(q+1) + e` in its high nibble; then
//! the 16 columns' `d` and the 16 columns' `m` as f16 (Q4_1's own values, zero for padding
//! columns). A mask (or a shift and a mask) turns 32 bytes into "8 columns x 4 consecutive
//! inputs" bytes: exactly the operand of a 4-wide integer dot against 4 broadcast activation
//! bytes (x86 `vpmaddubsw`, pairs, then 16-bit accumulation; ARM `sdot` by element). The
//! output lanes are columns, so the only reduction per block is one pairwise widening, and
//! the float epilogue runs on 8 or 16 columns per instruction (one f16->f32 conversion of
//! `d` and `m` per tile and block). 20 bytes per 32 weights, as Q4_1: the GEMV streams no
//! more bytes than the file holds.
//! With AVX-512 VNNI the 64 bytes of a (tile, block, quad pair) are one zmm of "16 columns x
//! 4 inputs" for `vpdpbusd` (see `avx512.rs`); the layout is the same for every ISA.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use crate::formats::{PaddedActivations, QK};
use crate::matmul::{KernelError, Q4Matrix};
use crate::registry::{Isa, Variant};
use crate::variants::{Act, OutTile, Prepared};
use std::any::Any;
use std::ops::Range;

/// Columns per weight tile (two 8-lane f32 vectors).
pub const TILE: usize = 16;

/// Bytes per (tile, block) record: 256 of codes, 16 f16 `d`, 16 f16 `m`.
pub const RECORD: usize = 320;
/// Offset of the `d` row (16 f16) in a record; `m` follows at `SCALES + 32`.
pub const SCALES: usize = 256;

/// 4-bit codes and f16 block scales in column tiles; see the module doc for the layout.
#[derive(Clone, Debug)]
pub struct PackedW4 {
    pub n: usize,
    pub k: usize,
    pub bpr: usize,
    pub tiles: usize,
    /// `tiles x bpr` records of [`RECORD`] bytes, 64-byte aligned.
    qs: AlignedBytes,
}

impl PackedW4 {
    pub fn new(w: &Q4Matrix) -> Self {
        let bpr = Q4Matrix::blocks_per_row(w.k);
        let tiles = w.n.div_ceil(TILE);
        let mut qs = AlignedBytes::zeroed(tiles * bpr * RECORD);
        let bytes = qs.as_mut_slice();
        for j in 0..w.n {
            for (b, blk) in w.row(j).iter().enumerate() {
                let rec = ((j / TILE) * bpr + b) * RECORD;
                let at = rec + SCALES + 2 * (j % TILE);
                bytes[at..at + 2].copy_from_slice(&blk.d.to_bits().to_le_bytes());
                bytes[at + 32..at + 34].copy_from_slice(&blk.m.to_bits().to_le_bytes());
                for i in 0..QK {
                    let (byte, shift) = Self::code_at(bpr, j, b * QK + i);
                    bytes[byte] |= blk.code(i) << shift;
                }
            }
        }
        PackedW4 { n: w.n, k: w.k, bpr, tiles, qs }
    }

    /// Byte index and nibble shift of the code of column `j`, input `c`.
    #[inline]
    fn code_at(bpr: usize, j: usize, c: usize) -> (usize, u32) {
        let (t, jj, b, cc) = (j / TILE, j % TILE, c / QK, c % QK);
        let (q, e) = (cc / 4, cc % 4);
        let byte = (t * bpr + b) * RECORD + (q / 2) * 64 + (jj / 8) * 32 + (jj % 8) * 4 + e;
        (byte, 4 * (q % 2) as u32)
    }

    /// The code of column `j`, input `c` (`c < bpr * 32`; padding reads 0).
    #[inline]
    pub fn code(&self, j: usize, c: usize) -> u8 {
        let (byte, shift) = Self::code_at(self.bpr, j, c);
        (self.qs.as_slice()[byte] >> shift) & 0x0f
    }

    /// The record of tile `t`, block `b` (codes at 0, `d` at [`SCALES`], `m` 32 bytes later).
    #[inline]
    pub fn record(&self, t: usize, b: usize) -> *const u8 {
        debug_assert!(t < self.tiles && b < self.bpr);
        // SAFETY: in bounds for t < tiles, b < bpr.
        unsafe { self.qs.as_slice().as_ptr().add((t * self.bpr + b) * RECORD) }
    }

    fn scale(&self, j: usize, b: usize, off: usize) -> f32 {
        let at = ((j / TILE) * self.bpr + b) * RECORD + SCALES + off + 2 * (j % TILE);
        let q = self.qs.as_slice();
        half::f16::from_bits(u16::from_le_bytes([q[at], q[at + 1]])).to_f32()
    }

    /// Column `j`'s `d` for block `b` (0 for padding columns).
    pub fn d(&self, j: usize, b: usize) -> f32 {
        self.scale(j, b, 0)
    }

    /// Column `j`'s `m` for block `b` (0 for padding columns).
    pub fn m(&self, j: usize, b: usize) -> f32 {
        self.scale(j, b, 32)
    }
}

/// A zeroed byte buffer aligned to 64 (a record's quad pairs are then whole cache lines and
/// aligned zmm loads).
#[derive(Clone, Debug)]
struct AlignedBytes {
    buf: Vec<Line>,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([u8; 64]);
const _: () = assert!(std::mem::size_of::<Line>() == 64);

impl AlignedBytes {
    fn zeroed(len: usize) -> Self {
        AlignedBytes { buf: vec![Line([0u8; 64]); len.div_ceil(64)], len }
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: `Line` is 64 plain bytes without padding; `len <= 64 * buf.len()`.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut u8, self.len) }
    }
}

/// Exact integer dot of block `b` of column `j` with the block's 32 activation codes.
#[inline]
pub fn block_dot(w: &PackedW4, j: usize, b: usize, a: &[i8]) -> i32 {
    (0..QK).map(|i| w.code(j, b * QK + i) as i32 * a[i] as i32).sum()
}

pub fn implemented(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 => cfg!(target_arch = "x86_64"),
        Isa::Avx512 => cfg!(target_arch = "x86_64"),
        Isa::Neon => cfg!(target_arch = "aarch64"),
    }
}

pub fn prepare(isa: Isa, w: &Q4Matrix) -> Result<Box<dyn Prepared>, KernelError> {
    Ok(Box::new(W4A8::new(Variant::W4A8, isa, w)?))
}

/// Prepared W4A8 (or W4A4-widen) weights for one ISA.
pub struct W4A8 {
    variant: Variant,
    isa: Isa,
    w: PackedW4,
    /// aarch64: use `sdot` (ARMv8.2 dotprod) rather than `smull`/`sadalp`.
    #[allow(dead_code)]
    dotprod: bool,
}

impl W4A8 {
    pub fn new(variant: Variant, isa: Isa, w: &Q4Matrix) -> Result<Self, KernelError> {
        if !implemented(isa) || !isa.is_available() {
            return Err(KernelError::Unsupported { variant, isa });
        }
        Ok(W4A8 { variant, isa, w: PackedW4::new(w), dotprod: neon_dotprod() })
    }

    /// Like [`W4A8::new`] but with the `smull` path on aarch64 even where `sdot` exists, so
    /// tests cover both on a dotprod machine.
    pub fn without_dotprod(mut self) -> Self {
        self.dotprod = false;
        self
    }

    pub fn packed(&self) -> &PackedW4 {
        &self.w
    }

    /// The tile for `cols` (row-major `m x cols.len()`), from already padded activations.
    pub fn gemm_padded(&self, a: &PaddedActivations, cols: Range<usize>, out: &mut [f32]) {
        assert_eq!(out.len(), a.m * cols.len(), "output tile must be m x cols");
        // SAFETY: `out` is exactly the m x cols.len() tile with stride cols.len().
        unsafe { self.tile(a, cols.clone(), out.as_mut_ptr(), cols.len()) }
    }

    /// # Safety
    /// `out` points at an `a.m x cols.len()` region with row stride `ld` that nothing else
    /// accesses during the call.
    unsafe fn tile(&self, a: &PaddedActivations, cols: Range<usize>, out: *mut f32, ld: usize) {
        assert_eq!(a.bpr, self.w.bpr, "activations have k = {}, weights k = {}", a.k, self.w.k);
        assert!(cols.end <= self.w.n && ld >= cols.len());
        assert!(cols.start.is_multiple_of(TILE), "column tiles start at multiples of {TILE}");
        match self.isa {
            Isa::Scalar => gemm_scalar(&self.w, a, cols, out, ld),
            #[cfg(target_arch = "x86_64")]
            // `new` checked that the CPU has AVX2 and FMA.
            Isa::Avx2 => x86_64::gemm(&self.w, a, cols, out, ld),
            #[cfg(target_arch = "x86_64")]
            // `new` checked AVX-512 F/BW/VL/VNNI.
            Isa::Avx512 => avx512::gemm(&self.w, a, cols, out, ld),
            #[cfg(target_arch = "aarch64")]
            // `new` checked NEON; `dotprod` is set only where the CPU has it.
            Isa::Neon => aarch64::gemm(&self.w, a, cols, out, ld, self.dotprod),
            #[allow(unreachable_patterns)]
            _ => unreachable!("checked in new"),
        }
    }
}

fn neon_dotprod() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

impl Prepared for W4A8 {
    fn variant(&self) -> Variant {
        self.variant
    }
    fn isa(&self) -> Isa {
        self.isa
    }
    fn n(&self) -> usize {
        self.w.n
    }
    fn k(&self) -> usize {
        self.w.k
    }
    fn col_align(&self) -> usize {
        TILE
    }
    /// `vpdpbusd` does 64 multiply-adds per instruction (AVX2's `vpmaddubsw` 32): a tile
    /// needs proportionally more of them to outweigh handing it to another thread.
    fn min_tile_macs(&self) -> usize {
        match self.isa {
            Isa::Avx512 => 4 * crate::matmul::MIN_TILE_MACS,
            Isa::Avx2 | Isa::Neon => 2 * crate::matmul::MIN_TILE_MACS,
            Isa::Scalar => crate::matmul::MIN_TILE_MACS,
        }
    }
    fn block_scales(&self) -> bool {
        self.variant.supports_block_scales()
    }
    fn gemm_into(&self, a: Act<'_>, cols: Range<usize>, mut out: OutTile<'_>) {
        assert!(out.m() == a.m() && out.cols() == cols.len());
        // SAFETY: an `OutTile` is exclusive m x cols with stride ld.
        unsafe { self.tile(&prepare_act(a), cols, out.as_mut_ptr(), out.ld()) }
    }
    /// Padding and block sums once per call instead of once per tile.
    fn prepare_act(&self, a: Act<'_>) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(prepare_act(a).detach()))
    }
    fn gemm_into_with(&self, a: Act<'_>, prep: Option<&(dyn Any + Send + Sync)>, cols: Range<usize>, mut out: OutTile<'_>) {
        match prep.and_then(|p| p.downcast_ref::<PaddedActivations<'static>>()) {
            Some(p) => {
                let Act::Int(q) = a else { unreachable!("integer variant takes integer activations") };
                let p = p.attach(q);
                assert!(out.m() == p.m && out.cols() == cols.len());
                // SAFETY: an `OutTile` is exclusive m x cols with stride ld.
                unsafe { self.tile(&p, cols, out.as_mut_ptr(), out.ld()) }
            }
            None => self.gemm_into(a, cols, out),
        }
    }
}

/// The per-call activation layout all tiles share (see `formats::PaddedActivations`).
pub(crate) fn prepare_act<'a>(a: Act<'a>) -> PaddedActivations<'a> {
    let Act::Int(q) = a else { unreachable!("integer variant takes integer activations") };
    PaddedActivations::new(q)
}

/// Scalar reference: exact integer dot per block, then the float epilogue in block order
/// (block-scaled: the dot times the block's scale first; the sums already include it).
///
/// # Safety
/// As `W4A8::tile`.
unsafe fn gemm_scalar(w: &PackedW4, a: &PaddedActivations, cols: Range<usize>, out: *mut f32, ld: usize) {
    for r in 0..a.m {
        let (ar, sr) = (a.row(r), a.row_sums(r));
        let bs = if a.is_blocked() { Some(a.row_block_scales(r)) } else { None };
        for (jj, j) in cols.clone().enumerate() {
            let mut acc = 0f32;
            for b in 0..w.bpr {
                let dot = block_dot(w, j, b, &ar[b * QK..(b + 1) * QK]) as f32;
                let dot = match bs {
                    Some(bs) => bs[b] * dot,
                    None => dot,
                };
                acc += w.d(j, b) * dot + w.m(j, b) * sr[b];
            }
            *out.add(r * ld + jj) = acc * a.scales[r];
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) use aarch64::store4 as store4_neon;

/// Rows of activations per pass over a column tile: 64 rows of k <= 1536 codes stay in L2.
pub(crate) const ROW_CHUNK: usize = 64;
