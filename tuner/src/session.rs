//! One tuning session over a loaded model: candidate space, sensitivity (cached), search,
//! interaction check, held-out validation with back-off, timing, and the plan's `[tuner]`
//! record. Several budgets share one session (the Pareto front).

use crate::backoff::{back_off, build, Evaluator, Measured, Step};
use crate::budget::{Baseline, Budget};
use crate::latency::{Latency, LatencyModel, Objective};
use crate::search::{solve, Candidate, Group, Scenario};
use crate::sensitivity::{Cache, Calibrator, Job, UnitResult};
use crate::space::{variants_for, Change, Granularity, PruneSchedule, SiteName, Unit, LAYER_PATTERNS};
use crate::validate::{chunk_nlls, hooks_for, paired_delta, ppl_of, time_plans, Timed};
use crate::TuneError;
use kernels::Variant;
use runtime::gguf::TensorSource;
use runtime::model::Model;
use runtime::plan::exec::Prunable;
use runtime::plan::{Plan, Scheme, TunerInfo, WeightFormat};
use std::path::PathBuf;

/// How much text and effort the session spends.
#[derive(Clone, Debug)]
pub struct Settings {
    pub objective: Objective,
    pub baseline: Baseline,
    /// Calibration chunks (first half of the tuning text) for the KL sensitivity.
    pub calib_ctx: usize,
    pub calib_chunks: usize,
    /// Held-out chunks (second half of the tuning text) for validation.
    pub heldout_ctx: usize,
    pub heldout_chunks: usize,
    /// Most held-out evaluations per budget in the back-off loop.
    pub max_evals: usize,
    /// Knapsack resolution (steps of the KL budget).
    pub resolution: usize,
    /// Re-solve with a tighter budget when the combined plan's KL exceeds the sum of its
    /// parts by more than this factor.
    pub interaction_tolerance: f64,
    pub granularity: Granularity,
    /// Scheme of every integer activation site the search sets: `Token` (the paper's
    /// per-token scale) or `Group` (per token and 32-input block).
    pub scheme: Scheme,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            objective: Objective::Prefill,
            baseline: Baseline::W4a16,
            calib_ctx: 512,
            calib_chunks: 2,
            heldout_ctx: 512,
            heldout_chunks: 8,
            max_evals: 4,
            resolution: 2000,
            interaction_tolerance: 1.1,
            granularity: Granularity::Layer,
            scheme: Scheme::Token,
        }
    }
}

/// Where the session reports what it is doing (the CLI draws progress bars).
pub trait Progress {
    /// A new stage with `total` steps (0 = unknown).
    fn stage(&self, msg: &str, total: u64);
    fn set(&self, pos: u64);
    /// A line for the log (stderr).
    fn log(&self, msg: &str);
}

/// Silent progress (tests).
pub struct Quiet;
impl Progress for Quiet {
    fn stage(&self, _: &str, _: u64) {}
    fn set(&self, _: u64) {}
    fn log(&self, _: &str) {}
}

/// The tuning text cut into calibration and held-out chunks: the calibration chunks are
/// spread over the first half of the tokens, the held-out chunks over the second half.
/// Token chunks.
pub type Chunks = Vec<Vec<u32>>;

pub fn split_text(tokens: &[u32], s: &Settings) -> Result<(Chunks, Chunks), TuneError> {
    let half = tokens.len() / 2;
    let pick = |region: &[u32], ctx: usize, n: usize, what: &str| -> Result<Chunks, TuneError> {
        if n == 0 || ctx < 8 || !ctx.is_multiple_of(2) {
            return Err(TuneError::Invalid(format!("{what}: need at least one chunk and an even context of at least 8")));
        }
        let stride = region.len() / n;
        if stride < ctx {
            return Err(TuneError::Invalid(format!(
                "{what}: {n} chunks of {ctx} tokens do not fit in {} tokens (half of the tuning text)",
                region.len()
            )));
        }
        Ok((0..n).map(|i| region[i * stride..i * stride + ctx].to_vec()).collect())
    };
    Ok((
        pick(&tokens[..half], s.calib_ctx, s.calib_chunks, "calibration")?,
        pick(&tokens[half..], s.heldout_ctx, s.heldout_chunks, "held-out")?,
    ))
}

/// One group of the search space: mutually exclusive changes of one layer slot.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub label: String,
    pub options: Vec<Change>,
}

/// The result of tuning for one budget.
#[derive(Clone, Debug)]
pub struct Tuned {
    pub budget: Budget,
    pub plan: Plan,
    pub kept: Vec<Candidate>,
    pub predicted: Latency,
    /// Sum of the kept changes' KL, and the combined plan's KL measured on calibration text.
    pub predicted_kl: f64,
    pub measured_kl: Option<UnitResult>,
    /// Held-out perplexity of the plan, of the base plan (`w4a16`) and of the budget's reference.
    pub heldout: Measured,
    pub base: Measured,
    pub reference: Measured,
    pub allowed_ppl: f64,
    pub within: bool,
    pub steps: Vec<Step>,
    /// Standard error of the paired NLL difference plan - base on the held-out tokens.
    pub paired_se: f64,
    /// Why the budget could not be met or used, if so.
    pub explanation: Option<String>,
}

pub struct Session<'a> {
    pub settings: Settings,
    pub model: &'a Model,
    /// The f16-weight model, needed for `--baseline fp16` and for timing `fp16`.
    pub fp16: Option<&'a Model>,
    pub src: &'a dyn TensorSource,
    pub latency: &'a dyn LatencyModel,
    pub progress: &'a dyn Progress,
    pub calib: Vec<Vec<u32>>,
    pub heldout: Vec<Vec<u32>>,
    /// Describes text, chunks and reference; part of the cache key and the plan record.
    pub protocol: String,
    pub cache_dir: PathBuf,
    pub cache: Cache,
    pub groups: Vec<GroupSpec>,
    pub schedules: Vec<PruneSchedule>,
}

fn lat(m: &dyn LatencyModel, p: &Plan) -> Result<Latency, TuneError> {
    m.predict(p).map_err(TuneError::Latency)
}

impl<'a> Session<'a> {
    /// Sets up a session; `text_name`/`text_sha256` identify the tuning text, `tokens` are its
    /// tokens.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        model: &'a Model,
        fp16: Option<&'a Model>,
        src: &'a dyn TensorSource,
        latency: &'a dyn LatencyModel,
        progress: &'a dyn Progress,
        model_sha256: &str,
        text_name: &str,
        text_sha256: &str,
        tokens: &[u32],
        cache_dir: PathBuf,
    ) -> Result<Session<'a>, TuneError> {
        if model.weights != WeightFormat::Q4_1 {
            return Err(TuneError::Invalid("the tuner needs the model loaded with Q4_1 weights".into()));
        }
        let (calib, heldout) = split_text(tokens, &settings)?;
        let protocol = format!(
            "KL vs w4a16 on {text_name}: {} calibration chunks x {} tokens spread over the first half (second half of each chunk scored); validation: {} held-out chunks x {} over the second half",
            settings.calib_chunks, settings.calib_ctx, settings.heldout_chunks, settings.heldout_ctx
        );
        let key = format!("model {model_sha256}; text {text_sha256}; tokens {}; {protocol}; schema 1", tokens.len());
        let cache = Cache::load(&cache_dir, &key);
        let mut s = Session {
            settings,
            model,
            fp16,
            src,
            latency,
            progress,
            calib,
            heldout,
            protocol,
            cache_dir,
            cache,
            groups: Vec::new(),
            schedules: Vec::new(),
        };
        s.build_space()?;
        Ok(s)
    }

    pub fn n_layer(&self) -> usize {
        self.model.config.n_layer
    }

    /// The `w4a16` plan every change applies to.
    pub fn base_plan(&self) -> Plan {
        let mut p = runtime::plan::presets::preset("w4a16", self.n_layer()).expect("preset exists");
        p.name = None;
        p.description = None;
        p
    }

    fn obj(&self, p: &Plan) -> Result<f64, TuneError> {
        Ok(self.settings.objective.of(&lat(self.latency, p)?))
    }

    /// Keeps, per layer slot, the options the latency model says are faster than `w4a16`
    /// and not dominated (a change with fewer activation bits must be faster than every
    /// change with more bits to be worth measuring). Variants per bits: the fastest.
    fn build_space(&mut self) -> Result<(), TuneError> {
        let base = self.base_plan();
        let l0 = self.obj(&base)?;
        let mut skipped = Vec::new();
        let mut groups = Vec::new();
        for layer in 0..self.n_layer() {
            if self.settings.granularity == Granularity::Layer {
                // Fastest kernel per site and bits, judged one site at a time.
                let mut fastest = [[(Variant::W4A16, f64::INFINITY); 3]; 4];
                for (si, site) in SiteName::ALL.into_iter().enumerate() {
                    for (bi, bits) in [16u8, 8, 4].into_iter().enumerate() {
                        for v in variants_for(bits, self.settings.scheme) {
                            let mut p = base.clone();
                            Change::Site { layer, site, bits, scheme: self.settings.scheme, variant: v }.apply(&mut p);
                            match self.obj(&p) {
                                Ok(t) if t < fastest[si][bi].1 => fastest[si][bi] = (v, t),
                                Ok(_) => {}
                                Err(e) => skipped.push(format!("{} ({e})", v.name())),
                            }
                        }
                    }
                }
                let bi = |b: u8| match b {
                    16 => 0,
                    8 => 1,
                    _ => 2,
                };
                let mut cands: Vec<(Change, [u8; 4], f64)> = Vec::new();
                for bits in LAYER_PATTERNS {
                    let vs: Vec<(Variant, f64)> = (0..4).map(|s| fastest[s][bi(bits[s])]).collect();
                    if vs.iter().any(|v| !v.1.is_finite()) {
                        continue;
                    }
                    let c = Change::Layer { layer, bits, scheme: self.settings.scheme, variants: [vs[0].0, vs[1].0, vs[2].0, vs[3].0] };
                    let mut p = base.clone();
                    c.apply(&mut p);
                    let t = self.obj(&p)?;
                    if t < l0 - 1e-12 {
                        cands.push((c, bits, t));
                    }
                }
                // Drop an option when one with at least as many bits at every site is as fast.
                let options: Vec<Change> = cands
                    .iter()
                    .filter(|(_, b, t)| !cands.iter().any(|(_, b2, t2)| b2 != b && (0..4).all(|i| b2[i] >= b[i]) && t2 <= t))
                    .map(|(c, _, _)| *c)
                    .collect();
                groups.push(GroupSpec { label: format!("l{layer}"), options });
            }
            for site in SiteName::ALL {
                if self.settings.granularity == Granularity::Layer {
                    break;
                }
                // (bits, variant, latency) of the fastest variant per bits.
                let mut best: Vec<(u8, Variant, f64)> = Vec::new();
                for bits in [16u8, 8, 4] {
                    let mut b: Option<(Variant, f64)> = None;
                    for v in variants_for(bits, self.settings.scheme) {
                        if bits == 16 && v == Variant::W4A16 {
                            continue;
                        }
                        let mut p = base.clone();
                        Change::Site { layer, site, bits, scheme: self.settings.scheme, variant: v }.apply(&mut p);
                        match self.obj(&p) {
                            Ok(t) if b.is_none_or(|(_, bt)| t < bt) => b = Some((v, t)),
                            Ok(_) => {}
                            Err(e) => skipped.push(format!("{} ({e})", v.name())),
                        }
                    }
                    if let Some((v, t)) = b {
                        best.push((bits, v, t));
                    }
                }
                let mut options = Vec::new();
                let mut fastest_more_bits = l0;
                for (bits, variant, t) in best {
                    if t < fastest_more_bits - 1e-12 {
                        options.push(Change::Site { layer, site, bits, scheme: self.settings.scheme, variant });
                    }
                    fastest_more_bits = fastest_more_bits.min(t);
                }
                groups.push(GroupSpec { label: format!("l{layer}.{}", site.name()), options });
            }
            let mut p = base.clone();
            Change::Attn { layer }.apply(&mut p);
            match self.obj(&p) {
                Ok(t) if t < l0 => groups.push(GroupSpec { label: format!("l{layer}.attn"), options: vec![Change::Attn { layer }] }),
                Ok(_) => {}
                Err(e) => skipped.push(format!("attention int8 ({e})")),
            }
        }
        let mut schedules = Vec::new();
        for s in PruneSchedule::family(self.n_layer()) {
            let mut p = base.clone();
            s.apply(&mut p);
            if self.obj(&p)? < l0 {
                schedules.push(s);
            }
        }
        skipped.sort();
        skipped.dedup();
        for s in skipped.iter().take(5) {
            self.progress.log(&format!("agq tune: not considered: {s}"));
        }
        groups.retain(|g| !g.options.is_empty());
        self.groups = groups;
        self.schedules = schedules;
        Ok(())
    }

    /// Every quality unit the space needs.
    pub fn units(&self) -> Vec<Unit> {
        let mut v: Vec<Unit> = self.groups.iter().flat_map(|g| g.options.iter().filter_map(|c| c.unit())).collect();
        v.extend(self.schedules.iter().map(|&s| Unit::Prune(s)));
        v
    }

    /// Measures the units missing from the cache and saves it.
    pub fn ensure_sensitivity(&mut self) -> Result<usize, TuneError> {
        let missing: Vec<Unit> = self.units().into_iter().filter(|u| !self.cache.units.contains_key(&u.key())).collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let base = self.base_plan();
        let jobs: Vec<Job> = missing
            .iter()
            .map(|u| {
                let mut plan = base.clone();
                u.apply(&mut plan);
                Job { key: u.key(), plan, first: u.first_layer() }
            })
            .collect();
        let cal = Calibrator { model: self.model, src: self.src, chunks: self.calib.clone() };
        let total = (self.calib.len() * (jobs.len() + 1)) as u64;
        self.progress.stage(&format!("sensitivity: {} changes x {} chunks", jobs.len(), self.calib.len()), total);
        let res = cal.measure(&jobs, |d, _| self.progress.set(d as u64))?;
        for (j, r) in jobs.iter().zip(res) {
            self.cache.units.insert(j.key.clone(), r);
        }
        self.cache.save(&self.cache_dir)?;
        Ok(jobs.len())
    }

    fn unit_kl(&self, u: &Unit) -> Result<f64, TuneError> {
        self.cache
            .units
            .get(&u.key())
            .map(|r| r.kl.max(0.0))
            .ok_or_else(|| TuneError::Invalid(format!("no sensitivity measured for {}", u.key())))
    }

    /// The knapsack scenarios: no pruning, and each prune schedule.
    pub fn scenarios(&self) -> Result<Vec<Scenario>, TuneError> {
        let base = self.base_plan();
        let l0 = self.obj(&base)?;
        let mut out = Vec::new();
        let mut globals: Vec<Option<PruneSchedule>> = vec![None];
        globals.extend(self.schedules.iter().copied().map(Some));
        for g in globals {
            let mut bp = base.clone();
            let global = match g {
                None => None,
                Some(s) => {
                    s.apply(&mut bp);
                    let c = Change::Prune(s);
                    Some(Candidate { change: c, kl: self.unit_kl(&Unit::Prune(s))?, saved_s: l0 - self.obj(&bp)? })
                }
            };
            let lb = self.obj(&bp)?;
            let mut groups = Vec::new();
            for gs in &self.groups {
                let mut opts = Vec::new();
                for c in &gs.options {
                    let mut p = bp.clone();
                    c.apply(&mut p);
                    let kl = match c.unit() {
                        Some(u) => self.unit_kl(&u)?,
                        None => 0.0,
                    };
                    opts.push(Candidate { change: *c, kl, saved_s: lb - self.obj(&p)? });
                }
                groups.push(Group { label: gs.label.clone(), options: opts });
            }
            out.push(Scenario { global, base_latency_s: lb, groups });
        }
        Ok(out)
    }

    /// Held-out NLLs of a reference plan (`w4a16` or `fp16`), cached.
    pub fn reference_nlls(&mut self, which: Baseline) -> Result<Vec<f64>, TuneError> {
        if let Some(v) = self.cache.heldout.get(which.name()) {
            return Ok(v.clone());
        }
        let (model, plan) = match which {
            Baseline::W4a16 => (self.model, self.base_plan()),
            Baseline::Fp16 => (
                self.fp16.ok_or_else(|| TuneError::Invalid("--baseline fp16 needs the f16 model loaded".into()))?,
                runtime::plan::presets::preset("fp16", self.n_layer()).expect("preset"),
            ),
        };
        self.progress.stage(&format!("held-out reference {} ({} chunks)", which.name(), self.heldout.len()), self.heldout.len() as u64);
        let h = hooks_for(model, self.src, &plan, Prunable::FirstHalf)?;
        let v = chunk_nlls(model, &*h, &self.heldout, |d| self.progress.set(d as u64))?;
        self.cache.heldout.insert(which.name().to_string(), v.clone());
        self.cache.save(&self.cache_dir)?;
        Ok(v)
    }

    /// Measures one plan's KL against the reference on the calibration chunks.
    pub fn measure_plan_kl(&self, plan: &Plan, label: &str) -> Result<UnitResult, TuneError> {
        let first = first_changed_layer(&self.base_plan(), plan);
        let cal = Calibrator { model: self.model, src: self.src, chunks: self.calib.clone() };
        self.progress.stage(&format!("combined-plan KL check ({label})"), self.calib.len() as u64 * 2);
        let job = Job { key: label.to_string(), plan: plan.clone(), first };
        Ok(cal.measure(&[job], |d, _| self.progress.set(d as u64))?[0])
    }

    /// Tunes for one budget.
    pub fn tune(&mut self, budget: Budget) -> Result<Tuned, TuneError> {
        self.ensure_sensitivity()?;
        let base_nlls = self.reference_nlls(Baseline::W4a16)?;
        let base = ppl_of(&base_nlls);
        let reference = match self.settings.baseline {
            Baseline::W4a16 => base,
            Baseline::Fp16 => ppl_of(&self.reference_nlls(Baseline::Fp16)?),
        };
        let allowed = budget.allowed(reference.ppl);
        let base_plan = self.base_plan();
        let scenarios = self.scenarios()?;
        let n_units = scenarios.iter().map(|s| s.groups.iter().map(|g| g.options.len()).sum::<usize>()).max().unwrap_or(0);
        if allowed < base.ppl {
            // Only possible against fp16: the 4-bit weights alone already exceed the budget.
            let plan = runtime::plan::presets::preset("fp16", self.n_layer()).expect("preset");
            let predicted = lat(self.latency, &plan).unwrap_or_default();
            return Ok(Tuned {
                budget,
                plan,
                kept: Vec::new(),
                predicted,
                predicted_kl: 0.0,
                measured_kl: None,
                heldout: reference,
                base,
                reference,
                allowed_ppl: allowed,
                within: true,
                steps: Vec::new(),
                paired_se: f64::NAN,
                explanation: Some(format!(
                    "budget {budget} allows ppl {allowed:.4} on the held-out text, but w4a16 (the 4-bit weights with float activations, the starting point of every tuned plan) already measures {:.4} vs fp16 {:.4}: no 4-bit plan fits; the best feasible plan is fp16 itself",
                    base.ppl, reference.ppl
                )),
            });
        }
        let kl_budget = (allowed / base.ppl).ln();
        let mut sol_budget = kl_budget;
        let mut sol = solve(&scenarios, sol_budget, self.settings.resolution).expect("the no-prune scenario always fits");
        self.progress.log(&format!(
            "agq tune: budget {budget}: KL budget {kl_budget:.5} nats/token; search picked {} of {n_units} options{} (predicted KL {:.5}, {:.4} s)",
            sol.picks.len(),
            if sol.scenario > 0 { " incl. a prune schedule" } else { "" },
            sol.kl,
            sol.latency_s
        ));
        // Interaction check: the combined plan's KL against the sum of its parts.
        let mut measured_kl = None;
        if sol.picks.iter().any(|p| p.kl > 0.0) {
            let plan = build(&base_plan, &sol.picks);
            let m = self.measure_plan_kl(&plan, "search result")?;
            let ratio = m.kl / sol.kl.max(1e-12);
            self.progress.log(&format!(
                "agq tune: combined KL {:.5} vs sum of parts {:.5} (x{ratio:.2}); calibration dNLL {:+.5}",
                m.kl, sol.kl, m.dnll
            ));
            measured_kl = Some(m);
            if ratio > self.settings.interaction_tolerance {
                sol_budget = kl_budget / ratio;
                sol = solve(&scenarios, sol_budget, self.settings.resolution).expect("fits");
                let plan = build(&base_plan, &sol.picks);
                measured_kl = if sol.picks.iter().any(|p| p.kl > 0.0) { Some(self.measure_plan_kl(&plan, "re-solved")?) } else { None };
                self.progress.log(&format!("agq tune: re-solved with KL budget / {ratio:.2}: {} changes", sol.picks.len()));
            }
        }
        let picked_kl = sol.kl;
        // Validate on held-out text; while over budget, re-solve with a smaller KL budget.
        let mut last_nlls: Vec<f64> = Vec::new();
        let outcome = {
            let mut ev = HeldOutEval { s: self, last: &mut last_nlls, n: 0 };
            let resolution = self.settings.resolution;
            let mut solver = |b: f64| solve(&scenarios, b, resolution).map(|s| s.picks).unwrap_or_default();
            back_off(&base_plan, sol_budget, &mut solver, base, allowed, &mut ev, self.settings.max_evals, |st| {
                self.progress.log(&format!(
                    "agq tune: validation: KL budget {:.5} -> {} changes, predicted KL {:.5}: held-out ppl {:.4} (allowed {allowed:.4})",
                    st.kl_budget, st.changes, st.predicted_kl, st.measured.ppl
                ))
            })?
        };
        let kept_kl: f64 = outcome.kept.iter().map(|c| c.kl.max(0.0)).sum();
        if (kept_kl - picked_kl).abs() > 1e-12 && outcome.kept.iter().any(|p| p.kl > 0.0) {
            measured_kl = Some(self.measure_plan_kl(&outcome.plan, "after back-off")?);
        } else if !outcome.kept.iter().any(|p| p.kl > 0.0) {
            measured_kl = None;
        }
        let paired_se = if outcome.kept.is_empty() || last_nlls.is_empty() { f64::NAN } else { paired_delta(&last_nlls, &base_nlls).1 };
        let predicted = lat(self.latency, &outcome.plan)?;
        let explanation = explain(&budget, &outcome, &scenarios, kl_budget, base, allowed, paired_se);
        Ok(Tuned {
            budget,
            plan: outcome.plan,
            kept: outcome.kept,
            predicted,
            predicted_kl: kept_kl,
            measured_kl,
            heldout: outcome.measured,
            base,
            reference,
            allowed_ppl: allowed,
            within: outcome.within,
            steps: outcome.steps,
            paired_se,
            explanation,
        })
    }

    /// Times plans (Q4_1 plans on the session's model, `fp16` on the f16 model) interleaved.
    pub fn time(&self, plans: &[Plan], prompt: usize, gen: usize, reps: usize) -> Result<Vec<Latency>, TuneError> {
        let mut timed = Vec::new();
        for p in plans {
            let model = if p.weights == WeightFormat::F16 {
                self.fp16.ok_or_else(|| TuneError::Invalid("timing fp16 needs the f16 model loaded".into()))?
            } else {
                self.model
            };
            timed.push(Timed { model, hooks: hooks_for(model, self.src, p, Prunable::All)? });
        }
        self.progress.stage(&format!("timing {} plans: prefill {prompt} + decode {gen}, {reps} reps", plans.len()), ((reps + 1) * plans.len()) as u64);
        time_plans(&timed, prompt, gen, reps, |d, _| self.progress.set(d as u64))
    }

    /// The plan as written: named, pinned to the model, with the `[tuner]` record.
    pub fn finish_plan(&self, t: &Tuned, model_sha256: &str, device: Option<toml::Table>, profile: Option<String>, workload: &str, measured: Option<Latency>) -> Plan {
        let mut p = t.plan.clone();
        p.name = Some(format!("tuned-{}", t.budget.slug()));
        p.description = Some(format!(
            "agq tune: {} objective, budget {} vs {}; {} changes from w4a16",
            self.settings.objective.name(),
            t.budget,
            self.settings.baseline.name(),
            t.kept.len()
        ));
        p.model_sha256 = Some(model_sha256.to_string());
        p.tuner = Some(TunerInfo {
            predicted_latency_ms: Some(self.settings.objective.of(&t.predicted) * 1e3),
            measured_ppl: Some(t.heldout.ppl),
            measured_ppl_stderr: Some(t.heldout.stderr),
            budget: Some(format!("ppl <= {:.4} ({} vs {} {:.4})", t.allowed_ppl, t.budget, self.settings.baseline.name(), t.reference.ppl)),
            protocol: Some(format!(
                "held-out: {} chunks x {} of the tuning text's second half, llama.cpp protocol (second half of each chunk scored)",
                self.settings.heldout_chunks, self.settings.heldout_ctx
            )),
            device,
            objective: Some(self.settings.objective.name().into()),
            workload: Some(workload.to_string()),
            predicted_prefill_s: Some(t.predicted.prefill_s),
            predicted_decode_s: Some(t.predicted.decode_s),
            predicted_e2e_s: Some(t.predicted.e2e_s()),
            measured_prefill_s: measured.map(|m| m.prefill_s),
            measured_decode_s: measured.map(|m| m.decode_s),
            measured_e2e_s: measured.map(|m| m.e2e_s()),
            baseline: Some(self.settings.baseline.name().into()),
            baseline_ppl: Some(t.reference.ppl),
            predicted_kl: Some(t.predicted_kl),
            measured_kl: t.measured_kl.map(|m| m.kl),
            profile,
            sensitivity: Some(self.protocol.clone()),
        });
        p
    }
}

struct HeldOutEval<'s, 'a> {
    s: &'s Session<'a>,
    last: &'s mut Vec<f64>,
    n: usize,
}

impl Evaluator for HeldOutEval<'_, '_> {
    fn evaluate(&mut self, plan: &Plan) -> Result<Measured, TuneError> {
        self.n += 1;
        let s = self.s;
        s.progress.stage(&format!("held-out validation {} ({} chunks)", self.n, s.heldout.len()), s.heldout.len() as u64);
        let h = hooks_for(s.model, s.src, plan, Prunable::FirstHalf)?;
        *self.last = chunk_nlls(s.model, &*h, &s.heldout, |d| s.progress.set(d as u64))?;
        Ok(ppl_of(self.last))
    }
}

/// First layer where `plan` differs from `base` (for replaying the rest).
pub fn first_changed_layer(base: &Plan, plan: &Plan) -> usize {
    base.layers.iter().zip(&plan.layers).position(|(a, b)| a != b).unwrap_or(plan.n_layer())
}

fn explain(budget: &Budget, o: &crate::backoff::Outcome, scenarios: &[Scenario], kl_budget: f64, base: Measured, allowed: f64, se: f64) -> Option<String> {
    if !o.within {
        return Some(format!(
            "no plan met budget {budget} (ppl <= {allowed:.4}) on the held-out text within the evaluation limit; the best feasible plan is w4a16 itself (ppl {:.4})",
            base.ppl
        ));
    }
    let costly = o.kept.iter().any(|c| c.kl > 0.0);
    if !costly {
        let cheapest = scenarios
            .iter()
            .flat_map(|s| s.groups.iter().flat_map(|g| g.options.iter()).chain(s.global.iter()))
            .filter(|c| c.kl > 0.0 && c.saved_s > 0.0)
            .min_by(|a, b| a.kl.partial_cmp(&b.kl).unwrap());
        let why = match cheapest {
            Some(c) if o.steps.len() <= 1 => format!(
                "the cheapest quality-costing change ({}: KL {:.5} nats/token, about {:+.2}% ppl) does not fit the KL budget of {kl_budget:.5}",
                c.change.label(),
                c.kl,
                c.kl.exp_m1() * 100.0
            ),
            Some(_) => "every combination the search found measured over the budget on held-out text and was backed off".to_string(),
            None => "no candidate change is predicted to be faster on this device".to_string(),
        };
        return Some(format!(
            "budget {budget} admits no quantization change: {why}; the plan is w4a16{}",
            if o.kept.is_empty() { String::new() } else { " with faster float kernels (results unchanged)".into() }
        ));
    }
    if se.is_finite() && kl_budget < 2.0 * se {
        return Some(format!(
            "budget {budget} (ln ratio {kl_budget:.4}) is below twice the held-out measurement noise (paired NLL s.e. {se:.4}); the plan meets it on these tokens but the margin is not resolved"
        ));
    }
    None
}
