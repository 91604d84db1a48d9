//! Connection and request limits (listeners, upstreams) and the upgrades a route allows: their
//! defaults, and the exact message for each value validation refuses.

use sluice_config::{
    DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_REQUESTS,
    DEFAULT_UPSTREAM_MAX_CONNECTIONS,
};

mod common;

use common::{parse, BASE};

/// `BASE` with one substring replaced (which must exist).
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

#[test]
fn defaults_apply_when_nothing_is_given() {
    let config = parse(BASE).expect("valid");
    let listener = &config.listeners[0];
    assert_eq!(listener.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(
        listener.http2_max_concurrent_streams,
        DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS
    );
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.max_connections, DEFAULT_UPSTREAM_MAX_CONNECTIONS);
    assert_eq!(upstream.max_pending_requests, DEFAULT_MAX_PENDING_REQUESTS);
    let route = &config.routes.routes()[0];
    assert_eq!(&*route.upgrades, [Box::from("websocket")]);
    assert!(route.allows_upgrade(b"websocket"));
    assert!(route.allows_upgrade(b"WebSocket"));
    assert!(route.allows_upgrade(b"websocket/13"));
    assert!(!route.allows_upgrade(b"h2c"));
    assert!(!route.allows_upgrade(b"websocketx"));
}

#[test]
fn limits_are_read() {
    let text = base_with(
        "    address: 127.0.0.1:8080\n",
        "    address: 127.0.0.1:8080\n    max_connections: 3\n    http2_max_concurrent_streams: 2\n",
    )
    .replacen(
        "    endpoints: [127.0.0.1:18081]\n",
        "    endpoints: [127.0.0.1:18081]\n    max_connections: 5\n    max_pending_requests: 0\n",
        1,
    );
    let config = parse(&text).expect("valid");
    assert_eq!(config.listeners[0].max_connections, 3);
    assert_eq!(config.listeners[0].http2_max_concurrent_streams, 2);
    assert_eq!(config.upstreams[0].max_connections, 5);
    assert_eq!(config.upstreams[0].max_pending_requests, 0);
}

#[test]
fn bad_limits_are_refused_with_their_location() {
    let text = base_with(
        "    address: 127.0.0.1:8080\n",
        "    address: 127.0.0.1:8080\n    max_connections: 0\n    http2_max_concurrent_streams: many\n",
    )
    .replacen(
        "    endpoints: [127.0.0.1:18081]\n",
        "    endpoints: [127.0.0.1:18081]\n    max_connections: -1\n    max_pending_requests: 1.5\n",
        1,
    );
    assert_eq!(
        parse(&text).expect_err("invalid"),
        [
            "sluice.yaml:4:22: listeners[0].max_connections: must be a whole number of at least 1, got 0",
            "sluice.yaml:5:35: listeners[0].http2_max_concurrent_streams: must be a whole number of at least 1, got \"many\"",
            "sluice.yaml:9:22: upstreams.app.max_connections: must be a whole number of at least 1, got -1",
            "sluice.yaml:10:27: upstreams.app.max_pending_requests: must be a whole number of at least 0, got 1.5",
        ]
    );
}

#[test]
fn upgrades_are_protocol_names_and_never_another_http_version() {
    let with = |list: &str| {
        base_with(
            "      - { upstream: app, weight: 1 }\n",
            &format!("      - {{ upstream: app, weight: 1 }}\n    upgrades: {list}\n"),
        )
    };
    let config = parse(&with("[WebSocket, foo, websocket]")).expect("valid");
    assert_eq!(
        &*config.routes.routes()[0].upgrades,
        [Box::from("websocket"), Box::from("foo")]
    );
    let none = parse(&with("[]")).expect("valid");
    assert!(!none.routes.routes()[0].allows_upgrade(b"websocket"));
    assert_eq!(
        parse(&with("[h2c, \"websocket/13\", H2]")).expect_err("invalid"),
        [
            "sluice.yaml:11:16: routes[0].upgrades[0]: \"h2c\" cannot be allowed: an upgrade to another HTTP version would let clients send requests straight to the upstream, past routing (h2c smuggling)",
            "sluice.yaml:11:21: routes[0].upgrades[1]: \"websocket/13\" is not an upgrade protocol name (a token such as \"websocket\", without version)",
            "sluice.yaml:11:37: routes[0].upgrades[2]: \"H2\" cannot be allowed: an upgrade to another HTTP version would let clients send requests straight to the upstream, past routing (h2c smuggling)",
        ]
    );
}
