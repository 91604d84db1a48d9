//! Counters over one analysis interval: the difference of two scrapes per series (a counter
//! that went down means the proxy restarted: its new value is the increase), summed over all
//! targets, reduced to requests, failures and p95 per backend.

use std::collections::BTreeMap;

use sluice_config::metric_names::{
    BACKEND_FAILOVERS, LABEL_BACKEND, LABEL_CODE, LABEL_ROUTE, REQUESTS_TOTAL,
    REQUEST_DURATION_BUCKET,
};

use crate::exposition::Sample;
use crate::quantile::histogram_quantile;

/// One counter series of a backend.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Series {
    /// `sluice_requests_total` for one status code.
    Responses(String),
    /// `sluice_backend_failovers_total`.
    Failovers,
    /// One `le` bucket of the duration histogram (the bound as written).
    Bucket(String),
}

/// The counter series of one backend of one route, from one scrape (or their increase).
pub type SeriesMap = BTreeMap<Series, f64>;

/// What one backend did during an interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendWindow {
    /// Requests the split gave this backend: responses plus failovers away from it.
    pub requests: f64,
    /// Of those, 5xx responses (proxy-generated ones included) plus failovers.
    pub failed: f64,
    /// 95th percentile of time to response headers, seconds; `None` without data.
    pub p95: Option<f64>,
}

/// Canary and stable over the same interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// The canary backend.
    pub canary: BackendWindow,
    /// The stable backend.
    pub stable: BackendWindow,
}

/// The series of `backend` on `route` in one scrape.
pub fn extract(samples: &[Sample], route: &str, backend: &str) -> SeriesMap {
    let mut series = SeriesMap::new();
    for sample in samples {
        if sample.label(LABEL_ROUTE) != Some(route) || sample.label(LABEL_BACKEND) != Some(backend)
        {
            continue;
        }
        let key = match sample.name.as_str() {
            REQUESTS_TOTAL => match sample.label(LABEL_CODE) {
                Some(code) => Series::Responses(code.to_string()),
                None => continue,
            },
            BACKEND_FAILOVERS => Series::Failovers,
            REQUEST_DURATION_BUCKET => match sample.label("le") {
                Some(le) => Series::Bucket(le.to_string()),
                None => continue,
            },
            _ => continue,
        };
        *series.entry(key).or_default() += sample.value;
    }
    series
}

/// The increase of every series of one target from `before` to `after`. When any series went
/// down, the proxy restarted in between and every counter started over: the increase is the
/// new value of each series (judging series by series would under-count the rare ones that
/// happened to climb back above their old value). Never negative; a NaN stays NaN so the
/// check sees an unusable measurement instead of a zero.
pub fn increase(before: &SeriesMap, after: &SeriesMap) -> SeriesMap {
    let restarted = after
        .iter()
        .any(|(key, now)| before.get(key).is_some_and(|then| now < then))
        || before.keys().any(|key| !after.contains_key(key));
    after
        .iter()
        .map(|(key, &now)| {
            let then = if restarted {
                0.0
            } else {
                before.get(key).copied().unwrap_or(0.0)
            };
            let grew = now - then;
            (
                key.clone(),
                if grew.is_nan() { grew } else { grew.max(0.0) },
            )
        })
        .collect()
}

/// Adds `more` into `total`, series by series (summing targets).
pub fn accumulate(total: &mut SeriesMap, more: &SeriesMap) {
    for (key, value) in more {
        *total.entry(key.clone()).or_default() += value;
    }
}

impl BackendWindow {
    /// Reduces the summed increases of a backend's series.
    pub fn from_series(series: &SeriesMap) -> Self {
        let mut responses = 0.0;
        let mut errors = 0.0;
        let mut failovers = 0.0;
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for (key, &value) in series {
            match key {
                Series::Responses(code) => {
                    responses += value;
                    if code.starts_with('5') {
                        errors += value;
                    }
                }
                Series::Failovers => failovers += value,
                Series::Bucket(le) => {
                    let bound = match le.as_str() {
                        "+Inf" | "Inf" => f64::INFINITY,
                        other => match other.parse() {
                            Ok(b) => b,
                            Err(_) => continue,
                        },
                    };
                    buckets.push((bound, value));
                }
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self {
            requests: responses + failovers,
            failed: errors + failovers,
            p95: histogram_quantile(0.95, &buckets),
        }
    }

    /// Failed requests over requests; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.failed / self.requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;

    const SCRAPE_1: &str = r#"
sluice_requests_total{route="default",backend="canary",code="200"} 90
sluice_requests_total{route="default",backend="canary",code="503"} 10
sluice_requests_total{route="default",backend="stable",code="200"} 900
sluice_requests_total{route="other",backend="canary",code="500"} 77
sluice_backend_failovers_total{route="default",backend="canary"} 0
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="0.1"} 80
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="0.5"} 100
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="+Inf"} 100
"#;

    const SCRAPE_2: &str = r#"
sluice_requests_total{route="default",backend="canary",code="200"} 180
sluice_requests_total{route="default",backend="canary",code="503"} 30
sluice_requests_total{route="default",backend="stable",code="200"} 1800
sluice_backend_failovers_total{route="default",backend="canary"} 5
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="0.1"} 150
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="0.5"} 210
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="+Inf"} 210
"#;

    fn series(text: &str, backend: &str) -> SeriesMap {
        extract(&parse(text).expect("valid"), "default", backend)
    }

    #[test]
    fn an_interval_is_the_difference_of_two_scrapes() {
        let window = BackendWindow::from_series(&increase(
            &series(SCRAPE_1, "canary"),
            &series(SCRAPE_2, "canary"),
        ));
        // 90 + 20 responses + 5 failovers; 20 errors + 5 failovers.
        assert_eq!(window.requests, 115.0);
        assert_eq!(window.failed, 25.0);
        // Buckets grew 70 (≤0.1) and 110 (≤0.5): rank 104.5 lies in (0.1, 0.5].
        let p95 = window.p95.expect("p95");
        assert!(
            (p95 - (0.1 + 0.4 * (104.5 - 70.0) / 40.0)).abs() < 1e-9,
            "{p95}"
        );
    }

    #[test]
    fn a_restarted_proxy_counts_from_zero_not_negative() {
        let after_restart = r#"
sluice_requests_total{route="default",backend="canary",code="200"} 12
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="0.1"} 12
sluice_request_duration_seconds_bucket{route="default",backend="canary",le="+Inf"} 12
"#;
        let window = BackendWindow::from_series(&increase(
            &series(SCRAPE_2, "canary"),
            &series(after_restart, "canary"),
        ));
        assert_eq!(window.requests, 12.0);
        assert_eq!(window.failed, 0.0);
        assert!(window.p95.is_some_and(|p| p > 0.0 && p <= 0.1));
    }

    #[test]
    fn a_restart_counts_every_series_from_zero() {
        let mut before = SeriesMap::new();
        before.insert(Series::Responses("200".into()), 1000.0);
        before.insert(Series::Responses("500".into()), 3.0);
        let mut after = SeriesMap::new();
        after.insert(Series::Responses("200".into()), 40.0);
        // The rare series climbed back above its old value after the restart.
        after.insert(Series::Responses("500".into()), 5.0);
        let grew = increase(&before, &after);
        assert_eq!(grew[&Series::Responses("500".into())], 5.0, "not 2");
        assert_eq!(grew[&Series::Responses("200".into())], 40.0);
    }

    #[test]
    fn nan_samples_stay_nan() {
        let mut before = SeriesMap::new();
        before.insert(Series::Responses("500".into()), 3.0);
        let mut after = SeriesMap::new();
        after.insert(Series::Responses("500".into()), f64::NAN);
        let window = BackendWindow::from_series(&increase(&before, &after));
        assert!(window.failed.is_nan() && window.requests.is_nan());
    }

    #[test]
    fn targets_are_summed() {
        let mut total = SeriesMap::new();
        accumulate(
            &mut total,
            &increase(&series(SCRAPE_1, "canary"), &series(SCRAPE_2, "canary")),
        );
        accumulate(
            &mut total,
            &increase(&SeriesMap::new(), &series(SCRAPE_1, "canary")),
        );
        let window = BackendWindow::from_series(&total);
        assert_eq!(window.requests, 115.0 + 100.0);
        assert_eq!(
            window.error_rate().map(|r| (r * 1000.0).round()),
            Some((35.0 / 215.0 * 1000.0_f64).round())
        );
    }

    #[test]
    fn no_requests_no_rate() {
        assert_eq!(BackendWindow::default().error_rate(), None);
        assert_eq!(BackendWindow::from_series(&SeriesMap::new()).p95, None);
    }
}
