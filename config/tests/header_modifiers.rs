//! `request_headers` / `response_headers` of routes and backends: what they compile to, and
//! the exact message for each value validation refuses.

use http::{HeaderName, HeaderValue};
use sluice_config::HeaderModifier;

mod common;

use common::{parse, BASE};

/// `BASE` with `lines` added to route `default` (from line 9, column 5).
fn route_with(lines: &str) -> String {
    let block: String = lines.lines().map(|line| format!("    {line}\n")).collect();
    BASE.replacen("    backends:\n", &format!("{block}    backends:\n"), 1)
}

fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

#[test]
fn absent_or_empty_means_no_change() {
    let config = parse(BASE).expect("valid");
    let route = &config.routes.routes()[0];
    assert_eq!(route.request_headers, None);
    assert_eq!(route.response_headers, None);
    assert_eq!(route.backend_policies[0].request_headers, None);
    let empty = parse(&route_with(
        "request_headers: {}\nresponse_headers: { set: {}, remove: [] }",
    ))
    .expect("valid");
    assert_eq!(empty.routes.routes()[0].request_headers, None);
    assert_eq!(empty.routes.routes()[0].response_headers, None);
}

#[test]
fn route_and_backend_modifiers_are_read_with_lowercase_names() {
    let text = route_with(
        "request_headers: { set: { X-Env: prod, x-region: eu }, add: { x-tag: a }, remove: [X-Debug] }\nresponse_headers: { add: { Cache-Control: no-store } }",
    )
    .replacen(
        "      - { upstream: app, weight: 1 }\n",
        "      - upstream: app\n        weight: 1\n        request_headers: { set: { x-canary: \"1\" } }\n        response_headers: { add: { x-served-by: app }, remove: [server] }\n",
        1,
    );
    let config = parse(&text).expect("valid");
    let route = &config.routes.routes()[0];
    assert_eq!(
        route.request_headers.as_deref(),
        Some(&HeaderModifier {
            set: vec![header("x-env", "prod"), header("x-region", "eu")],
            add: vec![header("x-tag", "a")],
            remove: vec![HeaderName::from_static("x-debug")],
        })
    );
    assert_eq!(
        route.response_headers.as_deref(),
        Some(&HeaderModifier {
            add: vec![header("cache-control", "no-store")],
            ..HeaderModifier::default()
        })
    );
    let backend = &route.backend_policies[0];
    assert_eq!(
        backend.request_headers.as_deref(),
        Some(&HeaderModifier {
            set: vec![header("x-canary", "1")],
            ..HeaderModifier::default()
        })
    );
    assert_eq!(
        backend.response_headers.as_deref(),
        Some(&HeaderModifier {
            add: vec![header("x-served-by", "app")],
            remove: vec![HeaderName::from_static("server")],
            ..HeaderModifier::default()
        })
    );
}

#[test]
fn framing_headers_cannot_be_modified() {
    let refused = "(refused: connection, content-length, host, keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade); remove it";
    assert_eq!(
        parse(&route_with(
            "request_headers:\n  set: { Content-Length: \"0\", host: example.com }\n  add: { transfer-encoding: chunked }\n  remove: [connection, te, Trailer, upgrade, keep-alive, proxy-connection]",
        ))
        .expect_err("invalid"),
        [
            format!("sluice.yaml:10:30: routes[0].request_headers.set.Content-Length: header \"Content-Length\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:10:41: routes[0].request_headers.set.host: header \"host\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:11:33: routes[0].request_headers.add.transfer-encoding: header \"transfer-encoding\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:12:16: routes[0].request_headers.remove[0]: header \"connection\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:12:28: routes[0].request_headers.remove[1]: header \"te\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:12:32: routes[0].request_headers.remove[2]: header \"Trailer\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:12:41: routes[0].request_headers.remove[3]: header \"upgrade\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:12:50: routes[0].request_headers.remove[4]: header \"keep-alive\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
            format!("sluice.yaml:12:62: routes[0].request_headers.remove[5]: header \"proxy-connection\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}"),
        ]
    );
    let backend = BASE.replacen(
        "      - { upstream: app, weight: 1 }\n",
        "      - upstream: app\n        weight: 1\n        response_headers: { set: { content-length: \"5\" } }\n",
        1,
    );
    assert_eq!(
        parse(&backend).expect_err("invalid"),
        [format!("sluice.yaml:12:52: routes[0].backends[0].response_headers.set.content-length: header \"content-length\" cannot be modified: it frames the message or the connection, and sluice sets it itself {refused}")]
    );
}

#[test]
fn names_and_values_must_be_valid() {
    assert_eq!(
        parse(&route_with(
            "response_headers:\n  set: { \"x bad\": a, x-ok: \"line\\nbreak\" }\n  remove: [\"x(y)\"]",
        ))
        .expect_err("invalid"),
        [
            "sluice.yaml:10:23: routes[0].response_headers.set[\"x bad\"]: \"x bad\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)",
            "sluice.yaml:10:32: routes[0].response_headers.set.x-ok: \"line\\nbreak\" is not a valid header value (visible ASCII, spaces and tabs only)",
            "sluice.yaml:11:16: routes[0].response_headers.remove[0]: \"x(y)\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)",
        ]
    );
}

#[test]
fn a_header_is_set_once() {
    assert_eq!(
        parse(&route_with("request_headers:\n  set: { X-Env: a, x-env: b }\n  add: { x-tag: a, X-Tag: b }"))
            .expect_err("twice"),
        ["sluice.yaml:10:31: routes[0].request_headers.set.x-env: header \"x-env\" is already set as \"X-Env\" (header names ignore case): set it once, and use add for more values"]
    );
}
