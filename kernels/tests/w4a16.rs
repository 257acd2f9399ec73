//! W4A16 on every ISA against the exact f64 product of the Q4_1 weights, within the
//! accumulation bound documented in `kernels::testing` (the term magnitudes use
//! `|d|·q + |m|`, which also covers forming `d·q + m` in f32).

use kernels::testing::{self, assert_close, big_shape, check, q4_matrix, shape, values};
use kernels::{per_isa, Activations, Isa, Matmul, Q4Matrix, Variant};
use proptest::prelude::*;

fn run(isa: Isa, w: &Q4Matrix, x: &[f32], m: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; m * w.n];
    Matmul::new_q4(Variant::W4A16, isa, w).unwrap().run(Activations::F32 { x, m }, &mut y);
    y
}

fn check_case(isa: Isa, m: usize, x: &[f32], w: &Q4Matrix) {
    let y = run(isa, w, x, m);
    let x64 = testing::to_f64(x);
    let (want, _) = testing::reference(&x64, m, &testing::q4_dense_f64(w), w.n, w.k);
    let (_, abs) = testing::reference(&x64, m, &testing::q4_abs_f64(w), w.n, w.k);
    assert_close(&y, &want, &abs, w.k, 1.0, &format!("w4a16 {isa} m={m} n={} k={}", w.n, w.k));
}

fn inputs(s: impl Strategy<Value = (usize, usize, usize)>) -> impl Strategy<Value = (usize, Vec<f32>, Q4Matrix)> {
    s.prop_flat_map(|(m, n, k)| (Just(m), values(m * k, 1000.0), q4_matrix(n, k)))
}

per_isa!(small_shapes_match_f64, Variant::W4A16, |isa| {
    check(300, inputs(shape()), |(m, x, w)| check_case(isa, m, &x, &w))
});

per_isa!(blocked_shapes_match_f64, Variant::W4A16, |isa| {
    check(12, inputs(big_shape()), |(m, x, w)| check_case(isa, m, &x, &w))
});

per_isa!(agrees_with_scalar, Variant::W4A16, |isa| {
    check(60, inputs(shape()), |(m, x, w)| {
        let (y, ys) = (run(isa, &w, &x, m), run(Isa::Scalar, &w, &x, m));
        let (_, abs) = testing::reference(&testing::to_f64(&x), m, &testing::q4_abs_f64(&w), w.n, w.k);
        assert_close(&y, &testing::to_f64(&ys), &abs, w.k, 2.0, &format!("w4a16 {isa} vs scalar"));
    })
});

per_isa!(matches_f16_of_same_weights_within_bound, Variant::W4A16, |isa| {
    // The f16 variant of a Q4 matrix rounds d·q + m to f16; with weights that are exact in
    // f16 (small codes times power-of-two scales) both variants compute the same products.
    let (n, k, m) = (37, 75, 3);
    let blocks = (0..n * Q4Matrix::blocks_per_row(k))
        .map(|i| kernels::BlockQ4_1 {
            d: half::f16::from_f32(0.25),
            m: half::f16::from_f32(-1.0),
            qs: std::array::from_fn(|b| ((i * 31 + b * 7) % 256) as u8),
        })
        .collect();
    let w = Q4Matrix::from_blocks(n, k, blocks).unwrap();
    let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
    let mut yf = vec![0f32; m * n];
    // f16 has no AVX-512 path of its own: compare with its AVX2 one there.
    let fisa = if kernels::available().contains(&(Variant::F16, isa)) { isa } else { Isa::Avx2 };
    Matmul::new_q4(Variant::F16, fisa, &w).unwrap().run(Activations::F32 { x: &x, m }, &mut yf);
    // Small integers times multiples of 1/4: every partial sum is exact in f32.
    assert_eq!(run(isa, &w, &x, m), yf);
});
