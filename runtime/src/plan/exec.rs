//! Executing a plan in the forward pass, through the model's hook points
//! (`model::Hooks`): per-site activation quantizers and kernels (folded weights for the
//! static scheme, a second INT4 kernel for low-importance rows), INT8 / log2 attention,
//! and token pruning in prefill.
//!
//! Timing of decisions: a layer's importance is known after its attention; the prune hook
//! then drops rows (before RMSNorm2/MLP) and grows the low-bit set. That set applies to this
//! layer's `gate_up`/`down` and, because `o` runs before the hook, to the next layer's `o`.

use super::{Plan, Positions, Scheme, Site, SitePlan, VariantChoice, WeightFormat};
use crate::calibrate::CalibStats;
use crate::gguf::{GgmlType, TensorSource};
use crate::model::attention::Int8Attn;
use crate::model::{AttnOps, FloatAttn, Hooks, Linear, Model, SiteCall};
use crate::prune::PruneState;
use crate::quant::trip;
use crate::quant::{ActQuantizer, MixedRows};
use kernels::{best_isa, Matmul, Q4Matrix, Variant, QK};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{plan}: {msg}")]
    Plan { plan: String, msg: String },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    Calib(#[from] crate::calibrate::CalibError),
    #[error("{file}: tensor `{tensor}`: {source}")]
    Kernel { file: String, tensor: String, source: kernels::KernelError },
}

/// Which rows of a fresh prefill may be pruned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Prunable {
    /// Every prompt token (generation).
    All,
    /// Only the first `n / 2` rows of an `n`-token batch: the perplexity protocol, where the
    /// scored second half is never pruned (method.md §6).
    FirstHalf,
}

/// INT8 Q·Kᵀ / P·V and log2 probabilities of one layer. The loops run in
/// `model::attention` (over the layer's INT8 KV cache for the integer products); this type
/// says which products are integer and whether P·V uses log2-4 probabilities.
///
/// The log2 code applies to the probabilities P·V sees, not to the softmax the pruning hook
/// reads: each row's float probability on the first token stays the importance signal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantAttn {
    pub qk8: bool,
    pub pv8: bool,
    pub log2: bool,
}

impl AttnOps for QuantAttn {
    fn int8(&self) -> Int8Attn {
        Int8Attn { qk: self.qk8, pv: self.pv8 }
    }

    fn log2(&self) -> bool {
        self.log2
    }
}

/// One linear site as the plan runs it.
struct SiteExec {
    quant: ActQuantizer,
    /// `None`: the model's own matmul already is the planned kernel.
    mm: Option<Matmul>,
    /// How low-importance rows run (o/gate_up/down with `low_bit > 0`).
    low: Option<LowRows>,
}

/// The INT4 rows of a site with `low_bit > 0`.
enum LowRows {
    /// In the same call of the site's `w4a8` kernel, as INT4 codes in bytes: what
    /// `w4a4-widen` computes, without a second call, gathers and scatters.
    Fused,
    /// Through their own kernel (`w4a4-packed`, `w4a4-lut`), as [`MixedRows`].
    Separate(Matmul),
}

/// `model::Hooks` for a plan.
pub struct PlanHooks {
    plan: Plan,
    prunable: Prunable,
    /// `[layer][qkv, o, gate_up, down]`.
    sites: Vec<Vec<SiteExec>>,
    lm_head: SiteExec,
    attn: Vec<QuantAttn>,
    state: Mutex<Option<PruneState>>,
    /// `false`: no token is dropped (low-bit tokens are still chosen); see `Hooks::set_pruning`.
    pruning: AtomicBool,
}

fn slot(s: Site) -> usize {
    match s {
        Site::Qkv => 0,
        Site::O => 1,
        Site::GateUp => 2,
        Site::Down => 3,
        _ => unreachable!("not a layer linear site"),
    }
}

/// GGUF tensor names stacked into each site (as the llama loader fuses them).
fn tensor_names(layer: Option<usize>, s: Site, tied: bool) -> Vec<String> {
    let b = |n: &str| format!("blk.{}.{n}.weight", layer.unwrap_or(0));
    match s {
        Site::Qkv => vec![b("attn_q"), b("attn_k"), b("attn_v")],
        Site::O => vec![b("attn_output")],
        Site::GateUp => vec![b("ffn_gate"), b("ffn_up")],
        Site::Down => vec![b("ffn_down")],
        Site::LmHead => vec![if tied { "token_embd.weight".into() } else { "output.weight".into() }],
        _ => unreachable!(),
    }
}

/// The site's weights as 4-bit blocks: the file's Q4_1 blocks as stored, other types
/// round-to-nearest quantized.
fn load_q4(src: &dyn TensorSource, names: &[String]) -> Result<Q4Matrix, ExecError> {
    let tensors = names.iter().map(|n| src.tensor(n)).collect::<Result<Vec<_>, _>>()?;
    let k = tensors[0].dims[0] as usize;
    let mut n = 0;
    for t in &tensors {
        n += t.matrix_shape()?.1;
    }
    let kerr = |e| ExecError::Kernel { file: src.source_path().display().to_string(), tensor: names[0].clone(), source: e };
    if tensors.iter().all(|t| t.ty == GgmlType::Q4_1) && k.is_multiple_of(QK) {
        let mut blocks = Vec::with_capacity(n * k / QK);
        for t in &tensors {
            blocks.extend_from_slice(t.q4_1_slice()?);
        }
        Q4Matrix::from_blocks(n, k, blocks).map_err(kerr)
    } else {
        let mut w = Vec::with_capacity(n * k);
        for t in &tensors {
            w.extend(t.to_f32()?);
        }
        Ok(Q4Matrix::quantize(n, k, &w))
    }
}

impl PlanHooks {
    /// Prepares every site of `plan` for `model` (loaded from `src` with the plan's weight
    /// format). `calib` (with its file name for errors) is required when a site uses the
    /// static per-tensor scheme.
    pub fn build(
        model: &Model,
        src: &dyn TensorSource,
        plan: &Plan,
        plan_name: &str,
        calib: Option<(&CalibStats, &Path)>,
        prunable: Prunable,
    ) -> Result<PlanHooks, ExecError> {
        let err = |msg: String| ExecError::Plan { plan: plan_name.into(), msg };
        let cfg = &model.config;
        if plan.n_layer() != cfg.n_layer {
            return Err(err(format!("plan has {} layers, the model {}", plan.n_layer(), cfg.n_layer)));
        }
        if plan.weights != model.weights {
            return Err(err(format!("plan wants {:?} weights, the model was loaded with {:?}", plan.weights, model.weights)));
        }
        if plan.positions == Positions::Renumber {
            return Err(err("positions = \"renumber\" is not supported by this runtime yet; use \"keep\"".into()));
        }
        if plan.needs_calibration() && calib.is_none() {
            return Err(err("the plan uses the static per-tensor scheme; give calibration statistics (agq calibrate)".into()));
        }
        if let Some((c, path)) = calib {
            if c.layers.len() != cfg.n_layer {
                return Err(err(format!("{}: statistics for {} layers, the model has {}", path.display(), c.layers.len(), cfg.n_layer)));
            }
        }
        let native = if model.weights == WeightFormat::F16 { Variant::F16 } else { Variant::W4A16 };
        let build_site = |layer: Option<usize>, s: Site, sp: &SitePlan, lin: &Linear, low_bit: Option<Variant>| {
            let variant = sp.resolve_variant(plan.weights);
            // Plans built in code skip the file checks; block scales need these kernels.
            for v in std::iter::once(variant).chain(low_bit) {
                if !sp.is_float() && !sp.scheme.runs_on(v) {
                    return Err(err(format!("{s}: scheme \"group\" needs w4a8 or w4a4-widen, not {v}")));
                }
            }
            let mut quant = match (sp.bits, sp.scheme) {
                (16, _) => ActQuantizer::Float,
                (b, Scheme::Token) => ActQuantizer::PerToken { bits: b, clip: crate::quant::clip::default_clip(b) },
                (b, Scheme::Group) => ActQuantizer::PerBlock { bits: b },
                (b, Scheme::Tensor) => {
                    let (c, path) = calib.expect("checked above");
                    let st = c.site(path, layer.unwrap_or(0), s)?;
                    let cf = st.factors(b).expect("bits 8 or 4").clone();
                    if cf.k() != lin.k() {
                        return Err(err(format!("{}: {s} has k = {}, the model {}", path.display(), cf.k(), lin.k())));
                    }
                    ActQuantizer::PerTensor(cf)
                }
            };
            let needs_own = variant != native || quant.factors().is_some() || low_bit.is_some();
            let (mm, low) = if needs_own {
                let names = tensor_names(layer, s, cfg.tied_embeddings);
                let q4 = load_q4(src, &names)?;
                let w = match &mut quant {
                    // Group-constant factors (what `agq calibrate` writes) fold exactly into
                    // the blocks' d and m; per-channel ones force a re-quantization.
                    ActQuantizer::PerTensor(cf) if trip::group_exponents(&cf.factors).is_some() => {
                        cf.factors = trip::clamp_for_f16(&q4, &cf.factors);
                        trip::fold_exact(&q4, &cf.factors).expect("clamped to f16 range")
                    }
                    ActQuantizer::PerTensor(cf) => trip::fold_into_weights(&q4, Some(&cf.factors)),
                    _ => q4,
                };
                let kerr = |e| ExecError::Kernel { file: src.source_path().display().to_string(), tensor: names[0].clone(), source: e };
                let mm = if variant == native && quant.factors().is_none() {
                    None
                } else {
                    Some(Matmul::new_q4(variant, best_isa(variant), &w).map_err(kerr)?)
                };
                let low = match low_bit {
                    // `w4a4-widen` is the `w4a8` kernel (same ISA dispatch) on INT4 codes.
                    Some(Variant::W4A4Widen) if variant == Variant::W4A8 => Some(LowRows::Fused),
                    Some(v) => Some(LowRows::Separate(Matmul::new_q4(v, best_isa(v), &w).map_err(kerr)?)),
                    None => None,
                };
                (mm, low)
            } else {
                (None, None)
            };
            Ok::<SiteExec, ExecError>(SiteExec { quant, mm, low })
        };

        let mut sites = Vec::with_capacity(cfg.n_layer);
        let mut attn = Vec::with_capacity(cfg.n_layer);
        for (l, (lp, blk)) in plan.layers.iter().zip(&model.blocks).enumerate() {
            let low_sites = if lp.low_bit > 0.0 { lp.low_bit_sites() } else { Vec::new() };
            let low_variant = lp.resolve_low_bit_variant(plan.weights);
            let mut row = Vec::with_capacity(4);
            for (s, lin) in [(Site::Qkv, &blk.qkv), (Site::O, &blk.o), (Site::GateUp, &blk.gate_up), (Site::Down, &blk.down)] {
                let low = low_sites.contains(&s).then_some(low_variant);
                row.push(build_site(Some(l), s, lp.site(s), lin, low)?);
            }
            sites.push(row);
            attn.push(QuantAttn {
                qk8: lp.qk.bits == 8,
                pv8: lp.pv.bits == 8,
                log2: lp.softmax == super::SoftmaxMode::Log2x4,
            });
        }
        // The model keeps its LM head in f16; a float LM head plan uses it as is.
        let lm_head = if plan.lm_head.is_float() && plan.lm_head.variant == VariantChoice::Auto {
            SiteExec { quant: ActQuantizer::Float, mm: None, low: None }
        } else {
            build_site(None, Site::LmHead, &plan.lm_head, &model.lm_head, None)?
        };
        Ok(PlanHooks { plan: plan.clone(), prunable, sites, lm_head, attn, state: Mutex::new(None), pruning: AtomicBool::new(true) })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Starts bookkeeping for a forward call whose layer-0 rows are `rows` at `positions`:
    /// pruning and low-bit tokens only happen in a fresh prefill (first position 0, more
    /// than one token); decode steps and continuations never prune.
    fn begin(&self, rows: &[usize], positions: &[u32]) {
        let mut st = self.state.lock().unwrap();
        let active = self.plan.layers.iter().any(|l| l.prune > 0.0 || l.low_bit > 0.0);
        *st = if active && rows.len() > 1 && positions.first() == Some(&0) {
            let n = rows.len();
            let range = match self.prunable {
                Prunable::All => 0..n,
                Prunable::FirstHalf => 0..n / 2,
            };
            Some(PruneState::new(n, range))
        } else {
            None
        };
    }

    /// Low-bit flags for `rows` (original batch indices), if any row is low-bit.
    fn low_rows(&self, rows: &[usize]) -> Option<Vec<bool>> {
        let st = self.state.lock().unwrap();
        let st = st.as_ref()?;
        if !st.low_bit().iter().any(|&b| b) {
            return None;
        }
        // Rows are a subsequence of the state's kept rows, both ascending.
        let (kept, low) = (st.kept(), st.low_bit());
        let mut i = 0;
        let flags = rows
            .iter()
            .map(|&r| {
                while i < kept.len() && kept[i] < r {
                    i += 1;
                }
                i < kept.len() && kept[i] == r && low[i]
            })
            .collect();
        Some(flags)
    }

    fn run_site(&self, e: &SiteExec, call: SiteCall<'_>, lin: &Linear, x: &[f32], y: &mut [f32]) {
        let mm = e.mm.as_ref().unwrap_or(&lin.mm);
        let m = x.len() / mm.k().max(1);
        if let (Some(low), Some(flags)) = (&e.low, e.low.as_ref().and_then(|_| self.low_rows(call.rows))) {
            match low {
                LowRows::Fused => e.quant.matmul_mixed(mm, x, m, &flags, y),
                LowRows::Separate(low_mm) => MixedRows::quantize(&e.quant, x, m, mm.k(), &flags).run(mm, low_mm, x, y),
            }
        } else {
            e.quant.matmul(mm, x, m, y);
        }
        lin.add_bias(y);
    }
}

impl Hooks for PlanHooks {
    fn linear(&self, call: SiteCall<'_>, lin: &Linear, x: &[f32], y: &mut [f32]) {
        match call.layer {
            None => self.run_site(&self.lm_head, call, lin, x, y),
            Some(l) => {
                if l == 0 && call.site == Site::Qkv {
                    self.begin(call.rows, call.positions);
                }
                self.run_site(&self.sites[l][slot(call.site)], call, lin, x, y)
            }
        }
    }

    fn attn_ops(&self, layer: usize) -> &dyn AttnOps {
        let a = &self.attn[layer];
        if a.qk8 || a.pv8 || a.log2 {
            a
        } else {
            &FloatAttn
        }
    }

    fn set_pruning(&self, on: bool) -> bool {
        self.pruning.store(on, Ordering::Relaxed);
        self.plan.layers.iter().any(|l| l.prune > 0.0)
    }

    fn wants_sink(&self, layer: usize) -> bool {
        let l = &self.plan.layers[layer];
        (l.prune > 0.0 || l.low_bit > 0.0) && self.state.lock().unwrap().is_some()
    }

    fn prune(&self, layer: usize, rows: &[usize], _positions: &[u32], sink: &[f32]) -> Option<Vec<usize>> {
        let lp = &self.plan.layers[layer];
        if (lp.prune == 0.0 && lp.low_bit == 0.0) || sink.is_empty() {
            return None;
        }
        let mut guard = self.state.lock().unwrap();
        let st = guard.as_mut()?;
        assert_eq!(st.kept(), rows, "pruning bookkeeping out of step with the forward pass");
        let m = rows.len();
        let n_head = sink.len() / m.max(1);
        // sink is [head][row]: importance = sum over heads (prune::importance with one key).
        let imp = crate::prune::importance(sink, n_head, m, 1);
        let prune = if self.pruning.load(Ordering::Relaxed) { lp.prune } else { 0.0 };
        let sel = st.select(&imp, prune, lp.low_bit);
        st.apply(&sel);
        (!sel.drop.is_empty()).then_some(sel.keep)
    }
}

/// The calibration statistics a plan needs: `explicit` (e.g. `--calib`), else the plan's
/// `[calibration] stats` relative to the plan file's directory. `None` when the plan does not
/// use the static scheme and nothing was given.
pub fn load_calibration(
    plan: &Plan,
    plan_spec: &str,
    explicit: Option<&Path>,
) -> Result<Option<(CalibStats, std::path::PathBuf)>, ExecError> {
    let path = match (explicit, plan.calibration.as_ref().and_then(|c| c.stats.as_ref())) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(rel)) => Path::new(plan_spec).parent().unwrap_or(Path::new(".")).join(rel),
        (None, None) => return Ok(None),
    };
    let stats = CalibStats::read(&path)?;
    Ok(Some((stats, path)))
}

/// Perplexity as the paper reports it with pruning (labelled "paper protocol", never the
/// headline): any row of a chunk but the first and the last may be pruned, and the loss is
/// averaged over the rows of the scored range (`ctx/2 .. ctx-2`) that survive. Not comparable
/// with dense perplexity: pruned positions are simply not scored. `hooks` should be built
/// with [`Prunable::All`].
pub fn paper_perplexity(
    model: &Model,
    tokens: &[u32],
    ctx: usize,
    max_chunks: Option<usize>,
    hooks: &dyn Hooks,
    mut progress: impl FnMut(usize, usize, &crate::eval::NllSums),
) -> Result<crate::eval::PplResult, crate::eval::EvalError> {
    use crate::eval::{chunk_count, nll, NllSums, PplResult};
    let avail = chunk_count(tokens.len(), ctx, model.config.n_ctx_train)?;
    let chunks = max_chunks.map_or(avail, |c| c.min(avail));
    let mut st = crate::model::State::new();
    let mut cache = model.new_cache(ctx);
    let mut sums = NllSums::default();
    let vocab = model.config.vocab_size;
    let t0 = std::time::Instant::now();
    let mut scratch = Vec::new();
    for c in 0..chunks {
        let chunk = &tokens[c * ctx..(c + 1) * ctx];
        let first = ctx / 2;
        cache.clear();
        model.forward(chunk, &mut cache, &mut st, crate::model::Logits::From(first), hooks)?;
        let logits = st.logits();
        for (i, &r) in st.logit_rows.iter().enumerate() {
            if r + 1 < ctx {
                sums.add(nll(&logits[i * vocab..(i + 1) * vocab], chunk[r + 1], &mut scratch));
            }
        }
        progress(c + 1, chunks, &sums);
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(PplResult {
        ppl: sums.ppl(),
        ppl_stderr: sums.ppl_stderr(),
        nll_mean: sums.sum / sums.count.max(1) as f64,
        chunks,
        tokens_scored: sums.count,
        ctx,
        seconds,
        tokens_per_second: (chunks * ctx) as f64 / seconds,
    })
}
