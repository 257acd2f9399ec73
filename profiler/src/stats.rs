//! Timing statistics. Timings on a shared machine have long right tails (preemption, other
//! tenants), so everything reports order statistics: the median as the value, p10/p90 as the
//! spread, and the coefficient of variation only as a noise flag.

use serde::{Deserialize, Serialize};

/// The `p`-th percentile (`p` in 0..=100) of `xs`, linearly interpolated between the two
/// nearest ranks (the same definition as numpy's default). `None` for an empty slice or a
/// `p` outside 0..=100; NaNs are not expected in timings and sort last.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    Some(percentile_sorted(&v, p))
}

fn percentile_sorted(v: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

pub fn median(xs: &[f64]) -> Option<f64> {
    percentile(xs, 50.0)
}

pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// Sample standard deviation (n - 1 in the denominator); `None` below two values.
pub fn stddev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

/// Coefficient of variation, stddev / mean; `None` below two values or for a zero mean.
pub fn cv(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    if m == 0.0 {
        return None;
    }
    Some(stddev(xs)? / m)
}

/// The summary every measurement record carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub samples: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Absent with fewer than two samples.
    pub cv: Option<f64>,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(xs: &[f64]) -> Option<Summary> {
        if xs.is_empty() {
            return None;
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            samples: v.len(),
            median: percentile_sorted(&v, 50.0),
            p10: percentile_sorted(&v, 10.0),
            p90: percentile_sorted(&v, 90.0),
            min: v[0],
            max: v[v.len() - 1],
            mean: mean(&v)?,
            cv: cv(&v),
        })
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn median_odd_even_and_unsorted() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1..=10], q): 10 -> 1.9, 90 -> 9.1, 25 -> 3.25, 0 -> 1, 100 -> 10.
        let xs: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert!(close(percentile(&xs, 10.0).unwrap(), 1.9));
        assert!(close(percentile(&xs, 90.0).unwrap(), 9.1));
        assert!(close(percentile(&xs, 25.0).unwrap(), 3.25));
        assert_eq!(percentile(&xs, 0.0), Some(1.0));
        assert_eq!(percentile(&xs, 100.0), Some(10.0));
        assert_eq!(percentile(&xs, 101.0), None);
        assert_eq!(percentile(&xs, -1.0), None);
    }

    #[test]
    fn stddev_and_cv_known_values() {
        // Sample stddev of 2,4,4,4,5,5,7,9 is sqrt(32/7).
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert!(close(stddev(&xs).unwrap(), (32.0f64 / 7.0).sqrt()));
        assert!(close(cv(&xs).unwrap(), (32.0f64 / 7.0).sqrt() / 5.0));
        assert_eq!(stddev(&[1.0]), None);
        assert_eq!(cv(&[0.0, 0.0]), None);
    }

    #[test]
    fn summary_known_values() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.samples, s.median, s.min, s.max, s.mean), (5, 3.0, 1.0, 5.0, 3.0));
        assert!(close(s.p10, 1.4) && close(s.p90, 4.6));
        assert!(close(s.cv.unwrap(), 2.5f64.sqrt() / 3.0));
        assert!(Summary::of(&[2.0]).unwrap().cv.is_none());
        assert!(Summary::of(&[]).is_none());
    }
}
