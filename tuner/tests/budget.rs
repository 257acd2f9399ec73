//! Budget parsing: the three accepted forms and clear errors for the rest.

use tuner::Budget;

#[test]
fn parses_percent_fraction_and_absolute() {
    assert_eq!(Budget::parse("3%").unwrap(), Budget::Relative(0.03));
    assert_eq!(Budget::parse(" 0.5 % ").unwrap(), Budget::Relative(0.005));
    assert_eq!(Budget::parse("0.03").unwrap(), Budget::Relative(0.03));
    assert_eq!(Budget::parse("0").unwrap(), Budget::Relative(0.0));
    assert_eq!(Budget::parse("0%").unwrap(), Budget::Relative(0.0));
    assert_eq!(Budget::parse("+0.5ppl").unwrap(), Budget::Absolute(0.5));
    assert_eq!(Budget::parse("0.5ppl").unwrap(), Budget::Absolute(0.5));
    assert_eq!(Budget::parse("+2 PPL").unwrap(), Budget::Absolute(2.0));
}

#[test]
fn rejects_nonsense_with_the_input_in_the_message() {
    for bad in ["", "abc", "-3%", "3", "1.5", "nan%", "inf", "+-1ppl", "%", "ppl", "5000%"] {
        let e = Budget::parse(bad).unwrap_err();
        assert!(e.to_string().contains(&format!("`{bad}`")), "{bad}: {e}");
    }
    // A plain number >= 1 is ambiguous (3 = 300%?): the message says how to write it.
    assert!(Budget::parse("3").unwrap_err().to_string().contains("3%"));
}

#[test]
fn allowed_perplexity_and_nll_room() {
    let b = Budget::parse("10%").unwrap();
    assert!((b.allowed(20.0) - 22.0).abs() < 1e-12);
    assert!((b.allowed_dnll(20.0) - 1.1f64.ln()).abs() < 1e-12);
    let a = Budget::parse("+0.5ppl").unwrap();
    assert!((a.allowed(20.0) - 20.5).abs() < 1e-12);
    assert_eq!(Budget::parse("0%").unwrap().allowed_dnll(20.0), 0.0);
}

#[test]
fn labels_round_trip() {
    for s in ["3%", "0.5%", "+0.5ppl", "10%"] {
        let b = Budget::parse(s).unwrap();
        assert_eq!(Budget::parse(&b.to_string()).unwrap(), b, "{s}");
    }
    assert_eq!(Budget::parse("3%").unwrap().slug(), "3pct");
    assert_eq!(Budget::parse("+0.5ppl").unwrap().slug(), "0.5ppl");
}
