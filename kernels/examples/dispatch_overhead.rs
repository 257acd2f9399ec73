//! Per-call overhead of `Matmul::run` (tiny and decode-sized GEMV) inside a rayon pool.
//! cargo run --release -p kernels --example dispatch_overhead
use kernels::{Activations, Matmul, Q4Matrix, Variant};
use std::time::Instant;

fn main() {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for (n, k) in [(16, 32), (576, 576), (1536, 576)] {
            let w: Vec<f32> = (0..n * k).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect();
            let mm = Matmul::new_auto(Variant::W4A16, &Q4Matrix::quantize(n, k, &w)).unwrap();
            let x = vec![0.5f32; k];
            let mut y = vec![0f32; n];
            let mut samples: Vec<f64> = (0..7)
                .map(|_| {
                    pool.install(|| {
                        let reps = 2000;
                        let t = Instant::now();
                        for _ in 0..reps {
                            mm.run(Activations::F32 { x: &x, m: 1 }, &mut y);
                        }
                        t.elapsed().as_secs_f64() / reps as f64 * 1e6
                    })
                })
                .collect();
            samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("threads={threads} w4a16 m=1 n={n} k={k}: {:.2} us/call (min {:.2})", samples[3], samples[0]);
        }
    }
}
