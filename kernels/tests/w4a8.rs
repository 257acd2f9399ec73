//! W4A8 on every ISA: exact integer results (inputs chosen so the float epilogue is exact,
//! so any integer slip shows), the f64 reference within the accumulation bound, extremes, and
//! on aarch64 the `smull` fallback next to `sdot`.
//!
//! Error bound: the kernels compute `scale * (sum_b d_b*dot_b + m_b*sum_b(a))` with exact
//! integer dots, so their only error is f32 rounding in the epilogue: at most about
//! `2*bpr + 6` roundings along any summation path (block terms, the 8-lane split, the final
//! horizontal sum, the scale) on terms bounded by `sum_c |a_c| (|d| q_c + |m|) * scale`.
//! `testing::bound(k, ·)` allows `k + 3` roundings; twice that covers `2*bpr + 6` for every
//! `k >= 1`. Activation quantization error is the quantizer's, not the kernel's, so the
//! reference uses the already-quantized codes.

use half::f16;
use kernels::formats::PaddedActivations;
use kernels::testing::{self, assert_close, big_shape, check, int_activations, q4_matrix, shape};
use kernels::variants::w4a8::{self, PackedW4, W4A8};
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

/// Blocks whose `d`, `m` make every epilogue operation exact in f32 (powers of two, halves;
/// all partial sums are multiples of 1/2 below 2^23 for k < 2000).
fn exact_matrix(n: usize, k: usize) -> impl Strategy<Value = Q4Matrix> {
    let blk = (prop::sample::select(vec![0.5f32, 1.0, 2.0]), prop::sample::select(vec![0.0f32, 1.0, -1.0, 0.5]), prop::array::uniform16(any::<u8>()))
        .prop_map(|(d, m, qs)| BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(m), qs });
    prop::collection::vec(blk, n * Q4Matrix::blocks_per_row(k)).prop_map(move |b| Q4Matrix::from_blocks(n, k, b).unwrap())
}

fn exact_acts(m: usize, k: usize, bits: u8) -> impl Strategy<Value = QuantizedActivations> {
    (int_activations(m, k, bits), prop::collection::vec(prop::sample::select(vec![0.5f32, 1.0, 2.0]), m))
        .prop_map(|(mut a, s)| {
            a.scales = s;
            a
        })
}

fn assert_exact(got: &[f32], want: &[f64], what: &str) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g as f64 == w, "{what}: element {i}: got {g}, want exactly {w}");
    }
}

per_isa!(exact_integer_dots, Variant::W4A8, |isa| {
    let s = shape().prop_flat_map(|(m, n, k)| (exact_matrix(n, k), exact_acts(m, k, 8)));
    check(150, s, |(w, a)| {
        let (want, _) = reference(&w, &a);
        assert_exact(&matmul(Variant::W4A8, isa, &w, &a), &want, &format!("w4a8 {isa} m={} n={} k={}", a.m, w.n, w.k));
    })
});

per_isa!(matches_f64_reference, Variant::W4A8, |isa| {
    let s = shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), int_activations(m, k, 8)));
    check(150, s, |(w, a)| {
        let (want, abs) = reference(&w, &a);
        assert_close(&matmul(Variant::W4A8, isa, &w, &a), &want, &abs, w.k, 2.0, &format!("w4a8 {isa}"));
    })
});

per_isa!(blocked_shapes_match_f64, Variant::W4A8, |isa| {
    let s = big_shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), int_activations(m, k, 8)));
    check(4, s, |(w, a)| {
        let (want, abs) = reference(&w, &a);
        assert_close(&matmul(Variant::W4A8, isa, &w, &a), &want, &abs, w.k, 2.0, &format!("w4a8 {isa} big"));
    })
});

// All codes 0 or 15 against activations at +-127, -128 (the largest |dot| the AVX-512
// magic-number conversion must hold) and 0, at lengths around block edges.
per_isa!(extremes_are_exact, Variant::W4A8, |isa| {
    for &k in &[1usize, 31, 32, 33, 64, 95, 600] {
        for &code in &[0u8, 15] {
            for &act in &[127i8, -127, -128, 0] {
                let (n, m) = (7, 6);
                let blk = BlockQ4_1 { d: f16::from_f32(1.0), m: f16::from_f32(0.0), qs: [code | code << 4; QK / 2] };
                let w = Q4Matrix::from_blocks(n, k, vec![blk; n * Q4Matrix::blocks_per_row(k)]).unwrap();
                let a = QuantizedActivations { m, k, bits: 8, q: vec![act; m * k], scales: vec![1.0; m], block_scales: vec![] };
                let want = (k as i64 * code as i64 * act as i64) as f32;
                let y = matmul(Variant::W4A8, isa, &w, &a);
                assert!(y.iter().all(|&v| v == want), "{isa} k={k} code={code} act={act}: {y:?} != {want}");
            }
        }
    }
});

/// The tiled layout holds every code where `PackedW4::code` says, padding columns and
/// inputs read 0.
#[test]
fn packed_layout_round_trips() {
    let s = shape().prop_flat_map(|(_, n, k)| q4_matrix(n, k));
    check(100, s, |w| {
        let p = PackedW4::new(&w);
        for j in 0..p.tiles * w4a8::TILE {
            for c in 0..p.bpr * QK {
                let want = if j < w.n { w.row(j)[c / QK].code(c % QK) } else { 0 };
                assert_eq!(p.code(j, c), want, "j={j} c={c}");
            }
        }
    })
}

/// Every available ISA path, including aarch64's `smull` fallback on a dotprod CPU, equals the
/// scalar path on the same padded activations (exact inputs, so bit-equal).
#[test]
fn all_paths_equal_scalar_on_exact_inputs() {
    let s = shape().prop_flat_map(|(m, n, k)| (exact_matrix(n, k), exact_acts(m, k, 8)));
    check(60, s, |(w, a)| {
        let p = PaddedActivations::new(&a);
        let mut want = vec![0f32; a.m * w.n];
        W4A8::new(Variant::W4A8, Isa::Scalar, &w).unwrap().gemm_padded(&p, 0..w.n, &mut want);
        for isa in [Isa::Avx2, Isa::Avx512, Isa::Neon].into_iter().filter(|i| i.is_available()) {
            for kern in [W4A8::new(Variant::W4A8, isa, &w).unwrap(), W4A8::new(Variant::W4A8, isa, &w).unwrap().without_dotprod()] {
                let mut y = vec![0f32; a.m * w.n];
                kern.gemm_padded(&p, 0..w.n, &mut y);
                assert_eq!(y, want, "{isa}");
            }
        }
    })
}

per_isa!(zero_k_gives_zeros, Variant::W4A8, |isa| {
    let w = Q4Matrix::from_blocks(20, 0, vec![]).unwrap();
    let a = QuantizedActivations { m: 3, k: 0, bits: 8, q: vec![], scales: vec![1.0; 3], block_scales: vec![] };
    assert!(matmul(Variant::W4A8, isa, &w, &a).iter().all(|&v| v == 0.0));
});

#[test]
fn packed_layout_keeps_q4_1_scales_and_size() {
    // 20 bytes per 32 weights (as Q4_1) and d, m exactly the blocks' f16 values, padding
    // columns (n = 37 -> 48) zero.
    check(20, q4_matrix(37, 75), |w| {
        let p = PackedW4::new(&w);
        let bpr = Q4Matrix::blocks_per_row(w.k);
        assert_eq!(p.tiles * bpr * w4a8::RECORD, p.tiles * w4a8::TILE * bpr * 20);
        for j in 0..p.tiles * w4a8::TILE {
            for b in 0..bpr {
                let (d, m) = if j < w.n { (w.row(j)[b].d.to_f32(), w.row(j)[b].m.to_f32()) } else { (0.0, 0.0) };
                assert_eq!((p.d(j, b).to_bits(), p.m(j, b).to_bits()), (d.to_bits(), m.to_bits()), "column {j} block {b}");
            }
        }
    });
}
