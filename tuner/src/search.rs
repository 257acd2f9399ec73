//! The search: minimise predicted latency subject to a quality (KL) budget.
//!
//! Every scenario fixes the model-wide choices (here: one prune schedule or none), which
//! fixes how many tokens each layer sees, so the per-(layer, slot) choices become additive
//! in latency and (to first order, checked afterwards) in KL. Within a scenario this is a
//! multiple-choice knapsack: at most one option per group, KL as weight, latency saved as
//! value. It is solved exactly by dynamic programming over the KL budget cut into
//! `resolution` steps; each option's KL is rounded *up* to whole steps, so a solution never
//! exceeds the budget. The best scenario wins.

use crate::space::Change;

/// One option of a group, with what it costs and saves.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub change: Change,
    /// Predicted KL divergence (nats per token) this change adds.
    pub kl: f64,
    /// Predicted latency saved (seconds of the objective) against the scenario's base.
    pub saved_s: f64,
}

impl Candidate {
    /// Latency saved per unit of KL (infinite for changes that cost nothing).
    pub fn efficiency(&self) -> f64 {
        if self.kl <= 0.0 {
            f64::INFINITY
        } else {
            self.saved_s / self.kl
        }
    }
}

/// Options that exclude each other (one layer's site, or its attention).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub label: String,
    pub options: Vec<Candidate>,
}

/// A model-wide setting and the groups' options under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The model-wide change (prune schedule), `None` for the baseline scenario.
    pub global: Option<Candidate>,
    /// Predicted objective latency of the baseline plan with `global` applied.
    pub base_latency_s: f64,
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    pub scenario: usize,
    /// The chosen changes, `global` first if any.
    pub picks: Vec<Candidate>,
    pub kl: f64,
    /// Additive prediction: scenario base minus the picks' savings.
    pub latency_s: f64,
}

/// Best plan over all scenarios within `kl_budget`. Options that save nothing are never
/// picked. Returns `None` only when no scenario fits (cannot happen when a scenario has no
/// global change, since picking nothing costs nothing).
pub fn solve(scenarios: &[Scenario], kl_budget: f64, resolution: usize) -> Option<Solution> {
    let mut best: Option<Solution> = None;
    for (i, sc) in scenarios.iter().enumerate() {
        let Some(sol) = solve_one(sc, kl_budget, resolution) else { continue };
        let better = match &best {
            None => true,
            Some(b) => sol.latency_s < b.latency_s - 1e-12 || (sol.latency_s <= b.latency_s + 1e-12 && sol.kl < b.kl),
        };
        if better {
            best = Some(Solution { scenario: i, ..sol });
        }
    }
    best
}

fn solve_one(sc: &Scenario, kl_budget: f64, resolution: usize) -> Option<Solution> {
    let global_kl = sc.global.as_ref().map_or(0.0, |g| g.kl.max(0.0));
    if global_kl > kl_budget {
        return None;
    }
    let resolution = resolution.max(1);
    let step = if kl_budget > 0.0 { kl_budget / resolution as f64 } else { 1.0 };
    let cap = if kl_budget > 0.0 { ((kl_budget - global_kl) / step + 1e-9).floor() as usize } else { 0 };
    let weight = |kl: f64| -> Option<usize> {
        if kl <= 0.0 {
            return Some(0);
        }
        if kl_budget <= 0.0 {
            return None;
        }
        // Any positive KL costs at least one step (nothing is free by rounding).
        let w = (kl / step * (1.0 - 1e-9)).ceil().max(1.0);
        (w <= cap as f64).then_some(w as usize)
    };
    // dp[c]: most latency saved with total weight <= c over the groups seen so far.
    let mut dp = vec![0.0f64; cap + 1];
    let mut choice: Vec<Vec<u16>> = Vec::with_capacity(sc.groups.len());
    for g in &sc.groups {
        let mut next = dp.clone();
        let mut pick = vec![0u16; cap + 1];
        for (oi, o) in g.options.iter().enumerate() {
            // Also skips NaN savings.
            if o.saved_s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            let Some(w) = weight(o.kl) else { continue };
            for c in w..=cap {
                let v = dp[c - w] + o.saved_s;
                if v > next[c] + 1e-15 {
                    next[c] = v;
                    pick[c] = oi as u16 + 1;
                }
            }
        }
        dp = next;
        choice.push(pick);
    }
    // Walk back from the full capacity.
    let mut picks = Vec::new();
    let mut c = cap;
    for (g, pick) in sc.groups.iter().zip(&choice).rev() {
        let p = pick[c] as usize;
        if p > 0 {
            let o = &g.options[p - 1];
            c -= weight(o.kl).expect("picked options fit");
            picks.push(o.clone());
        }
    }
    picks.reverse();
    let saved: f64 = picks.iter().map(|p| p.saved_s).sum();
    let kl: f64 = global_kl + picks.iter().map(|p| p.kl.max(0.0)).sum::<f64>();
    if let Some(g) = &sc.global {
        picks.insert(0, g.clone());
    }
    Some(Solution { scenario: 0, picks, kl, latency_s: sc.base_latency_s - saved })
}
