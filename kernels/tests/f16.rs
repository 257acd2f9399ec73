//! The f16 baseline on every ISA against the exact f64 product of the f16-rounded weights,
//! within the accumulation bound documented in `kernels::testing`.

use half::f16;
use kernels::testing::{self, assert_close, big_shape, check, shape, values};
use kernels::{per_isa, Activations, Isa, Matmul, Variant};
use proptest::prelude::*;

/// Runs `isa`'s f16 matmul on random `x`, `w` of the given shape and checks it against the
/// f64 reference of the f16-rounded weights.
fn check_case(isa: Isa, (m, n, k): (usize, usize, usize), x: &[f32], w: &[f32]) {
    let mm = Matmul::new_f16(isa, n, k, w).unwrap();
    let mut y = vec![f32::NAN; m * n];
    mm.run(Activations::F32 { x, m }, &mut y);
    let w16: Vec<f64> = w.iter().map(|&v| f16::from_f32(v).to_f64()).collect();
    let (want, abs) = testing::reference(&testing::to_f64(x), m, &w16, n, k);
    assert_close(&y, &want, &abs, k, 1.0, &format!("f16 {isa} m={m} n={n} k={k}"));
}

fn inputs(s: impl Strategy<Value = (usize, usize, usize)>) -> impl Strategy<Value = ((usize, usize, usize), Vec<f32>, Vec<f32>)> {
    s.prop_flat_map(|(m, n, k)| (Just((m, n, k)), values(m * k, 1000.0), values(n * k, 60000.0)))
}

per_isa!(small_shapes_match_f64, Variant::F16, |isa| {
    check(300, inputs(shape()), |(s, x, w)| check_case(isa, s, &x, &w))
});

per_isa!(blocked_shapes_match_f64, Variant::F16, |isa| {
    check(12, inputs(big_shape()), |(s, x, w)| check_case(isa, s, &x, &w))
});

per_isa!(from_f16_equals_from_f32, Variant::F16, |isa| {
    check(30, inputs(shape()), |((m, n, k), x, w)| {
        let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let (mut y1, mut y2) = (vec![0f32; m * n], vec![0f32; m * n]);
        Matmul::new_f16(isa, n, k, &w).unwrap().run(Activations::F32 { x: &x, m }, &mut y1);
        Matmul::new_f16_from_f16(isa, n, k, &w16).unwrap().run(Activations::F32 { x: &x, m }, &mut y2);
        assert_eq!(y1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), y2.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    })
});

per_isa!(agrees_with_scalar, Variant::F16, |isa| {
    // Both are within the bound of the exact result, so within twice of each other.
    check(60, inputs(shape()), |((m, n, k), x, w)| {
        let (mut y, mut ys) = (vec![0f32; m * n], vec![0f32; m * n]);
        Matmul::new_f16(isa, n, k, &w).unwrap().run(Activations::F32 { x: &x, m }, &mut y);
        Matmul::new_f16(Isa::Scalar, n, k, &w).unwrap().run(Activations::F32 { x: &x, m }, &mut ys);
        let w16: Vec<f64> = w.iter().map(|&v| f16::from_f32(v).to_f64()).collect();
        let (_, abs) = testing::reference(&testing::to_f64(&x), m, &w16, n, k);
        assert_close(&y, &testing::to_f64(&ys), &abs, k, 2.0, &format!("f16 {isa} vs scalar"));
    })
});

per_isa!(zero_k_gives_zeros, Variant::F16, |isa| {
    let mm = Matmul::new_f16(isa, 5, 0, &[]).unwrap();
    let mut y = vec![f32::NAN; 3 * 5];
    mm.run(Activations::F32 { x: &[], m: 3 }, &mut y);
    assert!(y.iter().all(|&v| v == 0.0), "{y:?}");
});

#[test]
fn wrong_weight_count_is_a_shape_error() {
    let err = Matmul::new_f16(Isa::Scalar, 3, 4, &[0.0; 11]).unwrap_err();
    assert!(matches!(err, kernels::KernelError::Shape(_)), "{err}");
}

/// The AVX-512 GEMM runs the AVX2 kernel's operations in the same order per output (one FMA
/// chain in increasing k), so the two agree bit for bit; the same holds for w4a16 and w8a16,
/// whose GEMMs feed the same drivers. (GEMVs differ: they sum per group or over 8 k-lanes.)
#[test]
fn avx512_gemm_equals_avx2_bit_for_bit() {
    if !Isa::Avx512.is_available() {
        eprintln!("avx512_gemm_equals_avx2_bit_for_bit: skipped: no AVX-512 here");
        return;
    }
    let s = prop_oneof![shape(), big_shape()].prop_filter("GEMM", |s| s.0 > 1);
    check(60, inputs(s), |((m, n, k), x, w)| {
        let q4 = kernels::Q4Matrix::quantize(n, k, &w);
        let q8 = kernels::Q8Matrix::quantize(n, k, &w);
        let run = |mm: Matmul| {
            let mut y = vec![f32::NAN; m * n];
            mm.run(Activations::F32 { x: &x, m }, &mut y);
            y.into_iter().map(f32::to_bits).collect::<Vec<_>>()
        };
        for v in [Variant::F16, Variant::W4A16] {
            let (a, b) = (Matmul::new_q4(v, Isa::Avx2, &q4).unwrap(), Matmul::new_q4(v, Isa::Avx512, &q4).unwrap());
            assert!(run(a) == run(b), "{v} m={m} n={n} k={k}");
        }
        let (a, b) = (Matmul::new_q8(Isa::Avx2, &q8).unwrap(), Matmul::new_q8(Isa::Avx512, &q8).unwrap());
        assert!(run(a) == run(b), "w8a16 m={m} n={n} k={k}");
    })
}
