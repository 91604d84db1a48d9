//! The serde mirror of `sluice.yaml` and `weights.yaml`: every field as written, nothing checked.
//!
//! Fields are `Option` so that validation (in `compile`) can report every missing or bad field
//! at once instead of stopping at the first. Unknown keys are not rejected here with
//! `deny_unknown_fields` (that stops at the first one too); `document` collects all of them
//! through `serde_ignored` and reports each as an error.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// A mapping that keeps file order (names appear in `/config` the way the operator wrote them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

/// A scalar of any type, kept as written so validation can say what was wrong with it
/// (a weight of `ten`, a duration of `30` without unit).
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A string (quoted or plain).
    Str(String),
    /// An integer.
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// `sluice.yaml`.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub listeners: Option<Vec<RawListener>>,
    pub admin: Option<RawAdmin>,
    pub upstreams: Option<OrderedMap<RawUpstream>>,
    pub routes: Option<Vec<RawRoute>>,
    pub weights_file: Option<String>,
    pub control: Option<RawControl>,
    pub rollouts: Option<Vec<RawRollout>>,
    pub store: Option<RawStore>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawListener {
    pub name: Option<String>,
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub tls: Option<RawServerTls>,
    pub max_connections: Option<Scalar>,
    pub http2_max_concurrent_streams: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServerTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpstream {
    pub version: Option<Scalar>,
    pub endpoints: Option<Vec<String>>,
    pub protocol: Option<String>,
    pub connect_timeout: Option<Scalar>,
    pub tls: Option<RawClientTls>,
    pub outlier_detection: Option<RawOutlierDetection>,
    pub max_connections: Option<Scalar>,
    pub max_pending_requests: Option<Scalar>,
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    pub interval: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub healthy: Option<Scalar>,
    pub unhealthy: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawClientTls {
    pub ca: Option<String>,
    pub server_name: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawOutlierDetection {
    pub consecutive_failures: Option<Scalar>,
    pub base_ejection_time: Option<Scalar>,
    pub max_ejection_time: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matches: Option<RawMatch>,
    pub timeout: Option<Scalar>,
    pub sticky: Option<RawSticky>,
    pub backends: Option<Vec<RawBackend>>,
    pub upgrades: Option<Vec<String>>,
    pub respond: Option<RawRespond>,
    pub mirror: Option<RawMirror>,
    pub retries: Option<RawRetries>,
    pub fault: Option<RawFault>,
    pub request_headers: Option<RawHeaderModifier>,
    pub response_headers: Option<RawHeaderModifier>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRespond {
    pub status: Option<Scalar>,
    pub body: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawMatch {
    pub path_prefix: Option<String>,
    pub path_segment_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub path_regex: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub headers: Option<OrderedMap<RawValueMatch>>,
    pub query: Option<OrderedMap<RawValueMatch>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawValueMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub present: Option<bool>,
    pub invert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSticky {
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub set_cookie: Option<bool>,
    pub max_age: Option<Scalar>,
}

/// `routes[].mirror`: copy requests to another upstream, answers discarded.
#[derive(Debug, Default, Deserialize)]
pub struct RawMirror {
    pub upstream: Option<String>,
    pub percent: Option<Scalar>,
}

/// `routes[].retries`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRetries {
    pub attempts: Option<Scalar>,
    pub on: Option<Vec<Scalar>>,
    pub budget_percent: Option<Scalar>,
    pub min_per_second: Option<Scalar>,
    pub methods: Option<Vec<String>>,
}

/// `routes[].fault` (and `routes[].backends[].fault`).
#[derive(Debug, Default, Deserialize)]
pub struct RawFault {
    pub abort: Option<RawFaultAbort>,
    pub delay: Option<RawFaultDelay>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawFaultAbort {
    pub status: Option<Scalar>,
    pub percent: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawFaultDelay {
    pub duration: Option<Scalar>,
    pub percent: Option<Scalar>,
}

/// `request_headers` / `response_headers` of a route or backend.
#[derive(Debug, Default, Deserialize)]
pub struct RawHeaderModifier {
    pub set: Option<OrderedMap<String>>,
    pub add: Option<OrderedMap<String>>,
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawBackend {
    pub upstream: Option<String>,
    pub weight: Option<Scalar>,
    pub fault: Option<RawFault>,
    pub request_headers: Option<RawHeaderModifier>,
    pub response_headers: Option<RawHeaderModifier>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawControl {
    pub admin: Option<String>,
    pub state: Option<String>,
    pub auth: Option<RawAuth>,
    pub tls: Option<RawServerTls>,
}

/// `store`: where the shared state lives (absent: files).
#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub etcd: Option<RawEtcd>,
}

/// `store.etcd`: fleet mode.
#[derive(Debug, Default, Deserialize)]
pub struct RawEtcd {
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub lease_ttl: Option<Scalar>,
    pub tls: Option<RawClientTls>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAuth {
    pub tokens_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRollout {
    pub name: Option<String>,
    pub route: Option<String>,
    pub stable: Option<String>,
    pub canary: Option<String>,
    pub steps: Option<Vec<Scalar>>,
    pub interval: Option<Scalar>,
    pub analysis: Option<RawAnalysis>,
    pub metrics: Option<RawMetrics>,
    pub strategy: Option<String>,
    pub bake: Option<Scalar>,
    pub webhooks: Option<Vec<RawWebhook>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawWebhook {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    pub timeout: Option<Scalar>,
    pub headers_env: Option<OrderedMap<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCheck {
    pub name: Option<String>,
    pub query: Option<String>,
    pub min: Option<Scalar>,
    pub max: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAnalysis {
    pub min_requests: Option<Scalar>,
    pub max_error_rate: Option<Scalar>,
    pub max_p95: Option<Scalar>,
    pub max_p95_vs_stable: Option<Scalar>,
    pub max_error_rate_over_stable: Option<Scalar>,
    pub failure_limit: Option<Scalar>,
    pub failure_counting: Option<String>,
    pub checks: Option<Vec<RawCheck>>,
    pub grpc_error_codes: Option<Vec<Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawMetrics {
    pub source: Option<String>,
    pub targets: Option<Vec<String>>,
    pub prometheus: Option<RawPrometheus>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPrometheus {
    pub url: Option<String>,
}

/// `weights.yaml`: `routes: { ROUTE: { BACKEND: WEIGHT } }`.
#[derive(Debug, Default, Deserialize)]
pub struct RawWeights {
    pub routes: Option<OrderedMap<OrderedMap<Scalar>>>,
}

/// The control's tokens file: `tokens: [{ name, role, token | token_sha256 }]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawTokens {
    pub tokens: Option<Vec<RawToken>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawToken {
    pub name: Option<String>,
    pub role: Option<String>,
    pub token: Option<String>,
    pub token_sha256: Option<String>,
}

/// Every key the schema knows, to suggest the closest one for a typo.
const KNOWN_KEYS: &[&str] = &[
    "listeners",
    "admin",
    "upstreams",
    "routes",
    "weights_file",
    "control",
    "rollouts",
    "name",
    "address",
    "protocol",
    "tls",
    "cert",
    "key",
    "client_ca",
    "version",
    "endpoints",
    "connect_timeout",
    "ca",
    "server_name",
    "outlier_detection",
    "health_check",
    "path",
    "healthy",
    "unhealthy",
    "consecutive_failures",
    "base_ejection_time",
    "max_ejection_time",
    "match",
    "timeout",
    "sticky",
    "backends",
    "path_prefix",
    "path_segment_prefix",
    "path_exact",
    "path_regex",
    "host",
    "method",
    "headers",
    "query",
    "exact",
    "prefix",
    "regex",
    "present",
    "invert",
    "respond",
    "status",
    "body",
    "header",
    "cookie",
    "upstream",
    "weight",
    "state",
    "route",
    "stable",
    "canary",
    "steps",
    "interval",
    "analysis",
    "metrics",
    "min_requests",
    "max_error_rate",
    "max_p95",
    "max_p95_vs_stable",
    "max_error_rate_over_stable",
    "failure_limit",
    "failure_counting",
    "source",
    "targets",
    "prometheus",
    "url",
    "auth",
    "tokens_file",
    "tokens",
    "role",
    "token",
    "token_sha256",
    "strategy",
    "bake",
    "webhooks",
    "type",
    "headers_env",
    "checks",
    "query",
    "min",
    "max",
    "max_connections",
    "http2_max_concurrent_streams",
    "max_pending_requests",
    "upgrades",
    "store",
    "etcd",
    "lease_ttl",
];

/// `" (did you mean \"weight\"?)"` for a near miss, empty otherwise.
pub(crate) fn hint_for_unknown_key(key: &str) -> String {
    let best = KNOWN_KEYS
        .iter()
        .map(|known| (edit_distance(key, known), *known))
        .min_by_key(|(distance, _)| *distance);
    match best {
        Some((distance, known)) if distance <= 2 && distance < key.len() => {
            format!(" (did you mean \"{known}\"?)")
        }
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, string or boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
                Ok(Scalar::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<V>()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(
            hint_for_unknown_key("weigth"),
            " (did you mean \"weight\"?)"
        );
        assert_eq!(
            hint_for_unknown_key("upstreams"),
            " (did you mean \"upstreams\"?)"
        );
        assert_eq!(hint_for_unknown_key("completely_unrelated"), "");
    }
}
