//! Quantiles from cumulative histogram buckets, interpolated the way PromQL's
//! `histogram_quantile` does.

/// The `q` quantile (0..=1) of a histogram given as `(upper bound, cumulative count)` pairs
/// sorted by bound, the last bound `+Inf`. `None` when the histogram is empty or malformed.
///
/// As in PromQL: the rank is `q * total`; the quantile lies in the first bucket whose count
/// reaches the rank, linearly interpolated between the bucket's lower bound (the previous
/// bound, or 0 for the first bucket if its bound is positive) and its upper bound. A rank in
/// the `+Inf` bucket yields the largest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || buckets.len() < 2 {
        return None;
    }
    let (last_bound, total) = *buckets.last()?;
    // `total` may be NaN: only a positive number is a usable total.
    if last_bound != f64::INFINITY || total.is_nan() || total <= 0.0 {
        return None;
    }
    // Counts must not decrease (a torn scrape could make them); PromQL fixes them up likewise.
    let mut counts: Vec<f64> = buckets.iter().map(|(_, c)| *c).collect();
    for i in 1..counts.len() {
        if counts[i] < counts[i - 1] {
            counts[i] = counts[i - 1];
        }
    }
    let total = counts[counts.len() - 1];
    let rank = q * total;
    let index = counts.iter().position(|&c| c >= rank)?;
    if index == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    let upper = buckets[index].0;
    let (lower, below) = if index == 0 {
        if upper <= 0.0 {
            return Some(upper);
        }
        (0.0, 0.0)
    } else {
        (buckets[index - 1].0, counts[index - 1])
    };
    let in_bucket = counts[index] - below;
    if in_bucket <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / in_bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn interpolates_inside_the_bucket_like_promql() {
        // 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.2], 10 in (0.2, 0.5].
        let buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (INF, 100.0)];
        // rank 95 lies in (0.2, 0.5]: 0.2 + 0.3 * (95 - 90) / 10 = 0.35
        assert!((histogram_quantile(0.95, &buckets).expect("value") - 0.35).abs() < 1e-12);
        // rank 50 is exactly the first bucket's count: its upper bound.
        assert!((histogram_quantile(0.5, &buckets).expect("value") - 0.1).abs() < 1e-12);
        // rank 25 in the first bucket, interpolated from 0: 0.1 * 25 / 50 = 0.05
        assert!((histogram_quantile(0.25, &buckets).expect("value") - 0.05).abs() < 1e-12);
        // rank 70: 0.1 + 0.1 * 20 / 40 = 0.15
        assert!((histogram_quantile(0.7, &buckets).expect("value") - 0.15).abs() < 1e-12);
    }

    #[test]
    fn rank_in_the_inf_bucket_gives_the_largest_finite_bound() {
        let buckets = [(0.1, 10.0), (0.5, 20.0), (INF, 100.0)];
        assert_eq!(histogram_quantile(0.95, &buckets), Some(0.5));
    }

    #[test]
    fn empty_or_malformed_histograms_have_no_quantile() {
        assert_eq!(
            histogram_quantile(0.95, &[(0.1, 0.0), (INF, 0.0)]),
            None,
            "empty"
        );
        assert_eq!(
            histogram_quantile(0.95, &[(0.1, 5.0), (0.2, 7.0)]),
            None,
            "no +Inf"
        );
        assert_eq!(
            histogram_quantile(0.95, &[(INF, 5.0)]),
            None,
            "no finite bucket"
        );
        assert_eq!(
            histogram_quantile(1.5, &[(0.1, 5.0), (INF, 5.0)]),
            None,
            "q out of range"
        );
        assert_eq!(histogram_quantile(0.95, &[]), None);
    }

    #[test]
    fn non_monotonic_counts_are_repaired() {
        let buckets = [(0.1, 50.0), (0.2, 40.0), (0.5, 100.0), (INF, 100.0)];
        // Repaired to 50, 50, 100, 100: rank 95 in (0.2, 0.5]: 0.2 + 0.3 * 45/50 = 0.47
        assert!((histogram_quantile(0.95, &buckets).expect("value") - 0.47).abs() < 1e-12);
    }

    #[test]
    fn fine_buckets_keep_p95_within_ten_percent() {
        // Latencies uniform in 5 ms .. 2 s, bucketed with the proxy's ~1.09x bounds.
        let mut bounds: Vec<f64> = (0..=104)
            .map(|i| 0.001 * 10f64.powf(f64::from(i) / 26.0))
            .collect();
        bounds.push(INF);
        let samples: Vec<f64> = (0..10_000)
            .map(|i| 0.005 + 1.995 * f64::from(i) / 10_000.0)
            .collect();
        let buckets: Vec<(f64, f64)> = bounds
            .iter()
            .map(|b| (*b, samples.iter().filter(|s| *s <= b).count() as f64))
            .collect();
        let truth = samples[(0.95 * samples.len() as f64) as usize];
        let estimate = histogram_quantile(0.95, &buckets).expect("value");
        assert!(
            (estimate - truth).abs() / truth < 0.10,
            "estimate {estimate} truth {truth}"
        );
    }
}
