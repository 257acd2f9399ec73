//! Shared test helpers (feature `testing`, on for this crate's tests): proptest strategies
//! for shapes, values, Q4_1 matrices and integer activations; f64 references with the
//! magnitude sums the error bounds need; and `per_isa!`, which stamps out one test per ISA.
//!
//! Error bounds. A float dot product of length `k` computed in f32 in *any* order, with or
//! without FMA, satisfies `|ŷ - y| <= γ_k · Σ|x_i w_i|`, `γ_k = k·u / (1 - k·u)`,
//! `u = 2^-24` (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1). A kernel that
//! also forms the weight in f32 (`d·q + m`) adds up to two roundings per term. So the tests
//! assert `|ŷ - y| <= (k + 3)·u·1.01 · Σ|terms| + k·2^-126`, the last term covering
//! underflow of tiny products. Kernels are compared with the exact f64 result, not with each
//! other's rounding; comparing two kernels uses twice the bound.

use crate::formats::{BlockQ4_1, BlockQ8_0, QuantizedActivations, QK};
use crate::matmul::{Q4Matrix, Q8Matrix};
use half::f16;
use proptest::prelude::*;

/// f32 unit roundoff.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

/// Exact (f64) product `x · wᵀ` and the per-element `Σ|x_i w_i|`, for row-major `x` (`m x k`)
/// and `w` (`n x k`) given as f64.
pub fn reference(x: &[f64], m: usize, w: &[f64], n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0f64; m * n];
    let mut abs = vec![0f64; m * n];
    for r in 0..m {
        for j in 0..n {
            let (mut s, mut a) = (0f64, 0f64);
            for c in 0..k {
                let p = x[r * k + c] * w[j * k + c];
                s += p;
                a += p.abs();
            }
            y[r * n + j] = s;
            abs[r * n + j] = a;
        }
    }
    (y, abs)
}

/// The bound of the module doc for a length-`k` dot product with magnitude sum `abs`.
pub fn bound(k: usize, abs: f64) -> f64 {
    (k as f64 + 3.0) * U * 1.01 * abs + k as f64 * f32::MIN_POSITIVE as f64
}

/// Asserts `got` is within `scale` times [`bound`] of the f64 reference, naming the first
/// offending element.
pub fn assert_close(got: &[f32], want: &[f64], abs: &[f64], k: usize, scale: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &a)) in got.iter().zip(want).zip(abs).enumerate() {
        let err = (g as f64 - w).abs();
        let tol = scale * bound(k, a);
        assert!(err <= tol, "{what}: element {i}: got {g}, want {w}, |err| {err:e} > bound {tol:e} (k={k})");
    }
}

/// Weights of a Q4_1 matrix exactly, as f64 (`d·q + m` with f16 `d`, `m`).
pub fn q4_dense_f64(w: &Q4Matrix) -> Vec<f64> {
    let mut out = vec![0f64; w.n * w.k];
    for j in 0..w.n {
        for (b, blk) in w.row(j).iter().enumerate() {
            let (d, m) = (blk.d.to_f64(), blk.m.to_f64());
            for i in 0..QK.min(w.k - b * QK) {
                out[j * w.k + b * QK + i] = d * blk.code(i) as f64 + m;
            }
        }
    }
    out
}

/// Per-term magnitudes of the Q4_1 weights as the kernels see them, `|d|·q + |m|`, so that
/// `reference(x, .., q4_abs_f64(w), ..).1` bounds the dequantization roundings too.
pub fn q4_abs_f64(w: &Q4Matrix) -> Vec<f64> {
    let mut out = vec![0f64; w.n * w.k];
    for j in 0..w.n {
        for (b, blk) in w.row(j).iter().enumerate() {
            let (d, m) = (blk.d.to_f64().abs(), blk.m.to_f64().abs());
            for i in 0..QK.min(w.k - b * QK) {
                out[j * w.k + b * QK + i] = d * blk.code(i) as f64 + m;
            }
        }
    }
    out
}

/// Integer activations as exact f64 values `scale_r · q_rc` (times the block scale when
/// blocked).
pub fn int_acts_f64(a: &QuantizedActivations) -> Vec<f64> {
    let k = a.k.max(1);
    (0..a.m * a.k)
        .map(|i| {
            let (r, c) = (i / k, i % k);
            let bs = if a.is_blocked() { a.block_scales[r * a.blocks_per_row() + c / QK] as f64 } else { 1.0 };
            a.scales[r] as f64 * bs * a.q[i] as f64
        })
        .collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Shapes `(m, n, k)`: m in 1..=17 (GEMV, micro-kernel row tails), n in 1..=80 (column tails
/// around the 16-wide panels), k in 1..=300 (odd k, k not a multiple of 32, and more than
/// one k-block for short ones is covered by `big_shape`).
pub fn shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (1usize..=17, 1usize..=80, 1usize..=300)
}

/// Fewer, larger shapes that cross the GEMM blockings (k > 256, m > 96, n > 256).
pub fn big_shape() -> impl Strategy<Value = (usize, usize, usize)> {
    (prop_oneof![Just(1usize), 90usize..=110], 250usize..=300, 250usize..=600)
}

/// A small deterministic generator: large inputs come from a proptest-chosen seed rather than
/// per-element strategies, which keeps case generation cheap (and qemu runs short).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    /// Mostly moderate values, sometimes zero, tiny (subnormal in f16), or up to `±large`
    /// (exactly `±large` included).
    pub fn value(&mut self, large: f32) -> f32 {
        match self.next_u64() % 9 {
            0..=5 => self.uniform(-4.0, 4.0),
            6 => 0.0,
            7 => [1e-7, -3e-6, self.uniform(-1e-4, 1e-4)][(self.next_u64() % 3) as usize],
            _ => [large, -large, self.uniform(-large, large)][(self.next_u64() % 3) as usize],
        }
    }
}

/// `len` floats from [`Rng::value`].
pub fn values(len: usize, large: f32) -> impl Strategy<Value = Vec<f32>> {
    any::<u64>().prop_map(move |seed| {
        let mut rng = Rng::new(seed);
        (0..len).map(|_| rng.value(large)).collect()
    })
}

/// A Q4_1 block with random codes and `d`, `m` covering zero, tiny, negative and large.
pub fn q4_block(rng: &mut Rng) -> BlockQ4_1 {
    let scale = |rng: &mut Rng| match rng.next_u64() % 9 {
        0..=5 => rng.uniform(-2.0, 2.0),
        6 => 0.0,
        7 => rng.uniform(-1e-5, 1e-5),
        _ => [1000.0, -1000.0][(rng.next_u64() % 2) as usize],
    };
    let (d, m) = (scale(rng), scale(rng));
    let qs = std::array::from_fn(|_| rng.next_u64() as u8);
    BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(m), qs }
}

/// An `n x k` Q4_1 matrix of random blocks (the padding codes past `k` are random too: they
/// must never be read).
pub fn q4_matrix(n: usize, k: usize) -> impl Strategy<Value = Q4Matrix> {
    any::<u64>().prop_map(move |seed| {
        let mut rng = Rng::new(seed);
        let blocks = (0..n * Q4Matrix::blocks_per_row(k)).map(|_| q4_block(&mut rng)).collect();
        Q4Matrix::from_blocks(n, k, blocks).expect("block count")
    })
}

/// A Q8_0 block: codes over the full range (±127, -128 and 0 included), `d` covering zero,
/// tiny, negative and large.
pub fn q8_block(rng: &mut Rng) -> BlockQ8_0 {
    let d = match rng.next_u64() % 9 {
        0..=5 => rng.uniform(-2.0, 2.0),
        6 => 0.0,
        7 => rng.uniform(-1e-5, 1e-5),
        _ => [1000.0, -1000.0][(rng.next_u64() % 2) as usize],
    };
    let qs = std::array::from_fn(|_| match rng.next_u64() % 8 {
        0 => 127,
        1 => -128,
        2 => 0,
        _ => rng.next_u64() as i8,
    });
    BlockQ8_0 { d: f16::from_f32(d), qs }
}

/// An `n x k` Q8_0 matrix of random blocks (codes past `k` are random: never read).
pub fn q8_matrix(n: usize, k: usize) -> impl Strategy<Value = Q8Matrix> {
    any::<u64>().prop_map(move |seed| {
        let mut rng = Rng::new(seed);
        let blocks = (0..n * Q4Matrix::blocks_per_row(k)).map(|_| q8_block(&mut rng)).collect();
        Q8Matrix::from_blocks(n, k, blocks).expect("block count")
    })
}

/// Weights of a Q8_0 matrix exactly as f64 (`d·q`) and their magnitudes.
pub fn q8_dense_f64(w: &Q8Matrix) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0f64; w.n * w.k];
    for j in 0..w.n {
        for (b, blk) in w.row(j).iter().enumerate() {
            for i in 0..QK.min(w.k - b * QK) {
                out[j * w.k + b * QK + i] = blk.d.to_f64() * blk.qs[i] as f64;
            }
        }
    }
    let abs = out.iter().map(|v| v.abs()).collect();
    (out, abs)
}

/// `m x k` integer activations with `bits` (8 or 4): codes over the full symmetric range
/// (extremes ±qmax and 0 frequent), positive per-row scales in [1e-4, 10).
pub fn int_activations(m: usize, k: usize, bits: u8) -> impl Strategy<Value = QuantizedActivations> {
    let qmax = QuantizedActivations::qmax(bits);
    any::<u64>().prop_map(move |seed| {
        let mut rng = Rng::new(seed);
        let q = (0..m * k)
            .map(|_| match rng.next_u64() % 7 {
                0 => qmax as i8,
                1 => -qmax as i8,
                2 => 0,
                _ => ((rng.next_u64() % (2 * qmax as u64 + 1)) as i32 - qmax) as i8,
            })
            .collect();
        let scales = (0..m).map(|_| rng.uniform(1e-4, 10.0)).collect();
        QuantizedActivations { m, k, bits, q, scales, block_scales: Vec::new() }
    })
}

/// [`int_activations`] with per-block scales: log-uniform over 1e-6..1e6 (twelve orders of
/// magnitude within one row), sometimes exactly 0, sometimes a whole block of zero codes;
/// row scales 1 or random as in `int_activations`.
pub fn block_activations(m: usize, k: usize, bits: u8) -> impl Strategy<Value = QuantizedActivations> {
    (int_activations(m, k, bits), any::<u64>(), any::<bool>()).prop_map(move |(mut a, seed, unit_rows)| {
        let mut rng = Rng::new(seed);
        let bpr = k.div_ceil(QK);
        a.block_scales = (0..m * bpr)
            .map(|_| match rng.next_u64() % 8 {
                0 => 0.0,
                _ => 10f32.powf(rng.uniform(-6.0, 6.0)),
            })
            .collect();
        for i in 0..m * bpr {
            if rng.next_u64().is_multiple_of(8) {
                let (r, b) = (i / bpr.max(1), i % bpr.max(1));
                a.q[r * k + b * QK..r * k + ((b + 1) * QK).min(k)].iter_mut().for_each(|v| *v = 0);
            }
        }
        if unit_rows {
            a.scales.iter_mut().for_each(|s| *s = 1.0);
        }
        a
    })
}

/// Runs `f` on `cases` values of `strategy` (proptest, with shrinking), panicking with the
/// minimal failing input. For use inside `per_isa!` bodies, where `proptest!` cannot go.
pub fn check<S>(cases: u32, strategy: S, f: impl Fn(S::Value))
where
    S: Strategy,
    S::Value: std::fmt::Debug + Clone,
{
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..Default::default()
    });
    if let Err(e) = runner.run(&strategy, |v| {
        f(v);
        Ok(())
    }) {
        panic!("{e}");
    }
}

/// One `#[test]` per ISA, running `$body(isa)` where the ISA is implemented for `$variant`
/// and available on this CPU, and printing a skip message otherwise:
/// `per_isa!(name, Variant::F16, |isa| { ... });` defines `name::{scalar, avx2, neon}`.
#[macro_export]
macro_rules! per_isa {
    ($name:ident, $variant:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn __per_isa_run(isa: $crate::Isa) {
                let variant: $crate::Variant = $variant;
                if $crate::available().contains(&(variant, isa)) {
                    let body: &dyn Fn($crate::Isa) = &$body;
                    body(isa);
                } else {
                    eprintln!("{}: skipped: {variant} on {isa} not available here", stringify!($name));
                }
            }
            #[test]
            fn scalar() {
                __per_isa_run($crate::Isa::Scalar)
            }
            #[test]
            fn avx2() {
                __per_isa_run($crate::Isa::Avx2)
            }
            #[test]
            fn avx512() {
                __per_isa_run($crate::Isa::Avx512)
            }
            #[test]
            fn neon() {
                __per_isa_run($crate::Isa::Neon)
            }
        }
    };
}
