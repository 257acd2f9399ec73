//! The three W4A4 variants (packed multiplier, widen, table lookup) on every ISA: exact
//! integer results (inputs chosen so the float epilogue is exact), the f64 reference within
//! the accumulation bound, extremes, and the packed multiplier's guard-bit flush boundary.
//!
//! Error bound: as for W4A8 (see tests/w4a8.rs): exact integer dots per block, then at most
//! `2*bpr + 6` f32 roundings on terms bounded by `sum_c |a_c| (|d| q_c + |m|) * scale`;
//! twice `testing::bound(k, ·)` covers that. The packed kernel's `- 8 * sum(w)` correction is
//! integer, so it adds no rounding. The reference takes the already-quantized INT4 codes:
//! quantization error belongs to the quantizer, not the kernel.

use half::f16;
use kernels::testing::{self, assert_close, big_shape, check, int_activations, q4_matrix, shape};
use kernels::variants::w4a4_packed::{self, dot2, FLUSH_EVERY, MAX_ADDS};
use kernels::{per_isa, Activations, BlockQ4_1, Isa, Matmul, Q4Matrix, QuantizedActivations, Variant, QK};
use proptest::prelude::*;

fn matmul(variant: Variant, isa: Isa, w: &Q4Matrix, a: &QuantizedActivations) -> Vec<f32> {
    let mut y = vec![f32::NAN; a.m * w.n];
    Matmul::new_q4(variant, isa, w).unwrap().run(Activations::Int(a), &mut y);
    y
}

fn reference(w: &Q4Matrix, a: &QuantizedActivations) -> (Vec<f64>, Vec<f64>) {
    let x = testing::int_acts_f64(a);
    let (y, _) = testing::reference(&x, a.m, &testing::q4_dense_f64(w), w.n, w.k);
    let (_, abs) = testing::reference(&x, a.m, &testing::q4_abs_f64(w), w.n, w.k);
    (y, abs)
}

/// Blocks whose `d`, `m` keep every epilogue operation exact in f32.
fn exact_matrix(n: usize, k: usize) -> impl Strategy<Value = Q4Matrix> {
    let blk = (prop::sample::select(vec![0.5f32, 1.0, 2.0]), prop::sample::select(vec![0.0f32, 1.0, -1.0, 0.5]), prop::array::uniform16(any::<u8>()))
        .prop_map(|(d, m, qs)| BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(m), qs });
    prop::collection::vec(blk, n * Q4Matrix::blocks_per_row(k)).prop_map(move |b| Q4Matrix::from_blocks(n, k, b).unwrap())
}

fn exact_acts(m: usize, k: usize) -> impl Strategy<Value = QuantizedActivations> {
    (int_activations(m, k, 4), prop::collection::vec(prop::sample::select(vec![0.5f32, 1.0, 2.0]), m)).prop_map(|(mut a, s)| {
        a.scales = s;
        a
    })
}

/// Generates the shared tests for one W4A4 variant.
macro_rules! w4a4_tests {
    ($module:ident, $variant:expr) => {
        mod $module {
            use super::*;

            per_isa!(exact_integer_dots, $variant, |isa| {
                let s = shape().prop_flat_map(|(m, n, k)| (exact_matrix(n, k), exact_acts(m, k)));
                check(120, s, |(w, a)| {
                    let (want, _) = reference(&w, &a);
                    let y = matmul($variant, isa, &w, &a);
                    for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
                        assert!(g as f64 == e, "{} {isa} m={} n={} k={}: element {i}: got {g}, want exactly {e}", $variant, a.m, w.n, w.k);
                    }
                })
            });

            per_isa!(matches_f64_reference, $variant, |isa| {
                let s = shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), int_activations(m, k, 4)));
                check(120, s, |(w, a)| {
                    let (want, abs) = reference(&w, &a);
                    assert_close(&matmul($variant, isa, &w, &a), &want, &abs, w.k, 2.0, &format!("{} {isa}", $variant));
                })
            });

            per_isa!(blocked_shapes_match_f64, $variant, |isa| {
                let s = big_shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), int_activations(m, k, 4)));
                check(3, s, |(w, a)| {
                    let (want, abs) = reference(&w, &a);
                    assert_close(&matmul($variant, isa, &w, &a), &want, &abs, w.k, 2.0, &format!("{} {isa} big", $variant));
                })
            });

            // All codes 0 or 15 against activations at +-7 and 0, at lengths around block
            // edges and past the packed kernel's 256-addition flush interval.
            per_isa!(extremes_are_exact, $variant, |isa| {
                for &k in &[1usize, 31, 32, 33, 95, 257 * 2, 4200] {
                    for &code in &[0u8, 15] {
                        for &act in &[7i8, -7, 0] {
                            let (n, m) = (33, 5);
                            let blk = BlockQ4_1 { d: f16::from_f32(1.0), m: f16::from_f32(0.0), qs: [code | code << 4; QK / 2] };
                            let w = Q4Matrix::from_blocks(n, k, vec![blk; n * Q4Matrix::blocks_per_row(k)]).unwrap();
                            let a = QuantizedActivations { m, k, bits: 4, q: vec![act; m * k], scales: vec![1.0; m], block_scales: vec![] };
                            let want = (k as i64 * code as i64 * act as i64) as f32;
                            let y = matmul($variant, isa, &w, &a);
                            assert!(y.iter().all(|&v| v == want), "{} {isa} k={k} code={code} act={act}: {:?} != {want}", $variant, &y[..4]);
                        }
                    }
                }
            });

            per_isa!(zero_k_gives_zeros, $variant, |isa| {
                let w = Q4Matrix::from_blocks(40, 0, vec![]).unwrap();
                let a = QuantizedActivations { m: 3, k: 0, bits: 4, q: vec![], scales: vec![1.0; 3], block_scales: vec![] };
                assert!(matmul($variant, isa, &w, &a).iter().all(|&v| v == 0.0));
            });

            per_isa!(agrees_with_w4a8_path, $variant, |isa| {
                // Same codes through the W4A8 kernel (which accepts any i8): identical when exact.
                let s = shape().prop_flat_map(|(m, n, k)| (exact_matrix(n, k), exact_acts(m, k)));
                check(40, s, |(w, a)| {
                    let mut a8 = a.clone();
                    a8.bits = 8;
                    assert_eq!(matmul($variant, isa, &w, &a), matmul(Variant::W4A8, Isa::Scalar, &w, &a8));
                })
            });
        }
    };
}

w4a4_tests!(packed, Variant::W4A4Packed);
w4a4_tests!(widen, Variant::W4A4Widen);
w4a4_tests!(lut, Variant::W4A4Lut);

/// The guard-bit bound is tight: 291 additions of the largest product (225) fit in a 16-bit
/// accumulator, 292 do not.
#[test]
fn flush_bound_is_tight() {
    assert_eq!(MAX_ADDS, 291);
    assert!(MAX_ADDS as u32 * 225 <= u16::MAX as u32 && (MAX_ADDS as u32 + 1) * 225 > u16::MAX as u32);
}

/// `dot2` at every available ISA, all-max codes, lengths around the flush interval (the AVX2
/// path has 16 lanes, NEON 8, scalar 1, so lengths go past 16 * 256): exact with the default
/// flush; without flushing, past 291 additions per lane, the result is wrong, which shows the
/// flush is what keeps it exact.
#[test]
fn dot2_flush_boundary() {
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Neon].into_iter().filter(|i| i.is_available()) {
        for &len in &[255usize, 256, 257, 291, 292, 16 * 256 - 1, 16 * 256, 16 * 256 + 1, 16 * 291 + 17, 16 * 600 + 5] {
            let (w0, w1, u) = (vec![15u8; len], vec![15u8; len], vec![15u8; len]);
            assert_eq!(dot2(isa, &w0, &w1, &u, FLUSH_EVERY), (225 * len as u32, 225 * len as u32), "{isa} len={len}");
        }
        let len = 16 * 300;
        let (w0, w1, u) = (vec![15u8; len], vec![15u8; len], vec![15u8; len]);
        assert_ne!(dot2(isa, &w0, &w1, &u, usize::MAX), (225 * len as u32, 225 * len as u32), "{isa}: no flush should overflow");
    }
}

#[test]
fn dot2_matches_plain_dot() {
    let codes = |n| prop::collection::vec(0u8..=15, n);
    let s = (0usize..6000).prop_flat_map(move |n| (codes(n), codes(n), codes(n)));
    check(40, s, |(w0, w1, u)| {
        let want = (
            w0.iter().zip(&u).map(|(&a, &b)| a as u32 * b as u32).sum::<u32>(),
            w1.iter().zip(&u).map(|(&a, &b)| a as u32 * b as u32).sum::<u32>(),
        );
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Neon].into_iter().filter(|i| i.is_available()) {
            assert_eq!(dot2(isa, &w0, &w1, &u, FLUSH_EVERY), want, "{isa} len={}", u.len());
        }
    })
}

#[test]
fn packed_layout_round_trips() {
    check(60, shape().prop_flat_map(|(_, n, k)| q4_matrix(n, k)), |w| {
        let p = w4a4_packed::PackedW4x2::new(&w);
        for j in 0..p.tiles * w4a4_packed::TILE {
            for c in 0..p.bpr * QK {
                let want = if j < w.n { w.row(j)[c / QK].code(c % QK) } else { 0 };
                assert_eq!(p.code(j, c), want, "j={j} c={c}");
            }
        }
    })
}

/// The lookup tables (built with AVX2 where available) hold every partial sum of each group.
#[test]
fn lut_tables_hold_all_partial_sums() {
    use kernels::formats::PaddedActivations;
    use kernels::variants::w4a4_lut::LutActs;
    let s = shape().prop_flat_map(|(m, _, k)| int_activations(m, k, 4));
    check(100, s, |a| {
        let l = LutActs::new(PaddedActivations::new(&a));
        for (g, grp) in l.pad.q.chunks_exact(4).enumerate() {
            for idx in 0..16 {
                let want: i32 = (0..4).filter(|e| idx >> e & 1 == 1).map(|e| grp[e] as i32).sum();
                assert_eq!(l.tables[16 * g + idx] as i32, want, "group {g} index {idx}");
            }
        }
    })
}
