//! Plans executed in the forward pass of a tiny synthetic llama, against a plain scalar
//! re-implementation that fake-quantizes (quantize, dequantize) at the same places and
//! prunes with the same rules.

mod a_support;

use runtime::calibrate::{self, CalibStats};
use runtime::gguf::Gguf;
use runtime::model::{FloatHooks, Hooks, KvCache, Logits, Model, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{presets, Plan, Scheme, Site, SitePlan, SoftmaxMode, VariantChoice};
use runtime::prune::PruneState;

struct Fixture {
    _dir: tempfile::TempDir,
    g: Gguf,
    model: Model,
}

fn fixture(n_layer: usize) -> Fixture {
    let (dir, g, model) = a_support::tiny_q4_model(n_layer);
    Fixture { _dir: dir, g, model }
}

fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + 11) % vocab) as u32).collect()
}

/// Runs the model; returns (batch indices of the logits rows, logits).
fn run(f: &Fixture, toks: &[u32], hooks: &dyn Hooks, want: Logits) -> (Vec<usize>, Vec<f32>, KvCache) {
    let mut cache = f.model.new_cache(toks.len() + 4);
    let mut st = State::new();
    let logits = f.model.forward(toks, &mut cache, &mut st, want, hooks).unwrap().to_vec();
    (st.logit_rows.clone(), logits, cache)
}

// ---------- the reference ----------

fn t(g: &Gguf, name: &str) -> Vec<f32> {
    g.tensor(name).unwrap().to_f32().unwrap()
}

/// Symmetric fake quantization of one row, as the per-token quantizer: scale `amax / qmax`
/// at 8 bits; at 4 bits `r · amax / 7` with the clipping ratio `r` (1, 0.975, ..., 0.3,
/// stopping after 3 non-improving ratios) of least squared error (estimated on rows of 128
/// or more values, as `clip::mse_scale`).
fn fq(row: &mut [f32], bits: u8) {
    if bits == 16 {
        return;
    }
    let qmax = ((1 << (bits - 1)) - 1) as f32;
    let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
    let mut s = amax / qmax;
    if bits == 4 && amax > 0.0 {
        // Long rows: values that no ratio clips (<= 0.3 amax) enter by every STRIDE-th
        // position, weighted STRIDE.
        use runtime::quant::clip::{SAMPLE_MIN_K, SAMPLE_STRIDE};
        let w = |i: usize, v: f32| {
            if row.len() < SAMPLE_MIN_K || v.abs() > 0.3 * amax {
                1.0
            } else if i % SAMPLE_STRIDE == 0 {
                SAMPLE_STRIDE as f64
            } else {
                0.0
            }
        };
        let err = |s: f32| {
            row.iter().enumerate().map(|(i, &v)| w(i, v) * ((v - (v * (1.0 / s)).clamp(-qmax, qmax).round() * s) as f64).powi(2)).sum::<f64>()
        };
        let (mut best, mut since) = (err(s), 0);
        for i in 1..29 {
            let si = (1.0 - 0.025 * i as f32) * amax / qmax;
            let e = err(si);
            if e < best {
                (best, s, since) = (e, si, 0);
            } else {
                since += 1;
                if since >= 3 {
                    break;
                }
            }
        }
    }
    let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
    row.iter_mut().for_each(|v| *v = (*v * inv).round().clamp(-qmax, qmax) * s);
}

/// A linear site's fake quantization at `bits` (its own bits, or 4 for a low-bit row): the
/// group scheme gives every 32-input block its own `amax / qmax` (no clipping), the others
/// are per-token as [`fq`].
fn fq_site(row: &mut [f32], sp: &SitePlan, bits: u8) {
    if sp.scheme != Scheme::Group || bits == 16 {
        return fq(row, bits);
    }
    let qmax = ((1 << (bits - 1)) - 1) as f32;
    for b in row.chunks_mut(32) {
        let s = b.iter().fold(0f32, |a, v| a.max(v.abs())) / qmax;
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        b.iter_mut().for_each(|v| *v = (*v * inv).round().clamp(-qmax, qmax) * s);
    }
}

fn rms(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps as f64).sqrt();
    x.iter().zip(w).map(|(v, w)| (*v as f64 * r) as f32 * w).collect()
}

/// `y = x · Wᵀ` for one row, W `n x k` row-major.
fn mv(x: &[f32], w: &[f32], n: usize) -> Vec<f32> {
    let k = x.len();
    (0..n).map(|j| (0..k).map(|c| x[c] as f64 * w[j * k + c] as f64).sum::<f64>() as f32).collect()
}

fn rope(row: &mut [f32], pos: u32, hd: usize, base: f32) {
    for head in row.chunks_exact_mut(hd) {
        for i in 0..hd / 2 {
            let th = pos as f64 * (base as f64).powf(-(2.0 * i as f64) / hd as f64);
            let (c, s) = (th.cos() as f32, th.sin() as f32);
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

/// Scalar forward of a whole prompt with the plan's quantization and pruning. Returns the
/// surviving original indices, their logits and each layer's cache length.
fn reference(g: &Gguf, m: &Model, plan: &Plan, toks: &[u32], prunable: std::ops::Range<usize>) -> (Vec<usize>, Vec<f32>, Vec<usize>) {
    let c = &m.config;
    let (d, hd, nh, nkv, ff) = (c.n_embd, c.head_dim, c.n_head, c.n_head_kv, c.n_ff);
    let (qd, kvd) = (nh * hd, nkv * hd);
    let emb = t(g, "token_embd.weight");
    let mut x: Vec<Vec<f32>> = toks.iter().map(|&id| emb[id as usize * d..(id as usize + 1) * d].to_vec()).collect();
    let mut st = PruneState::new(toks.len(), prunable);
    let mut cache_lens = Vec::new();
    for (l, lp) in plan.layers.iter().enumerate() {
        let w = |n: &str| t(g, &format!("blk.{l}.{n}.weight"));
        let wqkv = [w("attn_q"), w("attn_k"), w("attn_v")].concat();
        let (wo, wgu, wd) = (w("attn_output"), [w("ffn_gate"), w("ffn_up")].concat(), w("ffn_down"));
        let pos: Vec<u32> = st.kept().iter().map(|&i| i as u32).collect();
        let low_before: Vec<bool> = st.low_bit().to_vec();
        // Attention.
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (r, xr) in x.iter().enumerate() {
            let mut xn = rms(xr, &w("attn_norm"), c.rms_eps);
            fq_site(&mut xn, &lp.qkv, lp.qkv.bits);
            let y = mv(&xn, &wqkv, qd + 2 * kvd);
            let (mut q, mut k) = (y[..qd].to_vec(), y[qd..qd + kvd].to_vec());
            rope(&mut q, pos[r], hd, c.rope_base);
            rope(&mut k, pos[r], hd, c.rope_base);
            qs.push(q);
            ks.push(k);
            vs.push(y[qd + kvd..].to_vec());
        }
        cache_lens.push(x.len());
        let mut sink = vec![0f32; x.len()];
        let mut attn_out = vec![vec![0f32; qd]; x.len()];
        for r in 0..x.len() {
            for h in 0..nh {
                let kh = h / (nh / nkv);
                let mut q = qs[r][h * hd..(h + 1) * hd].to_vec();
                if lp.qk.bits == 8 {
                    fq(&mut q, 8);
                }
                let n_keys = r + 1;
                let mut s: Vec<f32> = (0..n_keys)
                    .map(|j| {
                        let mut k = ks[j][kh * hd..(kh + 1) * hd].to_vec();
                        if lp.qk.bits == 8 {
                            fq(&mut k, 8);
                        }
                        q.iter().zip(&k).map(|(a, b)| a * b).sum::<f32>() / (hd as f32).sqrt()
                    })
                    .collect();
                let mx = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = s.iter_mut().map(|v| {
                    *v = (*v - mx).exp();
                    *v
                }).sum();
                s.iter_mut().for_each(|v| *v /= sum);
                sink[r] += s[0];
                if lp.softmax == SoftmaxMode::Log2x4 {
                    // 4-bit log2 codes of p / p_max (the max is code 0), renormalized to sum 1.
                    let pmax = s.iter().copied().fold(0f32, f32::max);
                    for p in s.iter_mut() {
                        let e = -((*p / pmax) as f64).log2();
                        *p = if e >= 16.0 { 0.0 } else { (-(e.round().min(15.0))).exp2() as f32 };
                    }
                    let t: f32 = s.iter().sum();
                    s.iter_mut().for_each(|v| *v /= t);
                }
                // INT8 P·V: V rows as codes · scale; weights p · scale as 16-bit codes with one
                // scale (max / 32767) per block of 32 keys.
                let vrow = |j: usize| {
                    let mut v = vs[j][kh * hd..(kh + 1) * hd].to_vec();
                    let sv = v.iter().fold(0f32, |a, x| a.max(x.abs())) / 127.0;
                    fq(&mut v, 8);
                    let codes: Vec<f32> = v.iter().map(|x| if sv > 0.0 { (x / sv).round() } else { 0.0 }).collect();
                    (codes, sv)
                };
                if lp.pv.bits == 8 {
                    let rows: Vec<(Vec<f32>, f32)> = (0..s.len()).map(vrow).collect();
                    let w: Vec<f32> = s.iter().zip(&rows).map(|(p, r)| p * r.1).collect();
                    for (b, blk) in w.chunks(32).enumerate() {
                        let max = blk.iter().fold(0f32, |a, &x| a.max(x));
                        for (i, &wj) in blk.iter().enumerate() {
                            let wq = if max > 0.0 { (wj / max * 32767.0).round() * (max / 32767.0) } else { 0.0 };
                            let codes = &rows[b * 32 + i].0;
                            for (o, c) in attn_out[r][h * hd..(h + 1) * hd].iter_mut().zip(codes) {
                                *o += wq * c;
                            }
                        }
                    }
                    continue;
                }
                for (j, p) in s.iter().enumerate() {
                    let v = vs[j][kh * hd..(kh + 1) * hd].to_vec();
                    for (o, vv) in attn_out[r][h * hd..(h + 1) * hd].iter_mut().zip(&v) {
                        *o += p * vv;
                    }
                }
            }
        }
        for r in 0..x.len() {
            let bits = if low_before.get(r) == Some(&true) && lp.low_bit > 0.0 && lp.o.bits == 8 { 4 } else { lp.o.bits };
            fq_site(&mut attn_out[r], &lp.o, bits);
            let y = mv(&attn_out[r], &wo, d);
            x[r].iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        }
        // Pruning and the low-bit set.
        let mut low = vec![false; x.len()];
        if lp.prune > 0.0 || lp.low_bit > 0.0 {
            let sel = st.select(&sink, lp.prune, lp.low_bit);
            st.apply(&sel);
            x = sel.keep.iter().map(|&r| x[r].clone()).collect();
            low = sel.low_bit.clone();
        }
        // MLP.
        for (r, xr) in x.iter_mut().enumerate() {
            let lowbits = |b: u8| if low[r] && b == 8 && lp.low_bit > 0.0 { 4 } else { b };
            let mut xn = rms(xr, &w("ffn_norm"), c.rms_eps);
            fq_site(&mut xn, &lp.gate_up, lowbits(lp.gate_up.bits));
            let gu = mv(&xn, &wgu, 2 * ff);
            let mut h: Vec<f32> = (0..ff).map(|i| gu[i] / (1.0 + (-gu[i]).exp()) * gu[ff + i]).collect();
            fq_site(&mut h, &lp.down, lowbits(lp.down.bits));
            let y = mv(&h, &wd, d);
            xr.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        }
    }
    let lm: Vec<f32> = emb.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
    let on = t(g, "output_norm.weight");
    let logits = x.iter().flat_map(|xr| mv(&rms(xr, &on, c.rms_eps), &lm, c.vocab_size)).collect();
    (st.kept().to_vec(), logits, cache_lens)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
}

fn hooks(f: &Fixture, plan: &Plan, prunable: Prunable) -> PlanHooks {
    PlanHooks::build(&f.model, &f.g, plan, "test", None, prunable).unwrap()
}

#[test]
fn w4a16_plan_is_the_float_runtime() {
    let f = fixture(2);
    let toks = tokens(12, 320);
    let plan = presets::preset("w4a16", 2).unwrap();
    let (_, a, _) = run(&f, &toks, &FloatHooks, Logits::All);
    let (_, b, _) = run(&f, &toks, &hooks(&f, &plan, Prunable::All), Logits::All);
    assert_eq!(a, b);
}

#[test]
fn presets_match_the_reference() {
    let f = fixture(4);
    let toks = tokens(24, 320);
    let float = run(&f, &toks, &FloatHooks, Logits::All).1;
    // agile presets run with and without their log2 softmax (each path of P·V checked).
    let presets = [
        ("w4a16", false),
        ("w4a8", false),
        ("w4a4", false),
        ("agile8", false),
        ("agile8", true),
        ("agile4", false),
        ("agile4", true),
        ("w4a8-g32", false),
        ("w4a4-g32", false),
        ("agile8-g32", true),
        ("agile4-g32", false),
        ("agile4-g32", true),
        ("agile4-packed", false),
    ];
    for (name, log2) in presets {
        // Not presets: w4a4 with every linear site grouped, and agile4 with its INT4 rows
        // through the packed kernel (the two-call path; w4a4-widen rows share the INT8 call).
        let mut plan = presets::preset(name, 4).unwrap_or_else(|| match name {
            "w4a4-g32" => {
                let mut p = presets::preset("w4a4", 4).unwrap();
                p.layers.iter_mut().for_each(|l| Site::LINEAR.iter().for_each(|&s| l.site_mut(s).scheme = Scheme::Group));
                p
            }
            _ => {
                let mut p = presets::preset("agile4", 4).unwrap();
                p.layers.iter_mut().for_each(|l| l.low_bit_variant = VariantChoice::Fixed(kernels::Variant::W4A4Packed));
                p
            }
        });
        if name.starts_with("agile") {
            // Prune harder than the preset so that 24 tokens lose some.
            for l in &mut plan.layers[1..] {
                l.prune = 0.2;
            }
            if !log2 {
                plan.layers.iter_mut().for_each(|l| l.softmax = SoftmaxMode::F32);
            }
        }
        let (rows, got, cache) = run(&f, &toks, &hooks(&f, &plan, Prunable::All), Logits::All);
        let (want_rows, want, lens) = reference(&f.g, &f.model, &plan, &toks, 0..toks.len());
        assert_eq!(rows, want_rows, "{name}: surviving tokens");
        let err = max_rel(&got, &want);
        eprintln!("{name} (log2 {log2}): {} of {} tokens survive, max rel. diff to reference {err:.2e}", rows.len(), toks.len());
        assert!(err < 2e-3, "{name}: logits differ from the reference by {err}");
        let cache_lens: Vec<usize> = cache.layers.iter().map(|l| l.len()).collect();
        assert_eq!(cache_lens, lens, "{name}: per-layer cache lengths");
        if name.starts_with("agile") {
            assert!(rows.len() < toks.len() && rows.contains(&0) && rows.contains(&(toks.len() - 1)));
            assert!(cache_lens.windows(2).all(|w| w[0] >= w[1]) && cache_lens[3] < cache_lens[0]);
        } else {
            // Quantization moved the logits away from float (so the comparison above means something).
            let gap = max_rel(&got, &float);
            assert!(name == "w4a16" || gap > 10.0 * err, "{name}: quantization gap {gap} vs reference diff {err}");
        }
    }
}

#[test]
fn perplexity_protocol_prunes_only_the_first_half_and_decode_continues() {
    let f = fixture(4);
    let toks = tokens(32, 320);
    let mut plan = presets::preset("agile8", 4).unwrap();
    plan.layers.iter_mut().for_each(|l| l.prune = 0.3);
    let h = hooks(&f, &plan, Prunable::FirstHalf);
    let mut cache = f.model.new_cache(40);
    let mut st = State::new();
    f.model.forward(&toks, &mut cache, &mut st, Logits::From(16), &h).unwrap();
    assert_eq!(st.logit_rows, (16..32).collect::<Vec<_>>(), "the scored half is never pruned");
    let (kept, _, lens) = reference(&f.g, &f.model, &plan, &toks, 0..16);
    assert!(kept.len() < 32 && kept.iter().filter(|&&i| i >= 16).count() == 16);
    let got: Vec<usize> = cache.layers.iter().map(|l| l.len()).collect();
    assert_eq!(got, lens);
    // Decode: one token at the next position, never pruned, appended to every layer.
    let out = f.model.forward(&[5], &mut cache, &mut st, Logits::Last, &h).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
    let after: Vec<usize> = cache.layers.iter().map(|l| l.len()).collect();
    assert_eq!(after, lens.iter().map(|n| n + 1).collect::<Vec<_>>());
    assert_eq!(cache.layers[3].positions().last(), Some(&32));
}

#[test]
fn trip_plan_with_calibration_runs_and_stays_close() {
    let f = fixture(2);
    let calib_toks = tokens(96, 320);
    let coll = calibrate::collect(&f.model, &calib_toks, 32, 256, |_| {}).unwrap();
    let stats = coll.finish(3, &"0".repeat(64), "synthetic", &"1".repeat(64), calib_toks.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calib.json");
    stats.write(&path).unwrap();
    let back = CalibStats::read(&path).unwrap();
    assert_eq!(back, stats);
    assert_eq!(back.layers[1].down.k, 128);
    assert_eq!(back.layers[0].qkv.rows, 96);

    let plan = presets::preset("w4a8-trip", 2).unwrap();
    let err = PlanHooks::build(&f.model, &f.g, &plan, "w4a8-trip", None, Prunable::All).err().unwrap().to_string();
    assert!(err.contains("w4a8-trip") && err.contains("calibrate"), "{err}");
    let h = PlanHooks::build(&f.model, &f.g, &plan, "w4a8-trip", Some((&back, &path)), Prunable::All).unwrap();
    let toks = tokens(20, 320);
    let float = run(&f, &toks, &FloatHooks, Logits::All).1;
    let trip = run(&f, &toks, &h, Logits::All).1;
    let tok8 = run(&f, &toks, &hooks(&f, &presets::preset("w4a8", 2).unwrap(), Prunable::All), Logits::All).1;
    // The same static scales with no factors: isolates what the factors do.
    let mut flat = back.clone();
    for l in &mut flat.layers {
        for st in [&mut l.qkv, &mut l.o, &mut l.gate_up, &mut l.down] {
            st.int8.factors.iter_mut().for_each(|a| *a = 0);
        }
    }
    let hf = PlanHooks::build(&f.model, &f.g, &plan, "w4a8-trip", Some((&flat, &path)), Prunable::All).unwrap();
    let plain = run(&f, &toks, &hf, Logits::All).1;
    let (e_trip, e_tok, e_plain) = (max_rel(&trip, &float), max_rel(&tok8, &float), max_rel(&plain, &float));
    eprintln!("max rel. diff to float: trip {e_trip:.3e}, static without factors {e_plain:.3e}, per-token {e_tok:.3e}");
    // Static scales from other text clip and round coarser than per-token ones; this bounds
    // the drift loosely (a wrong fold or a missing 2^-a on the activations is far larger).
    assert!(e_trip < 0.3, "trip drifted {e_trip}");
    assert!(e_trip < e_plain, "factors should help with their own scales: {e_trip} vs {e_plain}");
    assert!(e_trip > 0.0);
}

#[test]
fn corrupt_calibration_files_are_rejected() {
    let f = fixture(2);
    let coll = calibrate::collect(&f.model, &tokens(40, 320), 20, 64, |_| {}).unwrap();
    let mut stats = coll.finish(3, &"0".repeat(64), "t", &"1".repeat(64), 40);
    stats.layers[1].o.int8.factors.pop();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    stats.write(&path).unwrap();
    let e = CalibStats::read(&path).unwrap_err().to_string();
    assert!(e.contains("c.json") && e.contains("layer 1 o"), "{e}");
    std::fs::write(&path, "{").unwrap();
    assert!(CalibStats::read(&path).unwrap_err().to_string().contains("c.json"));
    // Factors that differ inside a 32-channel group contradict `factor_group = 32`.
    let mut stats = coll.finish(3, &"0".repeat(64), "t", &"1".repeat(64), 40);
    assert_eq!(stats.factor_group, 32);
    stats.layers[0].down.int4.factors[1] = stats.layers[0].down.int4.factors[0] ^ 1;
    stats.write(&path).unwrap();
    let e = CalibStats::read(&path).unwrap_err().to_string();
    assert!(e.contains("layer 0 down") && e.contains("group of 32"), "{e}");
    // A schema-1 file (per-channel factors, no outlier ratio) asks for a re-run.
    let mut stats = coll.finish(3, &"0".repeat(64), "t", &"1".repeat(64), 40);
    stats.schema = 1;
    stats.write(&path).unwrap();
    let e = CalibStats::read(&path).unwrap_err().to_string();
    assert!(e.contains("schema version 1") && e.contains("agq calibrate"), "{e}");
}

/// Calibration writes group-constant factors by default (the plan then folds them exactly,
/// see `quant::exact_fold_scales_weights_exactly`); per-channel factors (group 1) still run,
/// through the re-quantizing fold. Both stay close to float on the tiny model.
#[test]
fn trip_fold_in_the_plan_is_exact_for_group_factors() {
    let f = fixture(2);
    let calib_toks = tokens(96, 320);
    let coll = calibrate::collect(&f.model, &calib_toks, 32, 256, |_| {}).unwrap();
    let g32 = coll.finish(3, &"0".repeat(64), "s", &"1".repeat(64), 96);
    let g1 = coll.finish_grouped(3, 1, &"0".repeat(64), "s", &"1".repeat(64), 96);
    assert!(g32.layers.iter().all(|l| runtime::quant::trip::group_exponents(&l.down.int8.factors).is_some()));
    assert!(g32.layers.iter().flat_map(|l| [&l.qkv, &l.o, &l.gate_up, &l.down]).all(|s| s.channel_ratio >= 1.0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calib.json");
    let plan = presets::preset("w4a8-trip", 2).unwrap();
    let toks = tokens(20, 320);
    let float = run(&f, &toks, &FloatHooks, Logits::All).1;
    for (name, st) in [("group 32", &g32), ("group 1", &g1)] {
        let h = PlanHooks::build(&f.model, &f.g, &plan, "w4a8-trip", Some((st, &path)), Prunable::All).unwrap();
        let y = run(&f, &toks, &h, Logits::All).1;
        let e = max_rel(&y, &float);
        eprintln!("w4a8-trip {name}: max rel. diff to float {e:.3e}");
        assert!(e < 0.3 && y.iter().all(|v| v.is_finite()), "{name}: {e}");
    }
}

#[test]
fn paper_protocol_scores_only_survivors() {
    let f = fixture(4);
    let toks = tokens(64, 320);
    let dense = presets::preset("w4a8", 4).unwrap();
    let h = hooks(&f, &dense, Prunable::All);
    let a = runtime::eval::perplexity(&f.model, &toks, 16, None, &h, |_, _, _| {}).unwrap();
    let b = runtime::plan::exec::paper_perplexity(&f.model, &toks, 16, None, &h, |_, _, _| {}).unwrap();
    assert_eq!((a.ppl, a.tokens_scored), (b.ppl, b.tokens_scored), "without pruning both protocols agree");
    let mut plan = presets::preset("agile8", 4).unwrap();
    plan.layers.iter_mut().for_each(|l| l.prune = 0.1);
    let hp = hooks(&f, &plan, Prunable::All);
    let p = runtime::plan::exec::paper_perplexity(&f.model, &toks, 16, None, &hp, |_, _, _| {}).unwrap();
    assert!(p.tokens_scored < a.tokens_scored && p.tokens_scored > 0, "{} vs {}", p.tokens_scored, a.tokens_scored);
    // The llama.cpp protocol with first-half pruning still scores every token.
    let hf = hooks(&f, &plan, Prunable::FirstHalf);
    let d = runtime::eval::perplexity(&f.model, &toks, 16, None, &hf, |_, _, _| {}).unwrap();
    assert_eq!(d.tokens_scored, a.tokens_scored);
    assert!(d.ppl.is_finite() && d.ppl != a.ppl);
}
