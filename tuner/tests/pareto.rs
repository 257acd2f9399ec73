//! The Pareto CSV: the exact header of CONTRACTS.md, empty cells for what was not measured,
//! and the per-layer summary of a plan.

use tuner::latency::Latency;
use tuner::pareto::{layer_summary, write_csv, Row};

#[test]
fn csv_has_the_contract_header_and_empty_unmeasured_cells() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.csv");
    let rows = vec![
        Row {
            name: "tuned-3pct".into(),
            kind: "tuned".into(),
            plan_file: "plans/x.toml".into(),
            budget: "3%".into(),
            objective: "e2e".into(),
            predicted: Some(Latency { prefill_s: 1.0, decode_s: 2.0 }),
            measured: None,
            ppl: Some(25.5),
            ppl_stderr: Some(0.5),
            ppl_text: "wikitext-2-raw-test.txt".into(),
            ppl_chunks: Some(10),
        },
        Row { name: "fp16".into(), kind: "preset".into(), plan_file: "fp16".into(), ..Default::default() },
    ];
    write_csv(&path, &rows).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "name,kind,plan_file,budget,objective,predicted_prefill_s,predicted_decode_s,predicted_e2e_s,measured_prefill_s,measured_decode_s,measured_e2e_s,ppl,ppl_stderr,ppl_text,ppl_chunks"
    );
    assert_eq!(lines[1], "tuned-3pct,tuned,plans/x.toml,3%,e2e,1.000000,2.000000,3.000000,,,,25.500000,0.500000,wikitext-2-raw-test.txt,10");
    assert_eq!(lines[2], "fp16,preset,fp16,,,,,,,,,,,,");
}

#[test]
fn layer_summary_names_int8_layers_and_pruning() {
    let mut p = runtime::plan::presets::preset("agile8", 30).unwrap();
    let s = layer_summary(&p);
    assert!(s.contains("qkv INT8 in 30 layers (0-29)"), "{s}");
    assert!(s.contains("INT8 attention in 30 layers"), "{s}");
    assert!(s.contains("pruning from layer 15 (15 layers, 30.0% of prompt tokens gone at the end)"), "{s}");
    p = runtime::plan::presets::preset("w4a16", 30).unwrap();
    assert_eq!(layer_summary(&p), "all sites float (w4a16)");
}
