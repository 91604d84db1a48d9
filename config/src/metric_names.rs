//! The proxy's metric names, label keys and duration histogram bounds: the contract between
//! `sluice-proxy`, which records them, and `sluice-control`, which reads them back.

/// Spells the duration histogram's name once, so the `_bucket` series name can be derived
/// from it with `concat!` (which takes literals, not consts).
macro_rules! request_duration {
    () => {
        "sluice_request_duration_seconds"
    };
}

/// `sluice_requests_total{route,backend,code}`: responses sent, proxy-generated ones included.
pub const REQUESTS_TOTAL: &str = "sluice_requests_total";
/// `sluice_request_duration_seconds{route,backend}`: request start to response headers, a
/// histogram with [`DURATION_BUCKETS`].
pub const REQUEST_DURATION: &str = request_duration!();
/// The cumulative bucket series of [`REQUEST_DURATION`], one per `le` bound.
pub const REQUEST_DURATION_BUCKET: &str = concat!(request_duration!(), "_bucket");
/// `sluice_upstream_errors_total{backend,kind}`: kind is connect, timeout, reset or tls.
pub const UPSTREAM_ERRORS: &str = "sluice_upstream_errors_total";
/// `sluice_route_backend_weight{route,backend}`: the weight in force.
pub const ROUTE_BACKEND_WEIGHT: &str = "sluice_route_backend_weight";
/// `sluice_config_reloads_total{result}`: `ok` or `error`.
pub const CONFIG_RELOADS: &str = "sluice_config_reloads_total";
/// `sluice_config_generation`: increments with every applied config or weights change.
pub const CONFIG_GENERATION: &str = "sluice_config_generation";
/// `sluice_active_connections{listener}`: open client connections.
pub const ACTIVE_CONNECTIONS: &str = "sluice_active_connections";
/// `sluice_endpoint_healthy{backend,endpoint}`: 1 unless ejected by outlier detection or out
/// of service by its active health checks.
pub const ENDPOINT_HEALTHY: &str = "sluice_endpoint_healthy";
/// `sluice_backend_failovers_total{route,backend}`: requests the split gave to `backend` that
/// went to another backend because `backend` had no healthy endpoint. `sluice-control` counts
/// them as failed canary requests, so an ejected canary cannot hide from the analysis.
pub const BACKEND_FAILOVERS: &str = "sluice_backend_failovers_total";
/// `sluice_connections_rejected_total{listener}`: client connections closed unread because the
/// listener had `max_connections` open.
pub const CONNECTIONS_REJECTED: &str = "sluice_connections_rejected_total";
/// `sluice_upstream_overloaded_total{backend}`: requests answered 503 `overloaded` because the
/// upstream already had `max_pending_requests` waiting for a connection.
pub const UPSTREAM_OVERLOADED: &str = "sluice_upstream_overloaded_total";
/// `sluice_tls_certificate_expiry_seconds{listener}`: the Unix time at which the certificate
/// chain a TLS listener serves stops being valid (its earliest `notAfter`).
pub const TLS_CERTIFICATE_EXPIRY: &str = "sluice_tls_certificate_expiry_seconds";

/// `sluice_grpc_responses_total{route,backend,grpc_status}`: responses to gRPC requests
/// (`content-type: application/grpc*`) with HTTP status 200, by their `grpc-status` name
/// (`OK`, `UNAVAILABLE`, ...) from the headers or, after the body, the trailers. A response that
/// ends without one counts as `UNKNOWN`. Counted when the status is known: at the response
/// head for a trailers-only answer, at the end of the stream otherwise. At most 17 series per
/// route and backend.
pub const GRPC_RESPONSES: &str = "sluice_grpc_responses_total";
/// `sluice_mirror_requests_total{route,upstream,code}`: answers to mirrored copies of a route's
/// requests (then discarded), by HTTP status; copies that failed count as 502/504 like proxy
/// errors.
pub const MIRROR_REQUESTS: &str = "sluice_mirror_requests_total";
/// Spells the mirror duration histogram's name once (see [`REQUEST_DURATION`]).
macro_rules! mirror_duration {
    () => {
        "sluice_mirror_request_duration_seconds"
    };
}
/// `sluice_mirror_request_duration_seconds{route,upstream}`: mirrored copy sent to mirror
/// response headers, with [`DURATION_BUCKETS`].
pub const MIRROR_DURATION: &str = mirror_duration!();
/// The cumulative bucket series of [`MIRROR_DURATION`].
pub const MIRROR_DURATION_BUCKET: &str = concat!(mirror_duration!(), "_bucket");
/// `sluice_mirror_grpc_responses_total{route,upstream,grpc_status}`: like [`GRPC_RESPONSES`],
/// for mirrored copies.
pub const MIRROR_GRPC_RESPONSES: &str = "sluice_mirror_grpc_responses_total";
/// `sluice_mirror_dropped_total{route,upstream,reason}`: copies not sent. `reason` is
/// `overloaded` (the mirror's in-flight bound was reached), `body_too_large` (the request
/// body exceeded the mirrored body bound) or `body_incomplete` (the body failed, or the client
/// or the real upstream gave up before its end).
pub const MIRROR_DROPPED: &str = "sluice_mirror_dropped_total";
/// `sluice_retries_total{route,backend,result}`: retries of failed attempts. `result` is `ok`
/// (the retry got a response that is not retried), `failed` (it failed too) or
/// `budget_exhausted` (a retry was due but the route's budget had none left; not sent).
pub const RETRIES: &str = "sluice_retries_total";
/// `sluice_faults_injected_total{route,backend,kind}`: requests given an injected fault,
/// `kind` `abort` or `delay`.
pub const FAULTS_INJECTED: &str = "sluice_faults_injected_total";

/// Label key of the route name.
pub const LABEL_ROUTE: &str = "route";
/// Label key of the backend (the upstream's name).
pub const LABEL_BACKEND: &str = "backend";
/// Label key of the HTTP status code.
pub const LABEL_CODE: &str = "code";
/// Label key of the upstream error kind.
pub const LABEL_KIND: &str = "kind";
/// Label key of the reload result.
pub const LABEL_RESULT: &str = "result";
/// Label key of the listener name.
pub const LABEL_LISTENER: &str = "listener";
/// Label key of a gRPC status name.
pub const LABEL_GRPC_STATUS: &str = "grpc_status";
/// Label key of the mirror's upstream.
pub const LABEL_UPSTREAM: &str = "upstream";
/// Label key of a reason (mirror drops).
pub const LABEL_REASON: &str = "reason";
/// Label key of the endpoint address.
pub const LABEL_ENDPOINT: &str = "endpoint";

/// `sluice_store_connected`: 1 while the proxy's watch on the etcd weights key (fleet mode)
/// is established, 0 while it reconnects; absent in file mode.
pub const STORE_CONNECTED: &str = "sluice_store_connected";

/// Upper bounds (seconds) of [`REQUEST_DURATION`]'s buckets: 1, 1.5, 2, 3, 4, 5 and 7.5 times
/// each power of ten from 1 ms to 7.5 s, then 10 s, and 30 s and 60 s for the tail. 31 bounds,
/// so 34 series per route and backend (31 buckets, `+Inf`, `_sum`, `_count`).
///
/// A p95 is judged exactly against a `max_p95` that sits on one of these bounds (100ms,
/// 150ms, 200ms, 300ms, 400ms, 500ms, 750ms, 1s, 1.5s, 2s, ...): the interpolated p95 exceeds
/// the bound exactly when more than 5% of requests took longer. Between bounds the p95 is
/// interpolated: adjacent bounds are at most 1.5x apart, so when every request takes the same
/// time the estimate can be up to 47.5% off (just above a bound); for spread-out latencies it
/// is far closer (`sluice-control`'s quantile tests measure it).
pub const DURATION_BUCKETS: [f64; 31] = [
    0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, //
    0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, //
    0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, //
    1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, //
    10.0, 30.0, 60.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_series_is_derived_from_the_histogram_name() {
        assert_eq!(REQUEST_DURATION, "sluice_request_duration_seconds");
        assert_eq!(
            REQUEST_DURATION_BUCKET,
            format!("{REQUEST_DURATION}_bucket")
        );
    }

    #[test]
    fn bounds_rise_from_1ms_past_10s_at_most_1_5x_apart() {
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(DURATION_BUCKETS[0], 0.001);
        let ten = DURATION_BUCKETS
            .iter()
            .position(|b| *b == 10.0)
            .expect("10 s is a bound");
        for w in DURATION_BUCKETS[..=ten].windows(2) {
            assert!(w[1] / w[0] <= 1.5 + 1e-9, "{} -> {}", w[0], w[1]);
        }
        assert_eq!(DURATION_BUCKETS.last(), Some(&60.0));
    }

    #[test]
    fn bounds_print_as_short_le_labels() {
        // The `le` label is the bound's shortest decimal form; computed bounds would print as
        // 0.0015000000000000002.
        for bound in DURATION_BUCKETS {
            let le = bound.to_string();
            assert!(le.len() <= 6, "{le}");
        }
    }
}
