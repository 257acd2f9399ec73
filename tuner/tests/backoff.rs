//! The back-off loop with a fake evaluator whose "true" perplexity grows faster than the
//! predicted KL: it must end within budget, undo the least efficient changes first, and fall
//! back to the base plan when nothing fits.

use runtime::plan::Plan;
use tuner::backoff::{back_off, Evaluator, Measured};
use tuner::search::Candidate;
use tuner::space::{Change, SiteName};
use tuner::TuneError;

const BASE: f64 = 20.0;

/// ppl = BASE * exp(factor * sum of true KL of the INT8 sites in the plan).
struct Fake {
    true_kl: Vec<f64>,
    factor: f64,
    calls: usize,
}

impl Evaluator for Fake {
    fn evaluate(&mut self, plan: &Plan) -> Result<Measured, TuneError> {
        self.calls += 1;
        let kl: f64 = plan.layers.iter().enumerate().filter(|(_, l)| l.down.bits == 8).map(|(i, _)| self.true_kl[i]).sum();
        Ok(Measured { ppl: BASE * (self.factor * kl).exp(), stderr: 0.1 })
    }
}

fn picks(kl: &[f64], saved: &[f64]) -> Vec<Candidate> {
    kl.iter()
        .zip(saved)
        .enumerate()
        .map(|(layer, (&kl, &saved_s))| Candidate {
            change: Change::Site { layer, site: SiteName::Down, bits: 8, variant: kernels::Variant::W4A8 },
            kl,
            saved_s,
        })
        .collect()
}

fn base_plan() -> Plan {
    runtime::plan::presets::preset("w4a16", 6).unwrap()
}

#[test]
fn within_budget_at_first_try_evaluates_once() {
    let kl = [0.001, 0.002, 0.003];
    let mut ev = Fake { true_kl: vec![0.001, 0.002, 0.003, 0.0, 0.0, 0.0], factor: 1.0, calls: 0 };
    let allowed = BASE * 1.01;
    let o = back_off(&base_plan(), picks(&kl, &[1.0, 1.0, 1.0]), Measured { ppl: BASE, stderr: 0.1 }, allowed, &mut ev, 4, |_| {}).unwrap();
    assert!(o.within);
    assert_eq!(ev.calls, 1);
    assert_eq!(o.kept.len(), 3);
}

#[test]
fn backs_off_least_efficient_first_until_within() {
    // Predicted KL sums to 0.009 (fits a 1% budget, ln 1.01 = 0.00995), but the truth is 3x.
    let kl = [0.001, 0.002, 0.003, 0.003];
    let saved = [1.0, 1.0, 0.3, 2.0]; // efficiencies 1000, 500, 100, 667
    let true_kl = vec![0.003, 0.006, 0.009, 0.009, 0.0, 0.0];
    let mut ev = Fake { true_kl, factor: 1.0, calls: 0 };
    let allowed = BASE * 1.01;
    let mut seen = Vec::new();
    let o = back_off(&base_plan(), picks(&kl, &saved), Measured { ppl: BASE, stderr: 0.1 }, allowed, &mut ev, 6, |s| seen.push(s.clone())).unwrap();
    assert!(o.within, "{seen:?}");
    assert!(o.measured.ppl <= allowed);
    assert!(ev.calls >= 2 && ev.calls <= 6);
    // The least efficient change (layer 2, 100 s per unit KL) is undone first.
    let kept: Vec<usize> = o.kept.iter().map(|c| match c.change { Change::Site { layer, .. } => layer, _ => unreachable!() }).collect();
    assert!(!kept.contains(&2), "{kept:?}");
    assert!(kept.contains(&0), "{kept:?}");
    // Each step has fewer changes than the one before.
    assert!(seen.windows(2).all(|w| w[1].changes < w[0].changes), "{seen:?}");
    // The plan carries exactly the kept changes.
    let int8: Vec<usize> = o.plan.layers.iter().enumerate().filter(|(_, l)| l.down.bits == 8).map(|(i, _)| i).collect();
    let mut k = kept.clone();
    k.sort();
    assert_eq!(int8, k);
}

#[test]
fn falls_back_to_the_base_plan_when_nothing_fits() {
    // Budget 0: every change measures above; the base plan (ppl = BASE) is the answer.
    let kl = [0.001, 0.002];
    let mut ev = Fake { true_kl: vec![0.01, 0.02, 0.0, 0.0, 0.0, 0.0], factor: 1.0, calls: 0 };
    let o = back_off(&base_plan(), picks(&kl, &[1.0, 1.0]), Measured { ppl: BASE, stderr: 0.1 }, BASE, &mut ev, 3, |_| {}).unwrap();
    assert!(o.within);
    assert!(o.kept.is_empty());
    assert_eq!(o.plan, base_plan());
    assert!(ev.calls <= 3);
}

#[test]
fn reports_infeasible_when_even_the_base_is_over() {
    // Against a stricter reference (e.g. fp16) the base plan itself may be over budget.
    let mut ev = Fake { true_kl: vec![0.01; 6], factor: 1.0, calls: 0 };
    let o = back_off(&base_plan(), picks(&[0.001], &[1.0]), Measured { ppl: BASE, stderr: 0.1 }, BASE * 0.99, &mut ev, 3, |_| {}).unwrap();
    assert!(!o.within);
    assert!(o.kept.is_empty());
}

