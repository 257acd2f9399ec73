//! The perplexity protocol on a tiny synthetic model: which positions are scored, the
//! statistics, and the argument checks.

use runtime::eval::{chunk_count, perplexity, EvalError, NllSums};
use runtime::gguf::synthetic::{tiny_config, tiny_llama};
use runtime::gguf::{GgmlType, Gguf};
use runtime::model::{llama, FloatHooks, LoadOptions, Logits, State};
use runtime::plan::WeightFormat;

#[test]
fn chunk_count_checks_ctx_and_length() {
    assert_eq!(chunk_count(1030, 512, 8192).unwrap(), 2);
    assert!(matches!(chunk_count(1030, 511, 8192), Err(EvalError::BadCtx { .. })));
    assert!(matches!(chunk_count(1030, 4, 8192), Err(EvalError::BadCtx { .. })));
    assert!(matches!(chunk_count(100000, 16384, 8192), Err(EvalError::BadCtx { .. })));
    let e = chunk_count(100, 512, 8192).unwrap_err();
    assert!(e.to_string().contains("100 tokens"), "{e}");
}

#[test]
fn scores_the_second_half_like_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let cfg = tiny_config();
    tiny_llama(&cfg, GgmlType::Q4_1, 21).write(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    let m = llama::load_gguf(&g, LoadOptions::new(WeightFormat::Q4_1)).unwrap();
    let ctx = 16;
    let tokens = runtime::bench::tokens(3 * ctx + 5, cfg.vocab_size, 77);
    let r = perplexity(&m, &tokens, ctx, None, &FloatHooks, |_, _, _| {}).unwrap();
    assert_eq!(r.chunks, 3, "the incomplete tail is dropped");
    assert_eq!(r.tokens_scored, 3 * (ctx - 1 - ctx / 2));

    // Direct: all logits of each chunk, f64 log-softmax, positions ctx/2 .. ctx-2.
    let v = cfg.vocab_size;
    let mut sums = NllSums::default();
    let mut nlls = vec![];
    for c in 0..3 {
        let chunk = &tokens[c * ctx..(c + 1) * ctx];
        let mut cache = m.new_cache(ctx);
        let mut st = State::new();
        m.forward(chunk, &mut cache, &mut st, Logits::All, &FloatHooks).unwrap();
        for i in ctx / 2..ctx - 1 {
            let row: Vec<f64> = st.logits()[i * v..(i + 1) * v].iter().map(|&x| x as f64).collect();
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = mx + row.iter().map(|x| (x - mx).exp()).sum::<f64>().ln();
            let nll = lse - row[chunk[i + 1] as usize];
            sums.add(nll);
            nlls.push(nll);
        }
    }
    assert!((r.ppl - sums.ppl()).abs() < 1e-4 * r.ppl, "{} vs {}", r.ppl, sums.ppl());
    let n = nlls.len() as f64;
    let mean = nlls.iter().sum::<f64>() / n;
    let var = nlls.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let want_se = mean.exp() * (var / (n - 1.0)).sqrt();
    assert!((r.ppl_stderr - want_se).abs() < 1e-3 * want_se);
    assert!((r.nll_mean - mean).abs() < 1e-5);
    // Limiting the chunks scores a prefix.
    let r1 = perplexity(&m, &tokens, ctx, Some(1), &FloatHooks, |_, _, _| {}).unwrap();
    assert_eq!((r1.chunks, r1.tokens_scored), (1, ctx - 1 - ctx / 2));
    let first: f64 = nlls[..ctx - 1 - ctx / 2].iter().sum::<f64>() / (ctx - 1 - ctx / 2) as f64;
    assert!((r1.ppl - first.exp()).abs() < 1e-4 * r1.ppl);
}
