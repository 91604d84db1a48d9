//! `histogram_quantile` (sluice-control) on arbitrary buckets never panics; on well-formed
//! histograms (rising bounds ending in `+Inf`, rising counts) the quantile exists, lies between
//! 0 (or the first bound) and the largest finite bound, and never falls as `q` rises.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

// Formatted with its own crate (rustfmt would look for its `mod tests` here).
#[rustfmt::skip]
#[path = "../../control/src/quantile.rs"]
mod quantile;

use quantile::histogram_quantile;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Anything at all.
    raw: Vec<(f64, f64)>,
    raw_q: f64,
    /// A well-formed histogram: bound steps (thousandths) and count steps.
    steps: Vec<(u16, u16)>,
    first_bound: i16,
    q1: u16,
    q2: u16,
}

fuzz_target!(|input: Input| {
    let _ = histogram_quantile(input.raw_q, &input.raw);

    if input.steps.is_empty() || input.steps.len() > 64 {
        return;
    }
    let mut bound = f64::from(input.first_bound) / 1000.0;
    let mut count = 0.0;
    let mut buckets = Vec::new();
    for (i, (bound_step, count_step)) in input.steps.iter().enumerate() {
        if i > 0 {
            bound += f64::from(*bound_step) / 1000.0 + 0.001;
        }
        count += f64::from(*count_step);
        buckets.push((bound, count));
    }
    buckets.push((f64::INFINITY, count));
    let q1 = f64::from(input.q1) / f64::from(u16::MAX);
    let q2 = f64::from(input.q2) / f64::from(u16::MAX);
    let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
    let at_lo = histogram_quantile(lo, &buckets);
    let at_hi = histogram_quantile(hi, &buckets);
    if count == 0.0 {
        assert_eq!(
            (at_lo, at_hi),
            (None, None),
            "an empty histogram has no quantile"
        );
        return;
    }
    let (Some(at_lo), Some(at_hi)) = (at_lo, at_hi) else {
        panic!("no quantile of a well-formed histogram: {buckets:?} at {lo}, {hi}");
    };
    let largest = buckets[buckets.len() - 2].0;
    let smallest = buckets[0].0.min(0.0);
    for v in [at_lo, at_hi] {
        assert!(
            v.is_finite() && v >= smallest && v <= largest,
            "{v} outside {smallest}..={largest} for {buckets:?}"
        );
    }
    assert!(
        at_lo <= at_hi + 1e-9 * at_hi.abs().max(1.0),
        "q {lo} -> {at_lo} but q {hi} -> {at_hi} for {buckets:?}"
    );
});
