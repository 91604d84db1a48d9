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
    // The fraction first, as PromQL computes it, and never past the bucket's bounds: a p95
    // that fills its bucket exactly must come out as the bound itself, not one rounding step
    // above it (which would fail a `max_p95` set on that bound).
    let fraction = (rank - below) / in_bucket;
    Some((lower + (upper - lower) * fraction).min(upper).max(lower))
}

#[cfg(test)]
mod tests;
