//! The knapsack search on synthetic tables: a hand-checked optimum, agreement with brute
//! force on random instances, the budget never exceeded, and infeasible budgets.

use proptest::prelude::*;
use tuner::search::{solve, Candidate, Group, Scenario};
use runtime::plan::Scheme;
use tuner::space::{Change, PruneSchedule, SiteName};

fn site(layer: usize, bits: u8) -> Change {
    Change::Site { layer, site: SiteName::Down, bits, scheme: Scheme::Token, variant: if bits == 8 { kernels::Variant::W4A8 } else { kernels::Variant::W4A4Packed } }
}

fn cand(change: Change, kl: f64, saved_s: f64) -> Candidate {
    Candidate { change, kl, saved_s }
}

#[test]
fn finds_the_known_optimum_where_greedy_fails() {
    // Budget 10. Greedy by saved/KL takes layer 0 INT4 (9/5 = 1.8/unit ... ) and then
    // cannot fit more; the optimum combines the two INT8 options: 6 + 6 = 12 > 9 + 2.
    let groups = vec![
        Group { label: "l0".into(), options: vec![cand(site(0, 8), 5.0, 6.0), cand(site(0, 4), 4.0, 7.5)] },
        Group { label: "l1".into(), options: vec![cand(site(1, 8), 5.0, 6.0), cand(site(1, 4), 9.0, 8.0)] },
        Group { label: "l2".into(), options: vec![cand(site(2, 8), 6.0, 5.0)] },
    ];
    let sc = Scenario { global: None, base_latency_s: 100.0, groups };
    let s = solve(&[sc], 10.0, 1000).unwrap();
    // Candidates within 10: {l0 a4 (4) + l1 a8 (5)} = 13.5 saved, KL 9 — the optimum.
    assert_eq!(s.picks.len(), 2);
    assert!((s.latency_s - (100.0 - 13.5)).abs() < 1e-9, "{s:?}");
    assert!((s.kl - 9.0).abs() < 1e-9);
    assert_eq!(s.picks[0].change, site(0, 4));
    assert_eq!(s.picks[1].change, site(1, 8));
}

#[test]
fn prefers_a_prune_scenario_when_it_is_faster() {
    let prune = PruneSchedule { start: 2, beta: 0.3 };
    let g = |saved| vec![Group { label: "l0".into(), options: vec![cand(site(0, 8), 1.0, saved)] }];
    let plain = Scenario { global: None, base_latency_s: 10.0, groups: g(1.0) };
    let pruned = Scenario { global: Some(cand(Change::Prune(prune), 2.0, 3.0)), base_latency_s: 7.0, groups: g(0.7) };
    // Budget 3 fits both the schedule and the site: 10 - 3 - 0.7 = 6.3.
    let s = solve(&[plain.clone(), pruned.clone()], 3.0, 300).unwrap();
    assert_eq!(s.scenario, 1);
    assert!((s.latency_s - 6.3).abs() < 1e-9);
    assert_eq!(s.picks[0].change, Change::Prune(prune));
    // Budget 1.5: the schedule does not fit; the plain scenario with the site wins.
    let s = solve(&[plain, pruned], 1.5, 300).unwrap();
    assert_eq!(s.scenario, 0);
    assert!((s.latency_s - 9.0).abs() < 1e-9);
}

#[test]
fn zero_budget_takes_only_free_changes() {
    let free = Change::Site { layer: 0, site: SiteName::Qkv, bits: 16, scheme: Scheme::Token, variant: kernels::Variant::F16 };
    let groups = vec![
        Group { label: "l0.qkv".into(), options: vec![cand(free, 0.0, 0.5), cand(site(0, 8), 1e-6, 2.0)] },
        Group { label: "l1".into(), options: vec![cand(site(1, 8), 1e-9, 2.0)] },
    ];
    let s = solve(&[Scenario { global: None, base_latency_s: 5.0, groups }], 0.0, 100).unwrap();
    assert_eq!(s.picks.len(), 1);
    assert_eq!(s.picks[0].change, free);
    assert_eq!(s.kl, 0.0);
}

#[test]
fn a_budget_below_every_change_picks_nothing() {
    let groups = vec![Group { label: "l0".into(), options: vec![cand(site(0, 8), 0.02, 2.0)] }];
    let sc = Scenario { global: Some(cand(Change::Prune(PruneSchedule { start: 1, beta: 0.1 }), 0.5, 1.0)), base_latency_s: 4.0, groups };
    // The only scenario needs 0.5 for its schedule: nothing fits.
    assert!(solve(std::slice::from_ref(&sc), 0.01, 100).is_none());
    let plain = Scenario { global: None, base_latency_s: 5.0, groups: sc.groups.clone() };
    let s = solve(&[plain, sc], 0.01, 100).unwrap();
    assert!(s.picks.is_empty());
    assert_eq!(s.latency_s, 5.0);
}

#[test]
fn never_picks_changes_that_save_nothing() {
    let groups = vec![Group { label: "l0".into(), options: vec![cand(site(0, 8), 0.0, -1.0), cand(site(0, 4), 0.0, 0.0)] }];
    let s = solve(&[Scenario { global: None, base_latency_s: 5.0, groups }], 1.0, 100).unwrap();
    assert!(s.picks.is_empty());
}

/// Exhaustive reference: every combination of at most one option per group.
fn brute(groups: &[Group], budget: f64) -> f64 {
    fn rec(groups: &[Group], budget: f64, kl: f64, saved: f64, best: &mut f64) {
        if kl > budget + 1e-9 {
            return;
        }
        match groups.split_first() {
            None => *best = best.max(saved),
            Some((g, rest)) => {
                rec(rest, budget, kl, saved, best);
                for o in &g.options {
                    if o.saved_s > 0.0 {
                        rec(rest, budget, kl + o.kl, saved + o.saved_s, best);
                    }
                }
            }
        }
    }
    let mut best = 0.0;
    rec(groups, budget, 0.0, 0.0, &mut best);
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// KLs on the DP grid (multiples of budget/resolution): the DP is exact.
    #[test]
    fn matches_brute_force_on_grid_instances(
        table in prop::collection::vec(prop::collection::vec((0u32..40, -2.0f64..10.0), 1..4), 1..7),
        budget_steps in 0u32..60,
    ) {
        let res = 20usize;
        let budget = budget_steps as f64 * 0.1;
        let unit = if budget > 0.0 { budget / res as f64 } else { 0.1 };
        let groups: Vec<Group> = table.iter().enumerate().map(|(l, opts)| Group {
            label: format!("l{l}"),
            options: opts.iter().map(|&(w, saved)| cand(site(l, 8), w as f64 * unit, saved)).collect(),
        }).collect();
        let s = solve(&[Scenario { global: None, base_latency_s: 100.0, groups: groups.clone() }], budget, res).unwrap();
        let want = brute(&groups, budget);
        prop_assert!(((100.0 - s.latency_s) - want).abs() < 1e-6, "dp {} brute {}", 100.0 - s.latency_s, want);
        prop_assert!(s.kl <= budget + 1e-9);
    }

    /// Arbitrary KLs: never over budget, and at least as good as brute force on KLs
    /// rounded up to the grid (what the DP guarantees).
    #[test]
    fn never_exceeds_the_budget(
        table in prop::collection::vec(prop::collection::vec((0.0f64..1.0, 0.0f64..5.0), 1..4), 1..7),
        budget in 0.0f64..2.0,
    ) {
        let res = 50usize;
        let groups: Vec<Group> = table.iter().enumerate().map(|(l, opts)| Group {
            label: format!("l{l}"),
            options: opts.iter().map(|&(kl, saved)| cand(site(l, 8), kl, saved)).collect(),
        }).collect();
        let s = solve(&[Scenario { global: None, base_latency_s: 100.0, groups: groups.clone() }], budget, res).unwrap();
        prop_assert!(s.kl <= budget + 1e-9);
        let got = 100.0 - s.latency_s;
        prop_assert!(got <= brute(&groups, budget) + 1e-9);
        let unit = if budget > 0.0 { budget / res as f64 } else { 1.0 };
        let rounded: Vec<Group> = groups.iter().map(|g| Group { label: g.label.clone(), options: g.options.iter().map(|o| {
            let kl = if budget > 0.0 { (o.kl / unit).ceil() * unit } else if o.kl > 0.0 { 1e9 } else { 0.0 };
            cand(o.change, kl, o.saved_s)
        }).collect() }).collect();
        prop_assert!(got >= brute(&rounded, budget) - 1e-9);
    }
}
