//! Per-call time of `Matmul::run` for small GEMVs inside a rayon pool of 1 and 2 threads, to
//! see how much of a decode-sized call is dispatch rather than work.
//! cargo run --release -p kernels --example dispatch_overhead [-- f16,w4a16,w4a8]
use kernels::{Activations, Matmul, Q4Matrix, QuantizedActivations, Variant};
use std::time::Instant;

fn main() {
    let variants: Vec<Variant> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "f16,w4a16,w4a8".into())
        .split(',')
        .map(|s| s.parse().expect("variant name"))
        .collect();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for &v in &variants {
            for (n, k) in [(16, 32), (16, 576), (16, 1536), (192, 576), (576, 576), (1536, 576), (576, 1536)] {
                let w: Vec<f32> = (0..n * k).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect();
                let mm = Matmul::new_auto(v, &Q4Matrix::quantize(n, k, &w)).unwrap();
                let x = vec![0.5f32; k];
                let qa = QuantizedActivations::quantize_per_token(&x, 1, k, v.activation_bits().min(8));
                let a = if v.activation_bits() == 16 { Activations::F32 { x: &x, m: 1 } } else { Activations::Int(&qa) };
                let mut y = vec![0f32; n];
                let mut samples: Vec<f64> = (0..7)
                    .map(|_| {
                        pool.install(|| {
                            let reps = 2000;
                            let t = Instant::now();
                            for _ in 0..reps {
                                mm.run(a, &mut y);
                            }
                            t.elapsed().as_secs_f64() / reps as f64 * 1e6
                        })
                    })
                    .collect();
                samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
                println!("threads={threads} {v} m=1 n={n} k={k}: {:.2} us/call (min {:.2})", samples[3], samples[0]);
            }
        }
    }
}
