//! Plans on the real model: quantized presets stay close to the float perplexity on a few
//! chunks of WikiText-2 (a sanity bound, not the measurement; `agq eval` measures).

use runtime::gguf::Gguf;
use runtime::model::{llama, LoadOptions};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{presets, WeightFormat};
mod a_support;
use a_support::model_path;

#[test]
fn quantized_presets_stay_near_float_perplexity() {
    let Some(path) = model_path() else { return };
    let g = Gguf::open(&path).unwrap();
    let tok = runtime::tokenizer::Tokenizer::from_gguf(&g).unwrap();
    let text = std::fs::read_to_string(a_support::data_path("wikitext-2-raw-test.txt")).unwrap();
    let ids = tok.encode(&text[..40_000], false).unwrap();
    let model = llama::load_gguf(&g, LoadOptions::new(WeightFormat::Q4_1)).unwrap();
    let n = model.config.n_layer;
    let (ctx, chunks) = (256, Some(2));
    let mut ppl = std::collections::BTreeMap::new();
    for name in ["w4a16", "w4a8", "agile8"] {
        let plan = presets::preset(name, n).unwrap();
        let h = PlanHooks::build(&model, &g, &plan, name, None, Prunable::FirstHalf).unwrap();
        let r = runtime::eval::perplexity(&model, &ids, ctx, chunks, &h, |_, _, _| {}).unwrap();
        eprintln!("{name}: ppl {:.3} ± {:.3} ({} tokens)", r.ppl, r.ppl_stderr, r.tokens_scored);
        ppl.insert(name, r.ppl);
    }
    assert!(ppl["w4a16"].is_finite() && ppl["w4a16"] < 100.0, "float ppl {}", ppl["w4a16"]);
    assert!(ppl["w4a8"] < 1.3 * ppl["w4a16"], "w4a8 {} vs w4a16 {}", ppl["w4a8"], ppl["w4a16"]);
    assert!(ppl["agile8"] < 2.0 * ppl["w4a16"], "agile8 {} vs w4a16 {}", ppl["agile8"], ppl["w4a16"]);
}
