//! Every available (variant, ISA) on SmolLM2-135M's real layer shapes, at several token
//! counts and thread counts. Benchmark ids read `<K>x<N>/<variant>-<isa>/m<M>-t<T>`; filter
//! with e.g. `cargo bench -p kernels --bench matmul -- 576x1536/w4a8`.
//!
//! Throughput is reported in "elements" = 2·M·N·K operations per run.
//!
//! Limits: under `cargo test --benches` (each benchmark runs once, used by CI) only M = 1 and
//! 16 run, and the 49152-wide LM head only at M = 1. In benchmark mode the scalar ISA skips
//! cases above 2^30 multiply-adds (seconds per run; the SIMD ISAs are what is being tuned).
//! Inputs are prepared lazily, so a filter that excludes a case also skips its setup.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use kernels::{Activations, BlockQ4_1, Isa, Matmul, Q4Matrix, QuantizedActivations, Variant, QK};
use std::cell::OnceCell;
use std::hint::black_box;
use std::time::Duration;

/// (K, N) of SmolLM2-135M's matmuls: q/o projections, k/v (GQA), FFN up/gate, FFN down,
/// and the tied LM head.
const SHAPES: [(usize, usize); 5] = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)];
const MS: [usize; 4] = [1, 16, 128, 512];
const THREADS: [usize; 2] = [1, 2];
const SCALAR_MAX_MACS: usize = 1 << 30;

/// Criterion's own rule: `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test")
}

fn wanted(isa: Isa, m: usize, n: usize, k: usize, test: bool) -> bool {
    if test {
        m <= 16 && (n < 49152 || m == 1)
    } else {
        isa != Isa::Scalar || m * n * k <= SCALAR_MAX_MACS
    }
}

/// SplitMix64: a fixed seed gives the same weights on every run and machine.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random Q4_1 blocks with weight-like scales (|w| up to ~0.1).
fn random_q4(n: usize, k: usize, seed: u64) -> Q4Matrix {
    let mut rng = Rng(seed);
    let blocks = (0..n * Q4Matrix::blocks_per_row(k))
        .map(|_| {
            let d = 0.002 + 0.01 * rng.unit().abs();
            let mut qs = [0u8; QK / 2];
            qs.iter_mut().for_each(|q| *q = rng.next() as u8);
            BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(-7.5 * d), qs }
        })
        .collect();
    Q4Matrix::from_blocks(n, k, blocks).expect("block count matches the shape")
}

enum Input {
    F32(Vec<f32>),
    Int(QuantizedActivations),
}

fn input(variant: Variant, m: usize, k: usize) -> Input {
    let mut rng = Rng(0xac7 + (m * k) as u64);
    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
    match variant.activation_bits() {
        16 => Input::F32(x),
        bits => Input::Int(QuantizedActivations::quantize_per_token(&x, m, k, bits)),
    }
}

fn bench_matmul(c: &mut Criterion) {
    let test = test_mode();
    let pairs = kernels::available();
    let pools: Vec<(usize, rayon::ThreadPool)> = THREADS
        .iter()
        .map(|&t| (t, rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("rayon pool")))
        .collect();
    for (si, &(k, n)) in SHAPES.iter().enumerate() {
        let weights: OnceCell<Q4Matrix> = OnceCell::new();
        let mut group = c.benchmark_group(format!("{k}x{n}"));
        for &(variant, isa) in &pairs {
            let prepared: OnceCell<Matmul> = OnceCell::new();
            for &m in &MS {
                if !wanted(isa, m, n, k, test) {
                    continue;
                }
                let act: OnceCell<Input> = OnceCell::new();
                let mut y = vec![0f32; m * n];
                group.throughput(Throughput::Elements((2 * m * n * k) as u64));
                for (t, pool) in &pools {
                    let id = BenchmarkId::new(format!("{variant}-{isa}"), format!("m{m}-t{t}"));
                    group.bench_function(id, |b| {
                        let w = weights.get_or_init(|| random_q4(n, k, 0x5eed + si as u64));
                        let mm = prepared.get_or_init(|| Matmul::new_q4(variant, isa, w).expect("available pair"));
                        let a = match act.get_or_init(|| input(variant, m, k)) {
                            Input::F32(x) => Activations::F32 { x, m },
                            Input::Int(q) => Activations::Int(q),
                        };
                        pool.install(|| b.iter(|| mm.run(black_box(a), black_box(&mut y))));
                    });
                }
            }
        }
        group.finish();
    }
}

// Short defaults for a shared 2-core machine (10 samples over 2 s per case); command-line
// flags such as `--measurement-time` still override them.
criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_matmul
}
criterion_main!(benches);
