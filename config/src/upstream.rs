//! Upstreams: the named subsets of a service (stable, canary) and how to connect to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::address::Address;
use crate::check::Checker;
use crate::error::{FieldPath, Invalid};
use crate::raw::{OrderedMap, RawClientTls, RawOutlierDetection, RawUpstream, Scalar};

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
}

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
    })
}

fn compile_client_tls(
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
