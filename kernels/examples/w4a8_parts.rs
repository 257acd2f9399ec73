//! Where a `w4a8` GEMM call's time goes: the per-call activation preparation (padding, block
//! sums), the kernel alone on one thread (whole width, and as the 16-column tiles `Matmul`
//! hands out), and `Matmul::run` at 1 and 2 threads next to `f16`. Medians of 9 samples.
//! cargo run --release -p kernels --example w4a8_parts [-- KxN[,KxN..] [M] [row|block]]
use kernels::formats::PaddedActivations;
use kernels::variants::w4a8::W4A8;
use kernels::{best_isa, Activations, Matmul, Q4Matrix, QuantizedActivations, Variant};
use std::time::Instant;

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut s: Vec<f64> = (0..9).map(|_| f()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    s[4]
}

/// Microseconds per call of `f`, repeated to about 20 ms per sample.
fn time(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let reps = ((0.02 / t.elapsed().as_secs_f64().max(1e-7)) as usize).clamp(1, 100_000);
    median(|| {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shapes = args.get(1).cloned().unwrap_or_else(|| "576x192,576x576,576x1536,1536x576".into());
    let m: usize = args.get(2).map_or(512, |s| s.parse().expect("M"));
    let block = args.get(3).is_some_and(|s| s == "block");
    for shape in shapes.split(',') {
        let (k, n) = shape.split_once('x').expect("KxN");
        let (k, n): (usize, usize) = (k.parse().unwrap(), n.parse().unwrap());
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 31) as f32 * 0.01 - 0.15).collect();
        let q4 = Q4Matrix::quantize(n, k, &w);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 104729) % 251) as f32 / 125.0 - 1.0).collect();
        let qa = if block { QuantizedActivations::quantize_per_block(&x, m, k, 8) } else { QuantizedActivations::quantize_per_token(&x, m, k, 8) };
        let isa = best_isa(Variant::W4A8);
        let kern = W4A8::new(Variant::W4A8, isa, &q4).unwrap();
        let mut y = vec![0f32; m * n];
        let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();

        let prep = pool2.install(|| time(|| drop(std::hint::black_box(PaddedActivations::new(&qa)))));
        let prep_owned = pool2.install(|| time(|| drop(std::hint::black_box(PaddedActivations::new(&qa).into_owned()))));
        let pad = PaddedActivations::new(&qa);
        let whole = time(|| kern.gemm_padded(&pad, 0..n, &mut y));
        let mut tile = vec![0f32; m * 16];
        let tiles = time(|| {
            for j in (0..n).step_by(16) {
                let e = (j + 16).min(n);
                kern.gemm_padded(&pad, j..e, &mut tile[..m * (e - j)]);
            }
        });
        let mm = Matmul::new_q4(Variant::W4A8, isa, &q4).unwrap();
        let f16 = Matmul::new_auto(Variant::F16, &q4).unwrap();
        let run = |pool: &rayon::ThreadPool, mm: &Matmul, a: Activations, y: &mut Vec<f32>| pool.install(|| time(|| mm.run(a, y)));
        let r1 = run(&pool1, &mm, Activations::Int(&qa), &mut y);
        let r2 = run(&pool2, &mm, Activations::Int(&qa), &mut y);
        let f1 = run(&pool1, &f16, Activations::F32 { x: &x, m }, &mut y);
        let f2 = run(&pool2, &f16, Activations::F32 { x: &x, m }, &mut y);
        println!(
            "{k}x{n} m={m} {}: prepare {prep:.1} us (+owned {prep_owned:.1}); kernel 1 thread whole {whole:.1} us, as 16-col tiles {tiles:.1} us; \
             run t1 {r1:.1} t2 {r2:.1} us; f16 t1 {f1:.1} t2 {f2:.1} us; x f16 t1 {:.2} t2 {:.2}",
            if block { "block" } else { "row" },
            f1 / r1,
            f2 / r2
        );
    }
}
