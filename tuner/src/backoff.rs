//! Validation with back-off: the chosen plan is evaluated for real (perplexity on held-out
//! text); while it is over budget, the search is solved again with a KL budget shrunk by as
//! much as the overshoot suggests, and that plan is evaluated.

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
    /// The KL budget the search was given for this step.
    pub kl_budget: f64,
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

/// Evaluates the search's answer for `kl_budget` and, while it measures over `allowed`,
/// solves the search again with a smaller KL budget: as much smaller as the measured overshoot
/// suggests. Re-solving (rather than undoing single changes) keeps the answer optimal for the
/// budget it ends at: a plan over budget may be best fixed by dropping the prune schedule and
/// keeping every INT8 site, which undoing the least efficient changes one by one never finds.
/// `base_ppl` is the perplexity of `base` itself under the same protocol (the starting point
/// of the overshoot estimate, and the answer for the empty plan). At most `max_evals`
/// evaluations; if the budget is still not met, the result is `base` (no changes) with
/// `within` telling whether even that meets it.
#[allow(clippy::too_many_arguments)]
pub fn back_off(
    base: &Plan,
    kl_budget: f64,
    solve: &mut dyn FnMut(f64) -> Vec<Candidate>,
    base_ppl: Measured,
    allowed: f64,
    eval: &mut dyn Evaluator,
    max_evals: usize,
    mut on_step: impl FnMut(&Step),
) -> Result<Outcome, TuneError> {
    let mut budget = kl_budget;
    let mut picks = solve(budget);
    let mut steps = Vec::new();
    let kl_of = |v: &[Candidate]| v.iter().map(|c| c.kl.max(0.0)).sum::<f64>();
    loop {
        let plan = build(base, &picks);
        let m = if picks.is_empty() { base_ppl } else { eval.evaluate(&plan)? };
        let step = Step { changes: picks.len(), kl_budget: budget, predicted_kl: kl_of(&picks), measured: m };
        on_step(&step);
        steps.push(step);
        if m.ppl <= allowed || picks.is_empty() {
            return Ok(Outcome { plan, kept: picks, measured: m, steps, within: m.ppl <= allowed });
        }
        let predicted = kl_of(&picks);
        if steps.len() >= max_evals || predicted <= 0.0 {
            // Give up on partial plans: the base plan is the safe answer.
            picks.clear();
            continue;
        }
        // The overshoot in NLL terms says how much of the predicted KL to keep; 0.9 leaves a
        // margin so the next evaluation is not another near miss.
        let excess = (m.ppl / base_ppl.ppl).ln();
        let room = (allowed / base_ppl.ppl).ln().max(0.0);
        budget = if excess > 0.0 { predicted * (room / excess) * 0.9 } else { 0.0 };
        picks = if budget > 0.0 { solve(budget) } else { Vec::new() };
        // The search answers within the budget, so the predicted KL strictly shrinks; a
        // solver that does not (a test double, a rounding corner) still cannot loop forever.
        if kl_of(&picks) >= predicted {
            picks.clear();
        }
    }
}
