//! Dispatch: what the registry lists, errors for what it does not, and results that are
//! bit-identical at every thread count for every (variant, ISA) available here.

use kernels::formats::QuantizedActivations;
use kernels::{available, best_isa, Activations, Isa, KernelError, Matmul, Q4Matrix, Variant};

/// Deterministic pseudo-random values in [-1, 1).
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn run_with_threads(mm: &Matmul, m: usize, x: &[f32], threads: usize) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut y = vec![f32::NAN; m * mm.n()];
    let q;
    let act = match mm.variant().activation_bits() {
        16 => Activations::F32 { x, m },
        bits => {
            q = QuantizedActivations::quantize_per_token(x, m, mm.k(), bits);
            Activations::Int(&q)
        }
    };
    pool.install(|| mm.run(act, &mut y));
    y.into_iter().map(f32::to_bits).collect()
}

#[test]
fn scalar_is_listed_for_every_variant() {
    let avail = available();
    for v in Variant::ALL {
        assert!(avail.contains(&(v, Isa::Scalar)), "{v} has no scalar entry in {avail:?}");
    }
    for (v, isa) in avail {
        assert!(isa.is_available(), "{v} listed on unavailable {isa}");
    }
}

#[test]
fn best_isa_is_available_and_simd_where_the_cpu_has_it() {
    for v in Variant::ALL {
        let isa = best_isa(v);
        assert!(available().contains(&(v, isa)), "best {isa} for {v} not in available()");
    }
    for v in [Variant::F16, Variant::W4A16, Variant::W8A16, Variant::W4A8] {
        let want = [Isa::Avx512, Isa::Avx2, Isa::Neon].into_iter().find(|i| i.is_available()).unwrap_or(Isa::Scalar);
        assert_eq!(best_isa(v), want, "{v}");
    }
}

#[test]
fn unavailable_isa_is_a_typed_error() {
    let other = if cfg!(target_arch = "x86_64") { Isa::Neon } else { Isa::Avx2 };
    // And a SIMD ISA that is not implemented for a variant at all.
    if Isa::Avx512.is_available() {
        let w = Q4Matrix::quantize(4, 32, &noise(128, 1));
        let v = Variant::W4A4Lut;
        assert_eq!(Matmul::new_q4(v, Isa::Avx512, &w).unwrap_err(), KernelError::Unsupported { variant: v, isa: Isa::Avx512 });
    }
    let w = Q4Matrix::quantize(4, 32, &noise(128, 1));
    for v in Variant::ALL {
        let err = Matmul::new_q4(v, other, &w).unwrap_err();
        assert_eq!(err, KernelError::Unsupported { variant: v, isa: other });
        assert!(err.to_string().contains(other.name()), "{err}");
    }
}

#[test]
fn new_auto_picks_best_isa() {
    let w = Q4Matrix::quantize(20, 40, &noise(800, 2));
    for v in Variant::ALL {
        let mm = Matmul::new_auto(v, &w).unwrap();
        assert_eq!((mm.variant(), mm.isa(), mm.n(), mm.k()), (v, best_isa(v), 20, 40));
    }
}

#[test]
fn bit_identical_across_thread_counts() {
    // Shapes with n tails, odd k, GEMV and GEMM, many tiles, and one crossing the GEMM row
    // and k blockings (m > 96, k > 256).
    let shapes = [(1, 577, 70), (7, 300, 33), (33, 1000, 96), (3, 4097, 40), (97, 40, 520)];
    for (v, isa) in available() {
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            let w = Q4Matrix::quantize(n, k, &noise(n * k, 10 + si as u64));
            let x = noise(m * k, 20 + si as u64);
            let mm = Matmul::new_q4(v, isa, &w).unwrap();
            let one = run_with_threads(&mm, m, &x, 1);
            assert!(one.iter().all(|b| !f32::from_bits(*b).is_nan()), "{v}/{isa}: output not written");
            for t in [2, 3, 4] {
                assert!(one == run_with_threads(&mm, m, &x, t), "{v}/{isa} m={m} n={n} k={k}: {t} threads differ from 1");
            }
        }
    }
}

#[test]
#[should_panic(expected = "cannot take these activations")]
fn float_matmul_rejects_integer_activations() {
    let w = Q4Matrix::quantize(4, 32, &noise(128, 3));
    let mm = Matmul::new_q4(Variant::F16, Isa::Scalar, &w).unwrap();
    let q = QuantizedActivations::quantize_per_token(&noise(32, 4), 1, 32, 8);
    mm.run(Activations::Int(&q), &mut [0.0; 4]);
}

#[test]
fn try_run_returns_typed_errors() {
    let w = Q4Matrix::quantize(4, 32, &noise(128, 3));
    let mm = Matmul::new_q4(Variant::F16, Isa::Scalar, &w).unwrap();
    let q = QuantizedActivations::quantize_per_token(&noise(32, 4), 1, 32, 8);
    let e = mm.try_run(Activations::Int(&q), &mut [0.0; 4]).unwrap_err();
    assert_eq!(e, kernels::KernelError::Activations { variant: Variant::F16, want_bits: 16, got_bits: 8 });
    let w8 = Matmul::new_q4(Variant::W4A8, Isa::Scalar, &w).unwrap();
    assert!(matches!(w8.try_run(Activations::Int(&q), &mut [0.0; 5]), Err(kernels::KernelError::Shape(_))));
    assert!(matches!(mm.try_run(Activations::F32 { x: &noise(31, 1), m: 1 }, &mut [0.0; 4]), Err(kernels::KernelError::Shape(_))));
}

#[test]
#[should_panic(expected = "output must be m x n")]
fn wrong_output_length_panics() {
    let w = Q4Matrix::quantize(4, 32, &noise(128, 5));
    let mm = Matmul::new_q4(Variant::W4A16, Isa::Scalar, &w).unwrap();
    mm.run(Activations::F32 { x: &noise(64, 6), m: 2 }, &mut [0.0; 7]);
}
