//! Per-32-block activation scales (`QuantizedActivations::block_scales`): the quantizer's
//! round trip, `w4a8` and `w4a4-widen` on every ISA against the f64 reference and bit-equal to
//! the scalar path on exact inputs, and a typed error from every variant without them.
//!
//! Error bound: as in `tests/w4a8.rs` (the dots are exact integers, only the float epilogue
//! rounds), plus one rounding per block for `s_b * dot_b` and one for the pre-multiplied sum
//! `s_b * sum_b(a)`: at most `2*bpr + 8` roundings along any path, `<= 3 (k + 3)` for every
//! `k >= 1`, so three times `testing::bound`. The reference's magnitude sum uses the exact
//! `|scale_r s_b q_c| (|d| w_c + |m|)`, which bounds every intermediate term.

use half::f16;
use kernels::formats::PaddedActivations;
use kernels::testing::{self, assert_close, block_activations, check, q4_matrix, shape, Rng};
use kernels::variants::w4a8::W4A8;
use kernels::{per_isa, Activations, BlockQ4_1, Isa, KernelError, Matmul, Q4Matrix, QuantizedActivations, Variant, QK};
use proptest::prelude::*;

fn matmul(variant: Variant, isa: Isa, w: &Q4Matrix, a: &QuantizedActivations) -> Vec<f32> {
    let mut y = vec![f32::NAN; a.m * w.n];
    Matmul::new_q4(variant, isa, w).unwrap().try_run(Activations::Int(a), &mut y).unwrap();
    y
}

fn reference(w: &Q4Matrix, a: &QuantizedActivations) -> (Vec<f64>, Vec<f64>) {
    let x = testing::int_acts_f64(a);
    let (y, _) = testing::reference(&x, a.m, &testing::q4_dense_f64(w), w.n, w.k);
    let (_, abs) = testing::reference(&x, a.m, &testing::q4_abs_f64(w), w.n, w.k);
    (y, abs)
}

#[test]
fn per_block_quantizer_round_trips() {
    let s = (1usize..=9, 1usize..=200).prop_flat_map(|(m, k)| (Just(m), Just(k), any::<u64>(), prop::sample::select(vec![8u8, 4])));
    check(200, s, |(m, k, seed, bits)| {
        let mut rng = Rng::new(seed);
        // Each block gets its own magnitude (1e-5..1e5), some blocks are all zero.
        let bpr = k.div_ceil(QK);
        let mag: Vec<f32> = (0..m * bpr).map(|_| if rng.next_u64().is_multiple_of(6) { 0.0 } else { 10f32.powf(rng.uniform(-5.0, 5.0)) }).collect();
        let x: Vec<f32> = (0..m * k).map(|i| mag[(i / k) * bpr + (i % k) / QK] * rng.uniform(-1.0, 1.0)).collect();
        let a = QuantizedActivations::quantize_per_block(&x, m, k, bits);
        let qmax = QuantizedActivations::qmax(bits);
        assert_eq!((a.block_scales.len(), a.scales.clone()), (m * bpr, vec![1.0; m]));
        assert!(a.q.iter().all(|&v| (v as i32).abs() <= qmax));
        let back = a.dequantize();
        for r in 0..m {
            for b in 0..bpr {
                let blk = r * k + b * QK..r * k + ((b + 1) * QK).min(k);
                let amax = x[blk.clone()].iter().fold(0f32, |acc, v| acc.max(v.abs()));
                let s = a.block_scales[r * bpr + b];
                assert_eq!(s, amax / qmax as f32, "row {r} block {b}");
                for i in blk {
                    // Half a step of rounding, plus f32 slack in x / s and s * q.
                    let err = (x[i] - back[i]).abs();
                    assert!(err <= 0.5 * s * (1.0 + 1e-5) + amax * 1e-6, "element {i}: {} vs {}", x[i], back[i]);
                }
            }
        }
    });
}

per_isa!(w4a8_matches_f64, Variant::W4A8, |isa| {
    let s = shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), block_activations(m, k, 8)));
    check(120, s, |(w, a)| {
        let (want, abs) = reference(&w, &a);
        assert_close(&matmul(Variant::W4A8, isa, &w, &a), &want, &abs, w.k, 3.0, &format!("w4a8 blocked {isa}"));
    })
});

per_isa!(w4a4_widen_matches_f64, Variant::W4A4Widen, |isa| {
    let s = shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), block_activations(m, k, 4)));
    check(80, s, |(w, a)| {
        let (want, abs) = reference(&w, &a);
        assert_close(&matmul(Variant::W4A4Widen, isa, &w, &a), &want, &abs, w.k, 3.0, &format!("w4a4-widen blocked {isa}"));
    })
});

per_isa!(big_shapes_match_f64, Variant::W4A8, |isa| {
    let s = testing::big_shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), block_activations(m, k, 8)));
    check(4, s, |(w, a)| {
        let (want, abs) = reference(&w, &a);
        assert_close(&matmul(Variant::W4A8, isa, &w, &a), &want, &abs, w.k, 3.0, &format!("w4a8 blocked big {isa}"));
    })
});

/// Q4_1 blocks and block scales that keep every epilogue operation exact in f32 (powers of
/// two and halves), so every path must equal the scalar one bit for bit.
fn exact_inputs(m: usize, n: usize, k: usize) -> impl Strategy<Value = (Q4Matrix, QuantizedActivations)> {
    let blk = (prop::sample::select(vec![0.5f32, 1.0, 2.0]), prop::sample::select(vec![0.0f32, 1.0, -1.0, 0.5]), prop::array::uniform16(any::<u8>()))
        .prop_map(|(d, m, qs)| BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(m), qs });
    let w = prop::collection::vec(blk, n * Q4Matrix::blocks_per_row(k)).prop_map(move |b| Q4Matrix::from_blocks(n, k, b).unwrap());
    let bs = prop::collection::vec(prop::sample::select(vec![0.0f32, 0.25, 0.5, 1.0, 2.0, 4.0]), m * k.div_ceil(QK));
    (w, testing::int_activations(m, k, 8), bs).prop_map(|(w, mut a, bs)| {
        a.scales.iter_mut().for_each(|s| *s = 1.0);
        a.block_scales = bs;
        (w, a)
    })
}

#[test]
fn all_paths_equal_scalar_on_exact_inputs() {
    let s = shape().prop_flat_map(|(m, n, k)| exact_inputs(m, n, k));
    check(60, s, |(w, a)| {
        let (want, _) = reference(&w, &a);
        let p = PaddedActivations::new(&a);
        let mut scalar = vec![0f32; a.m * w.n];
        W4A8::new(Variant::W4A8, Isa::Scalar, &w).unwrap().gemm_padded(&p, 0..w.n, &mut scalar);
        for (i, (&g, &e)) in scalar.iter().zip(&want).enumerate() {
            assert!(g as f64 == e, "scalar element {i}: {g} != {e}");
        }
        for isa in [Isa::Avx2, Isa::Avx512, Isa::Neon].into_iter().filter(|i| i.is_available()) {
            for kern in [W4A8::new(Variant::W4A8, isa, &w).unwrap(), W4A8::new(Variant::W4A8, isa, &w).unwrap().without_dotprod()] {
                let mut y = vec![0f32; a.m * w.n];
                kern.gemm_padded(&p, 0..w.n, &mut y);
                assert_eq!(y, scalar, "{isa}");
            }
        }
    })
}

/// Per-block scales equal to one reproduce the per-row result exactly.
#[test]
fn unit_block_scales_equal_per_row() {
    let s = shape().prop_flat_map(|(m, n, k)| (q4_matrix(n, k), testing::int_activations(m, k, 8)));
    check(40, s, |(w, a)| {
        let mut b = a.clone();
        b.block_scales = vec![1.0; a.m * a.blocks_per_row()];
        for (variant, isa) in kernels::available().into_iter().filter(|(v, _)| *v == Variant::W4A8) {
            assert_eq!(matmul(variant, isa, &w, &a), matmul(variant, isa, &w, &b), "{isa}");
        }
    })
}

/// Variants that apply one scale per row refuse block scales with a typed error, before
/// touching `y`; a wrong block-scale count is a shape error.
#[test]
fn other_variants_refuse_block_scales() {
    let (m, n, k) = (3, 20, 70);
    let w = Q4Matrix::quantize(n, k, &(0..n * k).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>());
    let x: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
    for (variant, isa) in kernels::available() {
        let mm = Matmul::new_q4(variant, isa, &w).unwrap();
        let bits = variant.activation_bits();
        if bits == 16 {
            continue;
        }
        let a = QuantizedActivations::quantize_per_block(&x, m, k, bits);
        let mut y = vec![7f32; m * n];
        let got = mm.try_run(Activations::Int(&a), &mut y);
        match variant {
            Variant::W4A8 | Variant::W4A4Widen => {
                got.unwrap();
                let mut bad = a.clone();
                bad.block_scales.pop();
                assert!(matches!(mm.try_run(Activations::Int(&bad), &mut y), Err(KernelError::Shape(_))), "{variant} {isa}");
            }
            _ => {
                let e = got.unwrap_err();
                assert_eq!(e, KernelError::BlockScales { variant, isa });
                assert!(e.to_string().contains(&variant.to_string()), "{e}");
                assert!(y.iter().all(|&v| v == 7.0), "{variant} {isa} wrote y");
            }
        }
    }
}

/// The per-call layout: block sums (times the block scale when blocked) and padded codes,
/// on both sides of the size above which the sums are computed in parallel, and a detached
/// copy re-attached to the same activations equals the original.
#[test]
fn padded_sums_and_detach_round_trip() {
    for (m, k) in [(3usize, 70usize), (200, 300), (130, 576)] {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 255) as f32 / 100.0 - 1.27).collect();
        for a in [QuantizedActivations::quantize_per_token(&x, m, k, 8), QuantizedActivations::quantize_per_block(&x, m, k, 8)] {
            let p = PaddedActivations::new(&a);
            let bpr = k.div_ceil(QK);
            for r in 0..m {
                for b in 0..bpr {
                    let s: i32 = a.q[r * k + b * QK..r * k + ((b + 1) * QK).min(k)].iter().map(|&v| v as i32).sum();
                    let want = if a.is_blocked() { s as f32 * a.block_scales[r * bpr + b] } else { s as f32 };
                    assert_eq!(p.row_sums(r)[b], want, "m={m} k={k} row {r} block {b}");
                }
                assert_eq!(&p.row(r)[..k], &a.q[r * k..(r + 1) * k]);
                assert!(p.row(r)[k..].iter().all(|&v| v == 0));
            }
            let detached = p.clone().detach();
            assert_eq!(detached.attach(&a), p, "m={m} k={k}");
        }
    }
}
