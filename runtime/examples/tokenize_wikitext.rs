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
    // CPU time (all threads) too: on a loaded machine wall time mostly measures waiting.
    let (mut times, mut single) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let (mut cpu, mut cpu_single) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut ids = Vec::new();
    for _ in 0..runs {
        let (t, c) = (Instant::now(), cpu_seconds());
        ids = tk.encode(&text, false)?;
        times.push(t.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - c);
        let (t, c) = (Instant::now(), cpu_seconds());
        let one = tk.encode_single_pass(&text, false)?;
        single.push(t.elapsed().as_secs_f64());
        cpu_single.push(cpu_seconds() - c);
        assert_eq!(one, ids, "chunked and single-pass ids differ");
    }
    for v in [&mut times, &mut single, &mut cpu, &mut cpu_single] {
        v.sort_by(f64::total_cmp);
    }
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
    if !cpu.is_empty() && cpu[runs - 1] > 0.0 {
        println!(
            "CPU time per encode (all threads, 10 ms resolution): chunked median {:.0} ms (min {:.0}, max {:.0}); single pass median {:.0} ms (min {:.0}, max {:.0})",
            cpu[runs / 2] * 1e3, cpu[0] * 1e3, cpu[runs - 1] * 1e3,
            cpu_single[runs / 2] * 1e3, cpu_single[0] * 1e3, cpu_single[runs - 1] * 1e3
        );
    }
    Ok(())
}

/// User + system CPU seconds of this process so far (Linux /proc; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}
