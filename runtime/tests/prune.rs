//! Token pruning: schedule, importance, selection rules and bookkeeping on hand-made inputs.

use runtime::prune::{self, PruneState};

#[test]
fn gamma_reaches_beta_over_m_layers() {
    for (beta, m) in [(0.3, 15), (0.5, 1), (0.9, 4), (0.0, 5)] {
        let g = prune::gamma(beta, m);
        assert!((0.0..1.0).contains(&g));
        assert!(((1.0 - g).powi(m as i32) - (1.0 - beta)).abs() < 1e-12, "beta {beta} m {m}: gamma {g}");
    }
    assert_eq!(prune::gamma(0.3, 0), 0.0);
    let s = prune::schedule(6, 4, 0.19);
    assert_eq!(&s[..4], &[0.0; 4]);
    assert!((s[4] - 0.1).abs() < 1e-12 && s[4] == s[5]);
}

#[test]
fn importance_sums_heads_on_key_zero() {
    // 2 heads, 3 rows, 3 keys: [head][row][key].
    let probs = [
        1.0, 0.0, 0.0, /* */ 0.7, 0.3, 0.0, /* */ 0.2, 0.5, 0.3, // head 0
        1.0, 0.0, 0.0, /* */ 0.1, 0.9, 0.0, /* */ 0.6, 0.2, 0.2, // head 1
    ];
    let imp = prune::importance(&probs, 2, 3, 3);
    assert_eq!(imp, vec![2.0, 0.8, 0.8]);
}

#[test]
fn drops_the_lowest_with_ties_by_index_and_protects_ends() {
    let s = PruneState::new(10, 0..10);
    // Token 0 and token 9 (last) have the lowest scores but are protected.
    let imp = [0.0, 0.5, 0.2, 0.9, 0.2, 0.7, 0.1, 0.8, 0.6, 0.0];
    let sel = s.select(&imp, 0.3, 0.0);
    // round(0.3 * 10) = 3: token 6 (0.1), then the 0.2 tie broken by index: 2, then 4.
    assert_eq!(sel.drop, vec![2, 4, 6]);
    assert_eq!(sel.keep, vec![0, 1, 3, 5, 7, 8, 9]);
    assert!(sel.low_bit.iter().all(|&b| !b));
    assert_eq!(sel.keep_mask(10), vec![true, true, false, true, false, true, false, true, true, true]);
}

#[test]
fn never_drops_more_than_the_eligible_tokens() {
    let s = PruneState::new(3, 0..3);
    let sel = s.select(&[0.1, 0.2, 0.3], 0.99, 0.0);
    assert_eq!(sel.drop, vec![1]);
    // Two tokens: both protected.
    let s = PruneState::new(2, 0..2);
    assert!(s.select(&[0.5, 0.1], 0.9, 0.9).drop.is_empty());
    assert_eq!(PruneState::new(0, 0..0).select(&[], 0.5, 0.5).keep, Vec::<usize>::new());
}

#[test]
fn only_the_prunable_range_is_touched() {
    // Perplexity protocol: 8-token chunk, first half (0..4) prunable; the scored half has
    // the lowest scores but must survive. Last prunable token (3) is protected as well.
    let s = PruneState::new(8, 0..4);
    let imp = [0.9, 0.5, 0.4, 0.1, 0.0, 0.0, 0.0, 0.0];
    let sel = s.select(&imp, 0.5, 0.0);
    // round(0.5 * 4) = 2, but only tokens 1 and 2 are eligible.
    assert_eq!(sel.drop, vec![1, 2]);
    assert!(s.eligible(1) && !s.eligible(0) && !s.eligible(3) && !s.eligible(4));
}

#[test]
fn low_bit_set_takes_the_next_lowest_and_only_grows() {
    let mut s = PruneState::new(10, 0..10);
    let imp1 = [0.0, 0.5, 0.2, 0.9, 0.3, 0.7, 0.1, 0.8, 0.6, 0.0];
    // Drop 1 (token 6), then low-bit round(0.3 * 9) = 3: tokens 2 (0.2), 4 (0.3), 1 (0.5).
    let sel = s.select(&imp1, 0.1, 0.3);
    assert_eq!(sel.drop, vec![6]);
    let low: Vec<usize> = sel.keep.iter().zip(&sel.low_bit).filter(|(_, &b)| b).map(|(&r, _)| r).collect();
    assert_eq!(low, vec![1, 2, 4]);
    s.apply(&sel);
    assert_eq!(s.kept(), &[0, 1, 2, 3, 4, 5, 7, 8, 9]);

    // Next layer: token 2 (low-bit) is now the least important and gets dropped; the set
    // refills to round(0.5 * 8) = 4 with the next-lowest, and earlier members stay even
    // when now important (token 1 scores 0.95).
    let imp2 = [0.0, 0.95, 0.05, 0.9, 0.3, 0.2, 0.8, 0.6, 0.0];
    let sel = s.select(&imp2, 0.1, 0.5);
    assert_eq!(sel.drop, vec![2]);
    s.apply(&sel);
    assert_eq!(s.kept(), &[0, 1, 3, 4, 5, 7, 8, 9]);
    let low: Vec<usize> = s.kept().iter().zip(s.low_bit()).filter(|(_, &b)| b).map(|(&o, _)| o).collect();
    assert_eq!(low, vec![1, 4, 5, 8]);

    // A smaller ratio later never shrinks the set.
    let sel = s.select(&[0.0; 8], 0.0, 0.1);
    assert_eq!(sel.low_bit.iter().filter(|&&b| b).count(), 4);
}

#[test]
fn low_bit_skips_protected_and_unprunable_tokens() {
    let s = PruneState::new(6, 0..4);
    let sel = s.select(&[0.0; 6], 0.0, 0.99);
    // Eligible are 1 and 2 only (0 and 3 protected, 4..6 scored).
    assert_eq!(sel.low_bit, vec![false, true, true, false, false, false]);
}

#[test]
fn nan_importance_is_treated_as_most_important() {
    let s = PruneState::new(5, 0..5);
    let sel = s.select(&[0.0, f32::NAN, 0.3, 0.2, 0.0], 0.4, 0.0);
    assert_eq!(sel.drop, vec![2, 3]);
}

#[test]
fn gather_rows_keeps_rows_in_order() {
    let mut x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    prune::gather_rows(&mut x, 3, &[1, 3]);
    assert_eq!(x, vec![3.0, 4.0, 5.0, 9.0, 10.0, 11.0]);
}
