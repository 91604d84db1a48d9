//! Counters over one analysis interval: the difference of two scrapes per series (a counter
//! that went down means the proxy restarted: its new value is the increase), summed over all
//! targets, reduced to requests, failures and p95 per backend (or per mirror upstream).

use std::collections::BTreeMap;

use sluice_config::metric_names::{
    BACKEND_FAILOVERS, GRPC_RESPONSES, LABEL_BACKEND, LABEL_CODE, LABEL_GRPC_STATUS, LABEL_ROUTE,
    LABEL_UPSTREAM, MIRROR_DURATION_BUCKET, MIRROR_GRPC_RESPONSES, MIRROR_REQUESTS, REQUESTS_TOTAL,
    REQUEST_DURATION_BUCKET,
};
use sluice_config::GrpcCode;

use crate::exposition::Sample;
use crate::quantile::histogram_quantile;

/// Which traffic of an upstream a window measures: what the route's split gave it, or the
/// copies the route mirrored to it (a `shadow` step's canary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Users' requests the split gave a backend: `sluice_requests_total{route,backend}`, its
    /// failovers, duration histogram and gRPC statuses.
    #[default]
    Backend,
    /// The route's mirrored copies to an upstream: `sluice_mirror_requests_total{route,upstream}`,
    /// its duration histogram and gRPC statuses. Copies are never failed over.
    Mirror,
}

/// One counter series of a backend.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Series {
    /// `sluice_requests_total` for one status code.
    Responses(String),
    /// `sluice_backend_failovers_total`.
    Failovers,
    /// One `le` bucket of the duration histogram (the bound as written).
    Bucket(String),
    /// `sluice_grpc_responses_total` for one `grpc_status` (a name such as `UNAVAILABLE`).
    GrpcStatus(String),
}

/// The counter series of one backend of one route, from one scrape (or their increase).
pub type SeriesMap = BTreeMap<Series, f64>;

/// What one backend did during an interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendWindow {
    /// Requests the split gave this backend: responses plus failovers away from it.
    pub requests: f64,
    /// Of those, 5xx responses (proxy-generated ones included), failovers, and gRPC
    /// responses whose `grpc-status` is one of the rollout's `grpc_error_codes`.
    pub failed: f64,
    /// 95th percentile of time to response headers, seconds; `None` without data.
    pub p95: Option<f64>,
}

/// Canary and stable over the same interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    /// The canary backend (in a shadow step: the route's mirrored copies to it).
    pub canary: BackendWindow,
    /// The stable backend.
    pub stable: BackendWindow,
}

impl Subject {
    /// The label that names the upstream in this subject's series.
    pub fn label(self) -> &'static str {
        match self {
            Self::Backend => LABEL_BACKEND,
            Self::Mirror => LABEL_UPSTREAM,
        }
    }

    /// The responses counter, by `code`.
    pub fn requests(self) -> &'static str {
        match self {
            Self::Backend => REQUESTS_TOTAL,
            Self::Mirror => MIRROR_REQUESTS,
        }
    }

    /// The cumulative buckets of the duration histogram.
    pub fn duration_bucket(self) -> &'static str {
        match self {
            Self::Backend => REQUEST_DURATION_BUCKET,
            Self::Mirror => MIRROR_DURATION_BUCKET,
        }
    }

    /// The gRPC responses counter, by `grpc_status`.
    pub fn grpc_responses(self) -> &'static str {
        match self {
            Self::Backend => GRPC_RESPONSES,
            Self::Mirror => MIRROR_GRPC_RESPONSES,
        }
    }

    /// The failovers counter: requests the split gave the backend that went elsewhere. A
    /// mirrored copy has none.
    pub fn failovers(self) -> Option<&'static str> {
        match self {
            Self::Backend => Some(BACKEND_FAILOVERS),
            Self::Mirror => None,
        }
    }
}

/// The series of upstream `name` as `subject` on `route` in one scrape.
pub fn extract(samples: &[Sample], route: &str, subject: Subject, name: &str) -> SeriesMap {
    let mut series = SeriesMap::new();
    for sample in samples {
        if sample.label(LABEL_ROUTE) != Some(route) || sample.label(subject.label()) != Some(name) {
            continue;
        }
        let metric = sample.name.as_str();
        let key = if metric == subject.requests() {
            match sample.label(LABEL_CODE) {
                Some(code) => Series::Responses(code.to_string()),
                None => continue,
            }
        } else if Some(metric) == subject.failovers() {
            Series::Failovers
        } else if metric == subject.duration_bucket() {
            match sample.label("le") {
                Some(le) => Series::Bucket(le.to_string()),
                None => continue,
            }
        } else if metric == subject.grpc_responses() {
            match sample.label(LABEL_GRPC_STATUS) {
                Some(status) => Series::GrpcStatus(status.to_string()),
                None => continue,
            }
        } else {
            continue;
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
    /// Reduces the summed increases of a backend's series; gRPC responses with a status in
    /// `grpc_errors` count as failed.
    pub fn from_series(series: &SeriesMap, grpc_errors: &[GrpcCode]) -> Self {
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
                // Already counted as responses (HTTP 200): an error here is a failure, not
                // one more request.
                Series::GrpcStatus(status) => {
                    if GrpcCode::parse(status).is_some_and(|c| grpc_errors.contains(&c)) {
                        errors += value;
                    }
                }
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
    use sluice_config::DEFAULT_GRPC_ERROR_CODES;

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
        extract(
            &parse(text).expect("valid"),
            "default",
            Subject::Backend,
            backend,
        )
    }

    /// The window of `series` with the default gRPC error codes.
    fn window_of(series: &SeriesMap) -> BackendWindow {
        BackendWindow::from_series(series, &DEFAULT_GRPC_ERROR_CODES)
    }

    #[test]
    fn an_interval_is_the_difference_of_two_scrapes() {
        let window = window_of(&increase(
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
        let window = window_of(&increase(
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
        let window = window_of(&increase(&before, &after));
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
        let window = window_of(&total);
        assert_eq!(window.requests, 115.0 + 100.0);
        assert_eq!(
            window.error_rate().map(|r| (r * 1000.0).round()),
            Some((35.0 / 215.0 * 1000.0_f64).round())
        );
    }

    #[test]
    fn no_requests_no_rate() {
        assert_eq!(BackendWindow::default().error_rate(), None);
        assert_eq!(window_of(&SeriesMap::new()).p95, None);
    }

    const GRPC_1: &str = r#"
sluice_requests_total{route="default",backend="canary",code="200"} 100
sluice_grpc_responses_total{route="default",backend="canary",grpc_status="OK"} 80
sluice_grpc_responses_total{route="default",backend="canary",grpc_status="UNAVAILABLE"} 10
sluice_grpc_responses_total{route="default",backend="canary",grpc_status="NOT_FOUND"} 10
"#;

    const GRPC_2: &str = r#"
sluice_requests_total{route="default",backend="canary",code="200"} 300
sluice_requests_total{route="default",backend="canary",code="503"} 10
sluice_requests_total{route="default",backend="stable",code="200"} 900
sluice_grpc_responses_total{route="default",backend="canary",grpc_status="OK"} 230
sluice_grpc_responses_total{route="default",backend="canary",grpc_status="UNAVAILABLE"} 40
sluice_grpc_responses_total{route="default",backend="canary",grpc_status="NOT_FOUND"} 30
sluice_grpc_responses_total{route="default",backend="stable",grpc_status="INTERNAL"} 900
sluice_mirror_grpc_responses_total{route="default",upstream="canary",grpc_status="INTERNAL"} 500
"#;

    #[test]
    fn grpc_errors_are_failures_of_requests_already_counted() {
        let grew = increase(&series(GRPC_1, "canary"), &series(GRPC_2, "canary"));
        assert_eq!(grew[&Series::GrpcStatus("UNAVAILABLE".into())], 30.0);
        // 200 answers with HTTP 200 (150 OK, 30 UNAVAILABLE, 20 NOT_FOUND) and 10 with 503:
        // 210 requests, not 410. Stable's and the mirror's statuses are not the canary's.
        let window = window_of(&grew);
        assert_eq!((window.requests, window.failed), (210.0, 10.0 + 30.0));
        let codes = ["NOT_FOUND", "14"].map(|c| GrpcCode::parse(c).expect("a gRPC status"));
        let chosen = BackendWindow::from_series(&grew, &codes);
        assert_eq!(
            (chosen.requests, chosen.failed),
            (210.0, 10.0 + 30.0 + 20.0)
        );
        let none = BackendWindow::from_series(&grew, &[]);
        assert_eq!((none.requests, none.failed), (210.0, 10.0));
    }

    const MIRRORED: &str = r#"
sluice_requests_total{route="default",backend="canary",code="200"} 500
sluice_backend_failovers_total{route="default",backend="canary"} 7
sluice_mirror_requests_total{route="default",upstream="canary",code="200"} 40
sluice_mirror_requests_total{route="default",upstream="canary",code="502"} 2
sluice_mirror_requests_total{route="default",upstream="other",code="500"} 99
sluice_mirror_requests_total{route="other",upstream="canary",code="500"} 99
sluice_mirror_grpc_responses_total{route="default",upstream="canary",grpc_status="OK"} 30
sluice_mirror_grpc_responses_total{route="default",upstream="canary",grpc_status="INTERNAL"} 10
sluice_mirror_dropped_total{route="default",upstream="canary",reason="overloaded"} 3
sluice_mirror_request_duration_seconds_bucket{route="default",upstream="canary",le="0.1"} 30
sluice_mirror_request_duration_seconds_bucket{route="default",upstream="canary",le="0.5"} 42
sluice_mirror_request_duration_seconds_bucket{route="default",upstream="canary",le="+Inf"} 42
"#;

    #[test]
    fn the_mirror_subject_reads_the_mirror_series_of_the_upstream() {
        let samples = parse(MIRRORED).expect("valid");
        let mirror = window_of(&extract(&samples, "default", Subject::Mirror, "canary"));
        // 42 copies answered, 2 with 502 and 10 with INTERNAL; no failovers, drops ignored.
        assert_eq!((mirror.requests, mirror.failed), (42.0, 2.0 + 10.0));
        // Rank 39.9 of 42 lies in (0.1, 0.5], which holds 12.
        let p95 = mirror.p95.expect("p95");
        assert!(
            (p95 - (0.1 + 0.4 * (39.9 - 30.0) / 12.0)).abs() < 1e-9,
            "{p95}"
        );
        let backend = window_of(&extract(&samples, "default", Subject::Backend, "canary"));
        assert_eq!((backend.requests, backend.failed), (507.0, 7.0));
        assert_eq!(backend.p95, None);
    }
}
