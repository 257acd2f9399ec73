//! The benchmark's pruning report (`bench::kept_per_layer`, `bench::pruning_savings`,
//! `Hooks::set_pruning`) and decode at a KV-cache depth, on a tiny synthetic llama; and
//! `auto`'s choice of 4-bit kernel.

mod a_support;

use runtime::bench::{self, Test};
use runtime::model::{FloatHooks, Hooks, Logits, State};
use runtime::plan::exec::{PlanHooks, Prunable};
use runtime::plan::{presets, WeightFormat};


#[test]
fn pruning_can_be_switched_off_and_the_report_counts_cache_lengths() {
    let (_d, g, model) = a_support::tiny_q4_model(4);
    let plan = presets::preset("agile8", 4).unwrap();
    let hooks = PlanHooks::build(&model, &g, &plan, "agile8", None, Prunable::All).unwrap();
    let n = 40;
    let kept = bench::kept_per_layer(&model, n, &hooks).unwrap();
    assert_eq!(kept.len(), 4);
    assert_eq!(kept[0], n, "the first layers see every token");
    assert!(kept.windows(2).all(|w| w[0] >= w[1]), "{kept:?}");
    assert!(*kept.last().unwrap() < n, "agile8 prunes the later layers: {kept:?}");
    assert!(hooks.set_pruning(false));
    assert_eq!(bench::kept_per_layer(&model, n, &hooks).unwrap(), vec![n; 4], "off: nothing dropped");
    hooks.set_pruning(true);
    let (off, on) = bench::pruning_savings(&model, n, 2, &hooks).unwrap().expect("agile8 prunes");
    assert_eq!((off.len(), on.len()), (2, 2));
    assert_eq!(bench::kept_per_layer(&model, n, &hooks).unwrap(), kept, "left on afterwards");
    assert!(bench::pruning_savings(&model, n, 1, &FloatHooks).unwrap().is_none());
}

#[test]
fn decode_at_depth_matches_one_long_run() {
    // `run_once_at` feeds `depth` tokens untimed and then the test: the cache state is what a
    // single forward over depth + tokens leaves, and logits of the last step agree.
    let (_d, _g, model) = a_support::tiny_q4_model(2);
    let hooks = FloatHooks;
    let mut st = State::new();
    let ns = bench::run_once_at(&model, Test::Gen(3), 20, &mut st, &hooks, 5).unwrap();
    assert!(ns > 0);
    let got = st.logits().to_vec();
    let vocab = model.config.vocab_size;
    let mut cache = model.new_cache(23);
    let mut st2 = State::new();
    let ctx = bench::tokens(20, vocab, 5 ^ 0x5eed);
    model.forward(&ctx, &mut cache, &mut st2, Logits::Last, &hooks).unwrap();
    for &t in &bench::tokens(3, vocab, 5) {
        model.forward(&[t], &mut cache, &mut st2, Logits::Last, &hooks).unwrap();
    }
    assert_eq!(got, st2.logits());
    assert_eq!(bench::depth_suffix(512), " @ d512");
    assert_eq!(bench::depth_suffix(0), "");
}

#[test]
fn auto_4bit_variant_has_the_widest_isa() {
    use kernels::{best_isa, Isa, Variant};
    let width = |i: Isa| match i {
        Isa::Scalar => 0,
        Isa::Avx2 | Isa::Neon => 1,
        Isa::Avx512 => 2,
    };
    let v = runtime::plan::auto_variant(4, WeightFormat::Q4_1);
    assert_eq!(v.activation_bits(), 4);
    for other in [Variant::W4A4Packed, Variant::W4A4Widen, Variant::W4A4Lut] {
        assert!(width(best_isa(v)) >= width(best_isa(other)), "{v:?} on {:?} vs {other:?} on {:?}", best_isa(v), best_isa(other));
    }
}
