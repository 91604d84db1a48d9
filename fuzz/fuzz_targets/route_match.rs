//! `RouteTable::find` (with its hash indexes over runs of exact host, header and path routes)
//! against a plain reference: every route checked in file order with matching rules written
//! out here from the docs. Routes and requests are drawn from small vocabularies so that they
//! often match, and in runs long enough to be indexed.

#![no_main]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use sluice_config::{Config, RequestHead};

/// Hosts of routes; requests also use an IPv6 literal (a route host cannot hold a `:`).
const HOSTS: &[&str] = &[
    "a.example",
    "b.example",
    "example",
    "x.a.example",
    "A.Example",
];
const REQUEST_HOSTS: &[&str] = &[
    "a.example",
    "b.example",
    "example",
    "x.a.example",
    "A.Example",
    "[::1]",
    "X.A.EXAMPLE",
];
const PATHS: &[&str] = &["/", "/a", "/a/", "/a/b", "/ab", "/b", "/a//b", "/%61"];
const REGEXES: &[&str] = &["/a.*", "/[ab]+", "/a/?", ".*b", "/(a|b)/b"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const NAMES: &[&str] = &["x-team", "x-v", "canary"];
const VALUES: &[&str] = &["", "a", "ab", "b", "A", "a b"];
const PARAMS: &[&str] = &["v", "w", "v2"];
/// Query values as written in a request (percent-encoded or with `+`) and what they decode to.
const RAW_VALUES: &[(&str, &str)] = &[
    ("a", "a"),
    ("ab", "ab"),
    ("%61", "a"),
    ("a+b", "a b"),
    ("a%20b", "a b"),
    ("", ""),
    ("b", "b"),
];

#[derive(Arbitrary, Debug, Clone)]
enum HostSpec {
    Exact(u8),
    Wildcard(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum PathSpec {
    Prefix(u8),
    SegmentPrefix(u8),
    Exact(u8),
    Regex(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum Kind {
    Exact(u8),
    Prefix(u8),
    Regex(u8),
    Present(bool),
}

#[derive(Arbitrary, Debug, Clone)]
struct ValueSpec {
    kind: Kind,
    invert: bool,
}

#[derive(Arbitrary, Debug, Clone)]
struct RouteSpec {
    host: Option<HostSpec>,
    path: Option<PathSpec>,
    method: Option<u8>,
    headers: Vec<(u8, ValueSpec)>,
    query: Vec<(u8, ValueSpec)>,
}

/// `count` routes like `template`, the i-th with its exact values shifted by `i` (a run the
/// table indexes when long enough).
#[derive(Arbitrary, Debug)]
struct Run {
    template: RouteSpec,
    count: u8,
}

#[derive(Arbitrary, Debug)]
struct RequestSpec {
    method: u8,
    path: u8,
    query: Vec<(u8, u8)>,
    host: Option<(u8, Option<u16>)>,
    authority: bool,
    headers: Vec<(u8, u8)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    runs: Vec<Run>,
    requests: Vec<RequestSpec>,
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[usize::from(i) % list.len()]
}

fuzz_target!(|input: Input| {
    let mut routes: Vec<RouteSpec> = Vec::new();
    for run in input.runs.iter().take(6) {
        for i in 0..(run.count % 13).max(1) {
            let mut route = run.template.clone();
            shift(&mut route, i);
            routes.push(route);
        }
    }
    routes.truncate(40);
    if routes.is_empty() {
        return;
    }
    let toml = config_toml(&routes);
    let config = match Config::parse(&toml, Path::new("sluice.toml")) {
        Ok(config) => config,
        Err(e) => panic!("generated config refused: {e}\n{toml}"),
    };
    for spec in input.requests.iter().take(32) {
        let Some(request) = build_request(spec) else {
            continue;
        };
        let head = RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
        };
        let found = config.routes.find(&head).map(|(i, _)| i);
        let want = routes.iter().position(|r| reference_matches(r, &request));
        assert_eq!(found, want, "request {request:?}\nroutes:\n{toml}");
    }
});

/// Moves every exact value of `route` `by` places along its vocabulary.
fn shift(route: &mut RouteSpec, by: u8) {
    if let Some(HostSpec::Exact(h)) = &mut route.host {
        *h = h.wrapping_add(by);
    }
    if let Some(PathSpec::Exact(p)) = &mut route.path {
        *p = p.wrapping_add(by);
    }
    for (_, value) in &mut route.headers {
        if let Kind::Exact(v) = &mut value.kind {
            *v = v.wrapping_add(by);
        }
    }
}

/// A TOML basic string (the vocabularies hold nothing Rust and TOML escape differently).
fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

fn value_toml(spec: &ValueSpec) -> String {
    let kind = match &spec.kind {
        Kind::Exact(v) => format!("exact = {}", toml_str(pick(VALUES, *v))),
        Kind::Prefix(v) => format!("prefix = {}", toml_str(pick(VALUES, *v))),
        Kind::Regex(v) => format!("regex = {}", toml_str(pick(VALUE_REGEXES, *v))),
        Kind::Present(p) => format!("present = {p}"),
    };
    if spec.invert {
        format!("{{ {kind}, invert = true }}")
    } else {
        format!("{{ {kind} }}")
    }
}

const VALUE_REGEXES: &[&str] = &["a.*", "[ab]+", "", "a b"];

/// The first `limit` entries of `list` with distinct names (a name is a key, given once).
fn distinct<'a>(
    list: &'a [(u8, ValueSpec)],
    names: &[&str],
    limit: usize,
) -> Vec<&'a (u8, ValueSpec)> {
    let mut seen = Vec::new();
    list.iter()
        .take(limit)
        .filter(|(n, _)| {
            let name = pick(names, *n);
            let new = !seen.contains(&name);
            seen.push(name);
            new
        })
        .collect()
}

/// The config as TOML (the same structure as YAML; TOML parses ten times faster, and the
/// parser is not what this target is about).
fn config_toml(routes: &[RouteSpec]) -> String {
    let mut out = String::from(
        "[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:0\"\n[upstreams.app]\nendpoints = [\"127.0.0.1:1\"]\n",
    );
    for (i, route) in routes.iter().enumerate() {
        let _ = writeln!(out, "[[routes]]\nname = \"r{i}\"\nbackends = [{{ upstream = \"app\", weight = 1 }}]\n[routes.match]");
        if let Some(host) = &route.host {
            let host = match host {
                HostSpec::Exact(h) => pick(HOSTS, *h).to_string(),
                HostSpec::Wildcard(h) => format!("*.{}", pick(HOSTS, *h)),
            };
            let _ = writeln!(out, "host = {}", toml_str(&host));
        }
        if let Some(path) = &route.path {
            let (key, value) = match path {
                PathSpec::Prefix(p) => ("path_prefix", pick(PATHS, *p)),
                PathSpec::SegmentPrefix(p) => ("path_segment_prefix", pick(PATHS, *p)),
                PathSpec::Exact(p) => ("path_exact", pick(PATHS, *p)),
                PathSpec::Regex(p) => ("path_regex", pick(REGEXES, *p)),
            };
            let _ = writeln!(out, "{key} = {}", toml_str(value));
        }
        if let Some(method) = route.method {
            let _ = writeln!(out, "method = \"{}\"", pick(METHODS, method));
        }
        let headers = distinct(&route.headers, NAMES, 3);
        if !headers.is_empty() {
            out.push_str("[routes.match.headers]\n");
            for (name, value) in headers {
                let _ = writeln!(out, "{} = {}", pick(NAMES, *name), value_toml(value));
            }
        }
        let query = distinct(&route.query, PARAMS, 2);
        if !query.is_empty() {
            out.push_str("[routes.match.query]\n");
            for (name, value) in query {
                let _ = writeln!(out, "{} = {}", pick(PARAMS, *name), value_toml(value));
            }
        }
    }
    out
}

fn build_request(spec: &RequestSpec) -> Option<http::Request<()>> {
    let mut target = pick(PATHS, spec.path).to_string();
    let query: Vec<(u8, u8)> = spec.query.iter().take(3).copied().collect();
    if !query.is_empty() {
        target.push('?');
        let pairs: Vec<String> = query
            .iter()
            .map(|(n, v)| format!("{}={}", pick(PARAMS, *n), pick(RAW_VALUES, *v).0))
            .collect();
        target.push_str(&pairs.join("&"));
    }
    let host = spec.host.map(|(h, port)| match port {
        Some(port) => format!("{}:{port}", pick(REQUEST_HOSTS, h)),
        None => pick(REQUEST_HOSTS, h).to_string(),
    });
    let mut builder = http::Request::builder().method(pick(METHODS, spec.method));
    match (&host, spec.authority) {
        // An HTTP/2 request: the host is the target's authority.
        (Some(host), true) => builder = builder.uri(format!("http://{host}{target}")),
        (Some(host), false) => builder = builder.uri(target).header("host", host.as_str()),
        (None, _) => builder = builder.uri(target),
    }
    for (name, value) in spec.headers.iter().take(4) {
        builder = builder.header(pick(NAMES, *name), pick(VALUES, *value));
    }
    builder.body(()).ok()
}

// ---------------------------------------------------------------------------------------
// The reference: the documented rules, one route at a time.

fn reference_matches(route: &RouteSpec, request: &http::Request<()>) -> bool {
    if let Some(method) = route.method {
        if request.method().as_str() != pick(METHODS, method) {
            return false;
        }
    }
    let path = request.uri().path();
    if let Some(spec) = &route.path {
        let ok = match spec {
            PathSpec::Prefix(p) => path.starts_with(pick(PATHS, *p)),
            PathSpec::Exact(p) => path == pick(PATHS, *p),
            PathSpec::SegmentPrefix(p) => {
                let prefix = pick(PATHS, *p).trim_end_matches('/');
                path == prefix || path.starts_with(&format!("{prefix}/"))
            }
            PathSpec::Regex(p) => full_match(REGEXES, *p, path),
        };
        if !ok {
            return false;
        }
    }
    if let Some(spec) = &route.host {
        let Some(host) = request_host(request) else {
            return false;
        };
        let ok = match spec {
            HostSpec::Exact(h) => host.eq_ignore_ascii_case(pick(HOSTS, *h)),
            HostSpec::Wildcard(h) => {
                let suffix = format!(".{}", pick(HOSTS, *h)).to_ascii_lowercase();
                let host = host.to_ascii_lowercase();
                host.len() > suffix.len() && host.ends_with(&suffix)
            }
        };
        if !ok {
            return false;
        }
    }
    let mut seen = Vec::new();
    for (name, spec) in route.headers.iter().take(3) {
        let name = pick(NAMES, *name);
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let values: Vec<&str> = request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values_match(spec, &values) {
            return false;
        }
    }
    let mut seen = Vec::new();
    for (name, spec) in route.query.iter().take(2) {
        let name = pick(PARAMS, *name);
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let value = first_param(request.uri().query(), name);
        let values: Vec<&str> = value.as_deref().into_iter().collect();
        if !values_match(spec, &values) {
            return false;
        }
    }
    true
}

/// Present: whether there are values; the others: whether any value matches (none: no);
/// inverted: the opposite of all that.
fn values_match(spec: &ValueSpec, values: &[&str]) -> bool {
    let plain = match &spec.kind {
        Kind::Present(want) => *want == !values.is_empty(),
        Kind::Exact(v) => values.iter().any(|x| *x == pick(VALUES, *v)),
        Kind::Prefix(v) => values.iter().any(|x| x.starts_with(pick(VALUES, *v))),
        Kind::Regex(v) => values.iter().any(|x| full_match(VALUE_REGEXES, *v, x)),
    };
    plain != spec.invert
}

/// Whether pattern `i` of `patterns` (one of the two vocabularies) matches all of `text`.
fn full_match(patterns: &'static [&'static str], i: u8, text: &str) -> bool {
    static PATHS_RE: OnceLock<Vec<Regex>> = OnceLock::new();
    static VALUES_RE: OnceLock<Vec<Regex>> = OnceLock::new();
    let cell = if std::ptr::eq(patterns, REGEXES) {
        &PATHS_RE
    } else {
        &VALUES_RE
    };
    let compiled = cell.get_or_init(|| {
        patterns
            .iter()
            .filter_map(|p| Regex::new(&format!("^(?:{p})$")).ok())
            .collect()
    });
    compiled[usize::from(i) % compiled.len()].is_match(text)
}

/// The `Host` header, else the target's authority, without a port.
fn request_host(request: &http::Request<()>) -> Option<String> {
    let raw = match request.headers().get("host") {
        Some(host) => host.to_str().ok()?.to_string(),
        None => request.uri().authority()?.as_str().to_string(),
    };
    if raw.starts_with('[') {
        return Some(raw[..=raw.find(']')?].to_string());
    }
    Some(match raw.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => raw,
    })
}

/// The first value of parameter `name`, decoded by hand: `+` is a space, `%XX` a byte.
fn first_param(query: Option<&str>, name: &str) -> Option<String> {
    for pair in query?.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key) == name {
            return Some(decode(value));
        }
    }
    None
}

fn decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
