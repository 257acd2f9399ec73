//! Plan files: presets, compact form round trip, overrides, and every rejection.

use kernels::Variant;
use runtime::plan::{file, presets, Plan, PlanError, Positions, Scheme, Site, SoftmaxMode, VariantChoice, WeightFormat};
use std::path::Path;

fn parse(text: &str, n: usize) -> Result<Plan, PlanError> {
    file::parse(text, "test.toml")?.expand(n)
}

/// The error message, which must name the file and the key.
fn err(text: &str, n: usize, key: &str) -> String {
    let e = parse(text, n).expect_err("plan should be rejected").to_string();
    assert!(e.starts_with("test.toml: "), "error does not name the file: {e}");
    assert!(e.contains(key), "error does not name `{key}`: {e}");
    e
}

#[test]
fn every_preset_round_trips_through_its_toml() {
    for n in [1, 2, 7, 30] {
        for name in presets::NAMES {
            let p = presets::preset(name, n).unwrap();
            let text = p.to_toml();
            let back = parse(&text, n).unwrap_or_else(|e| panic!("{name} n={n}: {e}\n{text}"));
            assert_eq!(back, p, "{name} n={n} changed in the round trip:\n{text}");
            // And the text itself is a fixed point.
            assert_eq!(back.to_toml(), text);
        }
    }
}

#[test]
fn preset_contents() {
    let n = 30;
    let fp16 = presets::preset("fp16", n).unwrap();
    assert_eq!(fp16.weights, WeightFormat::F16);
    assert!(fp16.layers.iter().all(|l| Site::LAYER.iter().all(|&s| l.site(s).bits == 16)));

    let trip = presets::preset("w4a8-trip", n).unwrap();
    assert!(trip.needs_calibration());
    assert!(trip.layers.iter().all(|l| l.down.bits == 8 && l.down.scheme == Scheme::Tensor && l.qk.bits == 16));
    assert!(!presets::preset("w4a8", n).unwrap().needs_calibration());

    let a8 = presets::preset("agile8", n).unwrap();
    assert!(a8.layers.iter().all(|l| l.qk.bits == 8 && l.softmax == SoftmaxMode::Log2x4 && l.low_bit == 0.0));
    assert_eq!(a8.lm_head.bits, 16);
    // Pruning only on the later layers, reaching beta overall.
    assert!(a8.layers[..15].iter().all(|l| l.prune == 0.0));
    let survive: f64 = a8.layers.iter().map(|l| 1.0 - l.prune).product();
    assert!((survive - (1.0 - presets::AGILE_PRUNE_BETA)).abs() < 1e-9, "survivors {survive}");

    let a4 = presets::preset("agile4", n).unwrap();
    let ratios: Vec<f64> = a4.layers.iter().map(|l| l.low_bit).collect();
    assert!(ratios.windows(2).all(|w| w[0] <= w[1]), "low-bit ratios must grow with depth: {ratios:?}");
    assert_eq!(ratios[0], 0.0);
    assert_eq!(ratios[n - 1], presets::AGILE4_LOW_BIT_MAX);
    assert_eq!(a4.layers[10].prune, a8.layers[10].prune);
}

#[test]
fn compact_file_expands_with_overrides_in_order() {
    let text = r#"
schema = 1
name = "mine"
positions = "renumber"
[calibration]
stats = "calib.json"
tokens = 4096
[tuner]
predicted_latency_ms = 12.5
budget = "latency <= 0.6 x fp16"
[tuner.device]
cpu = "AMD EPYC"
cores = 2
[lm_head]
bits = 8
[defaults]
softmax = "log2-4"
[defaults.gate_up]
bits = 8
variant = "w4a8"
[defaults.down]
bits = 8
scheme = "tensor"
[[layers]]
index = [2, 3]
prune = 0.25
low_bit = 0.1
[layers.down]
bits = 4
variant = "auto"
[[layers]]
index = 3
prune = 0.5
[layers.qk]
bits = 8
"#;
    let p = parse(text, 4).unwrap();
    assert_eq!(p.name.as_deref(), Some("mine"));
    assert_eq!(p.positions, Positions::Renumber);
    assert_eq!(p.weights, WeightFormat::Q4_1);
    assert_eq!(p.lm_head.bits, 8);
    assert_eq!(p.tuner.as_ref().unwrap().device.as_ref().unwrap()["cores"].as_integer(), Some(2));
    assert_eq!(p.layers[0].gate_up.variant, VariantChoice::Fixed(Variant::W4A8));
    assert_eq!(p.layers[0].down.bits, 8);
    assert_eq!(p.layers[0].down.scheme, Scheme::Tensor);
    assert_eq!(p.layers[0].prune, 0.0);
    assert_eq!(p.layers[2].down.bits, 4);
    assert_eq!(p.layers[2].down.scheme, Scheme::Tensor, "unset fields inherit");
    assert_eq!((p.layers[2].prune, p.layers[2].low_bit), (0.25, 0.1));
    assert_eq!((p.layers[3].prune, p.layers[3].low_bit), (0.5, 0.1), "later entries win field by field");
    assert_eq!(p.layers[3].qk.bits, 8);
    assert_eq!(p.layers[2].qk.bits, 16);
    assert!(p.layers.iter().all(|l| l.softmax == SoftmaxMode::Log2x4));
    // Round trip of a hand-written file too.
    assert_eq!(parse(&p.to_toml(), 4).unwrap(), p);
    // n_layer is not pinned in this file, so it expands for any depth that has layer 3.
    assert_eq!(parse(text, 9).unwrap().layers.len(), 9);
}

#[test]
fn minimal_file_is_all_float_q4() {
    let p = parse("schema = 1\n", 3).unwrap();
    assert_eq!(p, Plan::float(3, WeightFormat::Q4_1));
    assert_eq!(p.layers[0].down.resolve_variant(p.weights), Variant::W4A16);
}

#[test]
fn auto_variants_resolve_by_bits() {
    let p = presets::preset("w4a4", 2).unwrap();
    assert_eq!(p.layers[0].down.resolve_variant(p.weights).activation_bits(), 4);
    let p = presets::preset("w4a8", 2).unwrap();
    assert_eq!(p.layers[0].down.resolve_variant(p.weights), Variant::W4A8);
    let p = presets::preset("fp16", 2).unwrap();
    assert_eq!(p.layers[0].down.resolve_variant(p.weights), Variant::F16);
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    err("schema = 1\nbogus = 3\n", 2, "bogus");
    err("schema = 1\n[defaults]\nprun = 0.1\n", 2, "prun");
    err("schema = 1\n[defaults.down]\nbit = 8\n", 2, "bit");
    err("schema = 1\n[[layers]]\nindex = 0\nfoo = 1\n", 2, "foo");
    err("schema = 1\n[defaults.mlp]\nbits = 8\n", 2, "mlp");
    err("schema = 1\n[calibration]\nfile = \"x\"\n", 2, "file");
    err("schema = 1\n[tuner]\nlatency = 3.0\n", 2, "latency");
}

#[test]
fn syntax_errors_give_a_line() {
    let e = err("schema = 1\n\n[defaults\n", 2, "line 3");
    assert!(!e.contains('\n'), "one-line message: {e}");
}

#[test]
fn schema_is_required_and_checked() {
    err("[defaults]\nprune = 0.1\n", 2, "schema");
    let e = err("schema = 2\nnew_key = 1\n", 2, "schema");
    assert!(e.contains("unsupported schema version 2"), "{e}");
}

#[test]
fn layer_indices_must_be_in_range() {
    let e = err("schema = 1\n[[layers]]\nindex = 30\nprune = 0.1\n", 30, "layers[0].index");
    assert!(e.contains("layer 30 is out of range"), "{e}");
    err("schema = 1\n[[layers]]\nindex = [1, 2, 5]\nprune = 0.1\n", 4, "layers[0].index");
    err("schema = 1\n[[layers]]\nindex = []\n", 4, "layers[0].index");
    err("schema = 1\n[[layers]]\nindex = -1\n", 4, "index");
    err("schema = 1\n[[layers]]\nprune = 0.1\n", 4, "index");
    err("schema = 1\nn_layer = 30\n", 24, "n_layer");
}

#[test]
fn unsupported_bits_and_variants() {
    let e = err("schema = 1\n[defaults.down]\nbits = 3\n", 2, "defaults.down.bits");
    assert!(e.contains("bits = 3"), "{e}");
    err("schema = 1\n[defaults.down]\nbits = 300\n", 2, "bits");
    // The variant's key is named, and the message says where the bits came from.
    let e = err(
        "schema = 1\n[defaults.down]\nbits = 8\nvariant = \"w4a8\"\n[[layers]]\nindex = 1\n[layers.down]\nbits = 4\n",
        2,
        "defaults.down.variant",
    );
    assert!(e.contains("layers[0].down.bits") && e.contains("layer 1"), "{e}");
    err("schema = 1\n[defaults.o]\nbits = 4\nvariant = \"w4a8\"\n", 2, "defaults.o.variant");
    err("schema = 1\n[defaults.o]\nbits = 16\nvariant = \"w4a4-lut\"\n", 2, "defaults.o.variant");
    let e = err("schema = 1\n[defaults.o]\nvariant = \"w4a9\"\n", 2, "defaults.o.variant");
    assert!(e.contains("w4a9") && e.contains("auto"), "{e}");
    err("schema = 1\n[lm_head]\nbits = 8\nvariant = \"w4a16\"\n", 2, "lm_head.variant");
    // Attention sites.
    err("schema = 1\n[defaults.qk]\nbits = 4\n", 2, "defaults.qk.bits");
    err("schema = 1\n[defaults.pv]\nbits = 8\nvariant = \"w4a8\"\n", 2, "defaults.pv.variant");
    err("schema = 1\n[defaults.qk]\nbits = 8\nscheme = \"tensor\"\n", 2, "defaults.qk.scheme");
    // f16 weights.
    err("schema = 1\nweights = \"f16\"\n[defaults.down]\nbits = 8\n", 2, "defaults.down.bits");
    err("schema = 1\nweights = \"f16\"\n[defaults.down]\nvariant = \"w4a16\"\n", 2, "defaults.down.variant");
    err("schema = 1\nweights = \"q8\"\n", 2, "weights");
    err("schema = 1\n[defaults]\nsoftmax = \"log2-3\"\n", 2, "softmax");
    err("schema = 1\n[defaults.down]\nscheme = \"channel\"\n", 2, "scheme");
}

#[test]
fn ratios_must_be_in_unit_interval() {
    for key in ["prune", "low_bit"] {
        for v in ["1.0", "-0.1", "1.5", "nan", "inf"] {
            let text = format!("schema = 1\n[defaults]\n{key} = {v}\n[defaults.o]\nbits = 8\n");
            let e = err(&text, 2, &format!("defaults.{key}"));
            assert!(e.contains("[0, 1)"), "{e}");
        }
        let text = format!("schema = 1\n[defaults.o]\nbits = 8\n[[layers]]\nindex = 1\n{key} = 1.0\n");
        err(&text, 2, &format!("layers[0].{key}"));
    }
    // 0.99 is fine.
    parse("schema = 1\n[defaults]\nprune = 0.99\n", 2).unwrap();
}

#[test]
fn low_bit_needs_an_int8_site_and_a_4_bit_variant() {
    let e = err("schema = 1\n[defaults]\nlow_bit = 0.2\n", 2, "defaults.low_bit");
    assert!(e.contains("o, gate_up, down"), "{e}");
    err(
        "schema = 1\n[defaults]\nlow_bit = 0.2\nlow_bit_variant = \"w4a8\"\n[defaults.down]\nbits = 8\n",
        2,
        "defaults.low_bit_variant",
    );
    let p = parse(
        "schema = 1\n[defaults]\nlow_bit = 0.2\nlow_bit_variant = \"w4a4-widen\"\n[defaults.down]\nbits = 8\n",
        2,
    )
    .unwrap();
    assert_eq!(p.layers[1].low_bit_sites(), vec![Site::Down]);
}

#[test]
fn header_values_are_checked() {
    err("schema = 1\nmodel_sha256 = \"abc\"\n", 2, "model_sha256");
    err("schema = 1\n[calibration]\ntext_sha256 = \"zz\"\n", 2, "calibration.text_sha256");
    err("schema = 1\n[tuner]\nmeasured_ppl = -1.0\n", 2, "tuner.measured_ppl");
    err("schema = 1\nname = 3\n", 2, "name");
}

#[test]
fn model_hash_mismatch_names_both() {
    let h = "ab".repeat(32);
    let p = parse(&format!("schema = 1\nmodel_sha256 = \"{h}\"\n"), 2).unwrap();
    p.check_model("plan.toml", Path::new("m.gguf"), &h.to_uppercase()).unwrap();
    let e = p.check_model("plan.toml", Path::new("m.gguf"), &"cd".repeat(32)).unwrap_err().to_string();
    assert!(e.starts_with("plan.toml: ") && e.contains("m.gguf") && e.contains(&h), "{e}");
    // Presets are not pinned.
    presets::preset("agile8", 2).unwrap().check_model("agile8", Path::new("m.gguf"), &h).unwrap();
}

#[test]
fn load_files_and_presets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let p = presets::preset("agile4", 6).unwrap();
    p.write(&path).unwrap();
    assert_eq!(Plan::load(path.to_str().unwrap(), 6).unwrap(), p);
    assert_eq!(Plan::load("w4a8", 6).unwrap(), presets::preset("w4a8", 6).unwrap());
    let e = Plan::load("agile9", 6).unwrap_err().to_string();
    assert!(e.contains("agile9") && e.contains("agile8"), "{e}");
    let missing = dir.path().join("nope.toml");
    let e = Plan::load(missing.to_str().unwrap(), 6).unwrap_err().to_string();
    assert!(e.contains("nope.toml"), "{e}");
    // A wrong layer count for a pinned file.
    let e = Plan::load(path.to_str().unwrap(), 5).unwrap_err().to_string();
    assert!(e.contains("p.toml") && e.contains("n_layer"), "{e}");
}

#[test]
fn group_scheme_parses_and_resolves_to_block_scaled_kernels() {
    let p = parse(
        "schema = 1\n[defaults.down]\nbits = 8\nscheme = \"group\"\n[defaults.o]\nbits = 4\nscheme = \"group\"\n[defaults.gate_up]\nbits = 4\nscheme = \"group\"\nvariant = \"w4a4-widen\"\n",
        2,
    )
    .unwrap();
    assert_eq!(p.layers[1].down.scheme, Scheme::Group);
    assert_eq!(p.layers[1].down.resolve_variant(p.weights), Variant::W4A8);
    // `auto` at 4 bits is the block-scaled w4a4-widen on every CPU (not the packed multiplier).
    assert_eq!(p.layers[0].o.resolve_variant(p.weights), Variant::W4A4Widen);
    assert_eq!(p.layers[0].gate_up.resolve_variant(p.weights), Variant::W4A4Widen);
    assert!(!p.needs_calibration());
    assert_eq!(Scheme::Group.name(), "group");
    // Low-bit rows of a group site keep block scales: `auto` picks w4a4-widen.
    let p = parse("schema = 1\n[defaults]\nlow_bit = 0.3\n[defaults.o]\nbits = 8\nscheme = \"group\"\n", 2).unwrap();
    assert_eq!(p.layers[0].resolve_low_bit_variant(p.weights), Variant::W4A4Widen);
    // A float site ignores the scheme (as with "tensor").
    parse("schema = 1\n[defaults.down]\nscheme = \"group\"\n", 2).unwrap();
}

#[test]
fn group_scheme_errors_name_the_key() {
    for v in ["w4a4-packed", "w4a4-lut"] {
        let e = err(&format!("schema = 1\n[defaults.down]\nbits = 4\nscheme = \"group\"\nvariant = \"{v}\"\n"), 2, "defaults.down.variant");
        assert!(e.contains("group") && e.contains(v) && e.contains("defaults.down.scheme"), "{e}");
    }
    // The scheme set on another line than the variant: both keys in the message.
    let e = err(
        "schema = 1\n[defaults.o]\nbits = 4\nvariant = \"w4a4-packed\"\n[[layers]]\nindex = 1\n[layers.o]\nscheme = \"group\"\n",
        2,
        "defaults.o.variant",
    );
    assert!(e.contains("layers[0].o.scheme") && e.contains("layer 1"), "{e}");
    // Attention sites quantize per head and token.
    let e = err("schema = 1\n[defaults.qk]\nbits = 8\nscheme = \"group\"\n", 2, "defaults.qk.scheme");
    assert!(e.contains("\"group\""), "{e}");
    err("schema = 1\n[defaults.pv]\nbits = 8\nscheme = \"group\"\n", 2, "defaults.pv.scheme");
    // INT4 low-bit rows of a group site need a block-scaled kernel.
    let e = err(
        "schema = 1\n[defaults]\nlow_bit = 0.2\nlow_bit_variant = \"w4a4-lut\"\n[defaults.gate_up]\nbits = 8\nscheme = \"group\"\n",
        2,
        "defaults.low_bit_variant",
    );
    assert!(e.contains("gate_up") && e.contains("group"), "{e}");
    // With f16 weights integer sites are refused before the scheme matters.
    err("schema = 1\nweights = \"f16\"\n[defaults.down]\nbits = 8\nscheme = \"group\"\n", 2, "defaults.down.bits");
    err("schema = 1\n[defaults.down]\nscheme = \"groups\"\n", 2, "scheme");
}

#[test]
fn group_presets_differ_from_theirs_only_in_the_linear_scheme() {
    let n = 30;
    for (g, base) in [("w4a8-g32", "w4a8"), ("agile8-g32", "agile8"), ("agile4-g32", "agile4")] {
        let pg = presets::preset(g, n).unwrap();
        let mut pb = presets::preset(base, n).unwrap();
        for l in &mut pb.layers {
            for s in Site::LINEAR {
                if !l.site(s).is_float() {
                    l.site_mut(s).scheme = Scheme::Group;
                }
            }
            assert!(l.qk.scheme == Scheme::Token && l.pv.scheme == Scheme::Token);
        }
        if g == "agile4-g32" {
            let last = pg.layers[n - 1].low_bit;
            assert_eq!(last, presets::AGILE4_G32_LOW_BIT_MAX);
            for (a, b) in pb.layers.iter_mut().zip(&pg.layers) {
                a.low_bit = b.low_bit;
            }
            assert!(pg.layers.windows(2).all(|w| w[0].low_bit <= w[1].low_bit));
        }
        assert_eq!(pg.layers, pb.layers, "{g}");
        assert!(pg.layers.iter().all(|l| l.down.scheme == Scheme::Group && l.down.bits == 8));
        assert_eq!(pg.lm_head.bits, 16);
    }
    // The paper presets keep the per-token scheme.
    for base in ["w4a8", "agile8", "agile4"] {
        assert!(presets::preset(base, n).unwrap().layers.iter().all(|l| l.o.scheme == Scheme::Token));
    }
}
