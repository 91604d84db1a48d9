//! Gateway API: every `HTTPRoute` rule match becomes a route, and all of them are ordered by
//! the specification's precedence (hostname, exact path, longest prefix, method, most headers,
//! most query parameters, then the oldest route, its name, and the order of appearance), so
//! that sluice's first match is the match the specification picks.

use std::cmp::Reverse;

use sluice_config::{format_duration, parse_duration, HostMatch};

use super::document::{Node, Source};
use super::plan::{
    Action, BackendPlan, MatchPlan, NewUpstream, PathPlan, RoutePlan, Upstreams, ValueKind,
    ValuePlan,
};
use super::Report;

/// Why each filter type is refused.
const FILTERS: &[(&str, &str)] = &[
    (
        "RequestHeaderModifier",
        "header modifiers are not supported by sluice",
    ),
    (
        "ResponseHeaderModifier",
        "header modifiers are not supported by sluice",
    ),
    ("RequestRedirect", "redirects are not supported by sluice"),
    ("URLRewrite", "URL rewriting is not supported by sluice"),
    (
        "RequestMirror",
        "request mirroring is not supported by sluice yet",
    ),
    (
        "CORS",
        "CORS is not supported by sluice (answer CORS in the service)",
    ),
    (
        "ExtensionRef",
        "extension filters are not supported by sluice",
    ),
];

/// Fields of a rule sluice cannot honour.
const RULE_UNSUPPORTED: &[(&str, &str)] = &[
    ("retry", "retries are not supported by sluice yet"),
    (
        "sessionPersistence",
        "session persistence is not converted: sluice's sticky routes hash a header or cookie the client sends",
    ),
];

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
        if let Some(filters) = fields.take("filters") {
            refuse_filters(source, &filters, report);
        }
        let action = backend_refs(
            source,
            fields.take("backendRefs"),
            &rule.path,
            &namespace,
            upstreams,
            report,
        );
        let timeout = match fields.take("timeouts") {
            Some(node) => timeouts(source, &node, report),
            None => Some(None),
        };
        fields.finish(source, report, RULE_UNSUPPORTED);
        let (Some(action), Some(timeout), true) = (action, timeout, matches_ok) else {
            continue;
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

/// Filters (of a rule or a backendRef): each refused by its type, which `--ignore` accepts.
fn refuse_filters(source: &Source, node: &Node<'_>, report: &mut Report) {
    for filter in node.items(source, report) {
        let kind = filter
            .value
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("(no type)")
            .to_string();
        let reason = FILTERS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("an unknown filter type", |(_, reason)| reason);
        report.unsupported(
            source,
            &filter.path,
            Some(&kind),
            &format!("{kind} filter: {reason}"),
        );
    }
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
        let text = |fields: &mut super::document::Fields<'_>, key: &str, report: &mut Report| {
            fields.take(key).and_then(|n| n.text(source, report))
        };
        let group = text(&mut fields, "group", report).unwrap_or_default();
        let kind = text(&mut fields, "kind", report).unwrap_or_else(|| "Service".into());
        let name = text(&mut fields, "name", report);
        let ref_namespace =
            text(&mut fields, "namespace", report).unwrap_or_else(|| namespace.to_string());
        let port = fields.take("port").and_then(|p| p.count(source, report));
        let weight = match fields.take("weight") {
            Some(w) => w.count(source, report),
            None => Some(1),
        };
        if let Some(filters) = fields.take("filters") {
            refuse_filters(source, &filters, report);
        }
        fields.finish(source, report, &[]);
        let (Some(name), Some(weight)) = (name, weight) else {
            report.invalid(source, &item.path, "needs a name and a whole weight");
            ok = false;
            continue;
        };
        if !(group.is_empty() || group == "core") || kind != "Service" {
            report.note(format!(
                "{}: {} is a {kind} of group \"{group}\", not a Service: an invalid backendRef, \
                 answered with 500 as the Gateway API requires",
                source.label, item.path
            ));
            if weight > 0 {
                invalid_with_traffic.push(item.path.clone());
            }
            continue;
        }
        let Some(port) = port else {
            report.invalid(
                source,
                &item.path,
                "port is required for a Service backendRef",
            );
            ok = false;
            continue;
        };
        if ref_namespace != namespace {
            report.note(format!(
                "{}: {} is in namespace {ref_namespace}: converted as if a ReferenceGrant allowed it",
                source.label, item.path
            ));
        }
        let upstream = upstreams.name_for(NewUpstream {
            key: format!("gateway {ref_namespace}/{name}:{port}"),
            names: vec![
                name.clone(),
                format!("{name}-{port}"),
                format!("{ref_namespace}-{name}-{port}"),
            ],
            version: None,
            endpoint: format!("{name}.{ref_namespace}:{port}"),
            placeholder: false,
            order: None,
            origin: format!("{}, backendRef {ref_namespace}/{name}:{port}", source.label),
        });
        match backends.iter_mut().find(|b| b.upstream == upstream) {
            Some(known) => known.weight += weight,
            None => backends.push(BackendPlan { upstream, weight }),
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
