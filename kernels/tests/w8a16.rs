//! W8A16 (Q8_0 weights x f32 activations) on every ISA against the exact f64 product of the
//! Q8_0 weights, within the accumulation bound of `kernels::testing` (the kernels form
//! `d·q` or `d·Σ q·x`: one more rounding per term than a plain dot, covered by its `k + 3`).

use kernels::testing::{self, assert_close, big_shape, check, q8_matrix, shape, values};
use kernels::{per_isa, Activations, BlockQ8_0, Isa, Matmul, Q8Matrix, Variant, QK};
use proptest::prelude::*;

fn run(isa: Isa, w: &Q8Matrix, x: &[f32], m: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; m * w.n];
    Matmul::new_q8(isa, w).unwrap().run(Activations::F32 { x, m }, &mut y);
    y
}

fn check_case(isa: Isa, m: usize, x: &[f32], w: &Q8Matrix) {
    let y = run(isa, w, x, m);
    let x64 = testing::to_f64(x);
    let (dense, abs_w) = testing::q8_dense_f64(w);
    let (want, _) = testing::reference(&x64, m, &dense, w.n, w.k);
    let (_, abs) = testing::reference(&x64, m, &abs_w, w.n, w.k);
    assert_close(&y, &want, &abs, w.k, 1.0, &format!("w8a16 {isa} m={m} n={} k={}", w.n, w.k));
}

fn inputs(s: impl Strategy<Value = (usize, usize, usize)>) -> impl Strategy<Value = (usize, Vec<f32>, Q8Matrix)> {
    s.prop_flat_map(|(m, n, k)| (Just(m), values(m * k, 1000.0), q8_matrix(n, k)))
}

per_isa!(small_shapes_match_f64, Variant::W8A16, |isa| {
    check(300, inputs(shape()), |(m, x, w)| check_case(isa, m, &x, &w))
});

per_isa!(blocked_shapes_match_f64, Variant::W8A16, |isa| {
    check(12, inputs(big_shape()), |(m, x, w)| check_case(isa, m, &x, &w))
});

per_isa!(agrees_with_scalar, Variant::W8A16, |isa| {
    check(60, inputs(shape()), |(m, x, w)| {
        let (y, ys) = (run(isa, &w, &x, m), run(Isa::Scalar, &w, &x, m));
        let (_, abs_w) = testing::q8_dense_f64(&w);
        let (_, abs) = testing::reference(&testing::to_f64(&x), m, &abs_w, w.n, w.k);
        assert_close(&y, &testing::to_f64(&ys), &abs, w.k, 2.0, &format!("w8a16 {isa} vs scalar"));
    })
});

// Codes at -128 / 127 / 0 against large activations, at lengths around block edges: small
// integers times a power-of-two scale, so every result is exact.
per_isa!(extremes_are_exact, Variant::W8A16, |isa| {
    for &k in &[1usize, 31, 32, 33, 64, 95, 600] {
        for &code in &[-128i8, 127, 0] {
            for &xv in &[1.0f32, -64.0, 0.0] {
                let (n, m) = (19, 3);
                let blk = BlockQ8_0 { d: half::f16::from_f32(0.5), qs: [code; QK] };
                let w = Q8Matrix::from_blocks(n, k, vec![blk; n * k.div_ceil(QK)]).unwrap();
                let want = k as f32 * code as f32 * 0.5 * xv;
                let y = run(isa, &w, &vec![xv; m * k], m);
                assert!(y.iter().all(|&v| v == want), "{isa} k={k} code={code} x={xv}: {y:?} != {want}");
            }
        }
    }
});

#[test]
fn q8_quantize_round_trips_within_half_a_step() {
    check(200, values(QK, 1000.0), |v| {
        let x: [f32; QK] = v.try_into().unwrap();
        let b = BlockQ8_0::quantize(&x);
        let mut y = [0f32; QK];
        b.dequantize(&mut y);
        let d = b.d.to_f32().abs();
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        // Half a step from rounding the code, plus the f16 rounding of d over up to 127 steps.
        let tol = 0.5 * d + 127.0 * (amax / 127.0) * 2f32.powi(-11) + 1e-6;
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= tol, "{a} vs {b} (d {d})");
        }
    })
}
