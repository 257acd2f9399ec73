//! The forward pass on tiny synthetic llama models against a naive f64 implementation of
//! the same maths written here from the definitions, plus the cache, threading and hook
//! properties the plan runtime relies on.

use half::f16;
use runtime::config::{ModelConfig, RopePairing};
use runtime::gguf::synthetic::tiny_llama;
use runtime::gguf::{GgmlType, Gguf};
use runtime::model::{llama, FloatHooks, Hooks, Linear, LoadOptions, Logits, Model, SiteCall, State};
use runtime::plan::{Site, WeightFormat};
use std::sync::Mutex;

/// head_dim 32 so the vectorised attention paths run (they need multiples of 32).
fn cfg() -> ModelConfig {
    let mut c = runtime::gguf::synthetic::tiny_config();
    c.n_embd = 128;
    c.n_ff = 256;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 32;
    c.rope_dim = 32;
    c
}

fn write_model(ty: GgmlType, seed: u64) -> (tempfile::TempDir, Gguf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny_llama(&cfg(), ty, seed).write(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    (dir, g)
}

fn load(g: &Gguf, weights: WeightFormat, pairing: RopePairing) -> Model {
    let mut c = ModelConfig::from_gguf(g).unwrap();
    c.rope_pairing = pairing;
    llama::load(g, &c, LoadOptions::new(weights)).unwrap()
}

/// Row-major `rows x cols` matrix of a GGUF tensor (`ne0 = cols`) in f64.
fn mat(g: &Gguf, name: &str) -> (Vec<f64>, usize) {
    let t = g.tensor(name).unwrap();
    let cols = t.dims[0] as usize;
    (t.to_f32().unwrap().into_iter().map(|v| v as f64).collect(), cols)
}

/// `y[j] = sum_c x[c] w[j][c]`.
fn matvec(w: &[f64], k: usize, x: &[f64]) -> Vec<f64> {
    w.chunks(k).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn rms(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    x.iter().zip(w).map(|(v, g)| v / (ms + eps).sqrt() * g).collect()
}

fn rope(x: &mut [f64], pos: usize, c: &ModelConfig, pairing: RopePairing) {
    let hd = c.head_dim;
    for head in x.chunks_mut(hd) {
        for i in 0..c.rope_dim / 2 {
            let theta = pos as f64 * (c.rope_base as f64).powf(-2.0 * i as f64 / c.rope_dim as f64);
            let (a, b) = match pairing {
                RopePairing::Adjacent => (2 * i, 2 * i + 1),
                RopePairing::HalfSplit => (i, i + c.rope_dim / 2),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * theta.cos() - x1 * theta.sin();
            head[b] = x0 * theta.sin() + x1 * theta.cos();
        }
    }
}

/// Logits at every position, computed token by token with full causal attention in f64.
/// The LM head is rounded to f16 like the runtime's (it is kept in f16 in every plan).
fn reference(g: &Gguf, c: &ModelConfig, pairing: RopePairing, tokens: &[u32]) -> Vec<Vec<f64>> {
    let (d, hd, eps) = (c.n_embd, c.head_dim, c.rms_eps as f64);
    let (emb, _) = mat(g, "token_embd.weight");
    let head: Vec<f64> = emb.iter().map(|&v| f16::from_f64(v).to_f64()).collect();
    let norm = |n: &str| mat(g, n).0;
    let mut ks: Vec<Vec<Vec<f64>>> = vec![vec![]; c.n_layer];
    let mut vs: Vec<Vec<Vec<f64>>> = vec![vec![]; c.n_layer];
    let mut out = vec![];
    for (pos, &t) in tokens.iter().enumerate() {
        let mut x: Vec<f64> = emb[t as usize * d..(t as usize + 1) * d].to_vec();
        for l in 0..c.n_layer {
            let b = |s: &str| format!("blk.{l}.{s}.weight");
            let xn = rms(&x, &norm(&b("attn_norm")), eps);
            let (wq, k) = mat(g, &b("attn_q"));
            let mut q = matvec(&wq, k, &xn);
            let mut kk = matvec(&mat(g, &b("attn_k")).0, k, &xn);
            let vv = matvec(&mat(g, &b("attn_v")).0, k, &xn);
            rope(&mut q, pos, c, pairing);
            rope(&mut kk, pos, c, pairing);
            ks[l].push(kk);
            vs[l].push(vv);
            let mut att = vec![0f64; c.n_head * hd];
            for h in 0..c.n_head {
                let kvh = h * c.n_head_kv / c.n_head; // GQA: consecutive query heads share a KV head
                let qh = &q[h * hd..(h + 1) * hd];
                let s: Vec<f64> = ks[l]
                    .iter()
                    .map(|kr| qh.iter().zip(&kr[kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, vr) in vs[l].iter().enumerate() {
                    for i in 0..hd {
                        att[h * hd + i] += e[j] / z * vr[kvh * hd + i];
                    }
                }
            }
            let (wo, ko) = mat(g, &b("attn_output"));
            for (a, o) in x.iter_mut().zip(matvec(&wo, ko, &att)) {
                *a += o;
            }
            let xn = rms(&x, &norm(&b("ffn_norm")), eps);
            let gate = matvec(&mat(g, &b("ffn_gate")).0, d, &xn);
            let up = matvec(&mat(g, &b("ffn_up")).0, d, &xn);
            let hmid: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let (wd, kd) = mat(g, &b("ffn_down"));
            for (a, o) in x.iter_mut().zip(matvec(&wd, kd, &hmid)) {
                *a += o;
            }
        }
        let xn = rms(&x, &norm("output_norm.weight"), eps);
        out.push(matvec(&head, d, &xn));
    }
    out
}

fn toks(n: usize, seed: u64) -> Vec<u32> {
    runtime::bench::tokens(n, cfg().vocab_size, seed)
}

fn max_rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-9);
    got.iter().zip(want).map(|(a, b)| (*a as f64 - b).abs() / scale).fold(0.0, f64::max)
}

fn check_against_reference(ty: GgmlType, weights: WeightFormat, pairing: RopePairing) {
    let (_d, g) = write_model(ty, 11);
    let m = load(&g, weights, pairing);
    let tokens = toks(24, 5);
    let want = reference(&g, &m.config, pairing, &tokens);
    let mut cache = m.new_cache(64);
    let mut st = State::new();
    m.forward(&tokens, &mut cache, &mut st, Logits::All, &FloatHooks).unwrap();
    let v = m.config.vocab_size;
    assert_eq!(st.logit_rows, (0..tokens.len()).collect::<Vec<_>>());
    for (i, w) in want.iter().enumerate() {
        let e = max_rel_err(&st.logits()[i * v..(i + 1) * v], w);
        assert!(e < 2e-3, "{ty:?}/{weights:?}/{pairing:?}: position {i}: max relative error {e}");
    }
}

#[test]
fn fp16_forward_matches_f64_reference() {
    // F16 weights are used exactly as stored by the f16 path.
    check_against_reference(GgmlType::F16, WeightFormat::F16, RopePairing::Adjacent);
}

#[test]
fn w4a16_forward_matches_f64_reference() {
    // The reference uses the dequantized Q4_1 values, the runtime the blocks as stored.
    check_against_reference(GgmlType::Q4_1, WeightFormat::Q4_1, RopePairing::Adjacent);
}

#[test]
fn half_split_rope_matches_reference() {
    check_against_reference(GgmlType::F16, WeightFormat::F16, RopePairing::HalfSplit);
}

#[test]
fn reference_catches_a_wrong_pairing() {
    // The pairing matters: the reference with the other pairing must disagree, so the tests
    // above could fail.
    let (_d, g) = write_model(GgmlType::F16, 11);
    let m = load(&g, WeightFormat::F16, RopePairing::Adjacent);
    let tokens = toks(12, 5);
    let want = reference(&g, &m.config, RopePairing::HalfSplit, &tokens);
    let mut cache = m.new_cache(64);
    let mut st = State::new();
    m.forward(&tokens, &mut cache, &mut st, Logits::Last, &FloatHooks).unwrap();
    assert!(max_rel_err(st.logits(), want.last().unwrap()) > 1e-2);
}

#[test]
fn decode_steps_equal_prefill_and_cache_reuse() {
    let (_d, g) = write_model(GgmlType::Q4_1, 3);
    for weights in [WeightFormat::F16, WeightFormat::Q4_1] {
        let m = load(&g, weights, RopePairing::Adjacent);
        let v = m.config.vocab_size;
        let tokens = toks(20, 9);
        let mut st = State::new();
        let mut cache = m.new_cache(32);
        m.forward(&tokens, &mut cache, &mut st, Logits::All, &FloatHooks).unwrap();
        let all = st.logits().to_vec();
        // One token at a time.
        cache.clear();
        for (i, &t) in tokens.iter().enumerate() {
            m.forward(&[t], &mut cache, &mut st, Logits::Last, &FloatHooks).unwrap();
            let want: Vec<f64> = all[i * v..(i + 1) * v].iter().map(|&x| x as f64).collect();
            let e = max_rel_err(st.logits(), &want);
            assert!(e < 1e-4, "{weights:?}: step {i} differs from prefill by {e}");
        }
        assert_eq!(cache.next_pos(), 20);
        assert_eq!(cache.layers[1].positions(), &(0..20).collect::<Vec<u32>>()[..]);
        // Two prefill calls (prompt, then continuation) over the same cache.
        cache.clear();
        m.forward(&tokens[..13], &mut cache, &mut st, Logits::None, &FloatHooks).unwrap();
        assert!(st.logits().is_empty());
        m.forward(&tokens[13..], &mut cache, &mut st, Logits::All, &FloatHooks).unwrap();
        let want: Vec<f64> = all[13 * v..].iter().map(|&x| x as f64).collect();
        assert!(max_rel_err(st.logits(), &want) < 1e-4);
        // The cache refuses what does not fit.
        assert!(m.forward(&tokens, &mut cache, &mut st, Logits::Last, &FloatHooks).is_err());
        // A cleared cache gives bit-identical results.
        cache.clear();
        m.forward(&tokens, &mut cache, &mut st, Logits::All, &FloatHooks).unwrap();
        assert_eq!(st.logits(), &all[..]);
    }
}

#[test]
fn one_and_two_threads_are_bit_identical() {
    let (_d, g) = write_model(GgmlType::Q4_1, 4);
    for weights in [WeightFormat::F16, WeightFormat::Q4_1] {
        let m = load(&g, weights, RopePairing::Adjacent);
        let tokens = toks(40, 1);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut st = State::new();
                let mut cache = m.new_cache(48);
                m.forward(&tokens, &mut cache, &mut st, Logits::All, &FloatHooks).unwrap();
                let mut out = st.logits().to_vec();
                for t in toks(5, 2) {
                    m.forward(&[t], &mut cache, &mut st, Logits::Last, &FloatHooks).unwrap();
                    out.extend_from_slice(st.logits());
                }
                out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            })
        };
        assert_eq!(run(1), run(2), "{weights:?}");
    }
}

#[test]
fn bad_tokens_and_empty_batches_are_errors() {
    let (_d, g) = write_model(GgmlType::F16, 1);
    let m = load(&g, WeightFormat::F16, RopePairing::Adjacent);
    let mut st = State::new();
    let mut cache = m.new_cache(8);
    let e = m.forward(&[1, 320], &mut cache, &mut st, Logits::Last, &FloatHooks).unwrap_err();
    assert!(e.to_string().contains("320"), "{e}");
    assert!(m.forward(&[], &mut cache, &mut st, Logits::Last, &FloatHooks).is_err());
    assert_eq!(cache.layers[0].len(), 0, "a rejected batch leaves the cache untouched");
}

/// Records every site call, and drops odd rows at layer 0.
struct Recorder {
    calls: Mutex<Vec<(Option<usize>, Site, Vec<usize>)>>,
    prune: bool,
}
impl Hooks for Recorder {
    fn linear(&self, call: SiteCall<'_>, lin: &Linear, x: &[f32], y: &mut [f32]) {
        self.calls.lock().unwrap().push((call.layer, call.site, call.rows.to_vec()));
        lin.forward_f32(x, y)
    }
    fn wants_sink(&self, _layer: usize) -> bool {
        true
    }
    fn prune(&self, layer: usize, rows: &[usize], _pos: &[u32], sink: &[f32]) -> Option<Vec<usize>> {
        assert_eq!(sink.len(), 4 * rows.len());
        // Row 0 attends only to itself: its probability on the first token is 1 in every head.
        if rows[0] == 0 {
            assert!((0..4).all(|h| (sink[h * rows.len()] - 1.0).abs() < 1e-6));
        }
        (self.prune && layer == 0).then(|| (0..rows.len()).filter(|i| rows[*i] % 2 == 0 || rows[*i] >= 8).collect())
    }
}

#[test]
fn hooks_see_every_site_and_pruning_shrinks_later_layers() {
    let (_d, g) = write_model(GgmlType::Q4_1, 8);
    let m = load(&g, WeightFormat::Q4_1, RopePairing::Adjacent);
    let tokens = toks(12, 3);
    let rec = Recorder { calls: Mutex::new(vec![]), prune: false };
    let mut st = State::new();
    let mut cache = m.new_cache(16);
    m.forward(&tokens, &mut cache, &mut st, Logits::All, &rec).unwrap();
    let dense = st.logits().to_vec();
    let calls = rec.calls.lock().unwrap().clone();
    let sites: Vec<(Option<usize>, Site)> = calls.iter().map(|c| (c.0, c.1)).collect();
    let mut want = vec![];
    for l in 0..2 {
        want.extend([Site::Qkv, Site::O, Site::GateUp, Site::Down].map(|s| (Some(l), s)));
    }
    want.push((None, Site::LmHead));
    assert_eq!(sites, want);

    let rec = Recorder { calls: Mutex::new(vec![]), prune: true };
    cache.clear();
    m.forward(&tokens, &mut cache, &mut st, Logits::From(8), &rec).unwrap();
    let kept: Vec<usize> = vec![0, 2, 4, 6, 8, 9, 10, 11];
    let calls = rec.calls.lock().unwrap().clone();
    assert_eq!(calls[2].2, kept, "layer 0 MLP sees the surviving rows");
    assert_eq!(calls[4].2, kept, "layer 1 sees the surviving rows");
    assert_eq!(cache.layers[0].len(), 12);
    assert_eq!(cache.layers[1].positions(), &[0, 2, 4, 6, 8, 9, 10, 11], "later caches keep original positions");
    assert_eq!(st.logit_rows, vec![8, 9, 10, 11]);
    // Pruning changed what the scored rows saw.
    let v = m.config.vocab_size;
    assert_ne!(st.logits(), &dense[8 * v..]);
    // Decoding after a pruned prefill attends each layer's own cache.
    m.forward(&[5], &mut cache, &mut st, Logits::Last, &FloatHooks).unwrap();
    assert_eq!(cache.layers[1].positions().last(), Some(&12));
    assert!(st.logits().iter().all(|x| x.is_finite()));
}

#[test]
fn real_sized_heads_use_both_isas_alike() {
    // The scalar kernels and the fastest ones agree to float rounding on the same model.
    let (_d, g) = write_model(GgmlType::Q4_1, 2);
    let c = ModelConfig::from_gguf(&g).unwrap();
    let tokens = toks(10, 4);
    let mut outs = vec![];
    for isa in [Some(kernels::Isa::Scalar), None] {
        let m = llama::load(&g, &c, LoadOptions { weights: WeightFormat::Q4_1, isa }).unwrap();
        let mut st = State::new();
        let mut cache = m.new_cache(16);
        m.forward(&tokens, &mut cache, &mut st, Logits::All, &FloatHooks).unwrap();
        outs.push(st.logits().to_vec());
    }
    let want: Vec<f64> = outs[0].iter().map(|&x| x as f64).collect();
    assert!(max_rel_err(&outs[1], &want) < 1e-4);
}
