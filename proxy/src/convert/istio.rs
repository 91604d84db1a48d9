//! Istio: `DestinationRule` subsets become upstreams (their `version` label the upstream's
//! version) and `VirtualService` HTTP rules become routes, in the same order (first match
//! wins), one route per ORed `match` block.

use sluice_config::{format_duration, parse_duration, HostMatch};

use super::document::{Node, Source};
use super::plan::{
    Action, BackendPlan, MatchPlan, NewUpstream, PathPlan, RoutePlan, Upstreams, ValueKind,
    ValuePlan,
};
use super::{ConvertError, Report};

/// One subset of a `DestinationRule`.
#[derive(Debug)]
pub(crate) struct Subset {
    host: String,
    name: String,
    labels: Vec<(String, String)>,
    rule: String,
}

/// Fields of `http[]` sluice cannot honour, with the reason given.
const HTTP_UNSUPPORTED: &[(&str, &str)] = &[
    ("fault", "fault injection is not supported by sluice"),
    (
        "corsPolicy",
        "CORS policies are not supported by sluice (answer CORS in the service)",
    ),
    (
        "rewrite",
        "URI and authority rewriting is not supported by sluice",
    ),
    ("redirect", "redirects are not supported by sluice"),
    (
        "delegate",
        "delegation is not supported: inline the delegate VirtualService's rules",
    ),
    ("headers", "header manipulation is not supported by sluice"),
    ("mirror", "traffic mirroring is not supported by sluice yet"),
    (
        "mirrors",
        "traffic mirroring is not supported by sluice yet",
    ),
    (
        "mirrorPercentage",
        "traffic mirroring is not supported by sluice yet",
    ),
    (
        "mirrorPercent",
        "traffic mirroring is not supported by sluice yet",
    ),
    (
        "mirror_percent",
        "traffic mirroring is not supported by sluice yet",
    ),
];

/// Fields of `http[].match[]` sluice cannot honour.
const MATCH_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "sourceLabels",
        "matching the client's workload labels is not supported: sluice does not know its clients' workloads",
    ),
    (
        "sourceNamespace",
        "matching the client's namespace is not supported: sluice does not know its clients' workloads",
    ),
    (
        "gateways",
        "per-match gateways are not supported: one sluice config serves one proxy",
    ),
    (
        "port",
        "matching the port is not supported: sluice routes every listener alike",
    ),
    ("scheme", "matching the scheme is not supported by sluice"),
    (
        "statPrefix",
        "stat prefixes are not supported: sluice labels metrics by route name",
    ),
];

/// Istio retries twice by default; sluice does not.
const DEFAULT_RETRIES_NOTE: &str = "Istio retries a failed request twice by default (no \
    `retries` field); sluice does not retry (only a request that a closing pooled connection \
    could not send goes out again)";

/// The subsets of every `DestinationRule`.
pub(crate) fn destination_rules(sources: &[&Source], report: &mut Report) -> Vec<Subset> {
    let mut subsets = Vec::new();
    for source in sources {
        let Some(mut spec) = source.spec(report) else {
            continue;
        };
        let host = required_text(source, &mut spec, "host", report);
        if spec.take("exportTo").is_some() {
            report.note(format!(
                "{}: exportTo has no effect (a visibility setting of the mesh)",
                source.label
            ));
        }
        let list = spec.take("subsets");
        spec.finish(
            source,
            report,
            &[
                (
                    "trafficPolicy",
                    "traffic policies are not converted: set connect_timeout, outlier_detection and tls per upstream in sluice.yaml",
                ),
                (
                    "workloadSelector",
                    "workload selectors are not supported: one sluice config serves one proxy",
                ),
            ],
        );
        let Some(host) = host else { continue };
        for item in list.map(|l| l.items(source, report)).unwrap_or_default() {
            let Some(mut fields) = item.fields(source, report) else {
                continue;
            };
            let name = required_text(source, &mut fields, "name", report);
            let labels = fields
                .take("labels")
                .map(|l| l.entries(source, report))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(key, value)| Some((key, value.text(source, report)?)))
                .collect();
            fields.finish(
                source,
                report,
                &[(
                    "trafficPolicy",
                    "traffic policies are not converted: set connect_timeout, outlier_detection and tls per upstream in sluice.yaml",
                )],
            );
            if let Some(name) = name {
                subsets.push(Subset {
                    host: host.clone(),
                    name,
                    labels,
                    rule: source.label.clone(),
                });
            }
        }
    }
    subsets
}

/// The routes of every `VirtualService`, in input order.
pub(crate) fn virtual_services(
    sources: &[&Source],
    subsets: &[Subset],
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Vec<RoutePlan> {
    let mut routes = Vec::new();
    let mut mesh: Vec<(&Source, Vec<String>)> = Vec::new();
    for source in sources {
        let Some(mut spec) = source.spec(report) else {
            continue;
        };
        let hosts = texts(source, spec.take("hosts"), report);
        if hosts.is_empty() {
            report.invalid(source, "spec.hosts", "missing");
        }
        let gateways = texts(source, spec.take("gateways"), report);
        if spec.take("exportTo").is_some() {
            report.note(format!(
                "{}: exportTo has no effect (a visibility setting of the mesh)",
                source.label
            ));
        }
        let http = spec.take("http");
        spec.finish(
            source,
            report,
            &[
                ("tcp", "TCP routes are not supported: sluice proxies HTTP"),
                (
                    "tls",
                    "TLS passthrough routes are not supported: sluice proxies HTTP",
                ),
            ],
        );
        let hosts_matched = if gateways.iter().any(|g| g != "mesh") {
            // Bound to an ingress gateway: the hosts are what clients ask for.
            let mut matched = Vec::new();
            for host in &hosts {
                if host == "*" {
                    matched.push(None);
                    continue;
                }
                match HostMatch::parse(host) {
                    Ok(_) => matched.push(Some(host.clone())),
                    Err(reason) => report.invalid(source, "spec.hosts", reason),
                }
            }
            if matched.iter().any(Option::is_none) {
                vec![None]
            } else {
                matched
            }
        } else {
            report.note(format!(
                "{}: the mesh hosts [{}] are the service this proxy fronts; they are not \
                 matched per request",
                source.label,
                hosts.join(", ")
            ));
            mesh.push((source, hosts.clone()));
            vec![None]
        };
        let Some(http) = http else {
            report.invalid(source, "spec.http", "missing: no HTTP routes to convert");
            continue;
        };
        for (index, rule) in http.items(source, report).into_iter().enumerate() {
            let context = RuleContext {
                source,
                index,
                hosts: &hosts_matched,
                subsets,
            };
            routes.extend(http_rule(&context, &rule, upstreams, report));
        }
    }
    if let Some(((first, first_hosts), rest)) = mesh.split_first() {
        for (other, hosts) in rest {
            if !hosts
                .iter()
                .any(|h| first_hosts.iter().any(|f| same_service(f, h)))
            {
                report.error(ConvertError::Conflict(format!(
                    "{} and {} route different services ([{}] and [{}]): a sluice proxy \
                     fronts one service; convert each service's VirtualService separately",
                    first.label,
                    other.label,
                    first_hosts.join(", "),
                    hosts.join(", ")
                )));
            }
        }
    }
    routes
}

/// Where an `http[]` rule sits.
struct RuleContext<'a> {
    source: &'a Source,
    index: usize,
    /// Host matchers the rule's routes get (one route per host; `None` = any host).
    hosts: &'a [Option<String>],
    subsets: &'a [Subset],
}

/// One `http[]` rule: a route per `match` block (and per matched host).
fn http_rule(
    context: &RuleContext<'_>,
    node: &Node<'_>,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Vec<RoutePlan> {
    let source = context.source;
    let Some(mut fields) = node.fields(source, report) else {
        return Vec::new();
    };
    let name = fields.take("name").and_then(|n| n.text(source, report));
    let mut blocks: Vec<(MatchPlan, String)> = Vec::new();
    // A block that failed is reported; the rule then yields no route (never a wider one).
    let mut blocks_ok = true;
    if let Some(list) = fields.take("match") {
        for (j, block) in list.items(source, report).iter().enumerate() {
            match match_block(source, block, report) {
                Some((plan, block_name)) => {
                    blocks.push((plan, block_name.unwrap_or_else(|| j.to_string())));
                }
                None => blocks_ok = false,
            }
        }
    }
    if blocks.is_empty() {
        blocks.push((MatchPlan::default(), String::new()));
    }
    let timeout = match fields.take("timeout") {
        Some(t) => t
            .text(source, report)
            .and_then(|text| match parse_duration(&text) {
                Ok(d) => Some((format_duration(d), None)),
                Err(reason) => {
                    report.invalid(
                        source,
                        &t.path,
                        format!("invalid duration \"{text}\": {reason}"),
                    );
                    None
                }
            }),
        None => Some(("0s".to_string(), Some("Istio's default: no timeout"))),
    };
    match fields.take("retries") {
        Some(retries) => {
            let attempts = retries
                .fields(source, report)
                .and_then(|mut r| r.take("attempts"))
                .and_then(|a| a.count(source, report));
            if attempts != Some(0) {
                report.unsupported(
                    source,
                    &retries.path,
                    None,
                    "retries are not supported by sluice yet (retries: { attempts: 0 } converts)",
                );
            }
        }
        None => report.note(DEFAULT_RETRIES_NOTE.to_string()),
    }
    let action = match (fields.take("route"), fields.take("directResponse")) {
        (Some(route), None) => {
            destinations(context, &route, upstreams, report).map(Action::Forward)
        }
        (None, Some(response)) => direct_response(source, &response, report),
        (Some(_), Some(_)) => {
            report.invalid(source, &node.path, "both route and directResponse");
            None
        }
        (None, None) => {
            // A redirect or delegate rule is reported as unsupported below.
            let other = ["redirect", "delegate"]
                .iter()
                .any(|k| node.value.get(*k).is_some());
            if other {
                report.note(format!(
                    "{}: {} has neither route nor directResponse: no route",
                    source.label, node.path
                ));
            } else {
                report.invalid(source, &node.path, "needs route or directResponse");
            }
            None
        }
    };
    fields.finish(source, report, HTTP_UNSUPPORTED);
    let (Some(action), Some((timeout, timeout_why)), true) = (action, timeout, blocks_ok) else {
        return Vec::new();
    };
    let base = name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", source.name, context.index));
    let rule = match &name {
        Some(n) => format!("spec.http[{}] ({n})", context.index),
        None => format!("spec.http[{}]", context.index),
    };
    let mut routes = Vec::new();
    let several_blocks = blocks.len() > 1;
    for (j, (block, block_name)) in blocks.iter().enumerate() {
        for (k, host) in context.hosts.iter().enumerate() {
            let mut matches = block.clone();
            if let Some(host) = host {
                // Both must hold: a gateway host pattern and an exact authority intersect in
                // the authority, or in nothing (no route for that host).
                match &matches.host {
                    Some(authority) if !host_covers(host, authority) => continue,
                    Some(_) => {}
                    None => matches.host = Some(host.clone()),
                }
            }
            let mut route_name = base.clone();
            let mut origin = format!("{}, {rule}", source.label);
            if several_blocks {
                route_name = format!("{route_name}-{block_name}");
                origin = format!("{origin}, match[{j}]");
            }
            if context.hosts.len() > 1 {
                route_name = format!("{route_name}-host{k}");
            }
            if let Some(host) = host {
                origin = format!("{origin}, host {host}");
            }
            routes.push(RoutePlan {
                name: route_name,
                origin,
                matches,
                timeout: Some(timeout.clone()),
                timeout_why,
                action: action.clone(),
            });
        }
    }
    if routes.is_empty() {
        report.note(format!(
            "{}: {rule} can never match (its authority is none of the hosts): no route",
            source.label
        ));
    }
    routes
}

/// One `match[]` block: its conditions, all ANDed.
fn match_block(
    source: &Source,
    node: &Node<'_>,
    report: &mut Report,
) -> Option<(MatchPlan, Option<String>)> {
    let mut fields = node.fields(source, report)?;
    let name = fields.take("name").and_then(|n| n.text(source, report));
    let ignore_case = fields
        .take("ignoreUriCase")
        .and_then(|n| n.flag(source, report))
        .unwrap_or(false);
    let mut plan = MatchPlan::default();
    let mut ok = true;
    if let Some(uri) = fields.take("uri") {
        plan.path = match string_match(source, &uri, report) {
            Some(ValueKind::Exact(path)) if ignore_case => {
                Some(PathPlan::Regex(format!("(?i){}", regex::escape(&path))))
            }
            Some(ValueKind::Prefix(prefix)) if ignore_case => {
                Some(PathPlan::Regex(format!("(?i){}.*", regex::escape(&prefix))))
            }
            Some(ValueKind::Exact(path)) => {
                starts_with_slash(source, &uri, &path, report).then_some(PathPlan::Exact(path))
            }
            Some(ValueKind::Prefix(prefix)) => {
                starts_with_slash(source, &uri, &prefix, report).then_some(PathPlan::Prefix(prefix))
            }
            Some(ValueKind::Regex(pattern)) => Some(PathPlan::Regex(pattern)),
            Some(ValueKind::Present(_)) => {
                report.invalid(source, &uri.path, "an empty match");
                None
            }
            None => None,
        };
        ok &= plan.path.is_some();
    }
    if let Some(method) = fields.take("method") {
        match string_match(source, &method, report) {
            Some(ValueKind::Exact(m)) => plan.method = Some(m),
            Some(ValueKind::Present(_)) => {
                report.invalid(source, &method.path, "an empty match");
                ok = false;
            }
            Some(_) => {
                // Dropped with --ignore, the condition goes (the block matches more).
                ok &= report.unsupported(
                    source,
                    &method.path,
                    None,
                    "a method prefix or regex is not supported: sluice matches one method exactly",
                );
            }
            None => ok = false,
        }
    }
    if let Some(authority) = fields.take("authority") {
        match string_match(source, &authority, report) {
            Some(ValueKind::Exact(host)) if !host.contains(':') => match HostMatch::parse(&host) {
                Ok(_) => plan.host = Some(host),
                Err(reason) => {
                    report.invalid(source, &authority.path, reason);
                    ok = false;
                }
            },
            Some(ValueKind::Exact(_)) => {
                ok &= report.unsupported(
                    source,
                    &authority.path,
                    None,
                    "an authority with a port is not supported: sluice matches hosts without their port",
                );
            }
            Some(_) => {
                ok &= report.unsupported(
                    source,
                    &authority.path,
                    None,
                    "an authority prefix or regex is not supported: sluice matches exact hosts and *.suffix wildcards",
                );
            }
            None => ok = false,
        }
    }
    for (key, invert) in [("headers", false), ("withoutHeaders", true)] {
        let Some(headers) = fields.take(key) else {
            continue;
        };
        for (header, value) in headers.entries(source, report) {
            let header = header.to_ascii_lowercase();
            let Some(kind) = string_match(source, &value, report) else {
                ok = false;
                continue;
            };
            if plan.headers.iter().any(|(h, _)| *h == header) {
                report.invalid(
                    source,
                    &value.path,
                    format!("header {header} is both in headers and withoutHeaders"),
                );
                ok = false;
                continue;
            }
            plan.headers.push((header, ValuePlan { kind, invert }));
        }
    }
    if let Some(query) = fields.take("queryParams") {
        for (param, value) in query.entries(source, report) {
            match string_match(source, &value, report) {
                // Istio documents prefix matching of query parameters as unsupported, so
                // what it does with one is no contract to convert.
                Some(ValueKind::Prefix(_)) => {
                    ok &= report.unsupported(
                        source,
                        &format!("{}.prefix", value.path),
                        None,
                        "Istio does not support prefix matching of query parameters",
                    );
                }
                Some(kind) => plan.query.push((param, ValuePlan::plain(kind))),
                None => ok = false,
            }
        }
    }
    fields.finish(source, report, MATCH_UNSUPPORTED);
    ok.then_some((plan, name))
}

/// An Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex`; `{}` is "present".
fn string_match(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<ValueKind> {
    let mut fields = node.fields(source, report)?;
    if fields.is_empty() {
        return Some(ValueKind::Present(true));
    }
    let given: Vec<(&str, Node<'_>)> = ["exact", "prefix", "regex"]
        .into_iter()
        .filter_map(|k| Some((k, fields.take(k)?)))
        .collect();
    fields.finish(source, report, &[]);
    match given.as_slice() {
        [(kind, value)] => {
            let text = value.text(source, report)?;
            Some(match *kind {
                "exact" => ValueKind::Exact(text),
                "prefix" => ValueKind::Prefix(text),
                _ => ValueKind::Regex(text),
            })
        }
        _ => {
            report.invalid(
                source,
                &node.path,
                "give exactly one of exact, prefix, regex",
            );
            None
        }
    }
}

/// The weighted destinations of a rule: subsets become upstreams; absent weights are equal
/// shares; a subset named twice gets the sum of its weights.
fn destinations(
    context: &RuleContext<'_>,
    node: &Node<'_>,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Option<Vec<BackendPlan>> {
    let source = context.source;
    let items = node.items(source, report);
    if items.is_empty() {
        report.invalid(source, &node.path, "no destinations");
        return None;
    }
    let mut ok = true;
    let mut parsed: Vec<(String, Option<u64>)> = Vec::new();
    for item in &items {
        let Some(mut fields) = item.fields(source, report) else {
            ok = false;
            continue;
        };
        let weight = fields.take("weight").map(|w| w.count(source, report));
        let destination = fields.take("destination");
        fields.finish(
            source,
            report,
            &[("headers", "header manipulation is not supported by sluice")],
        );
        let Some(destination) = destination else {
            report.invalid(source, &item.path, "missing destination");
            ok = false;
            continue;
        };
        let Some(upstream) = destination_upstream(context, &destination, upstreams, report) else {
            ok = false;
            continue;
        };
        match weight {
            Some(None) => ok = false,
            Some(Some(w)) => parsed.push((upstream, Some(w))),
            None => parsed.push((upstream, None)),
        }
    }
    if !ok {
        return None;
    }
    let weighted = parsed.iter().filter(|(_, w)| w.is_some()).count();
    if weighted != 0 && weighted != parsed.len() {
        report.invalid(
            source,
            &node.path,
            "some destinations have a weight and others do not",
        );
        return None;
    }
    // Equal shares: one destination takes 100, several 1 each (weights are relative).
    let share = if parsed.len() == 1 { 100 } else { 1 };
    let mut backends: Vec<BackendPlan> = Vec::new();
    for (upstream, weight) in parsed {
        let weight = weight.unwrap_or(share);
        match backends.iter_mut().find(|b| b.upstream == upstream) {
            Some(known) => known.weight += weight,
            None => backends.push(BackendPlan { upstream, weight }),
        }
    }
    if backends.iter().all(|b| b.weight == 0) {
        report.invalid(source, &node.path, "every weight is 0");
        return None;
    }
    Some(backends)
}

/// The upstream a `destination` stands for: named after its subset (or its host).
fn destination_upstream(
    context: &RuleContext<'_>,
    node: &Node<'_>,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Option<String> {
    let source = context.source;
    let mut fields = node.fields(source, report)?;
    let host = required_text(source, &mut fields, "host", report);
    let subset = fields.take("subset").and_then(|s| s.text(source, report));
    let port = match fields.take("port") {
        Some(port) => {
            let mut port_fields = port.fields(source, report)?;
            let number = port_fields
                .take("number")
                .and_then(|n| n.count(source, report));
            port_fields.finish(source, report, &[]);
            number
        }
        None => None,
    };
    fields.finish(source, report, &[]);
    let host = host?;
    let short = host.split('.').next().unwrap_or(&host).to_string();
    let endpoint = format!("{host}:{}", port.unwrap_or(80));
    let Some(subset) = subset else {
        return Some(upstreams.name_for(NewUpstream {
            key: format!("istio {host}"),
            names: vec![short],
            version: None,
            endpoint,
            placeholder: false,
            origin: format!("{}: destination {host} (no subset)", source.label),
            order: None,
        }));
    };
    let defined = context
        .subsets
        .iter()
        .position(|s| s.name == subset && same_service(&s.host, &host));
    let (version, origin) = match defined.map(|i| &context.subsets[i]) {
        Some(s) => {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                s.labels
                    .iter()
                    .find(|(k, _)| k == "version")
                    .map(|(_, v)| v.clone()),
                format!(
                    "{}, subset {subset} of {host} (labels: {})",
                    s.rule,
                    labels.join(", ")
                ),
            )
        }
        None => {
            report.note(format!(
                "subset {subset} of {host}: no DestinationRule in the input defines it, so the \
                 upstream has no version"
            ));
            (
                None,
                format!("subset {subset} of {host} (no DestinationRule given)"),
            )
        }
    };
    Some(upstreams.name_for(NewUpstream {
        key: format!("istio {short} {subset}"),
        names: vec![subset.clone(), format!("{short}-{subset}")],
        version,
        endpoint,
        placeholder: true,
        origin,
        order: defined,
    }))
}

/// A `directResponse`: its status and text body.
fn direct_response(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<Action> {
    let mut fields = node.fields(source, report)?;
    let status = match fields.take("status") {
        Some(s) => s.count(source, report),
        None => {
            report.invalid(source, &node.path, "missing status");
            None
        }
    };
    let body = match fields.take("body") {
        Some(body) => {
            let mut body_fields = body.fields(source, report)?;
            let text = body_fields
                .take("string")
                .and_then(|s| s.text(source, report));
            body_fields.finish(
                source,
                report,
                &[(
                    "bytes",
                    "a base64 body is not supported: sluice answers with a text body",
                )],
            );
            text
        }
        None => None,
    };
    fields.finish(source, report, &[]);
    let status = status?;
    let Some(status) = u16::try_from(status)
        .ok()
        .filter(|s| (200..=599).contains(s))
    else {
        report.invalid(
            source,
            &format!("{}.status", node.path),
            format!("{status} is not a status from 200 to 599"),
        );
        return None;
    };
    Some(Action::Respond {
        status,
        body,
        why: "directResponse".into(),
    })
}

/// A required text field; reported when missing.
fn required_text(
    source: &Source,
    fields: &mut super::document::Fields<'_>,
    key: &str,
    report: &mut Report,
) -> Option<String> {
    match fields.take(key) {
        Some(node) => node.text(source, report),
        None => {
            report.invalid(source, &fields.path_of(key), "missing");
            None
        }
    }
}

/// A list of strings (`hosts`, `gateways`).
fn texts(source: &Source, node: Option<Node<'_>>, report: &mut Report) -> Vec<String> {
    node.map(|n| n.items(source, report))
        .unwrap_or_default()
        .iter()
        .filter_map(|item| item.text(source, report))
        .collect()
}

/// Whether a path matcher's value starts with `/` (reported otherwise).
fn starts_with_slash(source: &Source, node: &Node<'_>, value: &str, report: &mut Report) -> bool {
    let ok = value.starts_with('/');
    if !ok {
        report.invalid(
            source,
            &node.path,
            format!("\"{value}\" does not start with /"),
        );
    }
    ok
}

/// Whether the host pattern `host` (`*.example.com` or exact) matches the exact `authority`.
fn host_covers(host: &str, authority: &str) -> bool {
    HostMatch::parse(host).is_ok_and(|h| h.matches(authority))
}

/// Whether two Istio hosts name the same service: equal, or one is the other's short name
/// (`reviews` and `reviews.default.svc.cluster.local`).
fn same_service(a: &str, b: &str) -> bool {
    a == b
        || (!a.contains('.') && b.split('.').next() == Some(a))
        || (!b.contains('.') && a.split('.').next() == Some(b))
}
