//! Turns the raw `routes:` list into [`Route`]s, reporting every problem.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};

use super::policy::{
    compile_fault, compile_header_modifier, compile_mirror, compile_retries, BackendPolicy,
};
use super::{Respond, Route, RouteTable, Sticky, StickyCookie};
use crate::check::Checker;
use crate::error::{known_list, FieldPath, Invalid};
use crate::matcher::{full_match_regex, HostMatch, PathMatch, RouteMatch, ValueMatch};
use crate::raw::{
    OrderedMap, RawBackend, RawMatch, RawRespond, RawRoute, RawSticky, RawValueMatch, Scalar,
};
use crate::split::{Backend, Split, Weight};
use crate::upstream::Upstream;

/// A route's timeout when none is given (Envoy's default too).
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// `Max-Age` of a sticky cookie sluice sets, when the route gives none (Flagger's default).
pub const DEFAULT_STICKY_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The upgrades a route allows when it names none.
pub const DEFAULT_UPGRADES: &[&str] = &["websocket"];

/// `Upgrade` protocols that switch to another HTTP version: through a tunnel the client would
/// talk to the upstream directly, past routing ("h2c smuggling"), so no route may allow them.
const HTTP_UPGRADES: &[&str] = &["h2c", "h2", "http"];

pub(crate) fn compile_routes(
    check: &mut Checker<'_>,
    raw: &Option<Vec<RawRoute>>,
    upstreams: &[Upstream],
    declared: &[&str],
) -> RouteTable {
    let root = FieldPath::root();
    let Some(raw) = check.required(raw, &root, "routes") else {
        return RouteTable::default();
    };
    if raw.is_empty() {
        check.report(root.key("routes"), Invalid::Empty("routes"));
    }
    let mut names = HashMap::new();
    let mut routes = Vec::new();
    for (i, route) in raw.iter().enumerate() {
        let path = root.key("routes").index(i);
        let name = check.name(&route.name, &path, "name");
        if let Some(name) = &name {
            check.unique(&mut names, name, path.key("name"), "route name");
        }
        let matches = match &route.matches {
            None => Some(RouteMatch::default()),
            Some(m) => compile_match(check, m, &path.key("match")),
        };
        let timeout = check.duration(
            &route.timeout,
            path.key("timeout"),
            Some(DEFAULT_ROUTE_TIMEOUT),
        );
        let sticky = match &route.sticky {
            None => Some(None),
            Some(s) => compile_sticky(check, s, &path.key("sticky")).map(Some),
        };
        let (split, respond, backend_policies) = match (&route.respond, &route.backends) {
            (None, _) => {
                let (split, policies) =
                    compile_backends(check, &route.backends, &path, upstreams, declared);
                (split, Some(None), policies)
            }
            (Some(respond), None) => {
                if route.sticky.is_some() {
                    check.report(
                        path.key("sticky"),
                        Invalid::Value("a respond route has no backends to stick to".into()),
                    );
                }
                // A fault is injected once a backend is picked: a respond route never gets there.
                for (field, present) in [
                    ("mirror", route.mirror.is_some()),
                    ("retries", route.retries.is_some()),
                    ("fault", route.fault.is_some()),
                ] {
                    if present {
                        check.report(
                            path.key(field),
                            Invalid::Value(format!(
                                "a respond route forwards nothing: remove {field}"
                            )),
                        );
                    }
                }
                (
                    Some(Split::default()),
                    compile_respond(check, respond, &path.key("respond")).map(Some),
                    Some(Vec::new()),
                )
            }
            (Some(_), Some(_)) => {
                check.report(
                    path.clone(),
                    Invalid::Value("give either backends or respond, not both".into()),
                );
                (None, None, None)
            }
        };
        let upgrades = compile_upgrades(check, &route.upgrades, &path.key("upgrades"));
        let mirror = compile_mirror(
            check,
            &route.mirror,
            &path.key("mirror"),
            upstreams,
            declared,
        );
        let retries = compile_retries(check, &route.retries, &path.key("retries"));
        let fault = compile_fault(check, &route.fault, &path.key("fault"));
        let request_headers =
            compile_header_modifier(check, &route.request_headers, &path.key("request_headers"));
        let response_headers = compile_header_modifier(
            check,
            &route.response_headers,
            &path.key("response_headers"),
        );
        if let (
            Some(name),
            Some(matches),
            Some(timeout),
            Some(sticky),
            Some(split),
            Some(respond),
            Some(upgrades),
            Some(backend_policies),
            Some(mirror),
            Some(retries),
            Some(fault),
            Some(request_headers),
            Some(response_headers),
        ) = (
            name,
            matches,
            timeout,
            sticky,
            split,
            respond,
            upgrades,
            backend_policies,
            mirror,
            retries,
            fault,
            request_headers,
            response_headers,
        ) {
            routes.push(Route {
                name: name.into(),
                matches,
                timeout: (!timeout.is_zero()).then_some(timeout),
                sticky,
                split,
                respond,
                upgrades,
                mirror,
                retries,
                fault,
                request_headers,
                response_headers,
                backend_policies: backend_policies.into(),
            });
        }
    }
    RouteTable::new(routes)
}

fn compile_match(check: &mut Checker<'_>, raw: &RawMatch, path: &FieldPath) -> Option<RouteMatch> {
    let mut ok = true;
    let paths = [
        raw.path_prefix.as_ref().map(|p| ("path_prefix", p)),
        raw.path_segment_prefix
            .as_ref()
            .map(|p| ("path_segment_prefix", p)),
        raw.path_exact.as_ref().map(|p| ("path_exact", p)),
        raw.path_regex.as_ref().map(|p| ("path_regex", p)),
    ];
    let given: Vec<(&str, &String)> = paths.into_iter().flatten().collect();
    let mut path_match = None;
    match given.as_slice() {
        [] => {}
        [(kind, value)] => {
            let at = path.key(*kind);
            path_match = match *kind {
                "path_regex" => match full_match_regex(value) {
                    Ok(re) => Some(PathMatch::Regex(re)),
                    Err(reason) => {
                        check.report(
                            at,
                            Invalid::Regex {
                                value: value.to_string(),
                                reason,
                            },
                        );
                        None
                    }
                },
                _ if !value.starts_with('/') => {
                    check.report(
                        at,
                        Invalid::Value(format!("path \"{value}\" must start with \"/\"")),
                    );
                    None
                }
                "path_exact" => Some(PathMatch::Exact(value.to_string())),
                "path_segment_prefix" => Some(PathMatch::segment_prefix(value)),
                _ => Some(PathMatch::Prefix(value.to_string())),
            };
            ok &= path_match.is_some();
        }
        _ => {
            let kinds: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
            check.report(
                path.clone(),
                Invalid::Value(format!(
                    "give at most one of path_prefix, path_segment_prefix, path_exact, path_regex (found {})",
                    kinds.join(", ")
                )),
            );
            ok = false;
        }
    }
    let host = match &raw.host {
        None => None,
        Some(h) => match HostMatch::parse(h) {
            Ok(h) => Some(h),
            Err(reason) => {
                check.report(path.key("host"), Invalid::Value(reason));
                ok = false;
                None
            }
        },
    };
    let method = match &raw.method {
        None => None,
        Some(m) => {
            let upper = m.trim().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !upper.is_empty() => Some(method),
                _ => {
                    check.report(
                        path.key("method"),
                        Invalid::Value(format!("\"{m}\" is not an HTTP method")),
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    let headers = compile_value_matches(check, &raw.headers, &path.key("headers"), true);
    let query = compile_value_matches(check, &raw.query, &path.key("query"), false);
    let (headers, query) = (headers?, query?);
    ok.then(|| RouteMatch {
        host,
        path: path_match,
        method,
        headers: headers
            .into_iter()
            .filter_map(|(name, m)| Some((HeaderName::from_bytes(name.as_bytes()).ok()?, m)))
            .collect(),
        query,
    })
}

/// Header (`is_header`) or query matchers: name → exactly one of exact/prefix/regex/present.
fn compile_value_matches(
    check: &mut Checker<'_>,
    raw: &Option<OrderedMap<RawValueMatch>>,
    path: &FieldPath,
    is_header: bool,
) -> Option<Vec<(String, ValueMatch)>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut ok = true;
    let mut out = Vec::new();
    for (name, m) in &raw.0 {
        let at = path.key(name.as_str());
        let name = if is_header {
            name.to_ascii_lowercase()
        } else {
            name.clone()
        };
        if is_header && HeaderName::from_bytes(name.as_bytes()).is_err() {
            check.report(
                at.clone(),
                Invalid::Value(format!("\"{name}\" is not a valid header name")),
            );
            ok = false;
            continue;
        }
        if name.is_empty() {
            check.report(at.clone(), Invalid::Empty("query parameter name"));
            ok = false;
            continue;
        }
        let kinds = [
            m.exact
                .as_ref()
                .map(|v| ("exact", ValueMatch::Exact(v.clone()))),
            m.prefix
                .as_ref()
                .map(|v| ("prefix", ValueMatch::Prefix(v.clone()))),
            m.regex
                .as_ref()
                .map(|v| ("regex", ValueMatch::Exact(v.clone()))),
            m.present.map(|p| ("present", ValueMatch::Present(p))),
        ];
        let given: Vec<(&str, ValueMatch)> = kinds.into_iter().flatten().collect();
        match given.len() {
            1 => {}
            0 => {
                check.report(
                    at,
                    Invalid::Value("give one of exact, prefix, regex, present".into()),
                );
                ok = false;
                continue;
            }
            _ => {
                let names: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
                check.report(
                    at,
                    Invalid::Value(format!(
                        "give only one of exact, prefix, regex, present (found {})",
                        names.join(", ")
                    )),
                );
                ok = false;
                continue;
            }
        }
        let matcher = match (&m.regex, given.into_iter().next()) {
            (Some(pattern), _) => match full_match_regex(pattern) {
                Ok(re) => ValueMatch::Regex(re),
                Err(reason) => {
                    check.report(
                        at.key("regex"),
                        Invalid::Regex {
                            value: pattern.clone(),
                            reason,
                        },
                    );
                    ok = false;
                    continue;
                }
            },
            (None, Some((_, matcher))) => matcher,
            (None, None) => continue,
        };
        let matcher = match m.invert {
            Some(true) => ValueMatch::Not(Box::new(matcher)),
            _ => matcher,
        };
        out.push((name, matcher));
    }
    ok.then_some(out)
}

/// `respond: { status, body }`: a status from 200 to 599 and an optional text body.
fn compile_respond(check: &mut Checker<'_>, raw: &RawRespond, path: &FieldPath) -> Option<Respond> {
    let given = check.required(&raw.status, path, "status")?;
    let status = match given {
        Scalar::Int(code) => u16::try_from(*code)
            .ok()
            .filter(|code| (200..=599).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok()),
        _ => None,
    };
    let Some(status) = status else {
        check.report(
            path.key("status"),
            Invalid::Value(format!(
                "must be an HTTP status from 200 to 599, got {given}"
            )),
        );
        return None;
    };
    Some(Respond {
        status,
        body: raw.body.as_deref().unwrap_or_default().into(),
    })
}

fn compile_sticky(check: &mut Checker<'_>, raw: &RawSticky, path: &FieldPath) -> Option<Sticky> {
    match (&raw.header, &raw.cookie) {
        (Some(header), None) => {
            match HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()) {
                Ok(name) => Some(Sticky::Header(name)),
                Err(_) => {
                    check.report(
                        path.key("header"),
                        Invalid::Value(format!("\"{header}\" is not a valid header name")),
                    );
                    None
                }
            }
        }
        (None, Some(cookie)) => {
            let is_token = !cookie.is_empty()
                && cookie
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !is_token {
                check.report(
                    path.key("cookie"),
                    Invalid::Value(format!(
                        "{cookie:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"
                    )),
                );
            }
            let max_age = check
                .positive_duration(
                    &raw.max_age,
                    path.key("max_age"),
                    Some(DEFAULT_STICKY_MAX_AGE),
                )
                .filter(|max_age| {
                    // `Max-Age` counts whole seconds; a rounded-down 0 would delete the cookie.
                    let whole = max_age.subsec_nanos() == 0;
                    if !whole {
                        check.report(
                            path.key("max_age"),
                            Invalid::Value(format!(
                                "Max-Age counts whole seconds: give e.g. 30s, 90m or 24h, got {}",
                                raw.max_age.as_ref().map(Scalar::to_string).unwrap_or_default()
                            )),
                        );
                    }
                    whole
                });
            Some(Sticky::Cookie(StickyCookie {
                name: cookie.clone(),
                set_cookie: raw.set_cookie.unwrap_or(false),
                max_age: max_age?,
            }))
            .filter(|_| is_token)
        }
        _ => {
            check.report(
                path.clone(),
                Invalid::Value("give exactly one of header, cookie".into()),
            );
            None
        }
    }
    .filter(|sticky| {
        let mut cookie_only = false;
        if matches!(sticky, Sticky::Header(_)) {
            for (field, given) in [
                ("set_cookie", raw.set_cookie.is_some()),
                ("max_age", raw.max_age.is_some()),
            ] {
                if given {
                    check.report(
                        path.key(field),
                        Invalid::Value(format!(
                            "{field} applies to a sticky cookie, not a header: remove it, or stick by cookie instead of header"
                        )),
                    );
                    cookie_only = true;
                }
            }
        }
        !cookie_only
    })
}

fn compile_backends(
    check: &mut Checker<'_>,
    raw: &Option<Vec<RawBackend>>,
    route_path: &FieldPath,
    upstreams: &[Upstream],
    declared: &[&str],
) -> (Option<Split>, Option<Vec<BackendPolicy>>) {
    let Some(raw) = check.required(raw, route_path, "backends") else {
        return (None, None);
    };
    let path = route_path.key("backends");
    if raw.is_empty() {
        check.report(path, Invalid::Empty("backends"));
        return (None, None);
    }
    let mut policies = Some(Vec::with_capacity(raw.len()));
    for (i, backend) in raw.iter().enumerate() {
        let at = path.index(i);
        let fault = compile_fault(check, &backend.fault, &at.key("fault"));
        let request_headers =
            compile_header_modifier(check, &backend.request_headers, &at.key("request_headers"));
        let response_headers = compile_header_modifier(
            check,
            &backend.response_headers,
            &at.key("response_headers"),
        );
        match (fault, request_headers, response_headers, &mut policies) {
            (Some(fault), Some(request_headers), Some(response_headers), Some(list)) => {
                list.push(BackendPolicy {
                    fault,
                    request_headers,
                    response_headers,
                })
            }
            _ => policies = None,
        }
    }
    let split = compile_split(check, raw, &path, upstreams, declared);
    (split, policies)
}

fn compile_split(
    check: &mut Checker<'_>,
    raw: &[RawBackend],
    path: &FieldPath,
    upstreams: &[Upstream],
    declared: &[&str],
) -> Option<Split> {
    let mut ok = true;
    let mut seen = HashMap::new();
    let mut backends = Vec::new();
    let mut weights_ok = true;
    let mut any_positive = false;
    for (i, backend) in raw.iter().enumerate() {
        let at = path.index(i);
        let upstream = check.name(&backend.upstream, &at, "upstream");
        let weight = match check.required(&backend.weight, &at, "weight") {
            None => None,
            Some(w) => match Weight::parse(w) {
                Ok(w) => Some(w),
                Err(kind) => {
                    check.report(at.key("weight"), kind);
                    None
                }
            },
        };
        weights_ok &= weight.is_some();
        any_positive |= weight.is_some_and(|w| !w.is_zero());
        let Some(name) = upstream else {
            ok = false;
            continue;
        };
        if !check.unique(&mut seen, &name, at.key("upstream"), "backend") {
            ok = false;
            continue;
        }
        let index = upstreams.iter().position(|u| &*u.name == name.as_str());
        match (index, weight) {
            (Some(upstream), Some(weight)) => backends.push(Backend {
                name: upstreams[upstream].name.clone(),
                upstream,
                weight,
            }),
            (None, _) => {
                // An upstream that is declared but failed its own validation is reported
                // there, not here.
                if !declared.contains(&name.as_str()) {
                    check.report(
                        at.key("upstream"),
                        Invalid::UnknownUpstream {
                            name,
                            known: known_list(declared.iter().copied()),
                        },
                    );
                }
                ok = false;
            }
            (Some(_), None) => ok = false,
        }
    }
    // Checked apart from the backends' upstreams so it is reported even when one is invalid.
    if weights_ok && !any_positive {
        check.report(path.clone(), Invalid::AllWeightsZero);
        return None;
    }
    if !ok {
        return None;
    }
    match Split::new(backends) {
        Ok(split) => Some(split),
        Err(kind) => {
            check.report(path.clone(), kind);
            None
        }
    }
}

/// `upgrades`: protocol names (RFC 9110 tokens, no version), never one that switches HTTP
/// versions; the default when absent.
fn compile_upgrades(
    check: &mut Checker<'_>,
    raw: &Option<Vec<String>>,
    path: &FieldPath,
) -> Option<Vec<Box<str>>> {
    let Some(raw) = raw else {
        return Some(DEFAULT_UPGRADES.iter().map(|&p| p.into()).collect());
    };
    let mut ok = true;
    let mut upgrades: Vec<Box<str>> = Vec::new();
    for (i, protocol) in raw.iter().enumerate() {
        let at = path.index(i);
        let name = protocol.trim().to_ascii_lowercase();
        let is_token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token {
            check.report(
                at,
                Invalid::Value(format!(
                    "\"{protocol}\" is not an upgrade protocol name (a token such as \"websocket\", without version)"
                )),
            );
            ok = false;
        } else if HTTP_UPGRADES.contains(&name.as_str()) {
            check.report(
                at,
                Invalid::Value(format!(
                    "\"{protocol}\" cannot be allowed: an upgrade to another HTTP version would let clients send requests straight to the upstream, past routing (h2c smuggling)"
                )),
            );
            ok = false;
        } else if !upgrades.iter().any(|u| **u == *name) {
            upgrades.push(name.into());
        }
    }
    ok.then_some(upgrades)
}
