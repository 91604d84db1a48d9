//! Gateway API: every `HTTPRoute` rule match becomes a route, and all of them are ordered by
//! the specification's precedence (hostname, exact path, longest prefix, method, most headers,
//! most query parameters, then the oldest route, its name, and the order of appearance), so
//! that sluice's first match is the match the specification picks.

use std::cmp::Reverse;

use sluice_config::{format_duration, parse_duration, HostMatch, MAX_RETRY_ATTEMPTS};

use super::document::{Fields, Node, Source};
use super::plan::{
    Action, BackendPlan, HeadersPlan, MatchPlan, MirrorPlan, NewUpstream, PathPlan, PercentPlan,
    PolicyPlan, RetriesPlan, RetryOnPlan, RoutePlan, Upstreams, ValueKind, ValuePlan,
};
use super::{policy, Report};

/// Why each filter type that is not converted is refused.
const FILTERS: &[(&str, &str)] = &[
    ("RequestRedirect", "redirects are not supported by sluice"),
    ("URLRewrite", "URL rewriting is not supported by sluice"),
    (
        "CORS",
        "CORS is not supported by sluice (answer CORS in the service)",
    ),
    (
        "ExternalAuth",
        "external authorization is not supported by sluice",
    ),
    (
        "ExtensionRef",
        "extension filters are not supported by sluice",
    ),
];

/// Fields of a rule sluice cannot honour.
const RULE_UNSUPPORTED: &[(&str, &str)] = &[(
    "sessionPersistence",
    "session persistence is not converted: sluice's sticky routes hash a header or cookie the client sends",
)];

/// What the filters of a rule or of a backendRef ask for.
#[derive(Debug, Default)]
struct Filters {
    request_headers: HeadersPlan,
    response_headers: HeadersPlan,
    mirror: Option<MirrorPlan>,
}

/// Where filters are: what they may do depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FilterLevel {
    /// A rule's; `forwards` when the rule has backends to forward to (not a 500).
    Rule { forwards: bool },
    /// A backendRef's: header changes for that backend only.
    Backend,
}

/// A backendRef, or a mirror's: which Service port it names.
#[derive(Debug)]
struct ServiceRef {
    group: String,
    kind: String,
    name: Option<String>,
    namespace: String,
    port: Option<u64>,
}

/// A route with its place in the precedence order.
#[derive(Debug)]
struct Entry {
    rank: Rank,
    plan: RoutePlan,
}

/// Sort key of a match: lower goes first. Field order is the order of the criteria.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    /// 0 exact hostname, 1 wildcard, 2 none (any host); then longer first.
    host: (u8, Reverse<usize>),
    /// 0 exact path, 1 regular expression (implementation-specific: after exact, before any
    /// prefix), 2 prefix; then longer prefix first.
    path: (u8, Reverse<usize>),
    /// 0 with a method, 1 without.
    method: u8,
    headers: Reverse<usize>,
    query: Reverse<usize>,
    /// Oldest route first; a route without `creationTimestamp` after those with one.
    created: (bool, String),
    /// `namespace/name`, alphabetically.
    route: String,
    rule: usize,
    matched: usize,
    host_index: usize,
}

impl ServiceRef {
    /// Takes `group`, `kind`, `name`, `namespace` and `port` from `fields` (a core `Service`
    /// in the route's namespace by default).
    fn read(
        source: &Source,
        fields: &mut Fields<'_>,
        namespace: &str,
        report: &mut Report,
    ) -> Self {
        let mut text = |key: &str| fields.take(key).and_then(|n| n.text(source, report));
        let group = text("group").unwrap_or_default();
        let kind = text("kind").unwrap_or_else(|| "Service".into());
        let name = text("name");
        let namespace = text("namespace").unwrap_or_else(|| namespace.to_string());
        let port = fields.take("port").and_then(|p| p.count(source, report));
        Self {
            group,
            kind,
            name,
            namespace,
            port,
        }
    }

    /// Whether it names a core `Service`.
    fn is_service(&self) -> bool {
        (self.group.is_empty() || self.group == "core") && self.kind == "Service"
    }

    /// The upstream standing for the Service port (`None`, reported, without a name or
    /// port).
    fn upstream(
        &self,
        source: &Source,
        path: &str,
        route_namespace: &str,
        upstreams: &mut Upstreams,
        report: &mut Report,
    ) -> Option<String> {
        let Some(name) = &self.name else {
            report.invalid(source, path, "needs a name");
            return None;
        };
        let Some(port) = self.port else {
            report.invalid(source, path, "port is required for a Service backendRef");
            return None;
        };
        let namespace = &self.namespace;
        if namespace != route_namespace {
            report.note(format!(
                "{}: {path} is in namespace {namespace}: converted as if a ReferenceGrant allowed it",
                source.label
            ));
        }
        Some(upstreams.name_for(NewUpstream {
            key: format!("gateway {namespace}/{name}:{port}"),
            names: vec![
                name.clone(),
                format!("{name}-{port}"),
                format!("{namespace}-{name}-{port}"),
            ],
            version: None,
            endpoint: format!("{name}.{namespace}:{port}"),
            placeholder: false,
            order: None,
            origin: format!("{}, backendRef {namespace}/{name}:{port}", source.label),
        }))
    }
}

/// The routes of every `HTTPRoute`, in precedence order.
pub(crate) fn http_routes(
    sources: &[&Source],
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Vec<RoutePlan> {
    let mut entries = Vec::new();
    for source in sources {
        entries.extend(http_route(source, upstreams, report));
    }
    entries.sort_by(|a, b| a.rank.cmp(&b.rank));
    entries.into_iter().map(|e| e.plan).collect()
}

/// One `HTTPRoute`: a route per rule, match and hostname.
fn http_route(source: &Source, upstreams: &mut Upstreams, report: &mut Report) -> Vec<Entry> {
    let Some(mut spec) = source.spec(report) else {
        return Vec::new();
    };
    if let Some(parents) = spec.take("parentRefs") {
        let names: Vec<String> = parents
            .items(source, report)
            .iter()
            .filter_map(|p| {
                p.value
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
            })
            .collect();
        report.note(format!(
            "{}: parentRefs [{}] are not applied: the sluice listener takes the gateway's place \
             (listener hostnames and ports are not intersected)",
            source.label,
            names.join(", ")
        ));
    }
    let mut hostnames: Vec<Option<String>> = Vec::new();
    for node in spec
        .take("hostnames")
        .map(|h| h.items(source, report))
        .unwrap_or_default()
    {
        let Some(host) = node.text(source, report) else {
            continue;
        };
        match HostMatch::parse(&host) {
            Ok(_) => hostnames.push(Some(host)),
            Err(reason) => report.invalid(source, &node.path, reason),
        }
    }
    if hostnames.is_empty() {
        hostnames.push(None);
    }
    let rules = spec.take("rules");
    spec.finish(source, report, &[]);
    let namespace = source.namespace.clone().unwrap_or_else(|| "default".into());
    // The specification's default: one rule matching every path, without backends.
    let default_rule = serde_json::json!({});
    let mut rules = rules.map(|r| r.items(source, report)).unwrap_or_default();
    if rules.is_empty() {
        rules.push(Node {
            value: &default_rule,
            path: "spec.rules[0]".into(),
        });
    }
    let mut entries = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let Some(mut fields) = rule.fields(source, report) else {
            continue;
        };
        let name = fields.take("name").and_then(|n| n.text(source, report));
        let mut matches = Vec::new();
        let mut matches_ok = true;
        if let Some(list) = fields.take("matches") {
            for node in list.items(source, report) {
                match rule_match(source, &node, report) {
                    Some(m) => matches.push(m),
                    None => matches_ok = false,
                }
            }
        }
        if matches.is_empty() && matches_ok {
            matches.push(MatchPlan {
                path: Some(PathPlan::SegmentPrefix("/".into())),
                ..MatchPlan::default()
            });
        }
        let action = backend_refs(
            source,
            fields.take("backendRefs"),
            &rule.path,
            &namespace,
            upstreams,
            report,
        );
        // A rule whose backendRefs failed is reported already: no more about its filters.
        let forwards = !matches!(action, Some(Action::Respond { .. }));
        let filters = fields
            .take("filters")
            .map(|node| {
                let level = FilterLevel::Rule { forwards };
                filters(source, &node, level, &namespace, upstreams, report)
            })
            .unwrap_or_default();
        let mut retries = match fields.take("retry") {
            Some(node) => retry(source, &node, report),
            None => Some(None),
        };
        if retries.as_ref().is_some_and(Option::is_some) && !forwards {
            report.note(format!(
                "{}: {}.retry has no effect: the rule forwards nothing (it answers 500)",
                source.label, rule.path
            ));
            retries = Some(None);
        }
        let timeout = match fields.take("timeouts") {
            Some(node) => timeouts(source, &node, report),
            None => Some(None),
        };
        fields.finish(source, report, RULE_UNSUPPORTED);
        let (Some(action), Some(timeout), Some(retries), true) =
            (action, timeout, retries, matches_ok)
        else {
            continue;
        };
        let policy = PolicyPlan {
            mirror: filters.mirror,
            retries,
            fault: None,
            request_headers: filters.request_headers,
            response_headers: filters.response_headers,
        };
        let base = name
            .clone()
            .unwrap_or_else(|| format!("{}-{index}", source.name));
        let rule_label = match &name {
            Some(n) => format!("spec.rules[{index}] ({n})"),
            None => format!("spec.rules[{index}]"),
        };
        for (j, matched) in matches.iter().enumerate() {
            for (k, host) in hostnames.iter().enumerate() {
                let mut route_name = base.clone();
                let mut origin = format!("{}, {rule_label}", source.label);
                if matches.len() > 1 {
                    route_name = format!("{route_name}-{j}");
                    origin = format!("{origin}, matches[{j}]");
                }
                if hostnames.len() > 1 {
                    route_name = format!("{route_name}-host{k}");
                }
                if let Some(host) = host {
                    origin = format!("{origin}, hostname {host}");
                }
                let mut plan_match = matched.clone();
                plan_match.host = host.clone();
                entries.push(Entry {
                    rank: rank(source, &plan_match, index, j, k),
                    plan: RoutePlan {
                        name: route_name,
                        origin,
                        matches: plan_match,
                        timeout: timeout.clone(),
                        timeout_why: None,
                        policy: policy.clone(),
                        action: action.clone(),
                    },
                });
            }
        }
    }
    entries
}

/// The precedence of one match of a rule.
fn rank(source: &Source, m: &MatchPlan, rule: usize, matched: usize, host_index: usize) -> Rank {
    let host = match &m.host {
        Some(h) if h.starts_with("*.") => (1, Reverse(h.len())),
        Some(h) => (0, Reverse(h.len())),
        None => (2, Reverse(0)),
    };
    let path = match &m.path {
        Some(PathPlan::Exact(p)) => (0, Reverse(p.len())),
        Some(PathPlan::Regex(_)) => (1, Reverse(0)),
        Some(PathPlan::SegmentPrefix(p) | PathPlan::Prefix(p)) => {
            (2, Reverse(p.trim_end_matches('/').len()))
        }
        None => (2, Reverse(0)),
    };
    Rank {
        host,
        path,
        method: u8::from(m.method.is_none()),
        headers: Reverse(m.headers.len()),
        query: Reverse(m.query.len()),
        created: (
            source.created.is_none(),
            source.created.clone().unwrap_or_default(),
        ),
        route: source.qualified_name(),
        rule,
        matched,
        host_index,
    }
}

/// One `matches[]` entry: path, headers, query parameters and method, all ANDed.
fn rule_match(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<MatchPlan> {
    let mut fields = node.fields(source, report)?;
    let mut plan = MatchPlan::default();
    let mut ok = true;
    plan.path = match fields.take("path") {
        Some(path) => {
            let mut path_fields = path.fields(source, report)?;
            let kind = path_fields
                .take("type")
                .and_then(|t| t.text(source, report))
                .unwrap_or_else(|| "PathPrefix".into());
            let value = path_fields
                .take("value")
                .and_then(|v| v.text(source, report))
                .unwrap_or_else(|| "/".into());
            path_fields.finish(source, report, &[]);
            if kind != "RegularExpression" && !value.starts_with('/') {
                report.invalid(
                    source,
                    &path.path,
                    format!("\"{value}\" does not start with /"),
                );
                ok = false;
            }
            match kind.as_str() {
                "Exact" => Some(PathPlan::Exact(value)),
                "PathPrefix" => Some(PathPlan::SegmentPrefix(value)),
                "RegularExpression" => Some(PathPlan::Regex(value)),
                other => {
                    report.invalid(
                        source,
                        &format!("{}.type", path.path),
                        format!("unknown path match type \"{other}\" (Exact, PathPrefix, RegularExpression)"),
                    );
                    ok = false;
                    None
                }
            }
        }
        None => Some(PathPlan::SegmentPrefix("/".into())),
    };
    for (key, case_insensitive) in [("headers", true), ("queryParams", false)] {
        let Some(list) = fields.take(key) else {
            continue;
        };
        for item in list.items(source, report) {
            let Some((name, kind)) = named_match(source, &item, report) else {
                ok = false;
                continue;
            };
            let name = if case_insensitive {
                name.to_ascii_lowercase()
            } else {
                name
            };
            let target = if case_insensitive {
                &mut plan.headers
            } else {
                &mut plan.query
            };
            // The specification: only the first entry with an equivalent name counts.
            if target.iter().any(|(n, _)| *n == name) {
                report.note(format!(
                    "{}: {} repeats {name}; only the first entry counts (as the Gateway API says)",
                    source.label, item.path
                ));
                continue;
            }
            target.push((name, ValuePlan::plain(kind)));
        }
    }
    if let Some(method) = fields.take("method") {
        plan.method = method.text(source, report);
        ok &= plan.method.is_some();
    }
    fields.finish(source, report, &[]);
    ok.then_some(plan)
}

/// A header or query parameter match: `{ type: Exact | RegularExpression, name, value }`.
fn named_match(
    source: &Source,
    node: &Node<'_>,
    report: &mut Report,
) -> Option<(String, ValueKind)> {
    let mut fields = node.fields(source, report)?;
    let kind = fields
        .take("type")
        .and_then(|t| t.text(source, report))
        .unwrap_or_else(|| "Exact".into());
    let name = fields.take("name").and_then(|n| n.text(source, report));
    let value = fields.take("value").and_then(|v| v.text(source, report));
    fields.finish(source, report, &[]);
    let (Some(name), Some(value)) = (name, value) else {
        report.invalid(source, &node.path, "needs name and value");
        return None;
    };
    match kind.as_str() {
        "Exact" => Some((name, ValueKind::Exact(value))),
        "RegularExpression" => Some((name, ValueKind::Regex(value))),
        other => {
            report.invalid(
                source,
                &format!("{}.type", node.path),
                format!("unknown match type \"{other}\" (Exact, RegularExpression)"),
            );
            None
        }
    }
}

/// Filters of a rule or a backendRef: header modifiers and a mirror are converted, any other
/// type is refused by its type, which `--ignore` accepts.
fn filters(
    source: &Source,
    node: &Node<'_>,
    level: FilterLevel,
    namespace: &str,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Filters {
    let mut out = Filters::default();
    let mut seen: Vec<String> = Vec::new();
    for filter in node.items(source, report) {
        let Some(mut fields) = filter.fields(source, report) else {
            continue;
        };
        let Some(kind) = fields.take("type").and_then(|t| t.text(source, report)) else {
            report.invalid(source, &filter.path, "needs a type");
            continue;
        };
        let repeated = seen.contains(&kind);
        seen.push(kind.clone());
        match kind.as_str() {
            "RequestHeaderModifier" | "ResponseHeaderModifier" => {
                let (key, target) = if kind == "RequestHeaderModifier" {
                    ("requestHeaderModifier", &mut out.request_headers)
                } else {
                    ("responseHeaderModifier", &mut out.response_headers)
                };
                let config = fields.take(key);
                fields.finish(source, report, &[]);
                if repeated {
                    report.invalid(
                        source,
                        &filter.path,
                        format!("a second {kind} filter: the Gateway API allows one per rule"),
                    );
                    continue;
                }
                match config {
                    Some(config) => header_filter(source, &config, target, report),
                    None => report.invalid(source, &filter.path, format!("{kind} needs {key}")),
                }
            }
            "RequestMirror" => {
                let config = fields.take("requestMirror");
                fields.finish(source, report, &[]);
                let refused = match level {
                    FilterLevel::Backend => Some(
                        "a backendRef's RequestMirror filter: sluice mirrors a route's requests, \
                         not one backend's",
                    ),
                    FilterLevel::Rule { forwards: false } => Some(
                        "the rule forwards nothing (it answers 500): sluice mirrors forwarded \
                         requests only",
                    ),
                    FilterLevel::Rule { .. } if out.mirror.is_some() || repeated => Some(
                        "a second RequestMirror filter: sluice mirrors a route's requests to one \
                         upstream",
                    ),
                    FilterLevel::Rule { .. } => None,
                };
                if let Some(reason) = refused {
                    report.unsupported(source, &filter.path, Some("RequestMirror"), reason);
                    continue;
                }
                match config {
                    Some(config) => {
                        out.mirror = request_mirror(source, &config, namespace, upstreams, report);
                    }
                    None => {
                        report.invalid(source, &filter.path, "RequestMirror needs requestMirror")
                    }
                }
            }
            other => {
                let reason = FILTERS
                    .iter()
                    .find(|(k, _)| *k == other)
                    .map_or("an unknown filter type", |(_, reason)| reason);
                report.unsupported(
                    source,
                    &filter.path,
                    Some(other),
                    &format!("{other} filter: {reason}"),
                );
            }
        }
    }
    out
}

/// An `HTTPHeaderFilter`: `set` and `add` list `{ name, value }`, `remove` lists names. Names
/// are case-insensitive; of equivalent names in one list the first counts, as the
/// specification says.
fn header_filter(source: &Source, node: &Node<'_>, plan: &mut HeadersPlan, report: &mut Report) {
    let Some(mut fields) = node.fields(source, report) else {
        return;
    };
    for key in ["set", "add"] {
        let Some(list) = fields.take(key) else {
            continue;
        };
        for item in list.items(source, report) {
            let Some(mut entry) = item.fields(source, report) else {
                continue;
            };
            let name = entry.take("name").and_then(|n| n.text(source, report));
            let value = entry.take("value").and_then(|v| v.text(source, report));
            entry.finish(source, report, &[]);
            let (Some(name), Some(value)) = (name, value) else {
                report.invalid(source, &item.path, "needs name and value");
                continue;
            };
            let Some(name) = policy::header_name(source, &item.path, &name, report) else {
                continue;
            };
            let Some(value) = policy::header_value(source, &item.path, &name, &value, report)
            else {
                continue;
            };
            let target = if key == "set" {
                &mut plan.set
            } else {
                &mut plan.add
            };
            if !policy::push_once(target, name.clone(), value) {
                report.note(format!(
                    "{}: {} repeats {name}; only the first entry counts (as the Gateway API says)",
                    source.label, item.path
                ));
            }
        }
    }
    if let Some(list) = fields.take("remove") {
        for item in list.items(source, report) {
            let Some(text) = item.text(source, report) else {
                continue;
            };
            if let Some(name) = policy::header_name(source, &item.path, &text, report) {
                policy::remove_once(plan, name);
            }
        }
    }
    fields.finish(source, report, &[]);
}

/// An `HTTPRequestMirrorFilter`: a Service port, and the share mirrored (`percent`, or
/// `fraction` with a denominator of 100 by default; all requests without either).
fn request_mirror(
    source: &Source,
    node: &Node<'_>,
    namespace: &str,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Option<MirrorPlan> {
    let mut fields = node.fields(source, report)?;
    let reference = fields.take("backendRef");
    let percent = fields.take("percent");
    let fraction = fields.take("fraction");
    fields.finish(source, report, &[]);
    let percent = match (percent, fraction) {
        (None, None) => Some(PercentPlan::ALL),
        (Some(p), None) => {
            let value = p.count(source, report)?;
            policy::checked_percent(
                source,
                &p.path,
                PercentPlan::from_fraction(value, 100),
                &format!("{value}%"),
                report,
            )
        }
        (None, Some(f)) => {
            let mut parts = f.fields(source, report)?;
            let numerator = parts
                .take("numerator")
                .and_then(|n| n.count(source, report));
            let denominator = match parts.take("denominator") {
                Some(d) => d.count(source, report),
                None => Some(100),
            };
            parts.finish(source, report, &[]);
            let (numerator, denominator) = (numerator?, denominator?);
            policy::checked_percent(
                source,
                &f.path,
                PercentPlan::from_fraction(numerator, denominator),
                &format!("{numerator}/{denominator}"),
                report,
            )
        }
        (Some(_), Some(_)) => {
            report.invalid(source, &node.path, "give percent or fraction, not both");
            None
        }
    };
    let Some(reference) = reference else {
        report.invalid(source, &node.path, "needs backendRef");
        return None;
    };
    let mut ref_fields = reference.fields(source, report)?;
    let service = ServiceRef::read(source, &mut ref_fields, namespace, report);
    ref_fields.finish(source, report, &[]);
    if !service.is_service() {
        report.invalid(
            source,
            &reference.path,
            format!(
                "a {} of group \"{}\", not a Service: sluice mirrors to Services",
                service.kind, service.group
            ),
        );
        return None;
    }
    let upstream = service.upstream(source, &reference.path, namespace, upstreams, report)?;
    Some(MirrorPlan {
        upstream,
        percent: percent?,
    })
}

/// `retry`: `attempts` (sluice's default when absent, none when 0) and `codes` become
/// `retries`, with connection failures and resets, as the conformance suite retries them;
/// `backoff` is noted, not kept. `Some(None)`: no retries.
fn retry(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<Option<RetriesPlan>> {
    let mut fields = node.fields(source, report)?;
    let attempts = fields.take("attempts");
    let codes = fields.take("codes");
    let backoff = fields.take("backoff");
    fields.finish(source, report, &[]);
    let mut ok = true;
    let mut on = RetryOnPlan {
        connect_failure: true,
        reset: true,
        ..RetryOnPlan::default()
    };
    for item in codes.map(|c| c.items(source, report)).unwrap_or_default() {
        match item.count(source, report) {
            Some(code) if policy::retriable_status(code) => {
                on.status(u16::try_from(code).unwrap_or_default());
            }
            Some(code) if (400..=599).contains(&code) => {
                ok &= report.unsupported(
                    source,
                    &item.path,
                    None,
                    &format!("retrying on {code}: sluice retries on 408, 429 and 5xx statuses"),
                );
            }
            Some(code) => {
                report.invalid(
                    source,
                    &item.path,
                    format!("{code} is not a status from 400 to 599"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(backoff) = backoff {
        let text = backoff.text(source, report).unwrap_or_default();
        report.note(format!(
            "{}: {} ({text}) is not converted: sluice has no retry backoff setting",
            source.label, backoff.path
        ));
    }
    let (attempts, attempts_why) = match attempts {
        None => (1, Some("not given: sluice's default")),
        Some(node) => match node.count(source, report)? {
            // The specification: an explicit zero disables retries.
            0 => return ok.then_some(None),
            n if n > MAX_RETRY_ATTEMPTS => {
                ok &= report.unsupported(
                    source,
                    &node.path,
                    None,
                    &format!(
                        "{n} retries: sluice retries a request at most {MAX_RETRY_ATTEMPTS} times"
                    ),
                );
                (MAX_RETRY_ATTEMPTS, Some("capped at sluice's most"))
            }
            n => (n, None),
        },
    };
    ok.then_some(Some(RetriesPlan {
        attempts,
        attempts_why,
        on,
    }))
}

/// The rule's action: a split over its valid backends, or the 500 the specification requires
/// when it has no backendRefs, or only invalid or zero-weight ones.
fn backend_refs(
    source: &Source,
    node: Option<Node<'_>>,
    rule_path: &str,
    namespace: &str,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Option<Action> {
    let refs = node.map(|n| n.items(source, report)).unwrap_or_default();
    let mut backends: Vec<BackendPlan> = Vec::new();
    let mut invalid_with_traffic = Vec::new();
    let mut ok = true;
    for item in &refs {
        let Some(mut fields) = item.fields(source, report) else {
            ok = false;
            continue;
        };
        let service = ServiceRef::read(source, &mut fields, namespace, report);
        let weight = match fields.take("weight") {
            Some(w) => w.count(source, report),
            None => Some(1),
        };
        let filters = fields
            .take("filters")
            .map(|f| {
                filters(
                    source,
                    &f,
                    FilterLevel::Backend,
                    namespace,
                    upstreams,
                    report,
                )
            })
            .unwrap_or_default();
        fields.finish(source, report, &[]);
        let (Some(_), Some(weight)) = (&service.name, weight) else {
            report.invalid(source, &item.path, "needs a name and a whole weight");
            ok = false;
            continue;
        };
        if !service.is_service() {
            report.note(format!(
                "{}: {} is a {} of group \"{}\", not a Service: an invalid backendRef, \
                 answered with 500 as the Gateway API requires",
                source.label, item.path, service.kind, service.group
            ));
            if weight > 0 {
                invalid_with_traffic.push(item.path.clone());
            }
            continue;
        }
        let Some(upstream) = service.upstream(source, &item.path, namespace, upstreams, report)
        else {
            ok = false;
            continue;
        };
        let backend = BackendPlan {
            upstream,
            weight,
            request_headers: filters.request_headers,
            response_headers: filters.response_headers,
        };
        match backends.iter_mut().find(|b| b.upstream == backend.upstream) {
            Some(known)
                if known.request_headers != backend.request_headers
                    || known.response_headers != backend.response_headers =>
            {
                // Dropped with --ignore, the first backendRef's filters apply to both.
                ok &= report.unsupported(
                    source,
                    &format!("{}.filters", item.path),
                    None,
                    "the same backend twice with different filters: sluice changes one \
                     backend's headers one way",
                );
                known.weight += backend.weight;
            }
            Some(known) => known.weight += backend.weight,
            None => backends.push(backend),
        }
    }
    if !ok {
        return None;
    }
    let carries_traffic = backends.iter().any(|b| b.weight > 0);
    if carries_traffic && !invalid_with_traffic.is_empty() {
        report.invalid(
            source,
            rule_path,
            format!(
                "valid backendRefs next to invalid ones with a weight ({}): the Gateway API \
                 answers 500 for the invalid ones' share, which a sluice split cannot express",
                invalid_with_traffic.join(", ")
            ),
        );
        return None;
    }
    if carries_traffic {
        return Some(Action::Forward(backends));
    }
    let why = if refs.is_empty() {
        "no backendRefs"
    } else {
        "no valid backendRef with a weight"
    };
    Some(Action::Respond {
        status: 500,
        body: None,
        why: format!("{why}: the Gateway API answers 500"),
    })
}

/// `timeouts`: `request` is the route timeout; `backendRequest` is refused.
fn timeouts(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<Option<String>> {
    let mut fields = node.fields(source, report)?;
    let request = fields.take("request");
    fields.finish(
        source,
        report,
        &[(
            "backendRequest",
            "a per-backend-request timeout is not supported: sluice has one timeout per route (timeouts.request)",
        )],
    );
    let Some(request) = request else {
        return Some(None);
    };
    let text = request.text(source, report)?;
    match parse_duration(&text) {
        Ok(d) => Some(Some(format_duration(d))),
        Err(reason) => {
            report.invalid(
                source,
                &request.path,
                format!("invalid duration \"{text}\": {reason}"),
            );
            None
        }
    }
}
