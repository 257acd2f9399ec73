//! Next-token divergence between a reference model and a candidate, per scored position:
//! `KL(p_ref || p_cand)` over the whole vocabulary, and the change of the true token's NLL.

use rayon::prelude::*;

/// `log softmax` of each row (`rows x vocab`), in place.
pub fn log_softmax_rows(z: &mut [f32], vocab: usize) {
    z.par_chunks_mut(vocab).for_each(|row| {
        let lse = logsumexp(row);
        row.iter_mut().for_each(|v| *v -= lse);
    });
}

fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    max + s.ln() as f32
}

/// Sums over rows of `KL(ref || cand)` and of `nll_cand(target) - nll_ref(target)`.
/// `ref_lp` are reference log-probabilities, `cand` raw candidate logits, both
/// `rows x vocab`; `targets[i]` is the token row `i` predicts.
pub fn kl_and_dnll(ref_lp: &[f32], cand: &[f32], vocab: usize, targets: &[u32]) -> (f64, f64) {
    assert_eq!(ref_lp.len(), cand.len());
    assert_eq!(ref_lp.len(), targets.len() * vocab);
    ref_lp
        .par_chunks(vocab)
        .zip(cand.par_chunks(vocab))
        .zip(targets.par_iter())
        .map(|((r, c), &t)| {
            let lse = logsumexp(c) as f64;
            let mut kl = 0.0f64;
            for (&lr, &lc) in r.iter().zip(c) {
                let lr = lr as f64;
                let p = lr.exp();
                if p > 0.0 {
                    kl += p * (lr - (lc as f64 - lse));
                }
            }
            let t = t as usize;
            let dnll = (lse - c[t] as f64) - (-(r[t] as f64));
            (kl.max(0.0), dnll)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_have_zero_kl_and_dnll() {
        let vocab = 7;
        let z: Vec<f32> = (0..3 * vocab).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut lp = z.clone();
        log_softmax_rows(&mut lp, vocab);
        let (kl, d) = kl_and_dnll(&lp, &z, vocab, &[0, 3, 6]);
        assert!(kl.abs() < 1e-6 && d.abs() < 1e-6, "{kl} {d}");
    }

    #[test]
    fn kl_matches_a_hand_computed_case() {
        // p = (0.5, 0.5), q = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3).
        let lp = vec![0.5f32.ln(), 0.5f32.ln()];
        let cand = vec![0.25f32.ln(), 0.75f32.ln()];
        let (kl, d) = kl_and_dnll(&lp, &cand, 2, &[0]);
        let want = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl - want).abs() < 1e-6, "{kl} vs {want}");
        assert!((d - (4f64.ln() - 2f64.ln())).abs() < 1e-6);
    }
}
