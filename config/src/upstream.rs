//! Upstreams: the named subsets of a service (stable, canary) and how to connect to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::address::Address;
use crate::check::Checker;
use crate::error::{FieldPath, Invalid};
use crate::raw::{
    OrderedMap, RawClientTls, RawHealthCheck, RawOutlierDetection, RawUpstream, Scalar,
};

/// Default connect timeout of an upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One named upstream: a set of endpoints speaking the same protocol.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Upstream {
    /// The upstream's name (the `backend` label in metrics).
    pub name: Arc<str>,
    /// The deployed version, shown in `/config`; a change starts a rollout.
    pub version: Option<String>,
    /// The endpoints (`host:port`), in file order.
    #[serde(serialize_with = "serialize_display_list")]
    pub endpoints: Vec<Address>,
    /// HTTP version spoken to the endpoints.
    pub protocol: UpstreamProtocol,
    /// How long a TCP (and TLS) connect may take. Default 1s.
    #[serde(serialize_with = "serialize_duration")]
    pub connect_timeout: Duration,
    /// TLS origination, when configured.
    pub tls: Option<ClientTls>,
    /// Passive health checking.
    pub outlier_detection: OutlierDetection,
    /// Connections open to all endpoints together at most (HTTP/1.1; an HTTP/2 upstream has
    /// one per endpoint). Default [`DEFAULT_UPSTREAM_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Requests waiting for a connection at most (every connection busy and `max_connections`
    /// reached, or the HTTP/2 connection being opened); one more is answered 503 `overloaded`.
    /// Default [`DEFAULT_MAX_PENDING_REQUESTS`].
    pub max_pending_requests: usize,
    /// Active health checking of every endpoint, when configured.
    pub health_check: Option<HealthCheck>,
}

/// Connections per upstream when `max_connections` is not given (Envoy's circuit breaker
/// default too).
pub const DEFAULT_UPSTREAM_MAX_CONNECTIONS: usize = 1024;
/// Requests waiting for a connection per upstream when `max_pending_requests` is not given.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 1024;

/// The HTTP version spoken to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive (the default).
    Http1,
    /// HTTP/2 (prior knowledge in cleartext, ALPN `h2` over TLS).
    Http2,
}

/// TLS origination towards an upstream (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ClientTls {
    /// CA certificates that sign the upstream's certificate.
    pub ca: PathBuf,
    /// Name to verify in the upstream's certificate (and send as SNI); default: the endpoint host.
    pub server_name: Option<String>,
    /// Client certificate chain for mTLS.
    pub cert: Option<PathBuf>,
    /// Client private key for mTLS.
    pub key: Option<PathBuf>,
}

/// Passive health checking: endpoints failing in a row are taken out for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OutlierDetection {
    /// Failures in a row (connect errors, resets, timeouts, 5xx) that eject an endpoint;
    /// 0 turns ejection off. Default 5.
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each further ejection of the same endpoint lasts
    /// one more multiple of it. Default 10s.
    #[serde(serialize_with = "serialize_duration")]
    pub base_ejection_time: Duration,
    /// The longest ejection. Default 300s.
    #[serde(serialize_with = "serialize_duration")]
    pub max_ejection_time: Duration,
}

/// Active health checking: the proxy sends `GET path` to every endpoint of the upstream every
/// `interval`, on connections of its own. An endpoint is in service while it passes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct HealthCheck {
    /// Path (and query) of the probe; a 2xx answer within `timeout` is a pass.
    pub path: String,
    /// Time between the end of one probe and the start of the next. Default 5s.
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// Longest wait for a probe's answer headers, connect included. Default 1s.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Passes in a row that bring an unhealthy endpoint back. Default 2.
    pub healthy: u32,
    /// Failures in a row that take a healthy endpoint out. Default 3.
    pub unhealthy: u32,
}

/// Default `health_check.interval`.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Default `health_check.timeout`.
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `health_check.healthy`.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default `health_check.unhealthy`.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(300),
        }
    }
}

pub(crate) fn compile_upstreams(
    check: &mut Checker<'_>,
    raw: &Option<OrderedMap<RawUpstream>>,
) -> Vec<Upstream> {
    let root = FieldPath::root();
    let Some(raw) = check.required(raw, &root, "upstreams") else {
        return Vec::new();
    };
    if raw.0.is_empty() {
        check.report(root.key("upstreams"), Invalid::Empty("upstreams"));
    }
    let mut names = HashMap::new();
    let mut upstreams = Vec::new();
    for (name, upstream) in &raw.0 {
        let path = root.key("upstreams").key(name.as_str());
        if name.trim().is_empty() {
            check.report(path.clone(), Invalid::Empty("upstream name"));
            continue;
        }
        if !check.unique(&mut names, name, path.clone(), "upstream") {
            continue;
        }
        if let Some(compiled) = compile_upstream(check, name, upstream, &path) {
            upstreams.push(compiled);
        }
    }
    upstreams
}

fn compile_upstream(
    check: &mut Checker<'_>,
    name: &str,
    raw: &RawUpstream,
    path: &FieldPath,
) -> Option<Upstream> {
    let mut ok = true;
    let version = raw.version.as_ref().map(|v| match v {
        Scalar::Str(s) => s.clone(),
        other => other.to_string(),
    });
    let mut endpoints = Vec::new();
    match check.required(&raw.endpoints, path, "endpoints") {
        None => ok = false,
        Some(list) if list.is_empty() => {
            check.report(path.key("endpoints"), Invalid::Empty("endpoints"));
            ok = false;
        }
        Some(list) => {
            let mut seen = HashMap::new();
            for (i, text) in list.iter().enumerate() {
                let at = path.key("endpoints").index(i);
                match check.address(text, at.clone(), false) {
                    Some(address) => {
                        if check.unique(&mut seen, &address.to_string(), at, "endpoint") {
                            endpoints.push(address);
                        }
                    }
                    None => ok = false,
                }
            }
        }
    }
    let protocol = check.choice(&raw.protocol, path.key("protocol"), &["http1", "http2"]);
    let connect_timeout = check.positive_duration(
        &raw.connect_timeout,
        path.key("connect_timeout"),
        Some(DEFAULT_CONNECT_TIMEOUT),
    );
    let tls = match &raw.tls {
        None => Some(None),
        Some(tls) => compile_client_tls(check, tls, &path.key("tls")).map(Some),
    };
    let outlier_detection = match &raw.outlier_detection {
        None => Some(OutlierDetection::default()),
        Some(o) => compile_outlier(check, o, &path.key("outlier_detection")),
    };
    let max_connections = check.count(
        &raw.max_connections,
        path.key("max_connections"),
        DEFAULT_UPSTREAM_MAX_CONNECTIONS as u64,
        1,
    );
    let max_pending_requests = check.count(
        &raw.max_pending_requests,
        path.key("max_pending_requests"),
        DEFAULT_MAX_PENDING_REQUESTS as u64,
        0,
    );
    let health_check = match &raw.health_check {
        None => Some(None),
        Some(h) => compile_health_check(check, h, &path.key("health_check")).map(Some),
    };
    if !ok {
        return None;
    }
    Some(Upstream {
        name: name.into(),
        version,
        endpoints,
        protocol: match protocol? {
            "http2" => UpstreamProtocol::Http2,
            _ => UpstreamProtocol::Http1,
        },
        connect_timeout: connect_timeout?,
        tls: tls?,
        outlier_detection: outlier_detection?,
        max_connections: usize::try_from(max_connections?).unwrap_or(usize::MAX),
        max_pending_requests: usize::try_from(max_pending_requests?).unwrap_or(usize::MAX),
        health_check: health_check?,
    })
}

/// An upstream's (or etcd's, `store.etcd.tls`) client TLS: `ca` required, `cert` and `key`
/// together or not at all, every file readable.
pub(crate) fn compile_client_tls(
    check: &mut Checker<'_>,
    raw: &RawClientTls,
    path: &FieldPath,
) -> Option<ClientTls> {
    let ca = check
        .required(&raw.ca, path, "ca")
        .and_then(|ca| check.file(ca, path.key("ca")));
    if let Some(name) = &raw.server_name {
        if rustls_name_is_invalid(name) {
            check.report(
                path.key("server_name"),
                Invalid::Value(format!("\"{name}\" is not a valid DNS name or IP address")),
            );
        }
    }
    let cert = raw.cert.as_ref().map(|c| check.file(c, path.key("cert")));
    let key = raw.key.as_ref().map(|k| check.file(k, path.key("key")));
    if cert.is_some() != key.is_some() {
        check.report(
            path.clone(),
            Invalid::Value(
                "cert and key must be given together (client certificate for mTLS)".into(),
            ),
        );
        return None;
    }
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (Some(c?), Some(k?)),
        _ => (None, None),
    };
    Some(ClientTls {
        ca: ca?,
        server_name: raw.server_name.clone(),
        cert,
        key,
    })
}

fn rustls_name_is_invalid(name: &str) -> bool {
    name.is_empty()
        || name.len() > 253
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

fn compile_outlier(
    check: &mut Checker<'_>,
    raw: &RawOutlierDetection,
    path: &FieldPath,
) -> Option<OutlierDetection> {
    let default = OutlierDetection::default();
    let failures = check.count(
        &raw.consecutive_failures,
        path.key("consecutive_failures"),
        u64::from(default.consecutive_failures),
        0,
    );
    let base = check.positive_duration(
        &raw.base_ejection_time,
        path.key("base_ejection_time"),
        Some(default.base_ejection_time),
    );
    let max = check.positive_duration(
        &raw.max_ejection_time,
        path.key("max_ejection_time"),
        Some(default.max_ejection_time),
    );
    let (failures, base, max) = (failures?, base?, max?);
    if max < base {
        check.report(
            path.key("max_ejection_time"),
            Invalid::Value("must not be shorter than base_ejection_time".into()),
        );
        return None;
    }
    Some(OutlierDetection {
        consecutive_failures: u32::try_from(failures).unwrap_or(u32::MAX),
        base_ejection_time: base,
        max_ejection_time: max,
    })
}

fn compile_health_check(
    check: &mut Checker<'_>,
    raw: &RawHealthCheck,
    path: &FieldPath,
) -> Option<HealthCheck> {
    let probe_path = match check.required(&raw.path, path, "path") {
        None => None,
        Some(p) => match probe_path_problem(p) {
            None => Some(p.clone()),
            Some(problem) => {
                check.report(path.key("path"), Invalid::Value(problem));
                None
            }
        },
    };
    let interval = check.positive_duration(
        &raw.interval,
        path.key("interval"),
        Some(DEFAULT_HEALTH_CHECK_INTERVAL),
    );
    let timeout = check.positive_duration(
        &raw.timeout,
        path.key("timeout"),
        Some(DEFAULT_HEALTH_CHECK_TIMEOUT),
    );
    let healthy = check.count(
        &raw.healthy,
        path.key("healthy"),
        u64::from(DEFAULT_HEALTHY_THRESHOLD),
        1,
    );
    let unhealthy = check.count(
        &raw.unhealthy,
        path.key("unhealthy"),
        u64::from(DEFAULT_UNHEALTHY_THRESHOLD),
        1,
    );
    Some(HealthCheck {
        path: probe_path?,
        interval: interval?,
        timeout: timeout?,
        healthy: u32::try_from(healthy?).unwrap_or(u32::MAX),
        unhealthy: u32::try_from(unhealthy?).unwrap_or(u32::MAX),
    })
}

/// Why `path` cannot be a probe's request target, if it cannot: it must be an origin-form
/// target (`/health`, `/ready?full=1`) of visible ASCII.
fn probe_path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("must start with \"/\", got {path:?}"));
    }
    if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic() || *c == '#') {
        return Some(format!(
            "{c:?} is not allowed in a request path (percent-encode it), got {path:?}"
        ));
    }
    None
}

pub(crate) fn serialize_duration<S: serde::Serializer>(
    d: &Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_duration(*d))
}

pub(crate) fn serialize_display_list<S: serde::Serializer, T: std::fmt::Display>(
    items: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(ToString::to_string))
}
