//! Activation-aware token pruning in prefill (method.md §4): token importance from the
//! attention probabilities, the progressive schedule, which rows to drop at a layer, the
//! growing set of low-bit (INT4) tokens, and the bookkeeping from current rows back to the
//! original sequence.

use std::ops::Range;

/// Per-layer fraction removed so that `m` layers, each removing `gamma` of their current
/// tokens, remove `beta` in total: `gamma = 1 - (1 - beta)^(1/m)`.
pub fn gamma(beta: f64, m: usize) -> f64 {
    if m == 0 || beta <= 0.0 {
        return 0.0;
    }
    1.0 - (1.0 - beta).powf(1.0 / m as f64)
}

/// Per-layer ratios: 0 before `start`, `gamma(beta, n_layer - start)` from `start` on.
pub fn schedule(n_layer: usize, start: usize, beta: f64) -> Vec<f64> {
    let start = start.min(n_layer);
    let g = gamma(beta, n_layer - start);
    (0..n_layer).map(|l| if l >= start { g } else { 0.0 }).collect()
}

/// Importance of each query row: the sum over heads of its attention probability on the
/// first token (key 0), exactly as method.md §4 states.
///
/// `probs` is `[head][row][key]`, `n_head x n_rows x n_keys`, key 0 being sequence
/// position 0.
///
/// Note on the paper's intent: Agile-Quant scores tokens "by their attention with the first
/// token". In a causal decoder the first token's own row attends only to itself, so the only
/// non-degenerate reading is this column: how much each token attends to the start token
/// (the attention sink). The method note fixes that reading and that the lowest scores are
/// pruned; whether high attention to the sink marks an *important* or an *uninformative*
/// token is the paper's choice, not verified here — measure it (eval with pruning vs dense)
/// before trusting the direction.
pub fn importance(probs: &[f32], n_head: usize, n_rows: usize, n_keys: usize) -> Vec<f32> {
    assert_eq!(probs.len(), n_head * n_rows * n_keys, "probs must be n_head x n_rows x n_keys");
    let mut imp = vec![0f32; n_rows];
    if n_keys == 0 {
        return imp;
    }
    for h in 0..n_head {
        for (i, v) in imp.iter_mut().enumerate() {
            *v += probs[(h * n_rows + i) * n_keys];
        }
    }
    imp
}

/// Which tokens are still alive in a prefill and which of them are low-bit, as original
/// sequence indices.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneState {
    /// Original index of each current row, ascending.
    kept: Vec<usize>,
    /// Per current row: does it use INT4 at the low-bit sites.
    low_bit: Vec<bool>,
    /// Original indices that may be pruned or made low-bit (the prompt; in the perplexity
    /// protocol only the first half of a chunk). Token 0 and the range's last token are
    /// protected on top of this.
    prunable: Range<usize>,
}

/// What one layer decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Current-row indices that survive, ascending.
    pub keep: Vec<usize>,
    /// Current-row indices dropped, ascending.
    pub drop: Vec<usize>,
    /// Per kept row (same order as `keep`): INT4 at o/gate_up/down.
    pub low_bit: Vec<bool>,
}

impl Selection {
    /// `keep` as a boolean mask over the current rows.
    pub fn keep_mask(&self, n_rows: usize) -> Vec<bool> {
        let mut m = vec![false; n_rows];
        self.keep.iter().for_each(|&r| m[r] = true);
        m
    }
}

/// Round half away from zero, as a count.
fn count(ratio: f64, n: usize) -> usize {
    (ratio * n as f64).round().max(0.0) as usize
}

impl PruneState {
    /// `n_rows` tokens in original order; only those in `prunable` may be pruned.
    pub fn new(n_rows: usize, prunable: Range<usize>) -> Self {
        let prunable = prunable.start.min(n_rows)..prunable.end.min(n_rows);
        PruneState { kept: (0..n_rows).collect(), low_bit: vec![false; n_rows], prunable }
    }

    /// Original indices of the current rows (their RoPE positions when positions are kept).
    pub fn kept(&self) -> &[usize] {
        &self.kept
    }

    pub fn low_bit(&self) -> &[bool] {
        &self.low_bit
    }

    pub fn n_rows(&self) -> usize {
        self.kept.len()
    }

    fn in_range(&self, orig: usize) -> bool {
        self.prunable.contains(&orig)
    }

    /// May this original index be pruned or made low-bit: inside the prunable range, not
    /// token 0, not the range's last token (whose logits start generation / scoring).
    pub fn eligible(&self, orig: usize) -> bool {
        self.in_range(orig) && orig != 0 && orig + 1 != self.prunable.end
    }

    /// Decide a layer: drop `round(prune * P)` of the current rows, where P counts current
    /// rows in the prunable range, choosing the lowest `importance` among eligible rows
    /// (ties by original index, so the choice is deterministic); then grow the low-bit set
    /// to `round(low_bit * P')` rows (P' = prunable rows after the drop) with the next-lowest
    /// eligible rows. Rows already low-bit stay low-bit.
    pub fn select(&self, importance: &[f32], prune: f64, low_bit: f64) -> Selection {
        assert_eq!(importance.len(), self.kept.len(), "one importance per current row");
        let mut order: Vec<usize> = (0..self.kept.len()).filter(|&r| self.eligible(self.kept[r])).collect();
        order.sort_by(|&a, &b| importance[a].total_cmp(&importance[b]).then(self.kept[a].cmp(&self.kept[b])));

        let in_range = self.kept.iter().filter(|&&o| self.in_range(o)).count();
        let n_drop = count(prune, in_range).min(order.len());
        let mut dropped = vec![false; self.kept.len()];
        order[..n_drop].iter().for_each(|&r| dropped[r] = true);

        let mut low = self.low_bit.clone();
        let mut n_low = (0..low.len()).filter(|&r| low[r] && !dropped[r]).count();
        let target = count(low_bit, in_range - n_drop);
        for &r in &order[n_drop..] {
            if n_low >= target {
                break;
            }
            if !low[r] {
                low[r] = true;
                n_low += 1;
            }
        }

        let keep: Vec<usize> = (0..self.kept.len()).filter(|&r| !dropped[r]).collect();
        let drop: Vec<usize> = (0..self.kept.len()).filter(|&r| dropped[r]).collect();
        let low_bit = keep.iter().map(|&r| low[r]).collect();
        Selection { keep, drop, low_bit }
    }

    /// Apply a layer's decision: later layers see only the kept rows.
    pub fn apply(&mut self, sel: &Selection) {
        self.kept = sel.keep.iter().map(|&r| self.kept[r]).collect();
        self.low_bit = sel.low_bit.clone();
    }
}

/// Keep only the rows `keep` (ascending) of a row-major `rows x width` matrix, in place.
pub fn gather_rows(x: &mut Vec<f32>, width: usize, keep: &[usize]) {
    for (dst, &src) in keep.iter().enumerate() {
        if dst != src {
            x.copy_within(src * width..(src + 1) * width, dst * width);
        }
    }
    x.truncate(keep.len() * width);
}
