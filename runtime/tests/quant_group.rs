//! The group scheme (per token and 32-input block) and the fused mixed INT8/INT4 path,
//! against plain float re-implementations and against the two-call path they replace.

mod a_support;
use a_support::noise;
use kernels::{Activations, Matmul, Q4Matrix, QuantizedActivations, Variant};
use proptest::prelude::*;
use runtime::quant::{clip, trip, ActQuantizer, MixedRows};

/// Hidden-state-like rows: noise plus a few large channels.
fn outliers(m: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut x = noise(m * k, seed);
    for r in 0..m {
        for (c, gain) in [(3usize, 60.0f32), (k / 2, 25.0), (k - 1, 12.0)] {
            x[r * k + c.min(k - 1)] *= gain;
        }
    }
    x
}

/// Plain float fake quantization of one row in 32-blocks: each block's `amax / qmax`,
/// codes rounded half away from zero.
fn fq_blocks(row: &[f32], bits: u8) -> Vec<f32> {
    let qmax = ((1 << (bits - 1)) - 1) as f32;
    row.chunks(32)
        .flat_map(|b| {
            let s = b.iter().fold(0f32, |a, v| a.max(v.abs())) / qmax;
            let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
            b.iter().map(move |&v| (v * inv).round().clamp(-qmax, qmax) * s).collect::<Vec<_>>()
        })
        .collect()
}

/// Plain float fake quantization of one row with one scale.
fn fq_row(row: &[f32], s: f32, qmax: f32) -> Vec<f32> {
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    row.iter().map(|&v| (v * inv).round().clamp(-qmax, qmax) * s).collect()
}

#[test]
fn per_block_quantizer_matches_a_float_reimplementation() {
    // k = 70: two full blocks and a 6-wide tail; m * k = 21,000 (serial) and 300 x 128
    // (parallel over rows).
    for (m, k, seed) in [(3usize, 70usize, 1u64), (300, 128, 2), (1, 32, 3), (2, 5, 4)] {
        let x = outliers(m, k, seed);
        for bits in [8u8, 4] {
            let q = ActQuantizer::PerBlock { bits }.quantize(&x, m, k).unwrap();
            assert_eq!(q, QuantizedActivations::quantize_per_block(&x, m, k, bits), "m {m} k {k} bits {bits}");
            assert_eq!(q.block_scales.len(), m * k.div_ceil(32));
            let got = q.dequantize();
            for r in 0..m {
                let want = fq_blocks(&x[r * k..(r + 1) * k], bits);
                assert_eq!(&got[r * k..(r + 1) * k], &want[..], "m {m} k {k} bits {bits} row {r}");
            }
        }
    }
    // An all-zero block: scale 0, codes 0, dequantized 0.
    let mut x = noise(64, 5);
    x[32..].iter_mut().for_each(|v| *v = 0.0);
    let q = ActQuantizer::PerBlock { bits: 4 }.quantize(&x, 1, 64).unwrap();
    assert_eq!(q.block_scales[1], 0.0);
    assert!(q.q[32..].iter().all(|&c| c == 0));
}

#[test]
fn block_scales_beat_token_scales_on_outlier_rows() {
    let (m, k) = (16, 256);
    let x = outliers(m, k, 7);
    let err = |q: &QuantizedActivations| x.iter().zip(q.dequantize()).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
    for bits in [8u8, 4] {
        let tok = err(&ActQuantizer::PerToken { bits, clip: clip::default_clip(bits) }.quantize(&x, m, k).unwrap());
        let blk = err(&ActQuantizer::PerBlock { bits }.quantize(&x, m, k).unwrap());
        eprintln!("INT{bits} squared error: per-token {tok:.3e}, per-block {blk:.3e}");
        assert!(blk < 0.5 * tok, "INT{bits}: block {blk} vs token {tok}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Quantizing into a reused buffer (bigger or smaller than before) gives what a fresh
    /// quantization gives, for every scheme.
    #[test]
    fn reused_buffers_change_nothing(m1 in 1usize..6, m2 in 0usize..6, k in 1usize..100, seed in 0u64..1000, scale in 0.01f32..100.0) {
        let x1: Vec<f32> = outliers(m1, k, seed).iter().map(|v| v * scale).collect();
        let x2 = noise(m2 * k, seed + 1);
        let cf = trip::search(&x1, m1, k, 8, 3);
        let schemes = [
            ActQuantizer::PerToken { bits: 8, clip: false },
            ActQuantizer::PerToken { bits: 4, clip: true },
            ActQuantizer::PerBlock { bits: 8 },
            ActQuantizer::PerBlock { bits: 4 },
            ActQuantizer::PerTensor(cf),
        ];
        let mut buf = ActQuantizer::PerBlock { bits: 8 }.quantize(&noise(7 * k, 9), 7, k).unwrap();
        for q in &schemes {
            for (x, m) in [(&x1, m1), (&x2, m2)] {
                q.quantize_into(x, m, k, &mut buf);
                prop_assert_eq!(&buf, &q.quantize(x, m, k).unwrap());
            }
        }
        // And the fresh results are the kernels' / clip's quantizers.
        prop_assert_eq!(schemes[0].quantize(&x1, m1, k).unwrap(), QuantizedActivations::quantize_per_token(&x1, m1, k, 8));
        prop_assert_eq!(schemes[1].quantize(&x1, m1, k).unwrap(), clip::quantize_per_token_mse(&x1, m1, k, 4));
        prop_assert_eq!(schemes[3].quantize(&x1, m1, k).unwrap(), QuantizedActivations::quantize_per_block(&x1, m1, k, 4));
    }
}

/// The mixed buffer row by row: INT8 rows as the site quantizes them, INT4 rows by the
/// low-row rule, as a plain float re-implementation.
#[test]
fn mixed_buffer_rows_follow_their_rules() {
    let (m, k) = (6, 96);
    let x = outliers(m, k, 11);
    let low = [true, false, false, true, false, true];
    let mut buf = ActQuantizer::PerBlock { bits: 8 }.quantize(&x[..k], 1, k).unwrap();
    for q in [ActQuantizer::PerToken { bits: 8, clip: false }, ActQuantizer::PerBlock { bits: 8 }] {
        q.quantize_mixed_into(&x, m, k, &low, &mut buf);
        assert_eq!((buf.m, buf.k, buf.bits), (m, k, 8));
        let got = buf.dequantize();
        for r in 0..m {
            let row = &x[r * k..(r + 1) * k];
            let codes = &buf.q[r * k..(r + 1) * k];
            let want = match (&q, low[r]) {
                (ActQuantizer::PerBlock { .. }, l) => fq_blocks(row, if l { 4 } else { 8 }),
                (_, true) => fq_row(row, clip::mse_scale(row, 4), 7.0),
                (_, false) => fq_row(row, row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0, 127.0),
            };
            assert_eq!(&got[r * k..(r + 1) * k], &want[..], "{q:?} row {r}");
            let lim = if low[r] { 7 } else { 127 };
            assert!(codes.iter().all(|&c| (c as i32).abs() <= lim), "{q:?} row {r}");
        }
    }
}

/// One `w4a8` call on the mixed buffer is bit-identical to the two-call path (`w4a8` for the
/// INT8 rows, `w4a4-widen` for the INT4 rows, gathered and scattered), for every scheme,
/// serial and parallel sizes, and all-low / no-low flags.
#[test]
fn fused_mixed_rows_equal_two_calls_bit_for_bit() {
    let (n, k) = (40, 160);
    let w = Q4Matrix::quantize(n, k, &noise(n * k, 21));
    let hi = Matmul::new_q4(Variant::W4A8, kernels::best_isa(Variant::W4A8), &w).unwrap();
    let lo = Matmul::new_q4(Variant::W4A4Widen, kernels::best_isa(Variant::W4A4Widen), &w).unwrap();
    let calib = outliers(64, k, 22);
    let cf = trip::search(&calib, 64, k, 8, 3);
    assert!(cf.factors.iter().any(|&a| a > 0), "the test wants non-trivial channel factors");
    let schemes = [ActQuantizer::PerToken { bits: 8, clip: false }, ActQuantizer::PerBlock { bits: 8 }, ActQuantizer::PerTensor(cf)];
    for m in [1usize, 7, 40, 300] {
        let x = outliers(m, k, 23 + m as u64);
        let flags = noise(m, 24);
        let patterns: [Vec<bool>; 3] = [flags.iter().map(|&v| v > 0.2).collect(), vec![true; m], vec![false; m]];
        for q in &schemes {
            for low in &patterns {
                let mut fused = vec![f32::NAN; m * n];
                q.matmul_mixed(&hi, &x, m, low, &mut fused);
                let mut two = vec![f32::NAN; m * n];
                MixedRows::quantize(q, &x, m, k, low).run(&hi, &lo, &x, &mut two);
                let same = fused.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{q:?} m {m}: fused and two-call results differ");
            }
        }
    }
}

/// The fused path against plain float: fake-quantized rows times the dequantized weights.
#[test]
fn fused_mixed_rows_match_a_float_reference() {
    let (m, n, k) = (9, 24, 96);
    let w = Q4Matrix::quantize(n, k, &noise(n * k, 31));
    let wf = w.dequantize();
    let hi = Matmul::new_q4(Variant::W4A8, kernels::best_isa(Variant::W4A8), &w).unwrap();
    let x = outliers(m, k, 32);
    let low: Vec<bool> = (0..m).map(|r| r % 3 == 1).collect();
    for q in [ActQuantizer::PerToken { bits: 8, clip: false }, ActQuantizer::PerBlock { bits: 8 }] {
        let mut y = vec![0f32; m * n];
        q.matmul_mixed(&hi, &x, m, &low, &mut y);
        for r in 0..m {
            let row = &x[r * k..(r + 1) * k];
            let xq = match (&q, low[r]) {
                (ActQuantizer::PerBlock { .. }, l) => fq_blocks(row, if l { 4 } else { 8 }),
                (_, true) => fq_row(row, clip::mse_scale(row, 4), 7.0),
                (_, false) => fq_row(row, row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0, 127.0),
            };
            for j in 0..n {
                let want: f64 = (0..k).map(|c| xq[c] as f64 * wf[j * k + c] as f64).sum();
                let scale: f64 = (0..k).map(|c| (xq[c] as f64 * wf[j * k + c] as f64).abs()).sum::<f64>().max(1e-6);
                let got = y[r * n + j] as f64;
                assert!((got - want).abs() <= 1e-4 * scale, "{q:?} row {r} col {j}: {got} vs {want}");
            }
        }
    }
}

/// The plain path through the reusable buffer equals quantize-then-run.
#[test]
fn site_matmul_equals_quantize_then_run() {
    let (n, k) = (24, 64);
    let w = Q4Matrix::quantize(n, k, &noise(n * k, 41));
    for (q, v) in [
        (ActQuantizer::PerBlock { bits: 8 }, Variant::W4A8),
        (ActQuantizer::PerBlock { bits: 4 }, Variant::W4A4Widen),
        (ActQuantizer::PerToken { bits: 4, clip: true }, Variant::W4A4Widen),
    ] {
        let mm = Matmul::new_q4(v, kernels::best_isa(v), &w).unwrap();
        for m in [5usize, 600, 2] {
            let x = outliers(m, k, 42 + m as u64);
            let mut got = vec![0f32; m * n];
            q.matmul(&mm, &x, m, &mut got);
            let mut want = vec![0f32; m * n];
            mm.run(Activations::Int(&q.quantize(&x, m, k).unwrap()), &mut want);
            assert_eq!(got, want, "{q:?} m {m}");
        }
    }
}
