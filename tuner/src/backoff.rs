//! Validation with back-off: the chosen plan is evaluated for real (perplexity on held-out
//! text); while it is over budget, the least efficient changes (latency saved per KL) are
//! undone, as many as the overshoot suggests, and the plan is evaluated again.

use crate::search::Candidate;
use crate::TuneError;
use runtime::plan::Plan;

/// A real perplexity measurement of a plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub ppl: f64,
    pub stderr: f64,
}

/// Measures a plan's perplexity (the real one runs the model on held-out text).
pub trait Evaluator {
    fn evaluate(&mut self, plan: &Plan) -> Result<Measured, TuneError>;
}

/// One evaluation of the loop.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub changes: usize,
    pub predicted_kl: f64,
    pub measured: Measured,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub plan: Plan,
    pub kept: Vec<Candidate>,
    pub measured: Measured,
    pub steps: Vec<Step>,
    /// Whether `measured.ppl <= allowed`.
    pub within: bool,
}

/// `base` with `changes` applied.
pub fn build(base: &Plan, changes: &[Candidate]) -> Plan {
    let mut p = base.clone();
    for c in changes {
        c.change.apply(&mut p);
    }
    p
}

/// Evaluates `picks` on `base` and backs off until the perplexity is at most `allowed`.
/// `base_ppl` is the perplexity of `base` itself under the same protocol (the starting point
/// of the overshoot estimate, and the answer for the empty plan). At most `max_evals` evaluations; if the budget is still not
/// met, the result is `base` (no changes) with `within` telling whether even that meets it.
pub fn back_off(
    base: &Plan,
    picks: Vec<Candidate>,
    base_ppl: Measured,
    allowed: f64,
    eval: &mut dyn Evaluator,
    max_evals: usize,
    mut on_step: impl FnMut(&Step),
) -> Result<Outcome, TuneError> {
    let mut kept = picks;
    // Most efficient first, so undoing pops from the end.
    kept.sort_by(|a, b| b.efficiency().partial_cmp(&a.efficiency()).unwrap_or(std::cmp::Ordering::Equal));
    let mut steps = Vec::new();
    let kl_of = |v: &[Candidate]| v.iter().map(|c| c.kl.max(0.0)).sum::<f64>();
    loop {
        let plan = build(base, &kept);
        let m = if kept.is_empty() { base_ppl } else { eval.evaluate(&plan)? };
        let step = Step { changes: kept.len(), predicted_kl: kl_of(&kept), measured: m };
        on_step(&step);
        steps.push(step);
        if m.ppl <= allowed || kept.is_empty() {
            return Ok(Outcome { plan, kept, measured: m, steps, within: m.ppl <= allowed });
        }
        if steps.len() >= max_evals {
            // Give up on partial plans: the base plan is the safe answer.
            kept.clear();
            continue;
        }
        // The overshoot in NLL terms says how much of the predicted KL to keep.
        let excess = (m.ppl / base_ppl.ppl).ln();
        let room = (allowed / base_ppl.ppl).ln().max(0.0);
        let target = if excess > 0.0 { kl_of(&kept) * (room / excess) * 0.9 } else { 0.0 };
        // Undo from the least efficient end (at least one change) until the predicted KL is
        // at the target.
        kept.pop();
        while !kept.is_empty() && kl_of(&kept) > target {
            if kept.iter().all(|c| c.kl <= 0.0) {
                break;
            }
            kept.pop();
        }
    }
}
