//! The proxy's metrics: the Prometheus recorder and pre-resolved handles so the request path
//! never formats a label; the names, labels and buckets (the contract `sluice-control` reads)
//! come from [`sluice_config::metric_names`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub use sluice_config::metric_names::{
    ACTIVE_CONNECTIONS, BACKEND_FAILOVERS, CONFIG_GENERATION, CONFIG_RELOADS, CONNECTIONS_REJECTED,
    DURATION_BUCKETS, ENDPOINT_HEALTHY, FAULTS_INJECTED, GRPC_RESPONSES, LABEL_BACKEND, LABEL_CODE,
    LABEL_ENDPOINT, LABEL_GRPC_STATUS, LABEL_KIND, LABEL_LISTENER, LABEL_REASON, LABEL_RESULT,
    LABEL_ROUTE, LABEL_UPSTREAM, MIRROR_DROPPED, MIRROR_DURATION, MIRROR_GRPC_RESPONSES,
    MIRROR_REQUESTS, REQUESTS_TOTAL, REQUEST_DURATION, RETRIES, ROUTE_BACKEND_WEIGHT,
    STORE_CONNECTED, TLS_CERTIFICATE_EXPIRY, UPSTREAM_ERRORS, UPSTREAM_OVERLOADED,
};
use sluice_config::{GrpcCode, GRPC_CODE_NAMES};

/// The recorder of one proxy instance plus its handle for rendering. Not installed globally:
/// each instance (and each in-process test proxy) has its own.
#[derive(Debug)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    backends: Mutex<HashMap<RouteBackend, Arc<BackendMetrics>>>,
    mirrors: Mutex<HashMap<RouteBackend, Arc<BackendMetrics>>>,
    upstream_errors: Mutex<HashMap<Arc<str>, Arc<UpstreamErrorCounters>>>,
    reloads_ok: Counter,
    reloads_error: Counter,
    generation: Gauge,
}

/// A `(route, backend)` label pair.
type RouteBackend = (Arc<str>, Arc<str>);

/// Handles for one route/backend pair (or, for mirrored copies, one route/mirror upstream
/// pair), resolved once per config generation. Counters that most routes never use (gRPC
/// statuses, retries, faults, mirror drops) are registered on first use, so they appear only
/// where they happen.
#[derive(Debug)]
pub struct BackendMetrics {
    route: Arc<str>,
    backend: Arc<str>,
    family: &'static Family,
    duration: Histogram,
    failovers: Counter,
    codes: StatusCounters,
    grpc: [OnceLock<Counter>; GRPC_CODE_NAMES.len()],
    /// `ok`, `failed`, `budget_exhausted`.
    retries: [OnceLock<Counter>; 3],
    /// `abort`, `delay`.
    faults: [OnceLock<Counter>; 2],
    /// Mirror drops: `overloaded`, `body_too_large`, `body_incomplete`.
    dropped: [OnceLock<Counter>; 3],
    recorder: Arc<PrometheusRecorder>,
}

/// The metric names and target label of a [`BackendMetrics`]: real traffic by backend, or
/// mirrored copies by mirror upstream.
#[derive(Debug)]
struct Family {
    requests: &'static str,
    duration: &'static str,
    grpc: &'static str,
    target_label: &'static str,
}

static REAL: Family = Family {
    requests: REQUESTS_TOTAL,
    duration: REQUEST_DURATION,
    grpc: GRPC_RESPONSES,
    target_label: LABEL_BACKEND,
};

static MIRRORED: Family = Family {
    requests: MIRROR_REQUESTS,
    duration: MIRROR_DURATION,
    grpc: MIRROR_GRPC_RESPONSES,
    target_label: LABEL_UPSTREAM,
};

/// The `result` of a counted retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryResult {
    /// The retry got an answer that is not retried.
    Ok,
    /// The retry failed too.
    Failed,
    /// A retry was due but the route's budget had none left: not sent.
    BudgetExhausted,
}

/// The `kind` of an injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answered with the fault's status instead of being forwarded.
    Abort,
    /// Held before being forwarded.
    Delay,
}

/// Why a mirrored copy was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorDrop {
    /// The mirror already had its bound of copies in flight.
    Overloaded,
    /// The request body exceeded the mirrored body bound.
    BodyTooLarge,
    /// The request body never ended: it failed, or the client or the real upstream gave up
    /// before its end.
    BodyIncomplete,
}

/// `sluice_upstream_errors_total` handles of one backend, one per kind.
#[derive(Debug)]
pub struct UpstreamErrorCounters {
    connect: Counter,
    timeout: Counter,
    reset: Counter,
    tls: Counter,
}

/// Per-status counters: the usual codes in fixed slots, the rest behind a lock on first use.
#[derive(Debug, Default)]
struct StatusCounters {
    common: [OnceLock<Counter>; COMMON_CODES.len()],
    other: Mutex<HashMap<u16, Counter>>,
}

const COMMON_CODES: [u16; 20] = [
    200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 429, 431, 500, 502, 503,
    504,
];

impl Metrics {
    /// A fresh recorder with the duration buckets and every metric described.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(MIRROR_DURATION.into()), &DURATION_BUCKETS)
            })
            .map(PrometheusBuilder::build_recorder)
            // The bucket list is a non-empty constant, the only thing that can fail here.
            .expect("duration buckets are non-empty");
        describe(&recorder);
        let handle = recorder.handle();
        let reloads_ok = register_counter(&recorder, CONFIG_RELOADS, &[(LABEL_RESULT, "ok")]);
        let reloads_error = register_counter(&recorder, CONFIG_RELOADS, &[(LABEL_RESULT, "error")]);
        reloads_ok.increment(0);
        reloads_error.increment(0);
        let generation = recorder.register_gauge(&Key::from_name(CONFIG_GENERATION), &metadata());
        Self {
            recorder: Arc::new(recorder),
            handle,
            backends: Mutex::default(),
            mirrors: Mutex::default(),
            upstream_errors: Mutex::default(),
            reloads_ok,
            reloads_error,
            generation,
        }
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Moves recorded histogram samples into their buckets; run periodically so samples do not
    /// pile up between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The handles for `route`/`backend`, shared by every generation that has the pair.
    pub fn backend(&self, route: &Arc<str>, backend: &Arc<str>) -> Arc<BackendMetrics> {
        self.handles(&self.backends, &REAL, route, backend)
    }

    /// The handles for the copies `route` mirrors to `upstream` (`sluice_mirror_*`).
    pub fn mirror(&self, route: &Arc<str>, upstream: &Arc<str>) -> Arc<BackendMetrics> {
        self.handles(&self.mirrors, &MIRRORED, route, upstream)
    }

    fn handles(
        &self,
        map: &Mutex<HashMap<RouteBackend, Arc<BackendMetrics>>>,
        family: &'static Family,
        route: &Arc<str>,
        target: &Arc<str>,
    ) -> Arc<BackendMetrics> {
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((route.clone(), target.clone()))
            .or_insert_with(|| {
                let labels = [(LABEL_ROUTE, &**route), (family.target_label, &**target)];
                Arc::new(BackendMetrics {
                    route: route.clone(),
                    backend: target.clone(),
                    family,
                    duration: self
                        .recorder
                        .register_histogram(&key(family.duration, &labels), &metadata()),
                    // Mirrored copies never fail over: the counter is registered for real
                    // traffic only.
                    failovers: if std::ptr::eq(family, &REAL) {
                        register_counter(&self.recorder, BACKEND_FAILOVERS, &labels)
                    } else {
                        Counter::noop()
                    },
                    codes: StatusCounters::default(),
                    grpc: Default::default(),
                    retries: Default::default(),
                    faults: Default::default(),
                    dropped: Default::default(),
                    recorder: self.recorder.clone(),
                })
            })
            .clone()
    }

    /// The upstream error counters of `backend`.
    pub fn upstream_errors(&self, backend: &Arc<str>) -> Arc<UpstreamErrorCounters> {
        let mut map = self
            .upstream_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(backend.clone())
            .or_insert_with(|| {
                let counter = |kind: &str| {
                    register_counter(
                        &self.recorder,
                        UPSTREAM_ERRORS,
                        &[(LABEL_BACKEND, backend), (LABEL_KIND, kind)],
                    )
                };
                Arc::new(UpstreamErrorCounters {
                    connect: counter("connect"),
                    timeout: counter("timeout"),
                    reset: counter("reset"),
                    tls: counter("tls"),
                })
            })
            .clone()
    }

    /// `sluice_route_backend_weight{route,backend}`.
    pub fn weight_gauge(&self, route: &str, backend: &str) -> Gauge {
        self.recorder.register_gauge(
            &key(
                ROUTE_BACKEND_WEIGHT,
                &[(LABEL_ROUTE, route), (LABEL_BACKEND, backend)],
            ),
            &metadata(),
        )
    }

    /// `sluice_endpoint_healthy{backend,endpoint}`.
    pub fn endpoint_healthy(&self, backend: &str, endpoint: &str) -> Gauge {
        self.recorder.register_gauge(
            &key(
                ENDPOINT_HEALTHY,
                &[(LABEL_BACKEND, backend), (LABEL_ENDPOINT, endpoint)],
            ),
            &metadata(),
        )
    }

    /// `sluice_active_connections{listener}`.
    pub fn active_connections(&self, listener: &str) -> Gauge {
        self.recorder.register_gauge(
            &key(ACTIVE_CONNECTIONS, &[(LABEL_LISTENER, listener)]),
            &metadata(),
        )
    }

    /// `sluice_connections_rejected_total{listener}`.
    pub fn connections_rejected(&self, listener: &str) -> Counter {
        register_counter(
            &self.recorder,
            CONNECTIONS_REJECTED,
            &[(LABEL_LISTENER, listener)],
        )
    }

    /// `sluice_upstream_overloaded_total{backend}`.
    pub fn upstream_overloaded(&self, backend: &str) -> Counter {
        register_counter(
            &self.recorder,
            UPSTREAM_OVERLOADED,
            &[(LABEL_BACKEND, backend)],
        )
    }

    /// `sluice_tls_certificate_expiry_seconds{listener}`.
    pub fn tls_certificate_expiry(&self, listener: &str) -> Gauge {
        self.recorder.register_gauge(
            &key(TLS_CERTIFICATE_EXPIRY, &[(LABEL_LISTENER, listener)]),
            &metadata(),
        )
    }

    /// `sluice_store_connected` (fleet mode).
    pub fn store_connected(&self) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_name(STORE_CONNECTED), &metadata())
    }

    /// Counts one reload attempt.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.increment(1);
        } else {
            self.reloads_error.increment(1);
        }
    }

    /// Sets `sluice_config_generation`.
    pub fn set_generation(&self, generation: u64) {
        self.generation.set(generation as f64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl BackendMetrics {
    /// Records one response: its status and the time to its headers.
    #[inline]
    pub fn record(&self, status: u16, seconds: f64) {
        self.duration.record(seconds);
        self.count_status(status);
    }

    /// Counts a request that failed over from this backend to another.
    pub fn failover(&self) {
        self.failovers.increment(1);
    }

    /// Counts a gRPC response's status (`sluice_grpc_responses_total`, or the mirror's).
    pub fn grpc_status(&self, code: GrpcCode) {
        let slot = usize::from(code.number());
        self.grpc[slot]
            .get_or_init(|| self.counter(self.family.grpc, LABEL_GRPC_STATUS, code.name()))
            .increment(1);
    }

    /// Counts a retry (`sluice_retries_total`).
    pub fn retry(&self, result: RetryResult) {
        let (slot, name) = match result {
            RetryResult::Ok => (0, "ok"),
            RetryResult::Failed => (1, "failed"),
            RetryResult::BudgetExhausted => (2, "budget_exhausted"),
        };
        self.retries[slot]
            .get_or_init(|| self.counter(RETRIES, LABEL_RESULT, name))
            .increment(1);
    }

    /// Counts an injected fault (`sluice_faults_injected_total`).
    pub fn fault(&self, kind: FaultKind) {
        let (slot, name) = match kind {
            FaultKind::Abort => (0, "abort"),
            FaultKind::Delay => (1, "delay"),
        };
        self.faults[slot]
            .get_or_init(|| self.counter(FAULTS_INJECTED, LABEL_KIND, name))
            .increment(1);
    }

    /// Counts a mirrored copy not sent (`sluice_mirror_dropped_total`).
    pub fn mirror_dropped(&self, why: MirrorDrop) {
        let (slot, name) = match why {
            MirrorDrop::Overloaded => (0, "overloaded"),
            MirrorDrop::BodyTooLarge => (1, "body_too_large"),
            MirrorDrop::BodyIncomplete => (2, "body_incomplete"),
        };
        self.dropped[slot]
            .get_or_init(|| self.counter(MIRROR_DROPPED, LABEL_REASON, name))
            .increment(1);
    }

    /// A counter labelled with this pair plus `label="value"`.
    fn counter(&self, name: &'static str, label: &'static str, value: &str) -> Counter {
        register_counter(
            &self.recorder,
            name,
            &[
                (LABEL_ROUTE, &self.route),
                (self.family.target_label, &self.backend),
                (label, value),
            ],
        )
    }

    /// The route label.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The backend label.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    #[inline]
    fn count_status(&self, status: u16) {
        let register = || self.counter(self.family.requests, LABEL_CODE, &status.to_string());
        match COMMON_CODES.iter().position(|c| *c == status) {
            Some(slot) => self.codes.common[slot].get_or_init(register).increment(1),
            None => self
                .codes
                .other
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(status)
                .or_insert_with(register)
                .increment(1),
        }
    }
}

impl UpstreamErrorCounters {
    /// Counts one upstream error of `kind` (`connect`, `timeout`, `reset`, `tls`).
    pub fn count(&self, kind: UpstreamErrorKind) {
        match kind {
            UpstreamErrorKind::Connect => self.connect.increment(1),
            UpstreamErrorKind::Timeout => self.timeout.increment(1),
            UpstreamErrorKind::Reset => self.reset.increment(1),
            UpstreamErrorKind::Tls => self.tls.increment(1),
        }
    }
}

/// The `kind` label of `sluice_upstream_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// TCP connect refused, unreachable, or timed out.
    Connect,
    /// No response headers within the route timeout.
    Timeout,
    /// The connection closed or reset before or during the response.
    Reset,
    /// The TLS handshake failed.
    Tls,
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, SharedString::from(v.to_string())))
        .collect();
    Key::from_parts(name, labels)
}

fn register_counter(
    recorder: &PrometheusRecorder,
    name: &'static str,
    labels: &[(&'static str, &str)],
) -> Counter {
    recorder.register_counter(&key(name, labels), &metadata())
}

fn describe(recorder: &PrometheusRecorder) {
    let counters = [
        (
            REQUESTS_TOTAL,
            "Responses sent, by route, backend and status code (proxy-generated errors included).",
        ),
        (
            UPSTREAM_ERRORS,
            "Upstream failures by backend and kind (connect, timeout, reset, tls).",
        ),
        (
            CONFIG_RELOADS,
            "Config, weights and listener certificate reload attempts by result (ok, error).",
        ),
        (
            CONNECTIONS_REJECTED,
            "Client connections closed unread because the listener had max_connections open.",
        ),
        (
            UPSTREAM_OVERLOADED,
            "Requests answered 503 overloaded: the upstream had max_pending_requests waiting.",
        ),
        (
            BACKEND_FAILOVERS,
            "Requests sent to another backend because this one had no healthy endpoint.",
        ),
        (
            GRPC_RESPONSES,
            "Responses to gRPC requests with HTTP status 200, by grpc-status (headers or trailers).",
        ),
        (
            MIRROR_REQUESTS,
            "Answers to mirrored copies of requests (discarded), by route, mirror upstream and status.",
        ),
        (
            MIRROR_GRPC_RESPONSES,
            "Answers to mirrored copies of gRPC requests with HTTP status 200, by grpc-status.",
        ),
        (
            MIRROR_DROPPED,
            "Mirrored copies not sent, by reason (overloaded, body_too_large, body_incomplete).",
        ),
        (
            RETRIES,
            "Retries of failed attempts by result (ok, failed, budget_exhausted).",
        ),
        (
            FAULTS_INJECTED,
            "Requests given an injected fault, by kind (abort, delay).",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(name.into(), None, help.into());
    }
    let gauges = [
        (
            ROUTE_BACKEND_WEIGHT,
            "The backend weight in force for each route.",
        ),
        (
            CONFIG_GENERATION,
            "Generation of the routing config in force; rises with every applied change.",
        ),
        (ACTIVE_CONNECTIONS, "Open client connections by listener."),
        (
            TLS_CERTIFICATE_EXPIRY,
            "Unix time at which the certificate chain a TLS listener serves expires.",
        ),
        (
            ENDPOINT_HEALTHY,
            "1 when the endpoint takes traffic, 0 while ejected by outlier detection.",
        ),
        (
            STORE_CONNECTED,
            "Fleet mode: 1 while the watch on the etcd weights key is established, 0 while it reconnects.",
        ),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(name.into(), None, help.into());
    }
    recorder.describe_histogram(
        REQUEST_DURATION.into(),
        Some(Unit::Seconds),
        "Time from request start to response headers, by route and backend.".into(),
    );
    recorder.describe_histogram(
        MIRROR_DURATION.into(),
        Some(Unit::Seconds),
        "Time from sending a mirrored copy to its response headers, by route and mirror upstream."
            .into(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_histogram_has_the_shared_buckets() {
        let metrics = Metrics::new();
        metrics
            .backend(&Arc::from("default"), &Arc::from("canary"))
            .record(200, 0.012);
        let text = metrics.render();
        let buckets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sluice_request_duration_seconds_bucket{"))
            .collect();
        assert_eq!(buckets.len(), DURATION_BUCKETS.len() + 1, "{text}");
        for (line, bound) in buckets.iter().zip(DURATION_BUCKETS) {
            assert!(line.contains(&format!("le=\"{bound}\"")), "{line}");
        }
        assert!(buckets[buckets.len() - 1].contains("le=\"+Inf\""), "{text}");
        // 12 ms is counted from the 15 ms bucket on.
        assert!(
            text.contains("sluice_request_duration_seconds_bucket{route=\"default\",backend=\"canary\",le=\"0.01\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sluice_request_duration_seconds_bucket{route=\"default\",backend=\"canary\",le=\"0.015\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn records_counters_and_histograms_with_contract_names() {
        let metrics = Metrics::new();
        let pair = metrics.backend(&Arc::from("default"), &Arc::from("canary"));
        pair.record(200, 0.012);
        pair.record(200, 0.013);
        pair.record(599, 0.5);
        pair.failover();
        metrics
            .upstream_errors(&Arc::from("canary"))
            .count(UpstreamErrorKind::Connect);
        metrics.reload(false);
        let text = metrics.render();
        assert!(
            text.contains(
                "sluice_requests_total{route=\"default\",backend=\"canary\",code=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_requests_total{route=\"default\",backend=\"canary\",code=\"599\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_request_duration_seconds_count{route=\"default\",backend=\"canary\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_backend_failovers_total{route=\"default\",backend=\"canary\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_upstream_errors_total{backend=\"canary\",kind=\"connect\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sluice_config_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sluice_request_duration_seconds histogram"),
            "{text}"
        );
    }
}
