//! Istio: `DestinationRule` subsets become upstreams (their `version` label the upstream's
//! version) and `VirtualService` HTTP rules become routes, in the same order (first match
//! wins), one route per ORed `match` block.

use sluice_config::{
    format_duration, parse_duration, HostMatch, MAX_FAULT_DELAY, MAX_RETRY_ATTEMPTS,
};

use super::document::{Fields, Node, Source};
use super::plan::{
    Action, BackendPlan, FaultPlan, HeadersPlan, MatchPlan, MirrorPlan, NewUpstream, PathPlan,
    PercentPlan, PolicyPlan, RetriesPlan, RetryOnPlan, RoutePlan, Upstreams, ValueKind, ValuePlan,
};
use super::{policy, ConvertError, Report};

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
];

/// Envoy `retryOn` conditions sluice cannot express, with the reason given.
const RETRY_ON_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "reset-before-request",
        "sluice's reset also retries a request that was already sent",
    ),
    (
        "retriable-4xx",
        "it retries 409, and sluice retries on 408, 429 and 5xx statuses",
    ),
    ("envoy-ratelimited", "sluice does not rate-limit"),
    (
        "retriable-headers",
        "sluice does not retry on response headers",
    ),
    (
        "http3-post-connect-failure",
        "sluice does not use HTTP/3 upstream",
    ),
];

/// Envoy's gRPC `retryOn` conditions: sluice does not retry on `grpc-status`.
const GRPC_RETRY_ON: &[&str] = &[
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Istio's `retryOn` when `retries` gives none.
const DEFAULT_RETRY_ON: &str = "connect-failure,refused-stream,unavailable,cancelled";

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

/// Istio retries twice by default; sluice only when a route says so.
const DEFAULT_RETRIES_NOTE: &str = "Istio retries a failed request twice by default (no \
    `retries` field); sluice retries only on a route with `retries` (add `retries: { attempts: \
    2 }` to match)";

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
    let mut retries = match fields.take("retries") {
        Some(node) => retries(source, &node, report),
        None => {
            report.note(DEFAULT_RETRIES_NOTE.to_string());
            Some(None)
        }
    };
    let fault = match fields.take("fault") {
        Some(node) => fault(source, &node, report),
        None => Some(None),
    };
    let (request_headers, response_headers) = match fields.take("headers") {
        Some(node) => headers(source, &node, report),
        None => Default::default(),
    };
    let action = match (fields.take("route"), fields.take("directResponse")) {
        (Some(route), None) => {
            destinations(context, &route, &request_headers, upstreams, report).map(Action::Forward)
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
    let mirror = mirror(context, &mut fields, action.as_ref(), upstreams, report);
    let forwards = matches!(action, Some(Action::Forward(_)));
    if retries.as_ref().is_some_and(Option::is_some) && !forwards && action.is_some() {
        report.note(format!(
            "{}: {}.retries has no effect: the rule answers itself",
            source.label, node.path
        ));
        retries = Some(None);
    }
    fields.finish(source, report, HTTP_UNSUPPORTED);
    let (
        Some(action),
        Some((timeout, timeout_why)),
        Some(retries),
        Some(fault),
        Some(mirror),
        true,
    ) = (action, timeout, retries, fault, mirror, blocks_ok)
    else {
        return Vec::new();
    };
    let policy = PolicyPlan {
        mirror,
        retries,
        fault,
        request_headers,
        response_headers,
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
                policy: policy.clone(),
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
/// shares; a subset named twice gets the sum of its weights. A destination's `headers` are
/// its backend's; a request header the rule changes too (`rule_request`) is refused, because
/// Envoy and sluice apply the two levels in opposite orders.
fn destinations(
    context: &RuleContext<'_>,
    node: &Node<'_>,
    rule_request: &HeadersPlan,
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
    let mut parsed: Vec<(BackendPlan, Option<u64>, String)> = Vec::new();
    for item in &items {
        let Some(mut fields) = item.fields(source, report) else {
            ok = false;
            continue;
        };
        let weight = fields.take("weight").map(|w| w.count(source, report));
        let destination = fields.take("destination");
        let (request_headers, response_headers) = match fields.take("headers") {
            Some(headers_node) => {
                let (mut request, response) = headers(source, &headers_node, report);
                let mut both: Vec<String> = Vec::new();
                for name in request.names() {
                    if rule_request.names().any(|n| n == name) && !both.iter().any(|b| b == name) {
                        both.push(name.to_string());
                    }
                }
                for name in both {
                    let dropped = report.unsupported(
                        source,
                        &format!("{}.request", headers_node.path),
                        Some(&name),
                        &format!(
                            "request header {name} is changed by both the rule and this \
                             destination: Envoy applies the rule's change last, sluice the \
                             destination's"
                        ),
                    );
                    if dropped {
                        // The rule's change alone, as it would win in Envoy.
                        request.set.retain(|(n, _)| *n != name);
                        request.add.retain(|(n, _)| *n != name);
                        request.remove.retain(|n| *n != name);
                    } else {
                        ok = false;
                    }
                }
                (request, response)
            }
            None => Default::default(),
        };
        fields.finish(source, report, &[]);
        let Some(destination) = destination else {
            report.invalid(source, &item.path, "missing destination");
            ok = false;
            continue;
        };
        let Some(upstream) = destination_upstream(context, &destination, upstreams, report) else {
            ok = false;
            continue;
        };
        let backend = BackendPlan {
            upstream,
            weight: 0,
            request_headers,
            response_headers,
        };
        match weight {
            Some(None) => ok = false,
            Some(Some(w)) => parsed.push((backend, Some(w), item.path.clone())),
            None => parsed.push((backend, None, item.path.clone())),
        }
    }
    if !ok {
        return None;
    }
    let weighted = parsed.iter().filter(|(_, w, _)| w.is_some()).count();
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
    for (mut backend, weight, path) in parsed {
        backend.weight = weight.unwrap_or(share);
        match backends.iter_mut().find(|b| b.upstream == backend.upstream) {
            Some(known)
                if known.request_headers != backend.request_headers
                    || known.response_headers != backend.response_headers =>
            {
                // Dropped with --ignore, the first destination's headers apply to both.
                report.unsupported(
                    source,
                    &format!("{path}.headers"),
                    None,
                    "the same destination twice with different headers: sluice changes one \
                     backend's headers one way",
                );
                known.weight += backend.weight;
            }
            Some(known) => known.weight += backend.weight,
            None => backends.push(backend),
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

/// `retries`: `attempts` (none when 0 or absent) and `retryOn` (Envoy's conditions and
/// statuses) become sluice's `retries`. `Some(None)`: no retries.
fn retries(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<Option<RetriesPlan>> {
    let mut fields = node.fields(source, report)?;
    let attempts = fields.take("attempts");
    let retry_on = fields.take("retryOn");
    let backoff = fields.take("backoff");
    let remote = fields.take("retryRemoteLocalities");
    let previous = fields.take("retryIgnorePreviousHosts");
    let retry_on_path = fields.path_of("retryOn");
    fields.finish(
        source,
        report,
        &[(
            "perTryTimeout",
            "a per-try timeout is not supported: sluice has one timeout per route",
        )],
    );
    let mut ok = true;
    if let Some(remote) = remote {
        if remote.flag(source, report)? {
            ok &= report.unsupported(
                source,
                &remote.path,
                None,
                "retrying in other localities: sluice knows no localities",
            );
        }
    }
    if let Some(previous) = previous {
        if !previous.flag(source, report)? {
            ok &= report.unsupported(
                source,
                &previous.path,
                None,
                "retrying on the same endpoint: sluice retries on another one when there is one",
            );
        }
    }
    if let Some(backoff) = backoff {
        let text = backoff.text(source, report).unwrap_or_default();
        report.note(format!(
            "{}: {} ({text}) is not converted: sluice has no retry backoff setting",
            source.label, backoff.path
        ));
    }
    let attempts = match attempts {
        Some(node) => node.count(source, report)?,
        None => 0,
    };
    // Istio: 0 attempts (the default of the field) disables retries.
    if attempts == 0 {
        return ok.then_some(None);
    }
    let (attempts, attempts_why) = if attempts > MAX_RETRY_ATTEMPTS {
        ok &= report.unsupported(
            source,
            &format!("{}.attempts", node.path),
            None,
            &format!(
                "{attempts} retries: sluice retries a request at most {MAX_RETRY_ATTEMPTS} times"
            ),
        );
        (MAX_RETRY_ATTEMPTS, Some("capped at sluice's most"))
    } else {
        (attempts, None)
    };
    let (text, explicit) = match retry_on {
        Some(node) => (node.text(source, report)?, true),
        None => {
            report.note(format!(
                "{}: {}.retryOn not given: Istio's default ({DEFAULT_RETRY_ON}) converts to \
                 connect-failure and reset; sluice does not retry on gRPC statuses",
                source.label, node.path
            ));
            (DEFAULT_RETRY_ON.to_string(), false)
        }
    };
    let tokens: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let has_statuses = tokens.iter().any(|t| t.parse::<u64>().is_ok());
    let mut on = RetryOnPlan::default();
    for token in tokens {
        let unsupported = |report: &mut Report, reason: &str| {
            report.unsupported(
                source,
                &retry_on_path,
                Some(token),
                &format!("retryOn {token}: {reason}"),
            )
        };
        match token {
            "connect-failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            // Envoy counts a connection failure or reset as a 5xx and a gateway error.
            "5xx" | "gateway-error" => {
                on.connect_failure = true;
                on.reset = true;
                if token == "5xx" {
                    on.server_error = true;
                } else {
                    on.gateway_error = true;
                }
            }
            "refused-stream" => {
                on.reset = true;
                if explicit {
                    report.note(format!(
                        "{}: {retry_on_path}: refused-stream converts to reset, which also \
                         retries a request whose connection failed after it was sent",
                        source.label
                    ));
                }
            }
            // Istio adds the statuses listed next to it.
            "retriable-status-codes" if has_statuses => {}
            "retriable-status-codes" => {
                ok &= unsupported(
                    report,
                    "without statuses in retryOn it names none that sluice can retry on",
                );
            }
            t if GRPC_RETRY_ON.contains(&t) => {
                if explicit {
                    ok &= unsupported(
                        report,
                        "a gRPC status: sluice does not retry on grpc-status",
                    );
                }
            }
            t => match t.parse::<u64>() {
                Ok(status) if policy::retriable_status(status) => {
                    on.status(u16::try_from(status).unwrap_or_default());
                }
                Ok(_) => {
                    ok &= unsupported(report, "sluice retries on 408, 429 and 5xx statuses");
                }
                Err(_) => match RETRY_ON_UNSUPPORTED.iter().find(|(k, _)| *k == t) {
                    Some((_, reason)) => ok &= unsupported(report, reason),
                    None => {
                        report.invalid(
                            source,
                            &retry_on_path,
                            format!("unknown retry condition \"{t}\""),
                        );
                        ok = false;
                    }
                },
            },
        }
    }
    if on.is_empty() {
        report.note(format!(
            "{}: {}: no retry condition is left: the route does not retry",
            source.label, node.path
        ));
        return ok.then_some(None);
    }
    ok.then_some(Some(RetriesPlan {
        attempts,
        attempts_why,
        on,
    }))
}

/// `fault`: `abort.httpStatus` and `delay.fixedDelay`, each for its `percentage` of requests.
/// `Some(None)`: nothing left to inject (what was there was dropped with `--ignore`).
fn fault(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<Option<FaultPlan>> {
    let mut fields = node.fields(source, report)?;
    let abort = fields.take("abort");
    let delay = fields.take("delay");
    fields.finish(source, report, &[]);
    if abort.is_none() && delay.is_none() {
        report.invalid(source, &node.path, "needs abort, delay or both");
        return None;
    }
    let abort = match abort {
        Some(node) => fault_abort(source, &node, report),
        None => Some(None),
    };
    let delay = match delay {
        Some(node) => fault_delay(source, &node, report),
        None => Some(None),
    };
    let (abort, delay) = (abort?, delay?);
    Some((abort.is_some() || delay.is_some()).then_some(FaultPlan { abort, delay }))
}

/// `fault.abort`: an HTTP status from 400 to 599 (a gRPC status or HTTP/2 error is refused).
fn fault_abort(
    source: &Source,
    node: &Node<'_>,
    report: &mut Report,
) -> Option<Option<(u16, PercentPlan)>> {
    let mut fields = node.fields(source, report)?;
    let status = fields.take("httpStatus");
    let percentage = fields.take("percentage");
    let other_kind = ["grpcStatus", "http2Error"]
        .iter()
        .any(|k| node.value.get(*k).is_some());
    fields.finish(
        source,
        report,
        &[
            (
                "grpcStatus",
                "a gRPC status abort is not supported: sluice aborts with an HTTP status",
            ),
            (
                "http2Error",
                "an HTTP/2 error abort is not supported: sluice aborts with an HTTP status",
            ),
        ],
    );
    let percent = fault_percent(source, node, percentage, "aborts", report);
    let Some(status) = status else {
        if !other_kind {
            report.invalid(source, &node.path, "needs httpStatus");
            return None;
        }
        return Some(None);
    };
    let code = status.count(source, report)?;
    let Some(code) = u16::try_from(code).ok().filter(|c| (400..=599).contains(c)) else {
        report.unsupported(
            source,
            &status.path,
            None,
            &format!("aborting with {code}: sluice aborts with a status from 400 to 599"),
        );
        return Some(None);
    };
    Some(Some((code, percent?)))
}

/// `fault.delay`: a `fixedDelay` of at most sluice's longest.
fn fault_delay(
    source: &Source,
    node: &Node<'_>,
    report: &mut Report,
) -> Option<Option<(String, PercentPlan)>> {
    let mut fields = node.fields(source, report)?;
    let fixed = fields.take("fixedDelay");
    let percentage = fields.take("percentage");
    let exponential = node.value.get("exponentialDelay").is_some();
    fields.finish(
        source,
        report,
        &[
            (
                "percent",
                "the deprecated integer percent is not converted (Istio versions read it \
                 differently): give percentage.value",
            ),
            (
                "exponentialDelay",
                "exponential delays are not supported (Istio does not implement them either)",
            ),
        ],
    );
    let percent = fault_percent(source, node, percentage, "delays", report);
    let Some(fixed) = fixed else {
        if !exponential {
            report.invalid(source, &node.path, "needs fixedDelay");
            return None;
        }
        return Some(None);
    };
    let text = fixed.text(source, report)?;
    let duration = match parse_duration(&text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            report.invalid(source, &fixed.path, "must be at least 1ms");
            return None;
        }
        Err(reason) => {
            report.invalid(
                source,
                &fixed.path,
                format!("invalid duration \"{text}\": {reason}"),
            );
            return None;
        }
    };
    if duration > MAX_FAULT_DELAY {
        report.unsupported(
            source,
            &fixed.path,
            None,
            &format!(
                "a delay of {text}: sluice delays at most {}",
                format_duration(MAX_FAULT_DELAY)
            ),
        );
        return Some(None);
    }
    Some(Some((format_duration(duration), percent?)))
}

/// A fault's `percentage`: without it Istio injects the fault into no request, which the
/// conversion keeps (and notes).
fn fault_percent(
    source: &Source,
    fault: &Node<'_>,
    percentage: Option<Node<'_>>,
    verb: &str,
    report: &mut Report,
) -> Option<PercentPlan> {
    match percentage {
        Some(node) => percentage_value(source, &node, report),
        None => {
            report.note(format!(
                "{}: {} has no percentage: Istio then {verb} no request, and neither does the \
                 converted fault (percent: 0)",
                source.label, fault.path
            ));
            Some(PercentPlan(0))
        }
    }
}

/// An Istio `Percent`: `{ value }`, 0 when `value` is absent.
fn percentage_value(source: &Source, node: &Node<'_>, report: &mut Report) -> Option<PercentPlan> {
    let mut fields = node.fields(source, report)?;
    let value = fields.take("value");
    fields.finish(source, report, &[]);
    let Some(value) = value else {
        return Some(PercentPlan(0));
    };
    let Some(number) = value.value.as_f64() else {
        report.invalid(source, &value.path, "expected a number");
        return None;
    };
    policy::percent(source, &value, number, report)
}

/// `headers`: the `request` and `response` changes of a rule or a destination.
fn headers(source: &Source, node: &Node<'_>, report: &mut Report) -> (HeadersPlan, HeadersPlan) {
    let Some(mut fields) = node.fields(source, report) else {
        return Default::default();
    };
    let request = fields
        .take("request")
        .map(|n| header_operations(source, &n, report))
        .unwrap_or_default();
    let response = fields
        .take("response")
        .map(|n| header_operations(source, &n, report))
        .unwrap_or_default();
    fields.finish(source, report, &[]);
    (request, response)
}

/// `HeaderOperations`: `set` and `add` map names to values, `remove` lists names.
fn header_operations(source: &Source, node: &Node<'_>, report: &mut Report) -> HeadersPlan {
    let mut plan = HeadersPlan::default();
    let Some(mut fields) = node.fields(source, report) else {
        return plan;
    };
    for key in ["set", "add"] {
        let Some(map) = fields.take(key) else {
            continue;
        };
        for (name, value) in map.entries(source, report) {
            let Some(text) = value.text(source, report) else {
                continue;
            };
            let Some(name) = policy::header_name(source, &value.path, &name, report) else {
                continue;
            };
            let Some(text) = envoy_literal(source, &value.path, &name, &text, report) else {
                continue;
            };
            let Some(text) = policy::header_value(source, &value.path, &name, &text, report) else {
                continue;
            };
            let target = if key == "set" {
                &mut plan.set
            } else {
                &mut plan.add
            };
            if !policy::push_once(target, name.clone(), text) {
                report.invalid(
                    source,
                    &value.path,
                    format!("header {name} is given twice (names are case-insensitive)"),
                );
            }
        }
    }
    if let Some(list) = fields.take("remove") {
        for item in list.items(source, report) {
            let Some(text) = item.text(source, report) else {
                continue;
            };
            if let Some(name) = policy::header_name(source, &item.path, &text, report) {
                policy::remove_once(&mut plan, name);
            }
        }
    }
    fields.finish(source, report, &[]);
    plan
}

/// A header value as Envoy writes it: `%%` is a `%`; any other `%` starts a variable
/// (`%DOWNSTREAM_REMOTE_ADDRESS%`), which sluice cannot fill (reported).
fn envoy_literal(
    source: &Source,
    field: &str,
    name: &str,
    value: &str,
    report: &mut Report,
) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
        } else if chars.next_if_eq(&'%').is_some() {
            out.push('%');
        } else {
            report.unsupported(
                source,
                field,
                Some(name),
                &format!(
                    "the value of header {name} uses an Envoy variable (%...%), which sluice \
                     cannot fill"
                ),
            );
            return None;
        }
    }
    Some(out)
}

/// `mirror` with `mirrorPercentage` (or the deprecated integer `mirrorPercent`), or the first
/// of `mirrors`: sluice mirrors a route to one upstream. `Some(None)`: no mirror.
fn mirror(
    context: &RuleContext<'_>,
    fields: &mut Fields<'_>,
    action: Option<&Action>,
    upstreams: &mut Upstreams,
    report: &mut Report,
) -> Option<Option<MirrorPlan>> {
    let source = context.source;
    let single = fields.take("mirror");
    let list = fields.take("mirrors");
    let percentage = fields.take("mirrorPercentage");
    let deprecated = [fields.take("mirrorPercent"), fields.take("mirror_percent")]
        .into_iter()
        .flatten()
        .next();
    let given = single.as_ref().or(list.as_ref());
    let Some(given) = given else {
        if let Some(orphan) = percentage.or(deprecated) {
            report.invalid(source, &orphan.path, "a mirror percentage without mirror");
            return None;
        }
        return Some(None);
    };
    match action {
        None => return None,
        Some(Action::Respond { .. }) => {
            report.unsupported(
                source,
                &given.path,
                None,
                "the rule answers itself: sluice mirrors forwarded requests only",
            );
            return Some(None);
        }
        Some(Action::Forward(_)) => {}
    }
    let (destination, percent) = match (&single, &list) {
        (Some(destination), None) => {
            let percent = match (percentage, deprecated) {
                (Some(p), _) => percentage_value(source, &p, report)?,
                (None, Some(old)) => {
                    let value = old.count(source, report)?;
                    policy::checked_percent(
                        source,
                        &old.path,
                        PercentPlan::from_fraction(value, 100),
                        &format!("{value}%"),
                        report,
                    )?
                }
                (None, None) => PercentPlan::ALL,
            };
            (destination.clone(), percent)
        }
        (None, Some(list)) => {
            if let Some(stray) = percentage.or(deprecated) {
                report.invalid(
                    source,
                    &stray.path,
                    "applies to mirror, not mirrors (give mirrors[].percentage)",
                );
                return None;
            }
            let items = list.items(source, report);
            for extra in items.iter().skip(1) {
                report.unsupported(
                    source,
                    &extra.path,
                    None,
                    "a second mirror: sluice mirrors a route's requests to one upstream",
                );
            }
            let first = items.first()?;
            let mut policy_fields = first.fields(source, report)?;
            let destination = policy_fields.take("destination");
            let percentage = policy_fields.take("percentage");
            policy_fields.finish(source, report, &[]);
            let percent = match percentage {
                Some(p) => percentage_value(source, &p, report)?,
                None => PercentPlan::ALL,
            };
            let Some(destination) = destination else {
                report.invalid(source, &first.path, "missing destination");
                return None;
            };
            (destination, percent)
        }
        (Some(_), Some(list)) => {
            report.invalid(source, &list.path, "mirror and mirrors together");
            return None;
        }
        (None, None) => return Some(None),
    };
    let upstream = destination_upstream(context, &destination, upstreams, report)?;
    Some(Some(MirrorPlan { upstream, percent }))
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
