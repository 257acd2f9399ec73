//! The back-off loop with a fake evaluator whose "true" perplexity grows faster than the
//! predicted KL: it must end within budget by re-solving the search with smaller budgets
//! (ending at the search's optimum for its last budget), and fall back to the base plan when
//! nothing fits.

use runtime::plan::{Plan, Scheme};
use tuner::backoff::{back_off, Evaluator, Measured};
use tuner::search::{solve, Candidate, Group, Scenario};
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
            change: Change::Site { layer, site: SiteName::Down, bits: 8, scheme: Scheme::Token, variant: kernels::Variant::W4A8 },
            kl,
            saved_s,
        })
        .collect()
}

/// The real search over one group per candidate (each change either taken or not).
fn solver(options: Vec<Candidate>) -> impl FnMut(f64) -> Vec<Candidate> {
    let sc = vec![Scenario {
        global: None,
        base_latency_s: 10.0,
        groups: options.into_iter().map(|c| Group { label: format!("{:?}", c.change), options: vec![c] }).collect(),
    }];
    move |b| solve(&sc, b, 1000).map(|s| s.picks).unwrap_or_default()
}

fn base_plan() -> Plan {
    runtime::plan::presets::preset("w4a16", 6).unwrap()
}

#[test]
fn within_budget_at_first_try_evaluates_once() {
    let kl = [0.001, 0.002, 0.003];
    let mut ev = Fake { true_kl: vec![0.001, 0.002, 0.003, 0.0, 0.0, 0.0], factor: 1.0, calls: 0 };
    let allowed = BASE * 1.01;
    let mut solve = solver(picks(&kl, &[1.0, 1.0, 1.0]));
    let o = back_off(&base_plan(), 0.0099, &mut solve, Measured { ppl: BASE, stderr: 0.1 }, allowed, &mut ev, 4, |_| {}).unwrap();
    assert!(o.within);
    assert_eq!(ev.calls, 1);
    assert_eq!(o.kept.len(), 3);
}

#[test]
fn re_solves_with_smaller_budgets_until_within() {
    // Predicted KL of all four sums to 0.009 (fits a 1% budget, ln 1.01 = 0.00995), but the
    // truth is 3x: the loop must shrink the budget and end at the search's optimum for it.
    let kl = [0.001, 0.002, 0.003, 0.003];
    let saved = [1.0, 1.0, 0.3, 2.0]; // efficiencies 1000, 500, 100, 667
    let true_kl = vec![0.003, 0.006, 0.009, 0.009, 0.0, 0.0];
    let mut ev = Fake { true_kl, factor: 1.0, calls: 0 };
    let allowed = BASE * 1.01;
    let mut seen = Vec::new();
    let mut solve = solver(picks(&kl, &saved));
    let o = back_off(&base_plan(), 0.00995, &mut solve, Measured { ppl: BASE, stderr: 0.1 }, allowed, &mut ev, 6, |s| seen.push(s.clone())).unwrap();
    assert!(o.within, "{seen:?}");
    assert!(o.measured.ppl <= allowed);
    assert!(ev.calls >= 2 && ev.calls <= 6);
    // Budgets and predicted KL shrink step by step; each step's plan fits its budget.
    assert!(seen.windows(2).all(|w| w[1].kl_budget < w[0].kl_budget && w[1].predicted_kl < w[0].predicted_kl), "{seen:?}");
    assert!(seen.iter().all(|s| s.predicted_kl <= s.kl_budget + 1e-12), "{seen:?}");
    // The answer is exactly what the search picks for the last budget.
    let last = seen.last().unwrap().kl_budget;
    let expect: Vec<Candidate> = solve(last);
    assert_eq!(o.kept, expect);
    // The least efficient change (layer 2) is not in it; the most efficient (layer 0) is.
    let kept: Vec<usize> = o.kept.iter().map(|c| match c.change { Change::Site { layer, .. } => layer, _ => unreachable!() }).collect();
    assert!(!kept.contains(&2), "{kept:?}");
    assert!(kept.contains(&0), "{kept:?}");
    // The plan carries exactly the kept changes.
    let int8: Vec<usize> = o.plan.layers.iter().enumerate().filter(|(_, l)| l.down.bits == 8).map(|(i, _)| i).collect();
    let mut k = kept.clone();
    k.sort();
    assert_eq!(int8, k);
}

#[test]
fn re_solving_finds_a_combination_that_undoing_one_by_one_misses() {
    // Two cheap-but-slow changes (layers 0, 1) and one expensive fast one (layer 2). The first
    // answer takes all three; the truth doubles every KL. Undoing the least efficient change
    // (layer 2: 4.0 s per 0.004 = 1000/nat, vs 1.5 s per 0.001 = 1500/nat) leaves 3 s saved;
    // the search for the smaller budget keeps layer 2 alone (4 s) when it fits.
    let kl = [0.001, 0.001, 0.004];
    let saved = [1.5, 1.5, 4.0];
    let true_kl = vec![0.002, 0.002, 0.008, 0.0, 0.0, 0.0];
    let mut ev = Fake { true_kl, factor: 1.0, calls: 0 };
    let allowed = BASE * (0.0095f64).exp();
    let mut solve = solver(picks(&kl, &saved));
    let o = back_off(&base_plan(), 0.006, &mut solve, Measured { ppl: BASE, stderr: 0.1 }, allowed, &mut ev, 6, |_| {}).unwrap();
    assert!(o.within);
    let kept: Vec<usize> = o.kept.iter().map(|c| match c.change { Change::Site { layer, .. } => layer, _ => unreachable!() }).collect();
    assert_eq!(kept, vec![2], "{kept:?}");
}

#[test]
fn falls_back_to_the_base_plan_when_nothing_fits() {
    // Budget 0: every change measures above; the base plan (ppl = BASE) is the answer.
    let kl = [0.001, 0.002];
    let mut ev = Fake { true_kl: vec![0.01, 0.02, 0.0, 0.0, 0.0, 0.0], factor: 1.0, calls: 0 };
    let mut solve = solver(picks(&kl, &[1.0, 1.0]));
    let o = back_off(&base_plan(), 0.003, &mut solve, Measured { ppl: BASE, stderr: 0.1 }, BASE, &mut ev, 3, |_| {}).unwrap();
    assert!(o.within);
    assert!(o.kept.is_empty());
    assert_eq!(o.plan, base_plan());
    assert!(ev.calls <= 3);
}

#[test]
fn reports_infeasible_when_even_the_base_is_over() {
    // Against a stricter reference (e.g. fp16) the base plan itself may be over budget.
    let mut ev = Fake { true_kl: vec![0.01; 6], factor: 1.0, calls: 0 };
    let mut solve = solver(picks(&[0.001], &[1.0]));
    let o = back_off(&base_plan(), 0.001, &mut solve, Measured { ppl: BASE, stderr: 0.1 }, BASE * 0.99, &mut ev, 3, |_| {}).unwrap();
    assert!(!o.within);
    assert!(o.kept.is_empty());
}

