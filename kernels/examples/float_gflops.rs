//! Quick throughput check of the float variants (f16, w4a16) at the model's shapes, as a
//! ratio to this CPU's measured f32 FMA peak in the same run. The official benchmarks are the
//! criterion benches and `agq kernels`; this is the kernel author's tuning loop.
//!
//! cargo run --release -p kernels --example float_gflops -- [threads...]

use kernels::{Activations, Isa, Matmul, Q4Matrix, Variant};
use std::time::Instant;

/// On-CPU nanoseconds of all threads of this process (`CLOCK_PROCESS_CPUTIME_ID`): on a
/// machine shared with other jobs, work per CPU-second is what a kernel controls.
fn cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: plain libc call writing into `ts`.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

fn median_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// GFLOP/s of a 12-chain AVX2 FMA loop on each of `threads` threads, summed.
#[cfg(target_arch = "x86_64")]
fn fma_peak(threads: usize) -> f64 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn chains(iters: u64) -> f32 {
        use std::arch::x86_64::*;
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut s = [0f32; 8];
        _mm256_storeu_ps(s.as_mut_ptr(), acc.iter().fold(_mm256_setzero_ps(), |x, y| _mm256_add_ps(x, *y)));
        s.iter().sum()
    }
    let iters = 4_000_000u64;
    let flops = (iters * 12 * 8 * 2) as f64;
    // Per on-CPU second of one thread, times the thread count.
    let run = || {
        let c0 = cpu_ns();
        std::hint::black_box(unsafe { chains(std::hint::black_box(iters)) });
        flops / (cpu_ns() - c0) as f64
    };
    let _ = threads;
    let samples: Vec<f64> = (0..3).map(|_| run()).collect();
    median_spread(samples).0 * threads as f64
}

/// `profile VARIANT M K N SECONDS`: loop one shape on one thread (for `perf record`).
fn profile(args: &[String]) {
    let variant: Variant = args[0].parse().unwrap();
    let [m, k, n, secs]: [usize; 4] = std::array::from_fn(|i| args[i + 1].parse().unwrap());
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3).collect();
    let mm = Matmul::new_q4(variant, Isa::best(), &Q4Matrix::quantize(n, k, &w)).unwrap();
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 104729 % 997) as f32 - 498.0) * 1e-3).collect();
    let mut y = vec![0f32; m * n];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (t0, c0) = (Instant::now(), cpu_ns());
    let mut runs = 0;
    while t0.elapsed().as_secs() < secs as u64 {
        pool.install(|| mm.run(Activations::F32 { x: &x, m }, &mut y));
        runs += 1;
    }
    let flops = 2.0 * (m * n * k) as f64 * runs as f64;
    let gf = flops / (cpu_ns() - c0) as f64;
    #[cfg(target_arch = "x86_64")]
    let peak = fma_peak(1);
    #[cfg(not(target_arch = "x86_64"))]
    let peak = f64::NAN;
    println!("{variant} m={m} k={k} n={n}: {gf:.1} GFLOP/s per CPU-second, {:.0}% of the FMA loop's {peak:.1}", 100.0 * gf / peak);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("profile") {
        return profile(&args[1..]);
    }
    let threads: Vec<usize> = args.iter().map(|a| a.parse().unwrap()).collect();
    let threads = if threads.is_empty() { vec![1, 2] } else { threads };
    let isa = Isa::best();
    let shapes = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)];
    println!("isa={isa}; median over 7 rounds of [FMA-peak sample, kernel sample]. GFLOP/s = wall clock; \
              % of peak = (flops per on-CPU second x threads) / (FMA-loop flops per on-CPU second x threads), same round");
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        for variant in [Variant::F16, Variant::W4A16] {
            for &(k, n) in &shapes {
                let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3).collect();
                let q = Q4Matrix::quantize(n, k, &w);
                let mm = Matmul::new_q4(variant, isa, &q).unwrap();
                for m in [512usize, 1] {
                    let x: Vec<f32> = (0..m * k).map(|i| ((i * 104729 % 997) as f32 - 498.0) * 1e-3).collect();
                    let mut y = vec![0f32; m * n];
                    let flops = 2.0 * (m * n * k) as f64;
                    let reps = ((1e9 / flops) as usize).clamp(2, 2000);
                    let (mut gf, mut ratio) = (Vec::new(), Vec::new());
                    for _ in 0..7 {
                        #[cfg(target_arch = "x86_64")]
                        let peak = fma_peak(t);
                        #[cfg(not(target_arch = "x86_64"))]
                        let peak = f64::NAN;
                        let (g, gc) = pool.install(|| {
                            mm.run(Activations::F32 { x: &x, m }, &mut y);
                            let (t0, c0) = (Instant::now(), cpu_ns());
                            for _ in 0..reps {
                                mm.run(Activations::F32 { x: &x, m }, &mut y);
                            }
                            let f = flops * reps as f64;
                            (f / t0.elapsed().as_secs_f64() / 1e9, f / (cpu_ns() - c0) as f64)
                        });
                        gf.push(g);
                        // CPU-time rate x threads = what `t` fully-owned cores would do.
                        ratio.push(gc * t as f64 / peak);
                    }
                    let (med, lo, hi) = median_spread(gf);
                    let (r, rlo, rhi) = median_spread(ratio);
                    let extra = if m == 1 {
                        let bytes = match variant { Variant::F16 => 2.0, _ => 20.0 / 32.0 } * (n * k) as f64;
                        format!("  weights {:.1} GB/s", med * 1e9 / flops * bytes / 1e9)
                    } else {
                        String::new()
                    };
                    println!(
                        "threads={t} {variant:6} m={m:<4} k={k:<5} n={n:<6} {med:6.1} GFLOP/s [{lo:.1}..{hi:.1}]  {:3.0}% of peak [{:.0}..{:.0}]{extra}",
                        100.0 * r, 100.0 * rlo, 100.0 * rhi
                    );
                }
            }
        }
    }
}
