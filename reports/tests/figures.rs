//! Every figure renders from fixtures: the PNG decodes at the size the summary states, the
//! SVG parses, the CSV has the figure's columns; degenerate profiles render with notes.

mod common;

use reports::{write_compare, write_report, ReportInputs, ReportSummary};
use std::path::{Path, PathBuf};

/// Output directory: a temp dir, or `$AGQ_KEEP_REPORTS/<name>` to look at the figures.
fn out_dir(tmp: &Path, name: &str) -> PathBuf {
    match std::env::var_os("AGQ_KEEP_REPORTS") {
        Some(d) => PathBuf::from(d).join(name),
        None => tmp.join(name),
    }
}

fn check_png(path: &Path, size: (u32, u32)) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(f).read_info().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), size, "{}", path.display());
    // Not a blank canvas: some pixels are dark (text, axes).
    let dark = buf.chunks(info.line_size / info.width as usize).filter(|p| p.iter().take(3).all(|&c| c < 80)).count();
    assert!(dark > 500, "{}: only {dark} dark pixels", path.display());
}

fn check_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    text
}

fn csv_header(path: &Path) -> (Vec<String>, usize) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().iter().map(String::from).collect();
    let n = r.records().inspect(|x| assert!(x.is_ok(), "{}: {x:?}", path.display())).count();
    (h, n)
}

/// All files of all figures exist and are well formed; returns stem -> (header, rows).
fn check_all(s: &ReportSummary) -> std::collections::BTreeMap<String, (Vec<String>, usize)> {
    let mut out = std::collections::BTreeMap::new();
    for f in &s.figures {
        check_png(&s.out_dir.join(&f.files[0]), f.size);
        check_svg(&s.out_dir.join(&f.files[1]));
        out.insert(f.stem.clone(), csv_header(&s.out_dir.join(&f.files[2])));
        // No temporary files left behind.
    }
    let leftovers: Vec<_> = std::fs::read_dir(&s.out_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let index = std::fs::read_to_string(&s.index).unwrap();
    for f in &s.figures {
        assert!(index.contains(&format!("]({})", f.files[0])), "index.md lacks {}", f.files[0]);
    }
    out
}

fn cols(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn full_report_renders_every_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = common::write_profile(tmp.path(), "dev.toml", &common::full_profile());
    let plan = common::write_plan(tmp.path(), "tuned-a");
    let inputs = ReportInputs {
        profile,
        plans: vec![plan, PathBuf::from("agile4"), PathBuf::from("w4a8")],
        pareto: Some(common::write_pareto(tmp.path())),
        validation: Some(common::write_validation(tmp.path())),
    };
    let s = write_report(&inputs, &out_dir(tmp.path(), "full")).unwrap();
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
    let t = check_all(&s);
    let stems: Vec<&str> = t.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        stems,
        [
            "fig1-block-breakdown",
            "fig2-roofline",
            "fig3-pareto",
            "fig4-plan-map-agile4",
            "fig4-plan-map-tuned-a",
            "fig4-plan-map-w4a8",
            "fig5-tokens-kept",
            "fig6-predicted-vs-measured",
            "fig7-thread-scaling"
        ]
    );
    // Figure 1: 3 variants (f16, w4a8, fastest w4a4) x 2 shapes x 7 segments.
    assert_eq!(t["fig1-block-breakdown"], (cols(&["variant", "m", "kv", "threads", "segment", "seconds"]), 42));
    // Figure 2: 6 variants x 2 shapes x 5 linear sites.
    assert_eq!(t["fig2-roofline"].0[..4], cols(&["variant", "op", "m", "threads"]));
    assert_eq!(t["fig2-roofline"].1, 60);
    assert_eq!(t["fig3-pareto"], (cols(&["name", "kind", "e2e_s", "e2e_measured", "ppl", "ppl_stderr", "on_front"]), 8));
    assert_eq!(t["fig4-plan-map-tuned-a"].1, 8, "one row per layer");
    assert_eq!(t["fig4-plan-map-tuned-a"].0.len(), 1 + 6 * 3 + 3);
    assert_eq!(t["fig5-tokens-kept"], (cols(&["plan", "layer", "prompt_tokens", "tokens_in", "tokens_kept", "int4_tokens"]), 24));
    assert_eq!(t["fig6-predicted-vs-measured"], (cols(&["label", "plan", "phase", "predicted_s", "measured_s", "error_pct"]), 7));
    // Figure 6's title carries the share as written (percent).
    assert!(s.figures.iter().any(|f| f.stem.starts_with("fig6")));
    let svg = std::fs::read_to_string(s.out_dir.join("fig6-predicted-vs-measured.svg")).unwrap();
    assert!(svg.contains("80% of plan cases within"), "share not in the title");
    assert_eq!(t["fig7-thread-scaling"].1, 12, "6 variants x 2 shapes");
    // Captions state device and protocol.
    let index = std::fs::read_to_string(&s.index).unwrap();
    assert!(index.contains("Test CPU 9000") && index.contains("synthetic fixture: warm-up 1 call"), "{index}");
    // The fixture makes the fastest w4a4 the packed variant (efficiency 0.5 vs 0.4).
    let f1 = std::fs::read_to_string(s.out_dir.join("fig1-block-breakdown.csv")).unwrap();
    assert!(f1.contains("w4a4-packed,512") && !f1.contains("w4a4-lut"), "{f1}");
}

#[test]
fn figure_data_matches_the_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let p = common::full_profile();
    let profile = common::write_profile(tmp.path(), "dev.toml", &p);
    let inputs = ReportInputs { profile, plans: vec![PathBuf::from("agile8")], ..Default::default() };
    let s = write_report(&inputs, &out_dir(tmp.path(), "data")).unwrap();
    // Figure 1's qkv segment for f16 at M=512 is the profile's record, exactly.
    let want = p.records.iter().find(|r| r.op == "qkv" && r.variant == "f16" && r.m == 512 && r.threads == 2).unwrap();
    let mut r = csv::Reader::from_path(s.out_dir.join("fig1-block-breakdown.csv")).unwrap();
    let got: f64 = r
        .records()
        .map(|x| x.unwrap())
        .find(|x| &x[0] == "f16" && &x[1] == "512" && &x[4] == "qkv")
        .map(|x| x[5].parse().unwrap())
        .unwrap();
    assert_eq!(got, want.median_s);
    // Figure 5: agile8 on 8 layers prunes the last 4; 512 prompt tokens end near 70%.
    let mut r = csv::Reader::from_path(s.out_dir.join("fig5-tokens-kept.csv")).unwrap();
    let kept: Vec<usize> = r.records().map(|x| x.unwrap()[4].parse().unwrap()).collect();
    assert_eq!(kept.len(), 8);
    assert!(kept[..4].iter().all(|&k| k == 512), "{kept:?}");
    assert!(kept.windows(2).all(|w| w[1] <= w[0]), "{kept:?}");
    let last = kept[7] as f64;
    assert!((last / 512.0 - 0.7).abs() < 0.02, "{kept:?}");
    // Figure 7: the fixture's times halve with 2 threads.
    let mut r = csv::Reader::from_path(s.out_dir.join("fig7-thread-scaling.csv")).unwrap();
    for rec in r.records() {
        let sp: f64 = rec.unwrap()[6].parse().unwrap();
        assert!((sp - 2.0).abs() < 1e-9, "{sp}");
    }
    assert!(s.skipped.iter().any(|x| x.contains("Pareto")), "{:?}", s.skipped);
}

#[test]
fn degenerate_profiles_render_with_notes() {
    let tmp = tempfile::tempdir().unwrap();
    // Only f16, one thread count.
    let profile = common::write_profile(tmp.path(), "one.toml", &common::profile(&["f16"], &[1]));
    let s = write_report(&ReportInputs { profile, ..Default::default() }, &out_dir(tmp.path(), "degenerate")).unwrap();
    check_all(&s);
    let f1 = s.figures.iter().find(|f| f.stem == "fig1-block-breakdown").unwrap();
    assert!(f1.notes.iter().any(|n| n.contains("w4a8")), "{:?}", f1.notes);
    assert!(f1.notes.iter().any(|n| n.contains("w4a4")), "{:?}", f1.notes);
    let f7 = s.figures.iter().find(|f| f.stem == "fig7-thread-scaling").unwrap();
    assert!(f7.notes.iter().any(|n| n.contains("1 thread only")), "{:?}", f7.notes);
    let index = std::fs::read_to_string(&s.index).unwrap();
    assert!(index.contains("1 thread only"));

    // No records at all (a spec-sheet profile): every figure still renders.
    let profile = common::write_profile(tmp.path(), "spec.toml", &common::spec_profile("phone-soc"));
    let s = write_report(&ReportInputs { profile, ..Default::default() }, &out_dir(tmp.path(), "empty")).unwrap();
    check_all(&s);

    // Pareto rows without any measured latency or perplexity.
    let profile = common::write_profile(tmp.path(), "dev.toml", &common::full_profile());
    let csv = tmp.path().join("empty-pareto.csv");
    std::fs::write(&csv, format!("{}\nx,tuned,,,,,,,,,,,,,\n", common::PARETO_HEADER)).unwrap();
    let s = write_report(
        &ReportInputs { profile, pareto: Some(csv), ..Default::default() },
        &out_dir(tmp.path(), "empty-pareto"),
    )
    .unwrap();
    check_all(&s);
    assert!(s.figures.iter().any(|f| f.stem == "fig3-pareto"));
}

#[test]
fn compare_draws_spec_sheet_devices_as_predicted() {
    let tmp = tempfile::tempdir().unwrap();
    let a = common::write_profile(tmp.path(), "a.toml", &common::full_profile());
    let mut other = common::profile(&["f16", "w4a8"], &[1, 2, 4]);
    other.device.slug = "other-cpu-4c-neon".into();
    let b = common::write_profile(tmp.path(), "b.toml", &other);
    let c = common::write_profile(tmp.path(), "c.toml", &common::spec_profile("phone-soc-8c"));
    let s = write_compare(&[a, b, c], &out_dir(tmp.path(), "compare"), None).unwrap();
    let t = check_all(&s);
    assert_eq!(t.len(), 3, "{:?}", t.keys());
    let (h, n) = &t["compare2-speedup-over-f16"];
    assert_eq!(h, &cols(&["device", "kind", "m", "variant", "speedup_over_f16"]));
    assert!(*n > 0);
    let csv = std::fs::read_to_string(s.out_dir.join("compare2-speedup-over-f16.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("phone-soc-8c,predicted,") && !l.ends_with(',')), "{csv}");
    let svg = std::fs::read_to_string(s.out_dir.join("compare1-ceilings.svg")).unwrap();
    assert!(svg.contains("spec sheet"));
    let svg = std::fs::read_to_string(s.out_dir.join("compare2-speedup-over-f16.svg")).unwrap();
    assert!(svg.contains("× predicted") && svg.contains("hatched: predicted"));
    assert!(write_compare(&[], tmp.path(), None).is_err());
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.toml");
    let err = write_report(&ReportInputs { profile: missing.clone(), ..Default::default() }, tmp.path()).unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");

    let mut p = common::full_profile();
    p.schema = 99;
    let path = common::write_profile(tmp.path(), "future.toml", &p);
    let err = write_report(&ReportInputs { profile: path, ..Default::default() }, tmp.path()).unwrap_err();
    assert!(err.to_string().contains("future.toml") && err.to_string().contains("schema 99"), "{err}");

    let profile = common::write_profile(tmp.path(), "dev.toml", &common::full_profile());
    let csv = tmp.path().join("bad.csv");
    std::fs::write(&csv, "name,kind,ppl\nx,tuned,3\n").unwrap();
    let err = write_report(&ReportInputs { profile: profile.clone(), pareto: Some(csv), ..Default::default() }, tmp.path())
        .unwrap_err();
    assert!(err.to_string().contains("bad.csv") && err.to_string().contains("plan_file"), "{err}");

    let csv = tmp.path().join("bad-kind.csv");
    std::fs::write(&csv, format!("{}\nx,guess,,,,,,,,,,,,,\n", common::PARETO_HEADER)).unwrap();
    let err = write_report(&ReportInputs { profile: profile.clone(), pareto: Some(csv), ..Default::default() }, tmp.path())
        .unwrap_err();
    assert!(err.to_string().contains("bad-kind.csv") && err.to_string().contains("row 2"), "{err}");

    let json = tmp.path().join("v.json");
    std::fs::write(&json, "{\"cases\": 3}").unwrap();
    let err = write_report(&ReportInputs { profile: profile.clone(), validation: Some(json), ..Default::default() }, tmp.path())
        .unwrap_err();
    assert!(err.to_string().contains("v.json"), "{err}");

    let err = write_report(
        &ReportInputs { profile, plans: vec![PathBuf::from("no-such-plan")], ..Default::default() },
        tmp.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no-such-plan"), "{err}");
}

#[test]
fn pareto_front_is_the_non_dominated_set() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = reports::inputs::read_pareto(&common::write_pareto(tmp.path())).unwrap();
    let f: Vec<&str> = reports::figures::pareto::front(&rows).iter().map(|&i| rows[i].name.as_str()).collect();
    // By latency: t-0.5 (1.35, 31.0), t-0.6 (1.47, 28.1), t-0.7 (1.53, 27.9), w4a8 (1.67, 27.3), fp16 (2.8, 26.6).
    assert_eq!(f, ["t-0.5", "t-0.6", "t-0.7", "w4a8", "fp16"]);
}
