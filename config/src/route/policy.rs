//! What a route does to traffic besides choosing a backend: header modifiers, mirroring,
//! retries with a budget and fault injection, with their validation.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::check::Checker;
use crate::error::{known_list, FieldPath, Invalid};
use crate::raw::{OrderedMap, RawFault, RawHeaderModifier, RawMirror, RawRetries, Scalar};
use crate::upstream::Upstream;

/// A share of requests, in hundredths of a percent (`12.5` is 1250); `0..=100`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(u32);

/// Header changes applied to a request before it is forwarded or to a response before it is
/// returned: `remove` first, then `set` (replacing every value), then `add` (appending).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Headers given exactly this value.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Values appended to what is there.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed.
    pub remove: Vec<HeaderName>,
}

/// `routes[].mirror`: a copy of a share of the route's requests goes to another upstream;
/// its answers are discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// Index of the mirror's upstream in [`crate::Config::upstreams`].
    pub upstream: usize,
    /// The mirror's upstream name (the `upstream` label of the mirror metrics).
    pub name: Arc<str>,
    /// The share of the route's requests copied.
    pub percent: Percent,
}

/// `routes[].retries`: when and how often a failed attempt is tried again, within a budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Retries {
    /// Retries after the first attempt, `1..=10`.
    pub attempts: u32,
    /// Which failures are retried.
    pub on: RetryOn,
    /// Retries may add at most this percentage to the route's requests over the last 10 s.
    pub budget_percent: f64,
    /// Retries allowed per second whatever the budget, so a quiet route can still retry.
    pub min_per_second: u32,
    /// Methods retried; the idempotent ones (RFC 9110 §9.2.2) when not given.
    pub methods: Vec<Method>,
}

/// The failures a route retries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// The upstream could not be connected to (refused, unreachable, connect timeout, TLS).
    pub connect_failure: bool,
    /// The connection failed before a response head arrived (reset, closed).
    pub reset: bool,
    /// Response statuses retried.
    pub statuses: Vec<StatusCode>,
}

/// Fault injection, for rehearsing a rollback: some requests are answered with an error
/// status instead of being forwarded, some are delayed first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Answer a share of requests with a status, without forwarding them.
    pub abort: Option<FaultAbort>,
    /// Hold a share of requests for a while before forwarding them.
    pub delay: Option<FaultDelay>,
}

/// `fault.abort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultAbort {
    /// The status answered (400..=599).
    pub status: StatusCode,
    /// The share of requests aborted.
    pub percent: Percent,
}

/// `fault.delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultDelay {
    /// How long a delayed request is held.
    pub duration: Duration,
    /// The share of requests delayed.
    pub percent: Percent,
}

/// What a route does to the requests of one of its backends (`routes[].backends[]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendPolicy {
    /// A fault for this backend only; replaces the route's fault.
    pub fault: Option<Arc<Fault>>,
    /// Applied after the route's request header changes.
    pub request_headers: Option<Arc<HeaderModifier>>,
    /// Applied before the route's response header changes.
    pub response_headers: Option<Arc<HeaderModifier>>,
}

/// The most retries a route may ask for per request.
pub const MAX_RETRY_ATTEMPTS: u64 = 10;
/// Retry budget share when none is given (linkerd2-proxy's default retry ratio is 0.2).
pub const DEFAULT_RETRY_BUDGET_PERCENT: f64 = 20.0;
/// Retries per second allowed whatever the budget (linkerd2-proxy's default is 10).
pub const DEFAULT_RETRY_MIN_PER_SECOND: u64 = 10;
/// The longest fault delay accepted.
pub const MAX_FAULT_DELAY: Duration = Duration::from_secs(60);

/// Headers no modifier may touch: they frame the message or belong to one connection, and
/// changing them would desynchronise the proxy and the upstream (request smuggling).
pub const UNMODIFIABLE_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Percent {
    /// All requests.
    pub const ALL: Self = Self(10_000);

    /// `hundredths / 100` percent.
    pub const fn from_hundredths(hundredths: u32) -> Self {
        Self(hundredths)
    }

    /// The percentage as a number (`12.5`).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// Whether a request drawing the uniformly distributed `random` falls in this share.
    #[inline]
    pub fn hits(self, random: u64) -> bool {
        ((u128::from(random) * 10_000) >> 64) < u128::from(self.0)
    }

    fn parse(check: &mut Checker<'_>, value: &Scalar, path: FieldPath) -> Option<Self> {
        let number = match value {
            Scalar::Int(i) => *i as f64,
            Scalar::Float(x) => *x,
            _ => f64::NAN,
        };
        let hundredths = (number * 100.0).round();
        // Written as a negation so that NaN (not a number) is refused too.
        if !((0.0..=100.0).contains(&number) && (number * 100.0 - hundredths).abs() <= 1e-6) {
            check.report(
                path,
                Invalid::Value(format!(
                    "must be a percentage from 0 to 100 with at most 2 decimals, got {value}"
                )),
            );
            return None;
        }
        Some(Self(hundredths as u32))
    }
}

impl HeaderModifier {
    /// Applies the changes to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

impl RetryOn {
    /// Whether a response with `status` is retried.
    #[inline]
    pub fn status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status)
    }
}

impl Retries {
    /// Whether requests with `method` may be retried.
    #[inline]
    pub fn allows_method(&self, method: &Method) -> bool {
        if self.methods.is_empty() {
            method.is_idempotent()
        } else {
            self.methods.contains(method)
        }
    }
}

pub(crate) fn compile_header_modifier(
    check: &mut Checker<'_>,
    raw: &Option<RawHeaderModifier>,
    path: &FieldPath,
) -> Option<Option<Arc<HeaderModifier>>> {
    let Some(raw) = raw else { return Some(None) };
    let set = compile_header_values(check, &raw.set, &path.key("set"), true);
    let add = compile_header_values(check, &raw.add, &path.key("add"), false);
    let mut remove = Vec::new();
    let mut remove_ok = true;
    for (i, text) in raw.remove.iter().flatten().enumerate() {
        match modifiable_header(check, text, path.key("remove").index(i)) {
            Some(header) => remove.push(header),
            None => remove_ok = false,
        }
    }
    let (set, add) = (set?, add?);
    remove_ok.then_some(())?;
    let empty = set.is_empty() && add.is_empty() && remove.is_empty();
    Some((!empty).then(|| Arc::new(HeaderModifier { set, add, remove })))
}

/// The `set` or `add` map of a header modifier; `set` names each header once.
fn compile_header_values(
    check: &mut Checker<'_>,
    raw: &Option<OrderedMap<String>>,
    path: &FieldPath,
    once: bool,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut ok = true;
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut written: Vec<&str> = Vec::new();
    for (key, value) in raw.iter().flat_map(|m| m.0.iter()) {
        let at = path.key(key.as_str());
        let header = modifiable_header(check, key, at.clone());
        let value = match HeaderValue::from_str(value) {
            Ok(value) => Some(value),
            Err(_) => {
                check.report(
                    at.clone(),
                    Invalid::Value(format!(
                        "{value:?} is not a valid header value (visible ASCII, spaces and tabs only)"
                    )),
                );
                None
            }
        };
        let (Some(header), Some(value)) = (header, value) else {
            ok = false;
            continue;
        };
        if let Some(first) = out.iter().position(|(h, _)| *h == header).filter(|_| once) {
            check.report(
                at,
                Invalid::Value(format!(
                    "header \"{key}\" is already set as \"{}\" (header names ignore case): set it once, and use add for more values",
                    written[first]
                )),
            );
            ok = false;
            continue;
        }
        out.push((header, value));
        written.push(key);
    }
    ok.then_some(out)
}

/// A header name a modifier may set, add or remove: valid, and not a framing header.
fn modifiable_header(check: &mut Checker<'_>, text: &str, at: FieldPath) -> Option<HeaderName> {
    let Ok(header) = HeaderName::from_bytes(text.trim().as_bytes()) else {
        check.report(
            at,
            Invalid::Value(format!(
                "\"{text}\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
            )),
        );
        return None;
    };
    if UNMODIFIABLE_HEADERS.contains(&header.as_str()) {
        check.report(
            at,
            Invalid::Value(format!(
                "header \"{text}\" cannot be modified: it frames the message or the connection, and sluice sets it itself (refused: {}); remove it",
                UNMODIFIABLE_HEADERS.join(", ")
            )),
        );
        return None;
    }
    Some(header)
}

pub(crate) fn compile_mirror(
    check: &mut Checker<'_>,
    raw: &Option<RawMirror>,
    path: &FieldPath,
    upstreams: &[Upstream],
    declared: &[&str],
) -> Option<Option<Mirror>> {
    let Some(raw) = raw else { return Some(None) };
    let name = check.name(&raw.upstream, path, "upstream");
    let percent = match &raw.percent {
        None => Some(Percent::ALL),
        Some(p) => Percent::parse(check, p, path.key("percent")),
    };
    let name = name?;
    let upstream = match upstreams.iter().position(|u| &*u.name == name.as_str()) {
        Some(i) => i,
        None => {
            if !declared.contains(&name.as_str()) {
                check.report(
                    path.key("upstream"),
                    Invalid::UnknownUpstream {
                        name,
                        known: known_list(declared.iter().copied()),
                    },
                );
            }
            return None;
        }
    };
    Some(Some(Mirror {
        upstream,
        name: upstreams[upstream].name.clone(),
        percent: percent?,
    }))
}

pub(crate) fn compile_retries(
    check: &mut Checker<'_>,
    raw: &Option<RawRetries>,
    path: &FieldPath,
) -> Option<Option<Arc<Retries>>> {
    let Some(raw) = raw else { return Some(None) };
    let attempts = match &raw.attempts {
        None => Some(1),
        Some(Scalar::Int(a)) if (1..=i128::from(MAX_RETRY_ATTEMPTS)).contains(a) => {
            u32::try_from(*a).ok()
        }
        Some(other) => {
            let off = if *other == Scalar::Int(0) {
                "; to turn retries off, remove retries"
            } else {
                ""
            };
            check.report(
                path.key("attempts"),
                Invalid::Value(format!(
                    "must be a whole number from 1 to {MAX_RETRY_ATTEMPTS} (retries after the first attempt), got {other}{off}"
                )),
            );
            None
        }
    };
    let on = compile_retry_on(check, &raw.on, &path.key("on"));
    let budget_percent = match &raw.budget_percent {
        None => Some(DEFAULT_RETRY_BUDGET_PERCENT),
        Some(v) => match check.number(v, path.key("budget_percent")) {
            Some(x) if x <= 100.0 => Some(x),
            Some(_) => {
                check.report(
                    path.key("budget_percent"),
                    Invalid::Value(format!("must be a percentage from 0 to 100, got {v}")),
                );
                None
            }
            None => None,
        },
    };
    let min_per_second = check.count(
        &raw.min_per_second,
        path.key("min_per_second"),
        DEFAULT_RETRY_MIN_PER_SECOND,
        0,
    );
    let mut methods = Vec::new();
    let mut methods_ok = true;
    for (i, text) in raw.methods.iter().flatten().enumerate() {
        let upper = text.trim().to_ascii_uppercase();
        let problem = match Method::from_bytes(upper.as_bytes()) {
            Ok(m) if m == Method::CONNECT => "opens a tunnel, which cannot be retried: remove it",
            Ok(m) if !upper.is_empty() => {
                methods.push(m);
                continue;
            }
            _ => "is not an HTTP method (e.g. GET, PUT, POST)",
        };
        check.report(
            path.key("methods").index(i),
            Invalid::Value(format!("\"{text}\" {problem}")),
        );
        methods_ok = false;
    }
    if raw.methods.as_ref().is_some_and(Vec::is_empty) {
        check.report(
            path.key("methods"),
            Invalid::Value(
                "must not be empty: list the methods to retry, or leave methods out to retry the idempotent ones (GET, HEAD, OPTIONS, TRACE, PUT, DELETE)"
                    .into(),
            ),
        );
        methods_ok = false;
    }
    methods_ok.then_some(())?;
    Some(Some(Arc::new(Retries {
        attempts: attempts?,
        on: on?,
        budget_percent: budget_percent?,
        min_per_second: u32::try_from(min_per_second?).unwrap_or(u32::MAX),
        methods,
    })))
}

fn compile_retry_on(
    check: &mut Checker<'_>,
    raw: &Option<Vec<Scalar>>,
    path: &FieldPath,
) -> Option<RetryOn> {
    let Some(raw) = raw else {
        return Some(RetryOn {
            connect_failure: true,
            reset: true,
            statuses: Vec::new(),
        });
    };
    if raw.is_empty() {
        check.report(
            path.clone(),
            Invalid::Value(
                "must not be empty: list the failures to retry, or leave on out for [connect-failure, reset]"
                    .into(),
            ),
        );
        return None;
    }
    let mut on = RetryOn::default();
    let mut ok = true;
    let add_status = |on: &mut RetryOn, code: u16| {
        if let Ok(status) = StatusCode::from_u16(code) {
            if !on.statuses.contains(&status) {
                on.statuses.push(status);
            }
        }
    };
    for (i, value) in raw.iter().enumerate() {
        // A string compared as written: `Scalar`'s `Display` quotes it.
        let (text, code) = match value {
            Scalar::Int(i) => ("", u16::try_from(*i).ok()),
            Scalar::Str(s) => (s.trim(), s.trim().parse::<u16>().ok()),
            _ => ("", None),
        };
        match (text, code) {
            ("connect-failure", _) => on.connect_failure = true,
            ("reset", _) => on.reset = true,
            ("gateway-error", _) => [502, 503, 504]
                .into_iter()
                .for_each(|c| add_status(&mut on, c)),
            ("5xx", _) => (500..=599).for_each(|c| add_status(&mut on, c)),
            (_, Some(code)) if (500..=599).contains(&code) || code == 429 || code == 408 => {
                add_status(&mut on, code)
            }
            _ => {
                check.report(
                    path.index(i),
                    Invalid::Value(format!(
                        "cannot retry on {value}: give connect-failure, reset, gateway-error (502, 503, 504), 5xx, or a status among 408, 429, 500-599"
                    )),
                );
                ok = false;
            }
        }
    }
    ok.then_some(on)
}

pub(crate) fn compile_fault(
    check: &mut Checker<'_>,
    raw: &Option<RawFault>,
    path: &FieldPath,
) -> Option<Option<Arc<Fault>>> {
    let Some(raw) = raw else { return Some(None) };
    if raw.abort.is_none() && raw.delay.is_none() {
        check.report(
            path.clone(),
            Invalid::Value(
                "a fault needs abort: { status, percent }, delay: { duration, percent }, or both (or remove fault)"
                    .into(),
            ),
        );
        return None;
    }
    let abort = match &raw.abort {
        None => Some(None),
        Some(abort) => {
            let at = path.key("abort");
            let status = check.required(&abort.status, &at, "status").and_then(|s| {
                let code = match s {
                    Scalar::Int(i) => u16::try_from(*i).ok(),
                    _ => None,
                };
                match code.and_then(|c| StatusCode::from_u16(c).ok()) {
                    Some(status) if (400..=599).contains(&status.as_u16()) => Some(status),
                    _ => {
                        check.report(
                            at.key("status"),
                            Invalid::Value(format!(
                                "must be an error status from 400 to 599, got {s}"
                            )),
                        );
                        None
                    }
                }
            });
            let percent = check
                .required(&abort.percent, &at, "percent")
                .and_then(|p| Percent::parse(check, p, at.key("percent")));
            status
                .zip(percent)
                .map(|(status, percent)| Some(FaultAbort { status, percent }))
        }
    };
    let delay = match &raw.delay {
        None => Some(None),
        Some(delay) => {
            let at = path.key("delay");
            check.required(&delay.duration, &at, "duration");
            let duration = check
                .positive_duration(&delay.duration, at.key("duration"), None)
                .filter(|d| {
                    let ok = *d <= MAX_FAULT_DELAY;
                    if !ok {
                        check.report(
                            at.key("duration"),
                            Invalid::Value(format!(
                                "a fault delay is at most {}s, got {}",
                                MAX_FAULT_DELAY.as_secs(),
                                delay
                                    .duration
                                    .as_ref()
                                    .map(Scalar::to_string)
                                    .unwrap_or_default()
                            )),
                        );
                    }
                    ok
                });
            let percent = check
                .required(&delay.percent, &at, "percent")
                .and_then(|p| Percent::parse(check, p, at.key("percent")));
            duration
                .zip(percent)
                .map(|(duration, percent)| Some(FaultDelay { duration, percent }))
        }
    };
    Some(Some(Arc::new(Fault {
        abort: abort?,
        delay: delay?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_hits_its_share() {
        // The middle of each of the 10 000 equal slices of the random range.
        let middle = |i: u128| u64::try_from(((2 * i + 1) << 64) / 20_000).expect("below 2^64");
        let ten = Percent::from_hundredths(1000);
        let hits = (0..10_000).filter(|&i| ten.hits(middle(i))).count();
        assert_eq!(hits, 1000);
        assert!(ten.hits(middle(999)) && !ten.hits(middle(1000)));
        assert!(!Percent::default().hits(0));
        assert!(Percent::ALL.hits(u64::MAX));
    }

    #[test]
    fn modifier_removes_then_sets_then_adds() {
        let name = |n: &'static str| HeaderName::from_static(n);
        let value = |v: &'static str| HeaderValue::from_static(v);
        let modifier = HeaderModifier {
            set: vec![(name("x-env"), value("prod"))],
            add: vec![(name("x-tag"), value("b"))],
            remove: vec![name("x-debug"), name("x-env")],
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-debug", value("1"));
        headers.append("x-env", value("dev"));
        headers.append("x-env", value("test"));
        headers.insert("x-tag", value("a"));
        modifier.apply(&mut headers);
        assert!(headers.get("x-debug").is_none());
        assert_eq!(headers.get_all("x-env").iter().count(), 1);
        assert_eq!(headers["x-env"], "prod");
        let tags: Vec<_> = headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
    }

    #[test]
    fn idempotent_methods_are_retried_by_default() {
        let retries = Retries {
            attempts: 1,
            on: RetryOn::default(),
            budget_percent: 20.0,
            min_per_second: 10,
            methods: Vec::new(),
        };
        assert!(retries.allows_method(&Method::GET));
        assert!(retries.allows_method(&Method::PUT));
        assert!(!retries.allows_method(&Method::POST));
        let posts = Retries {
            methods: vec![Method::POST],
            ..retries
        };
        assert!(posts.allows_method(&Method::POST));
        assert!(!posts.allows_method(&Method::GET));
    }
}
