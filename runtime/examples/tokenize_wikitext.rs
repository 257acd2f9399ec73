//! Times tokenizing a text file (default: the WikiText-2 test split) with the model's
//! tokenizer: median and range over repeated runs, plus the exact round-trip check.
//! Usage: cargo run --release -p runtime --example tokenize_wikitext [MODEL] [TEXT] [RUNS]

use runtime::gguf::Gguf;
use runtime::tokenizer::Tokenizer;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .map_or("models/SmolLM2-135M-Instruct.Q4_1.gguf", String::as_str);
    let text_path = args
        .get(2)
        .map_or("data/wikitext-2-raw-test.txt", String::as_str);
    let runs: usize = args.get(3).map_or(Ok(7), |s| s.parse())?;

    let t0 = Instant::now();
    let g = Gguf::open(model)?;
    let tk = Tokenizer::from_gguf(&g)?;
    let load = t0.elapsed();
    let text = runtime::text::read_text_file(text_path)?;

    // Alternate chunked (`encode`) and single-pass runs so machine noise hits both alike.
    let (mut times, mut single) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut ids = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        ids = tk.encode(&text, false)?;
        times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let one = tk.encode_single_pass(&text, false)?;
        single.push(t.elapsed().as_secs_f64());
        assert_eq!(one, ids, "chunked and single-pass ids differ");
    }
    times.sort_by(f64::total_cmp);
    single.sort_by(f64::total_cmp);
    let t = Instant::now();
    let back = tk.decode(&ids)?;
    let decode = t.elapsed();
    println!(
        "{text_path}: {} bytes -> {} tokens; load {:.0} ms; encode median {:.0} ms (min {:.0}, max {:.0}, {runs} runs, {:.1} MB/s); single pass median {:.0} ms (min {:.0}, max {:.0}); decode {:.0} ms; round trip {}",
        text.len(),
        ids.len(),
        load.as_secs_f64() * 1e3,
        times[runs / 2] * 1e3,
        times[0] * 1e3,
        times[runs - 1] * 1e3,
        text.len() as f64 / times[runs / 2] / 1e6,
        single[runs / 2] * 1e3,
        single[0] * 1e3,
        single[runs - 1] * 1e3,
        decode.as_secs_f64() * 1e3,
        if back == text { "exact" } else { "MISMATCH" }
    );
    Ok(())
}
