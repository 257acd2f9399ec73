//! Block formats and activation quantizers: GGUF byte layout, nibble order, round trips within
//! half a step, and the padded activation layout the integer kernels read.

use half::f16;
use kernels::formats::PaddedActivations;
use kernels::testing::check;
use kernels::{BlockQ4_1, QuantizedActivations, QK};
use proptest::prelude::*;

#[test]
fn q4_1_nibble_order_is_gguf() {
    // Low nibbles are elements 0..16, high nibbles 16..32.
    let mut qs = [0u8; 16];
    qs[0] = 0x21;
    qs[15] = 0xf3;
    let b = BlockQ4_1 { d: f16::ONE, m: f16::ZERO, qs };
    assert_eq!((b.code(0), b.code(16), b.code(15), b.code(31)), (1, 2, 3, 15));
}

#[test]
fn q4_1_quantize_round_trips_within_half_a_step() {
    check(200, prop::array::uniform32(-100f32..100.0), |x| {
        let b = BlockQ4_1::quantize(&x);
        let mut y = [0f32; QK];
        b.dequantize(&mut y);
        let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        // Half a step, plus the f16 rounding of d (relative 2^-11 on up to 15 steps) and m.
        let step = (hi - lo) / 15.0;
        let tol = 0.5 * step + 15.0 * step * 2f32.powi(-10) + lo.abs() * 2f32.powi(-10) + 1e-6;
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
        }
    })
}

fn acts() -> impl Strategy<Value = (usize, usize, u8, Vec<f32>)> {
    (1usize..6, 0usize..100, prop::sample::select(vec![4u8, 8])).prop_flat_map(|(m, k, bits)| {
        (Just(m), Just(k), Just(bits), prop::collection::vec(-50f32..50.0, m * k))
    })
}

#[test]
fn per_token_quantization_is_within_half_a_step_and_in_range() {
    check(200, acts(), |(m, k, bits, x)| {
        let a = QuantizedActivations::quantize_per_token(&x, m, k, bits);
        let qmax = QuantizedActivations::qmax(bits);
        assert!(a.q.iter().all(|&q| (q as i32).abs() <= qmax));
        let y = a.dequantize();
        for r in 0..m {
            for c in 0..k {
                let err = (x[r * k + c] - y[r * k + c]).abs();
                assert!(err <= a.scales[r] * 0.5 * (1.0 + 1e-5) + 1e-6, "row {r} col {c}: err {err} scale {}", a.scales[r]);
            }
        }
    })
}

#[test]
fn per_tensor_quantization_clips_to_the_range() {
    let a = QuantizedActivations::quantize_per_tensor(&[1000.0, -1000.0, 0.2, 0.0], 1, 4, 4, 0.1);
    assert_eq!(a.q, vec![7, -7, 2, 0]);
}

#[test]
fn padded_activations_zero_the_tail_and_sum_blocks() {
    check(200, acts(), |(m, k, bits, x)| {
        let a = QuantizedActivations::quantize_per_token(&x, m, k, bits);
        let p = PaddedActivations::new(&a);
        assert_eq!(p.bpr, k.div_ceil(QK));
        assert_eq!(p.bpr8 % 8, 0);
        for r in 0..m {
            let row = p.row(r);
            assert_eq!(&row[..k], &a.q[r * k..(r + 1) * k]);
            assert!(row[k..].iter().all(|&v| v == 0), "padding must be zero");
            for b in 0..p.bpr8 {
                let want: i32 = if b < p.bpr { row[b * QK..(b + 1) * QK].iter().map(|&v| v as i32).sum() } else { 0 };
                assert_eq!(p.row_sums(r)[b], want as f32);
            }
        }
        assert_eq!(&p.scales[..], &a.scales[..]);
    })
}

/// The quantizer's vectorisable rounding must agree exactly with `f32::round` (half away
/// from zero) then clamping, including ties, NaN, infinities and values far out of range,
/// on inputs large enough to take the parallel path as well as small ones.
#[test]
fn quantization_rounds_exactly_like_f32_round() {
    let specials = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, 127.5, -127.5, 0.49999997, -0.49999997,
        6.5, -6.5, 7.5, -7.5, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0];
    for &bits in &[8u8, 4] {
        let qmax = QuantizedActivations::qmax(bits) as f32;
        for &m in &[3usize, 200] {
            let k = 171;
            let x: Vec<f32> = (0..m * k)
                .map(|i| if i % 3 == 0 { specials[i / 3 % specials.len()] } else { (i as f32 * 0.37).sin() * 140.0 })
                .collect();
            let q = QuantizedActivations::quantize_per_tensor(&x, m, k, bits, 1.0);
            for (i, (&v, &got)) in x.iter().zip(&q.q).enumerate() {
                let want = v.round().clamp(-qmax, qmax) as i8;
                assert_eq!(got, want, "bits {bits}, m {m}, element {i}: x = {v}");
            }
        }
    }
}
