//! HF safetensors checkpoints: a tiny synthetic llama written with the safetensors crate
//! loads under GGUF names with ne0-first dims, half-split RoPE, and clear errors.

use half::{bf16, f16};
use runtime::config::RopePairing;
use runtime::gguf::synthetic::{tiny_config, tiny_llama};
use runtime::gguf::{GgmlType, Gguf, TensorSource};
use runtime::safetensors::{
    export_hf, gguf_name, hf_name, permute_adjacent_to_half, permute_half_to_adjacent, HfCheckpoint,
};
use runtime::tokenizer::Tokenizer;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;

/// HF name, row-major shape [rows, cols], values.
type HfTensor = (String, Vec<usize>, Vec<f32>);

/// The HF tensors of the tiny config with deterministic values.
fn hf_tensors() -> Vec<HfTensor> {
    let c = tiny_config();
    let (e, f, v, q, kv) = (c.n_embd, c.n_ff, c.vocab_size, c.q_dim(), c.kv_dim());
    let mut t: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, e]),
        ("model.norm.weight".into(), vec![e]),
    ];
    for i in 0..c.n_layer {
        let l = |s: &str| format!("model.layers.{i}.{s}.weight");
        t.push((l("input_layernorm"), vec![e]));
        t.push((l("self_attn.q_proj"), vec![q, e]));
        t.push((l("self_attn.k_proj"), vec![kv, e]));
        t.push((l("self_attn.v_proj"), vec![kv, e]));
        t.push((l("self_attn.o_proj"), vec![e, q]));
        t.push((l("post_attention_layernorm"), vec![e]));
        t.push((l("mlp.gate_proj"), vec![f, e]));
        t.push((l("mlp.up_proj"), vec![f, e]));
        t.push((l("mlp.down_proj"), vec![e, f]));
    }
    t.into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n: usize = shape.iter().product();
            let vals = (0..n)
                .map(|i| (((i * 7919 + k * 104729) % 1000) as f32 - 500.0) / 1024.0)
                .collect();
            (name, shape, vals)
        })
        .collect()
}

fn config_json(tie: bool) -> String {
    let c = tiny_config();
    format!(
        r#"{{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": {}, "intermediate_size": {},
            "num_hidden_layers": {}, "num_attention_heads": {}, "num_key_value_heads": {}, "rms_norm_eps": 1e-05,
            "rope_theta": 10000.0, "max_position_embeddings": {}, "vocab_size": {}, "tie_word_embeddings": {tie},
            "rope_scaling": null, "torch_dtype": "float32"}}"#,
        c.n_embd, c.n_ff, c.n_layer, c.n_head, c.n_head_kv, c.n_ctx_train, c.vocab_size
    )
}

/// Encodes values in a dtype, as safetensors stores them (little-endian).
fn encode(dtype: Dtype, vals: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => vals
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => vals
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

/// Writes `tensors` into `files` shards (round robin) with the given dtype per tensor.
fn write_checkpoint(
    dir: &Path,
    tensors: &[HfTensor],
    dtype_of: impl Fn(&str) -> Dtype,
    shards: usize,
) {
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let d = dtype_of(n);
            (n.clone(), d, s.clone(), encode(d, v))
        })
        .collect();
    for shard in 0..shards {
        let views: Vec<(String, TensorView)> = encoded
            .iter()
            .enumerate()
            .filter(|(i, _)| i % shards == shard)
            .map(|(_, (n, d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let file = dir.join(format!("model-{shard:05}-of-{shards:05}.safetensors"));
        safetensors::tensor::serialize_to_file(views, None, &file).unwrap();
    }
}

#[test]
fn name_mapping() {
    assert_eq!(
        gguf_name("model.layers.12.self_attn.q_proj.weight").unwrap(),
        "blk.12.attn_q.weight"
    );
    assert_eq!(
        gguf_name("model.layers.0.mlp.down_proj.weight").unwrap(),
        "blk.0.ffn_down.weight"
    );
    assert_eq!(
        gguf_name("model.embed_tokens.weight").unwrap(),
        "token_embd.weight"
    );
    assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
    assert!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq").is_none());
    assert!(gguf_name("model.layers.x.mlp.up_proj.weight").is_none());
}

#[test]
fn tiny_checkpoint_loads_like_a_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = hf_tensors();
    tensors.push((
        "model.layers.0.self_attn.rotary_emb.inv_freq".into(),
        vec![8],
        vec![1.0; 8],
    ));
    std::fs::write(dir.path().join("config.json"), config_json(true)).unwrap();
    // Norms in F32, attention in BF16, the rest F16: every float dtype.
    let dtype_of = |n: &str| {
        if n.contains("norm") || n.contains("inv_freq") {
            Dtype::F32
        } else if n.contains("self_attn") {
            Dtype::BF16
        } else {
            Dtype::F16
        }
    };
    write_checkpoint(dir.path(), &tensors, dtype_of, 2);

    let ck = HfCheckpoint::open(dir.path()).unwrap();
    let mut want = tiny_config();
    want.rope_pairing = RopePairing::HalfSplit;
    assert_eq!(ck.config(), &want);
    assert_eq!(
        ck.ignored_tensors(),
        ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    );
    assert_eq!(ck.tensor_infos().len(), 2 + 9 * want.n_layer);

    for (hf, shape, vals) in &tensors[..tensors.len() - 1] {
        let t = ck.tensor(&gguf_name(hf).unwrap()).unwrap();
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        assert_eq!(t.dims, dims, "{hf}");
        let expect: Vec<f32> = match dtype_of(hf) {
            Dtype::F32 => vals.clone(),
            Dtype::F16 => vals.iter().map(|v| f16::from_f32(*v).to_f32()).collect(),
            _ => vals.iter().map(|v| bf16::from_f32(*v).to_f32()).collect(),
        };
        assert_eq!(t.to_f32().unwrap(), expect, "{hf}");
    }
    assert_eq!(ck.tensor("blk.1.attn_q.weight").unwrap().ty, GgmlType::BF16);
    let msg = ck.tensor("output.weight").unwrap_err().to_string();
    assert!(msg.contains("output.weight") && msg.contains(&dir.path().display().to_string()));

    // The same weights written as a GGUF (metadata from the synthetic model): same config
    // apart from the RoPE pairing, and the same values under the same names.
    let base_path = dir.path().join("base.gguf");
    tiny_llama(&tiny_config(), GgmlType::F32, 1)
        .write(&base_path)
        .unwrap();
    let base = Gguf::open(&base_path).unwrap();
    let mut w = runtime::gguf::GgufWriter::new();
    for (k, v) in base.metadata() {
        w.set(k, v.clone());
    }
    for (hf, shape, vals) in &tensors[..tensors.len() - 1] {
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        w.add_f32(&gguf_name(hf).unwrap(), &dims, vals);
    }
    let g_path = dir.path().join("same.gguf");
    w.write(&g_path).unwrap();
    let g = Gguf::open(&g_path).unwrap();
    let gc = runtime::config::ModelConfig::from_gguf(&g).unwrap();
    assert_eq!(
        runtime::config::ModelConfig {
            rope_pairing: RopePairing::HalfSplit,
            ..gc
        },
        want
    );
    for name in [
        "blk.0.attn_norm.weight",
        "blk.1.ffn_down.weight",
        "output_norm.weight",
    ] {
        let (a, b) = (g.tensor(name).unwrap(), ck.tensor(name).unwrap());
        assert_eq!(a.dims, b.dims);
        let round = |v: Vec<f32>| -> Vec<f32> {
            v.into_iter().map(|x| f16::from_f32(x).to_f32()).collect()
        };
        let av = if b.ty == GgmlType::F16 {
            round(a.to_f32().unwrap())
        } else {
            a.to_f32().unwrap()
        };
        assert_eq!(av, b.to_f32().unwrap(), "{name}");
    }
}

#[test]
fn tokenizer_json_beside_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(true)).unwrap();
    write_checkpoint(dir.path(), &hf_tensors(), |_| Dtype::F32, 1);
    let g_path = dir.path().join("tiny.gguf");
    tiny_llama(&tiny_config(), GgmlType::F32, 3)
        .write(&g_path)
        .unwrap();
    let gt = Tokenizer::from_gguf(&Gguf::open(&g_path).unwrap()).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), gt.to_json().unwrap()).unwrap();
    let ck = HfCheckpoint::open(dir.path()).unwrap();
    let tk = ck.tokenizer().unwrap();
    let text = "the quick brown fox 42 <|im_start|>";
    assert_eq!(
        tk.encode(text, true).unwrap(),
        gt.encode(text, true).unwrap()
    );
}

#[test]
fn broken_checkpoints_are_errors_naming_the_file() {
    let tensors = hf_tensors();
    // Wrong shape for one projection.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(true)).unwrap();
    let mut bad = tensors.clone();
    let k = bad
        .iter()
        .position(|t| t.0 == "model.layers.1.self_attn.k_proj.weight")
        .unwrap();
    bad[k].1 = vec![64, 64];
    bad[k].2 = vec![0.0; 64 * 64];
    write_checkpoint(dir.path(), &bad, |_| Dtype::F32, 1);
    let msg = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("blk.1.attn_k.weight") && msg.contains("[64, 32]") && msg.contains("[64, 64]"),
        "{msg}"
    );

    // Untied config without lm_head is fine (treated as tied); a missing layer tensor is not.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(false)).unwrap();
    let missing: Vec<HfTensor> = tensors
        .iter()
        .filter(|t| !t.0.contains("layers.1.mlp.up_proj"))
        .cloned()
        .collect();
    write_checkpoint(dir.path(), &missing, |_| Dtype::F32, 1);
    let msg = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("blk.1.ffn_up.weight") && msg.contains("not found"),
        "{msg}"
    );

    // Truncated safetensors file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config_json(true)).unwrap();
    write_checkpoint(dir.path(), &tensors, |_| Dtype::F32, 1);
    let file = dir.path().join("model-00000-of-00001.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let msg = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("model-00000-of-00001.safetensors") && msg.contains("malformed"),
        "{msg}"
    );

    // Missing and wrong config.
    let dir = tempfile::tempdir().unwrap();
    let msg = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("config.json"), "{msg}");
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let msg = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("config.json") && msg.contains("gpt2"), "{msg}");
    std::fs::write(dir.path().join("config.json"), config_json(true)).unwrap();
    let msg = HfCheckpoint::open(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("no *.safetensors"), "{msg}");
}

#[test]
fn rope_row_permutation_matches_llama_cpp() {
    // One head of 4 rows: llama.cpp's converter turns HF rows [r0, r1, r2, r3] into
    // [r0, r2, r1, r3] (reshape(heads, 2, d/2, cols).swapaxes(1, 2)).
    let hf: Vec<f32> = (0..4).flat_map(|r| [r as f32, 10.0 + r as f32]).collect();
    let adj = permute_half_to_adjacent(&hf, 4, 2, 1);
    assert_eq!(adj, vec![0.0, 10.0, 2.0, 12.0, 1.0, 11.0, 3.0, 13.0]);
    assert_eq!(permute_adjacent_to_half(&adj, 4, 2, 1), hf);
    // Several heads: each head permuted on its own; round trip is the identity.
    let w: Vec<f32> = (0..3 * 8 * 5).map(|i| i as f32).collect();
    let p = permute_half_to_adjacent(&w, 24, 5, 3);
    assert_eq!(&p[8 * 5..8 * 5 + 5], &w[8 * 5..8 * 5 + 5]); // head 1, row 0 stays
    assert_eq!(&p[(8 + 1) * 5..(8 + 2) * 5], &w[(8 + 4) * 5..(8 + 5) * 5]); // head 1: row 1 <- row d/2
    assert_eq!(permute_adjacent_to_half(&p, 24, 5, 3), w);
    for n in [
        "token_embd.weight",
        "blk.3.attn_k.weight",
        "blk.0.ffn_gate.weight",
        "output.weight",
    ] {
        assert_eq!(gguf_name(&hf_name(n).unwrap()).unwrap(), n);
    }
}

#[test]
fn export_gguf_to_hf_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let g_path = dir.path().join("tiny.gguf");
    let cfg = tiny_config();
    tiny_llama(&cfg, GgmlType::Q8_0, 11).write(&g_path).unwrap();
    let g = Gguf::open(&g_path).unwrap();
    let tk = Tokenizer::from_gguf(&g).unwrap();
    let hf = dir.path().join("hf");
    export_hf(&g, &cfg, Some(&tk), &hf).unwrap();
    let ck = HfCheckpoint::open(&hf).unwrap();
    assert_eq!(
        ck.config(),
        &runtime::config::ModelConfig {
            rope_pairing: RopePairing::HalfSplit,
            ..cfg.clone()
        }
    );
    for info in g.tensor_infos() {
        let a = g.tensor(&info.name).unwrap();
        let b = ck.tensor(&info.name).unwrap();
        assert_eq!(a.dims, b.dims, "{}", info.name);
        let mut bv = b.to_f32().unwrap();
        let (cols, rows) = (
            info.dims[0] as usize,
            info.dims.get(1).copied().unwrap_or(1) as usize,
        );
        if info.name.ends_with("attn_q.weight") {
            assert_ne!(bv, a.to_f32().unwrap(), "HF rows are in half-split order");
            bv = permute_half_to_adjacent(&bv, rows, cols, cfg.n_head);
        } else if info.name.ends_with("attn_k.weight") {
            bv = permute_half_to_adjacent(&bv, rows, cols, cfg.n_head_kv);
        }
        assert_eq!(bv, a.to_f32().unwrap(), "{}", info.name);
    }
    let hk = ck.tokenizer().unwrap();
    assert_eq!(
        (hk.bos(), hk.eos(), hk.add_bos()),
        (tk.bos(), tk.eos(), tk.add_bos())
    );
    let text = "the rain in spain 1999 <|im_start|>";
    assert_eq!(
        hk.encode(text, true).unwrap(),
        tk.encode(text, true).unwrap()
    );
}
