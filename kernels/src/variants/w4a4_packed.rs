//! W4A4-packed: the paper's SIMD 4-bit multiplier. Two unsigned 4-bit weight codes share one
//! 16-bit lane, `w0 | w1 << 8`; one 16-bit multiply by an unsigned 4-bit activation
//! `u = a + 8` (1..=15 for INT4 codes in [-7, 7]) yields both products, `w0*u + (w1*u) << 8`,
//! each <= 15*15 = 225 < 2^8, so nothing carries across the byte (and the lane, at most
//! 225 * 257 = 57825, never wraps).
//!
//! Guard bits. Summing those lanes directly would carry the low field into the high one after
//! two products, so each lane is spread into two 16-bit accumulators: `tot += p` (wrapping)
//! and `hi += p >> 8` (exactly `w1*u`, as the low field is < 2^8). After `n` additions,
//! `hi = sum w1*u <= 225 n` and `lo = sum w0*u <= 225 n`, with `tot = lo + 256*hi (mod 2^16)`,
//! so `lo = tot - (hi << 8) (mod 2^16)` is exact while `225 n < 2^16`, i.e. `n <= 291`
//! ([`MAX_ADDS`]); both accumulators then flush to 32 bits. The matmul flushes at every
//! Q4_1 block end (32 additions per lane: the float scale `d` changes per block);
//! [`dot2`] has no blocks and flushes every [`FLUSH_EVERY`] = 256 additions per lane.
//!
//! Zero points: `sum a*w = sum (u - 8) w = sum u*w - 8 * sum w`, with `8 * sum w` per block
//! and column precomputed (exact, in i16). Q4_1's weight offset is float (`m`), handled by
//! `m * sum(a)` as in W4A8.
//!
//! Weight layout ([`PackedW4x2`]): tiles of 32 columns; per (tile, block), 16 input pairs of
//! 32 bytes, where bytes `2l` and `2l+1` hold columns `l` and `16 + l` of the tile, each byte
//! the code of the pair's first input in its low nibble and of the second in its high nibble.
//! Read as 16-bit lanes, `x & 0x0f0f` is the packed operand `w[l] | w[16+l] << 8` for the
//! first input and `(x >> 4) & 0x0f0f` for the second. Then per (tile, block): `8 * sum w`
//! as i16 [32], `d` and `m` as f32 [32]. 26 bytes per 32 weights.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use crate::formats::{PaddedActivations, QK};
use crate::matmul::{KernelError, Q4Matrix};
use crate::registry::{Isa, Variant};
use crate::variants::{Act, OutTile, Prepared};
use std::any::Any;
use std::ops::Range;

/// Columns per weight tile: 16 lanes of two columns each.
pub const TILE: usize = 32;
/// Largest product of an unsigned 4-bit weight code and activation.
pub const MAX_PRODUCT: u32 = 15 * 15;
/// Most additions a 16-bit guard-bit accumulator takes before `lo` could reach 2^16.
pub const MAX_ADDS: usize = (u16::MAX as u32 / MAX_PRODUCT) as usize;
/// Flush interval of [`dot2`] (a power of two at most [`MAX_ADDS`]).
pub const FLUSH_EVERY: usize = 256;
const _: () = assert!(MAX_ADDS == 291 && FLUSH_EVERY <= MAX_ADDS && QK <= MAX_ADDS);

/// Weights in the packed-pair layout of the module doc.
#[derive(Clone, Debug)]
pub struct PackedW4x2 {
    pub n: usize,
    pub k: usize,
    pub bpr: usize,
    pub tiles: usize,
    /// `tiles x bpr x 16 x 32` bytes.
    pub qs: Vec<u8>,
    /// `tiles x bpr x 32`: 8 * (sum of the block's 32 codes, padding included).
    pub sw8: Vec<i16>,
    /// `tiles x bpr x 32`, zero for padding columns.
    pub d: Vec<f32>,
    pub m: Vec<f32>,
}

impl PackedW4x2 {
    pub fn new(w: &Q4Matrix) -> Self {
        let bpr = Q4Matrix::blocks_per_row(w.k);
        let tiles = w.n.div_ceil(TILE);
        let per = tiles * bpr * TILE;
        let mut p = PackedW4x2 {
            n: w.n,
            k: w.k,
            bpr,
            tiles,
            qs: vec![0u8; per * QK / 2],
            sw8: vec![0; per],
            d: vec![0f32; per],
            m: vec![0f32; per],
        };
        for j in 0..w.n {
            for (b, blk) in w.row(j).iter().enumerate() {
                let at = p.scale_at(j, b);
                p.d[at] = blk.d.to_f32();
                p.m[at] = blk.m.to_f32();
                p.sw8[at] = 8 * (0..QK).map(|i| blk.code(i) as i16).sum::<i16>();
                for i in 0..QK {
                    let (byte, shift) = p.code_at(j, b * QK + i);
                    p.qs[byte] |= blk.code(i) << shift;
                }
            }
        }
        p
    }

    fn code_at(&self, j: usize, c: usize) -> (usize, u32) {
        let (t, jj, b, cc) = (j / TILE, j % TILE, c / QK, c % QK);
        let byte = ((t * self.bpr + b) * 16 + cc / 2) * 32 + 2 * (jj % 16) + jj / 16;
        (byte, 4 * (cc % 2) as u32)
    }

    pub fn code(&self, j: usize, c: usize) -> u8 {
        let (byte, shift) = self.code_at(j, c);
        (self.qs[byte] >> shift) & 0x0f
    }

    pub fn scale_at(&self, j: usize, b: usize) -> usize {
        ((j / TILE) * self.bpr + b) * TILE + j % TILE
    }
}

/// Activations for the packed kernels: the padded codes (for the sums) plus `u = a + 8` as
/// u16, one per input, padded with 8 (that is `a = 0`, consistent with `sw8`).
pub struct PackedActs<'a> {
    pub pad: PaddedActivations<'a>,
    /// `m x bpr*32`.
    pub u: Vec<u16>,
}

impl<'a> PackedActs<'a> {
    pub fn new(pad: PaddedActivations<'a>) -> Self {
        Self::with_buffer(pad, Vec::new())
    }

    /// Fills `u` reusing its allocation.
    pub fn with_buffer(pad: PaddedActivations<'a>, mut u: Vec<u16>) -> Self {
        assert!(pad.q.iter().all(|&v| (-8..=7).contains(&v)), "w4a4-packed needs 4-bit activation codes");
        assert!(!pad.is_blocked(), "w4a4-packed applies one scale per row (Matmul::try_run refuses block scales)");
        u.clear();
        u.extend(pad.q.iter().map(|&v| (v as i16 + 8) as u16));
        PackedActs { pad, u }
    }
}

pub fn implemented(isa: Isa) -> bool {
    // No 512-bit path of its own (yet): on AVX-512 machines it runs its AVX2 one.
    isa != Isa::Avx512 && crate::variants::w4a8::implemented(isa)
}

pub fn prepare(isa: Isa, w: &Q4Matrix) -> Result<Box<dyn Prepared>, KernelError> {
    Ok(Box::new(W4A4Packed::new(isa, w)?))
}

pub struct W4A4Packed {
    isa: Isa,
    w: PackedW4x2,
}

impl W4A4Packed {
    pub fn new(isa: Isa, w: &Q4Matrix) -> Result<Self, KernelError> {
        if !implemented(isa) || !isa.is_available() {
            return Err(KernelError::Unsupported { variant: Variant::W4A4Packed, isa });
        }
        Ok(W4A4Packed { isa, w: PackedW4x2::new(w) })
    }

    pub fn packed(&self) -> &PackedW4x2 {
        &self.w
    }

    /// The tile for `cols` (row-major `m x cols.len()`).
    pub fn gemm_acts(&self, a: &PackedActs, cols: Range<usize>, out: &mut [f32]) {
        assert_eq!(out.len(), a.pad.m * cols.len(), "output tile must be m x cols");
        // SAFETY: `out` is exactly the m x cols.len() tile with stride cols.len().
        unsafe { self.tile(a, cols.clone(), out.as_mut_ptr(), cols.len()) }
    }

    /// # Safety
    /// `out` points at an `m x cols.len()` region with row stride `ld` that nothing else
    /// accesses during the call.
    unsafe fn tile(&self, a: &PackedActs, cols: Range<usize>, out: *mut f32, ld: usize) {
        assert_eq!(a.pad.bpr, self.w.bpr, "activations have k = {}, weights k = {}", a.pad.k, self.w.k);
        assert!(cols.end <= self.w.n && ld >= cols.len());
        assert!(cols.start.is_multiple_of(TILE), "column tiles start at multiples of {TILE}");
        match self.isa {
            Isa::Scalar => gemm_scalar(&self.w, a, cols, out, ld),
            #[cfg(target_arch = "x86_64")]
            // `new` checked that the CPU has AVX2 and FMA.
            Isa::Avx2 => x86_64::gemm(&self.w, a, cols, out, ld),
            #[cfg(target_arch = "aarch64")]
            // `new` checked NEON.
            Isa::Neon => aarch64::gemm(&self.w, a, cols, out, ld),
            #[allow(unreachable_patterns)]
            _ => unreachable!("checked in new"),
        }
    }
}

impl Prepared for W4A4Packed {
    fn variant(&self) -> Variant {
        Variant::W4A4Packed
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
    fn gemm_into(&self, a: Act<'_>, cols: Range<usize>, mut out: OutTile<'_>) {
        assert!(out.m() == a.m() && out.cols() == cols.len());
        let acts = PackedActs::with_buffer(crate::variants::w4a8::prepare_act(a), OFFSET_CODES.take());
        // SAFETY: an `OutTile` is exclusive m x cols with stride ld.
        unsafe { self.tile(&acts, cols, out.as_mut_ptr(), out.ld()) }
        OFFSET_CODES.set(acts.u);
    }
    /// Offset codes once per call instead of once per tile.
    fn prepare_act(&self, a: Act<'_>) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(PackedActs::new(crate::variants::w4a8::prepare_act(a).into_owned())))
    }
    fn gemm_into_with(&self, a: Act<'_>, prep: Option<&(dyn Any + Send + Sync)>, cols: Range<usize>, mut out: OutTile<'_>) {
        match prep.and_then(|p| p.downcast_ref::<PackedActs<'static>>()) {
            Some(p) => {
                assert!(out.m() == p.pad.m && out.cols() == cols.len());
                // SAFETY: an `OutTile` is exclusive m x cols with stride ld.
                unsafe { self.tile(p, cols, out.as_mut_ptr(), out.ld()) }
            }
            None => self.gemm_into(a, cols, out),
        }
    }
}

thread_local! {
    /// Per-thread buffer for `PackedActs::u`, kept between calls.
    static OFFSET_CODES: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
}

/// One guard-bit lane pair: `tot` and `hi` of the module doc.
#[derive(Clone, Copy, Default)]
struct Lane {
    tot: u16,
    hi: u16,
}

impl Lane {
    #[inline]
    fn add(&mut self, packed_w: u16, u: u16) {
        let p = packed_w.wrapping_mul(u);
        self.tot = self.tot.wrapping_add(p);
        self.hi = self.hi.wrapping_add(p >> 8);
    }
    /// (sum w0*u, sum w1*u), exact for at most MAX_ADDS additions.
    #[inline]
    fn flush(self) -> (u32, u32) {
        (self.tot.wrapping_sub(self.hi << 8) as u32, self.hi as u32)
    }
}

/// Scalar path: the same lanes, additions and flushes as the SIMD kernels, one lane at a time.
///
/// # Safety
/// As `tile`.
unsafe fn gemm_scalar(w: &PackedW4x2, a: &PackedActs, cols: Range<usize>, out: *mut f32, ld: usize) {
    let (bpr, kp) = (w.bpr, w.bpr * QK);
    for r in 0..a.pad.m {
        let u = &a.u[r * kp..(r + 1) * kp];
        let sums = a.pad.row_sums(r);
        for t in cols.start / TILE..cols.end.div_ceil(TILE) {
            let mut acc = [0f32; TILE];
            for b in 0..bpr {
                let mut lanes = [Lane::default(); 16];
                for q in 0..QK / 2 {
                    let rec = &w.qs[((t * bpr + b) * 16 + q) * 32..][..32];
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        let x = u16::from_le_bytes([rec[2 * l], rec[2 * l + 1]]);
                        lane.add(x & 0x0f0f, u[b * QK + 2 * q]);
                        lane.add((x >> 4) & 0x0f0f, u[b * QK + 2 * q + 1]);
                    }
                }
                for (l, lane) in lanes.iter().enumerate() {
                    let (lo, hi) = lane.flush();
                    for (jj, s) in [(l, lo), (l + 16, hi)] {
                        let at = (t * bpr + b) * TILE + jj;
                        let dot = s as i32 - w.sw8[at] as i32;
                        acc[jj] += w.d[at] * dot as f32 + w.m[at] * sums[b];
                    }
                }
            }
            for (jj, &v) in acc.iter().enumerate() {
                let j = t * TILE + jj;
                if cols.contains(&j) {
                    *out.add(r * ld + j - cols.start) = v * a.pad.scales[r];
                }
            }
        }
    }
}

/// Two columns' dots with one unsigned activation vector through the packed multiplier, with
/// no block structure: `(sum w0*u, sum w1*u)` for codes `w0`, `w1` and `u` in 0..=15. Lanes
/// flush to 32 bits every [`FLUSH_EVERY`] additions, so any length is exact. `flush_every`
/// other than the default exists to show the bound is real (tests).
pub fn dot2(isa: Isa, w0: &[u8], w1: &[u8], u: &[u8], flush_every: usize) -> (u32, u32) {
    assert!(w0.len() == u.len() && w1.len() == u.len());
    assert!(w0.iter().chain(w1).chain(u).all(|&v| v <= 15), "codes must be 4-bit");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: checked just now.
        Isa::Avx2 if isa.is_available() => unsafe { x86_64::dot2(w0, w1, u, flush_every) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if isa.is_available() => unsafe { aarch64::dot2(w0, w1, u, flush_every) },
        _ => dot2_scalar(w0, w1, u, flush_every),
    }
}

fn dot2_scalar(w0: &[u8], w1: &[u8], u: &[u8], flush_every: usize) -> (u32, u32) {
    let (mut s0, mut s1, mut lane, mut adds) = (0u32, 0u32, Lane::default(), 0);
    for i in 0..u.len() {
        lane.add(w0[i] as u16 | (w1[i] as u16) << 8, u[i] as u16);
        adds += 1;
        if adds == flush_every {
            let (a, b) = lane.flush();
            (s0, s1, lane, adds) = (s0 + a, s1 + b, Lane::default(), 0);
        }
    }
    let (a, b) = lane.flush();
    (s0 + a, s1 + b)
}
