//! W4A4-lut: T-MAC-style table lookup, bit-serial over the weight bits. For each group of 4
//! consecutive inputs, one 16-entry table per activation row holds every partial sum of the
//! group's activations: `T[idx] = sum_e bit_e(idx) * a_e` (|T| <= 4*8 = 32, an i8). A
//! weight column's 4 codes of the group split into 4 bit planes; plane `i`'s 4 bits form an
//! index `p_i`, and `sum_e w_e a_e = T[p0] + 2 T[p1] + 4 T[p2] + 8 T[p3]`. The lookups are
//! `vpshufb` / `tbl` (16 columns per instruction), no multiplies of activations by weights.
//!
//! Accumulation: per group `|T[p0] + 2 T[p1]| <= 96` and `|4 T[p2] + 8 T[p3]| <= 384`, so a
//! 32-block (8 groups) stays within 8 * 480 = 3840 in 16 bits, exact; flushed per block.
//!
//! Weight layout ([`PackedPlanes`]): tiles of 16 columns; per (tile, group of 4 inputs) 32
//! bytes where byte `2l` holds `p0 | p2 << 4` and byte `2l+1` holds `p1 | p3 << 4` of the
//! tile's column `l`. On x86 a mask / shift+mask gives bytes `[p0, p1]` / `[p2, p3]` per
//! column, and `vpmaddubsw` by `[1, 2]` / `[4, 8]` applies the bit weights while summing
//! the pair into the column's 16-bit lane; on ARM `ld2` de-interleaves the two bytes. Then per
//! (tile, block) `d`, `m` as f32 [16]. 24 bytes per 32 weights, as W4A8.
//!
//! Tables cost 4 bytes per activation and are built once per call, so the lookups pay off
//! only with enough columns per call (every shape here has n >= 192).

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use crate::formats::{PaddedActivations, QK};
use crate::matmul::{KernelError, Q4Matrix};
use crate::registry::{Isa, Variant};
use crate::variants::{Act, OutTile, Prepared};
use rayon::prelude::*;
use std::any::Any;
use std::ops::Range;

/// Columns per weight tile.
pub const TILE: usize = 16;
/// Inputs per table.
pub const G: usize = 4;

/// Weights as bit-plane indices; see the module doc.
#[derive(Clone, Debug)]
pub struct PackedPlanes {
    pub n: usize,
    pub k: usize,
    pub bpr: usize,
    pub tiles: usize,
    /// `tiles x (bpr * 8 groups) x 32` bytes.
    pub idx: Vec<u8>,
    /// `tiles x bpr x 16`, zero for padding columns.
    pub d: Vec<f32>,
    pub m: Vec<f32>,
}

impl PackedPlanes {
    pub fn new(w: &Q4Matrix) -> Self {
        let bpr = Q4Matrix::blocks_per_row(w.k);
        let tiles = w.n.div_ceil(TILE);
        let gpr = bpr * QK / G;
        let mut p = PackedPlanes {
            n: w.n,
            k: w.k,
            bpr,
            tiles,
            idx: vec![0u8; tiles * gpr * 32],
            d: vec![0f32; tiles * bpr * TILE],
            m: vec![0f32; tiles * bpr * TILE],
        };
        for j in 0..w.n {
            let (t, l) = (j / TILE, j % TILE);
            let row = w.row(j);
            for (b, blk) in row.iter().enumerate() {
                p.d[(t * bpr + b) * TILE + l] = blk.d.to_f32();
                p.m[(t * bpr + b) * TILE + l] = blk.m.to_f32();
            }
            for g in 0..gpr {
                let mut planes = [0u8; 4];
                for e in 0..G {
                    let c = g * G + e;
                    let code = row[c / QK].code(c % QK);
                    for (i, plane) in planes.iter_mut().enumerate() {
                        *plane |= ((code >> i) & 1) << e;
                    }
                }
                let at = (t * gpr + g) * 32 + 2 * l;
                p.idx[at] = planes[0] | planes[2] << 4;
                p.idx[at + 1] = planes[1] | planes[3] << 4;
            }
        }
        p
    }

    /// The code of column `j`, input `c`, rebuilt from the bit planes.
    pub fn code(&self, j: usize, c: usize) -> u8 {
        let gpr = self.bpr * QK / G;
        let at = ((j / TILE) * gpr + c / G) * 32 + 2 * (j % TILE);
        let planes = [self.idx[at] & 15, self.idx[at + 1] & 15, self.idx[at] >> 4, self.idx[at + 1] >> 4];
        (0..4).map(|i| ((planes[i] >> (c % G)) & 1) << i).sum()
    }
}

/// Per-call activation data: the padded codes (for sums and scales) and the tables, 16 i8
/// per (row, group), `m x (bpr * 8) x 16`.
pub struct LutActs<'a> {
    pub pad: PaddedActivations<'a>,
    pub tables: Vec<i8>,
}

impl<'a> LutActs<'a> {
    pub fn new(pad: PaddedActivations<'a>) -> Self {
        Self::with_buffer(pad, Vec::new())
    }

    /// Builds the tables into `tables` (reusing its allocation: fresh megabyte buffers cost
    /// page faults on every call).
    pub fn with_buffer(pad: PaddedActivations<'a>, mut tables: Vec<i8>) -> Self {
        assert!(pad.q.iter().all(|&v| (-8..=7).contains(&v)), "w4a4-lut needs 4-bit activation codes");
        assert!(!pad.is_blocked(), "w4a4-lut applies one scale per row (Matmul::try_run refuses block scales)");
        tables.resize(pad.q.len() * 4, 0);
        // Rows in parallel chunks (inside the caller's pool) once there is enough work.
        let rows = (1 << 16) / (pad.bpr * QK).max(1) + 1;
        let kp = pad.bpr * QK;
        let chunk = (rows * kp).max(4);
        tables.par_chunks_mut(chunk * 4).zip(pad.q.par_chunks(chunk)).for_each(|(t, q)| build_tables(q, t));
        LutActs { pad, tables }
    }
}

/// `tables[16g + idx] = sum_e bit_e(idx) * q[4g + e]`, with AVX2 where available.
fn build_tables(q: &[i8], tables: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2.is_available() {
        // SAFETY: AVX2 checked; `tables` is 4x `q`, whole groups.
        unsafe { x86_64::build_tables(q, tables) };
        return;
    }
    build_tables_scalar(q, tables)
}

/// `tables[16g + idx] = sum_e bit_e(idx) * q[4g + e]`.
fn build_tables_scalar(q: &[i8], tables: &mut [i8]) {
    for (grp, t) in q.chunks_exact(G).zip(tables.chunks_exact_mut(16)) {
        // Doubling: entries with bit e set are the entries below 2^e plus a_e.
        t[0] = 0;
        for (e, &ae) in grp.iter().enumerate() {
            let half = 1 << e;
            for i in 0..half {
                t[half + i] = t[i] + ae;
            }
        }
    }
}

pub fn implemented(isa: Isa) -> bool {
    // No 512-bit path of its own (yet): on AVX-512 machines it runs its AVX2 one.
    isa != Isa::Avx512 && crate::variants::w4a8::implemented(isa)
}

pub fn prepare(isa: Isa, w: &Q4Matrix) -> Result<Box<dyn Prepared>, KernelError> {
    Ok(Box::new(W4A4Lut::new(isa, w)?))
}

pub struct W4A4Lut {
    isa: Isa,
    w: PackedPlanes,
}

impl W4A4Lut {
    pub fn new(isa: Isa, w: &Q4Matrix) -> Result<Self, KernelError> {
        if !implemented(isa) || !isa.is_available() {
            return Err(KernelError::Unsupported { variant: Variant::W4A4Lut, isa });
        }
        Ok(W4A4Lut { isa, w: PackedPlanes::new(w) })
    }

    pub fn packed(&self) -> &PackedPlanes {
        &self.w
    }

    /// The tile for `cols` (row-major `m x cols.len()`).
    pub fn gemm_acts(&self, a: &LutActs, cols: Range<usize>, out: &mut [f32]) {
        assert_eq!(out.len(), a.pad.m * cols.len(), "output tile must be m x cols");
        // SAFETY: `out` is exactly the m x cols.len() tile with stride cols.len().
        unsafe { self.tile(a, cols.clone(), out.as_mut_ptr(), cols.len()) }
    }

    /// # Safety
    /// `out` points at an `m x cols.len()` region with row stride `ld` that nothing else
    /// accesses during the call.
    unsafe fn tile(&self, a: &LutActs, cols: Range<usize>, out: *mut f32, ld: usize) {
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

impl Prepared for W4A4Lut {
    fn variant(&self) -> Variant {
        Variant::W4A4Lut
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
        let acts = LutActs::with_buffer(crate::variants::w4a8::prepare_act(a), TABLES.take());
        // SAFETY: an `OutTile` is exclusive m x cols with stride ld.
        unsafe { self.tile(&acts, cols, out.as_mut_ptr(), out.ld()) }
        TABLES.set(acts.tables);
    }
    /// Tables once per call instead of once per tile.
    fn prepare_act(&self, a: Act<'_>) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(LutActs::new(crate::variants::w4a8::prepare_act(a).into_owned())))
    }
    fn gemm_into_with(&self, a: Act<'_>, prep: Option<&(dyn Any + Send + Sync)>, cols: Range<usize>, mut out: OutTile<'_>) {
        match prep.and_then(|p| p.downcast_ref::<LutActs<'static>>()) {
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
    /// Per-thread table buffer kept between calls (see `LutActs::with_buffer`).
    static TABLES: std::cell::Cell<Vec<i8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Scalar path: the same lookups and 16-bit accumulation as the SIMD kernels.
///
/// # Safety
/// As `tile`.
unsafe fn gemm_scalar(w: &PackedPlanes, a: &LutActs, cols: Range<usize>, out: *mut f32, ld: usize) {
    let (bpr, gpr) = (w.bpr, w.bpr * QK / G);
    for r in 0..a.pad.m {
        let sums = a.pad.row_sums(r);
        for (jj, j) in cols.clone().enumerate() {
            let (t, l) = (j / TILE, j % TILE);
            let mut acc = 0f32;
            for (b, &sum) in sums.iter().enumerate().take(bpr) {
                let mut dot = 0i16;
                for g in b * QK / G..(b + 1) * QK / G {
                    let tab = &a.tables[(r * gpr + g) * 16..][..16];
                    let at = (t * gpr + g) * 32 + 2 * l;
                    let (x0, x1) = (w.idx[at], w.idx[at + 1]);
                    let look = |i: u8| tab[(i & 15) as usize] as i16;
                    dot += look(x0) + 2 * look(x1) + 4 * look(x0 >> 4) + 8 * look(x1 >> 4);
                }
                let at = (t * bpr + b) * TILE + l;
                acc += w.d[at] * dot as f32 + w.m[at] * sum;
            }
            *out.add(r * ld + jj) = acc * a.pad.scales[r];
        }
    }
}
