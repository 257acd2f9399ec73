//! INT8 attention kernels (`quant::idot`) against their scalar references (bit-exact: the
//! sums are integers and the float epilogue does the same operations in the same order),
//! the P·V weight quantizer's bound, and the INT8 KV cache.

use proptest::prelude::*;
use runtime::model::KvLayer;
use runtime::quant::attn::quantize_i8_row;
use runtime::quant::idot::{self, scalar, PV_BLOCK};

/// Codes in -127..=127, with the extremes over-represented.
fn codes(n: usize) -> impl Strategy<Value = Vec<i8>> {
    prop::collection::vec(prop_oneof![Just(127i8), Just(-127i8), Just(0i8), -127i8..=127], n)
}

fn weights(n: usize) -> impl Strategy<Value = Vec<i16>> {
    prop::collection::vec(prop_oneof![Just(i16::MAX), Just(0i16), any::<i16>()], n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn qk_equals_scalar((_d, n, q, k) in (prop::sample::select(vec![1usize, 5, 32, 64, 96, 128, 288]), 0usize..40)
        .prop_flat_map(|(d, n)| (Just(d), Just(n), codes(d), codes(n * d)))) {
        let mut want = vec![0i32; n];
        scalar::qk(&q, &k, &mut want);
        let mut got = vec![7i32; n];
        idot::qk(&q, &k, &mut got);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn pv_equals_scalar((d, _n, w, v, sc) in (prop::sample::select(vec![1usize, 7, 16, 48, 64, 80, 128, 144]), 0usize..100)
        .prop_flat_map(|(d, n)| (Just(d), Just(n), weights(n), codes(n * d),
            prop::collection::vec(prop_oneof![Just(0f32), 1e-9f32..1e-3, 0f32..2.0], n.div_ceil(PV_BLOCK))))) {
        // Both accumulate onto the same starting values.
        let mut want = vec![7f32; d];
        scalar::pv(&w, &sc, &v, &mut want);
        let mut got = vec![7f32; d];
        idot::pv(&w, &sc, &v, &mut got);
        prop_assert_eq!(&got, &want);
        // In pieces of whole blocks (how attention walks key tiles): bit for bit the same.
        let cut = (_n / 2) / PV_BLOCK * PV_BLOCK;
        let mut pieces = vec![7f32; d];
        idot::pv(&w[..cut], &sc, &v[..cut * d], &mut pieces);
        idot::pv(&w[cut..], &sc[cut / PV_BLOCK..], &v[cut * d..], &mut pieces);
        prop_assert_eq!(pieces, want);
    }

    /// Quantized weights reproduce the float weighted sum: each weight is off by at most half
    /// its block's step (block max / 65534), up to
    /// f32 rounding of the scaled weight (at most 32767 · 2^-23 of a step).
    #[test]
    fn quantized_weights_are_within_half_a_step((d, n, w, v) in (prop::sample::select(vec![16usize, 64, 7]), 1usize..300)
        .prop_flat_map(|(d, n)| (Just(d), Just(n),
            prop::collection::vec(prop_oneof![Just(0f32), 0f32..1.0, 0f32..1e-5], n), codes(n * d)))) {
        let (mut c, mut sc) = (Vec::new(), Vec::new());
        idot::quantize_weights(&w, &mut c, &mut sc);
        prop_assert_eq!(c.len(), n);
        prop_assert_eq!(sc.len(), n.div_ceil(PV_BLOCK));
        for (j, (&x, &q)) in w.iter().zip(&c).enumerate() {
            let s = sc[j / PV_BLOCK];
            prop_assert!(q >= 0 && (x - q as f32 * s).abs() <= 0.5 * s * 1.01, "{} vs {} * {}", x, q, s);
        }
        let mut got = vec![0f32; d];
        idot::pv(&c, &sc, &v, &mut got);
        for col in 0..d {
            let exact: f64 = (0..n).map(|j| w[j] as f64 * v[j * d + col] as f64).sum();
            let bound: f64 = (0..n).map(|j| (0.5 * sc[j / PV_BLOCK] as f64 * 1.01 + 1e-6 * w[j] as f64) * v[j * d + col].unsigned_abs() as f64).sum();
            prop_assert!((got[col] as f64 - exact).abs() <= bound + 1e-9, "col {}: {} vs {}", col, got[col], exact);
        }
    }
}

/// The largest weights and values over many blocks: the AVX2 pair sums and block
/// accumulators must neither wrap nor saturate.
#[test]
fn pv_extremes_do_not_overflow() {
    let (n, d) = (4097, 64);
    let w = vec![i16::MAX; n];
    let v = vec![-127i8; n * d];
    let sc = vec![1.0f32; n.div_ceil(PV_BLOCK)];
    let mut got = vec![0f32; d];
    idot::pv(&w, &sc, &v, &mut got);
    let mut want = vec![0f32; d];
    scalar::pv(&w, &sc, &v, &mut want);
    assert_eq!(got, want);
    let exact = -127.0 * 32767.0 * n as f64;
    assert!(got.iter().all(|&x| (x as f64 - exact).abs() < 1e-6 * exact.abs()));
    let q = vec![-127i8; 1024];
    let k = vec![-127i8; 1024 * 3];
    let mut s = vec![0i32; 3];
    idot::qk(&q, &k, &mut s);
    assert_eq!(s, vec![127 * 127 * 1024; 3]);
}

#[test]
fn int8_cache_holds_each_tokens_codes_and_survives_retain() {
    let (nkv, hd, cap) = (2, 8, 5);
    let row = |t: usize| (0..nkv * hd).map(|i| ((t * 31 + i * 7) % 23) as f32 - 11.0).collect::<Vec<f32>>();
    let mut l = KvLayer::new(nkv, hd, cap);
    // Two tokens before INT8 is switched on, two after: both get codes.
    let (k0, k1) = (row(0), row(1));
    l.append(&[k0.clone(), k1.clone()].concat(), &[k1.clone(), k0.clone()].concat(), &[0, 1]).unwrap();
    l.enable_int8();
    let (k2, k3) = (row(2), row(3));
    l.append(&[k2.clone(), k3.clone()].concat(), &[k3.clone(), k2.clone()].concat(), &[4, 9]).unwrap();
    let rows = [&k0, &k1, &k2, &k3];
    let vrows = [&k1, &k0, &k3, &k2];
    let check = |l: &KvLayer, idx: &[usize]| {
        for h in 0..nkv {
            let (kc, ks) = l.keys_i8(h).unwrap();
            let (vc, vs) = l.values_i8(h).unwrap();
            assert_eq!(ks.len(), idx.len());
            for (slot, &t) in idx.iter().enumerate() {
                let mut want = vec![0i8; hd];
                let s = quantize_i8_row(&rows[t][h * hd..(h + 1) * hd], &mut want);
                assert_eq!((&kc[slot * hd..(slot + 1) * hd], ks[slot]), (&want[..], s));
                let s = quantize_i8_row(&vrows[t][h * hd..(h + 1) * hd], &mut want);
                assert_eq!((&vc[slot * hd..(slot + 1) * hd], vs[slot]), (&want[..], s));
            }
        }
    };
    check(&l, &[0, 1, 2, 3]);
    l.retain(&[1, 3]);
    assert_eq!(l.positions(), &[1, 9]);
    check(&l, &[1, 3]);
}
