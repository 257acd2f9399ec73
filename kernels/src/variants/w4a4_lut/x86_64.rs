//! AVX2 table lookup: per (row, group) the 16-byte table is broadcast to both 128-bit lanes;
//! per (tile, group) two `vpshufb` look up 32 bytes `[T[p0], T[p1]]` / `[T[p2], T[p3]]` per
//! column and `vpmaddubsw` by `[1, 2]` / `[4, 8]` folds them into the column's 16-bit lane.
//! Register-blocked over MR rows x NT tiles.

// Micro-kernels index several register arrays by the same row/column counters.
#![allow(clippy::needless_range_loop)]

use super::{LutActs, PackedPlanes, G, TILE};
use crate::formats::QK;
use crate::variants::w4a8::ROW_CHUNK;
use std::arch::x86_64::*;
use std::ops::Range;

const MR: usize = 4;
const NT_GEMM: usize = 2;
const NT_GEMV: usize = 2;

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro<const R: usize, const NT: usize>(w: &PackedPlanes, a: &LutActs, r0: usize, t0: usize, out: *mut f32, ld: usize, ncols: usize) {
    let (bpr, gpr) = (w.bpr, w.bpr * QK / G);
    let mask = _mm256_set1_epi8(0x0f);
    let c12 = _mm256_set1_epi16(0x0201);
    let c48 = _mm256_set1_epi16(0x0804);
    let mut facc = [[[_mm256_setzero_ps(); 2]; NT]; R];
    for b in 0..bpr {
        let mut acc = [[_mm256_setzero_si256(); NT]; R];
        for g in b * QK / G..(b + 1) * QK / G {
            let mut i01 = [_mm256_setzero_si256(); NT];
            let mut i23 = [_mm256_setzero_si256(); NT];
            for t in 0..NT {
                let x = _mm256_loadu_si256(w.idx.as_ptr().add(((t0 + t) * gpr + g) * 32) as *const __m256i);
                i01[t] = _mm256_and_si256(x, mask);
                i23[t] = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
            }
            for r in 0..R {
                let tab = _mm_loadu_si128(a.tables.as_ptr().add(((r0 + r) * gpr + g) * 16) as *const __m128i);
                let tab = _mm256_broadcastsi128_si256(tab);
                for t in 0..NT {
                    let l01 = _mm256_shuffle_epi8(tab, i01[t]);
                    let l23 = _mm256_shuffle_epi8(tab, i23[t]);
                    acc[r][t] = _mm256_add_epi16(acc[r][t], _mm256_maddubs_epi16(c12, l01));
                    acc[r][t] = _mm256_add_epi16(acc[r][t], _mm256_maddubs_epi16(c48, l23));
                }
            }
        }
        for t in 0..NT {
            let at = ((t0 + t) * bpr + b) * TILE;
            for r in 0..R {
                let s = _mm256_broadcast_ss(a.pad.sums.get_unchecked((r0 + r) * a.pad.bpr8 + b));
                let halves = [_mm256_castsi256_si128(acc[r][t]), _mm256_extracti128_si256(acc[r][t], 1)];
                for (h, part) in halves.into_iter().enumerate() {
                    let dot = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(part));
                    let dv = _mm256_loadu_ps(w.d.as_ptr().add(at + 8 * h));
                    let mv = _mm256_loadu_ps(w.m.as_ptr().add(at + 8 * h));
                    facc[r][t][h] = _mm256_fmadd_ps(dot, dv, facc[r][t][h]);
                    facc[r][t][h] = _mm256_fmadd_ps(mv, s, facc[r][t][h]);
                }
            }
        }
    }
    for r in 0..R {
        let sc = _mm256_set1_ps(a.pad.scales[r0 + r]);
        for t in 0..NT {
            for h in 0..2 {
                let v = 2 * t + h;
                let y = _mm256_mul_ps(facc[r][t][h], sc);
                let dst = out.add(r * ld + v * 8);
                if ncols >= (v + 1) * 8 {
                    _mm256_storeu_ps(dst, y);
                } else if ncols > v * 8 {
                    let mut tmp = [0f32; 8];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), y);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, ncols - v * 8);
                }
            }
        }
    }
}

/// # Safety
/// AVX2 and FMA; `cols.start` a multiple of `TILE`; shapes checked by `gemm_acts`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gemm(w: &PackedPlanes, a: &LutActs, cols: Range<usize>, o: *mut f32, nc: usize) {
    let m = a.pad.m;
    let (mr, nt) = if m == 1 { (1, NT_GEMV) } else { (MR, NT_GEMM) };
    for rc in (0..m).step_by(ROW_CHUNK) {
        let re = (rc + ROW_CHUNK).min(m);
        let mut j = cols.start;
        while j < cols.end {
            let t = nt.min((cols.end - j).div_ceil(TILE));
            let ncols = (cols.end - j).min(t * TILE);
            let mut r = rc;
            while r < re {
                let rr = mr.min(re - r);
                let dst = o.add(r * nc + j - cols.start);
                match (rr, t) {
                    (1, 1) => micro::<1, 1>(w, a, r, j / TILE, dst, nc, ncols),
                    (1, 2) => micro::<1, 2>(w, a, r, j / TILE, dst, nc, ncols),
                    (2, 1) => micro::<2, 1>(w, a, r, j / TILE, dst, nc, ncols),
                    (2, 2) => micro::<2, 2>(w, a, r, j / TILE, dst, nc, ncols),
                    (3, 2) => micro::<3, 2>(w, a, r, j / TILE, dst, nc, ncols),
                    (4, 2) => micro::<4, 2>(w, a, r, j / TILE, dst, nc, ncols),
                    (3, 1) => micro::<3, 1>(w, a, r, j / TILE, dst, nc, ncols),
                    (4, 1) => micro::<4, 1>(w, a, r, j / TILE, dst, nc, ncols),
                    _ => unreachable!("rows {rr}, tiles {t}"),
                }
                r += rr;
            }
            j += ncols;
        }
    }
}

/// Tables for two groups per iteration: each `a_e` broadcast over its group's 16 entries
/// (`vpshufb`), masked by "bit e of the entry index", and summed. Same values as the scalar
/// doubling loop.
///
/// # Safety
/// AVX2; `tables.len() == 4 * q.len()`, `q.len()` a multiple of 4.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn build_tables(q: &[i8], tables: &mut [i8]) {
    let pairs = q.len() / 8;
    let idx = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut sel = [_mm256_setzero_si256(); 4];
    let mut bit = [_mm256_setzero_si256(); 4];
    for e in 0..4 {
        // Lane 0 broadcasts byte e (group 0), lane 1 byte 4 + e (group 1).
        sel[e] = _mm256_setr_m128i(_mm_set1_epi8(e as i8), _mm_set1_epi8(4 + e as i8));
        let b = _mm256_set1_epi8(1 << e);
        bit[e] = _mm256_cmpeq_epi8(_mm256_and_si256(idx, b), b);
    }
    for p in 0..pairs {
        let g = _mm_loadl_epi64(q.as_ptr().add(8 * p) as *const __m128i);
        let g = _mm256_broadcastsi128_si256(g);
        let mut t = _mm256_setzero_si256();
        for e in 0..4 {
            t = _mm256_add_epi8(t, _mm256_and_si256(_mm256_shuffle_epi8(g, sel[e]), bit[e]));
        }
        _mm256_storeu_si256(tables.as_mut_ptr().add(32 * p) as *mut __m256i, t);
    }
    super::build_tables_scalar(&q[8 * pairs..], &mut tables[32 * pairs..]);
}
