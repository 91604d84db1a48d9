//! The header rules, table-driven: hop-by-hop removal, upgrades, framing, `Host`, forwarding
//! headers and request ids.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let mut h = headers(&[
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("te", "trailers, deflate"),
        ("upgrade", "h2c"),
        ("x-kept", "yes"),
    ]);
    remove_hop_by_hop(&mut h, false);
    let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["te", "x-kept"]);
    assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
}

#[test]
fn every_connection_line_names_headers_to_remove() {
    let mut h = headers(&[
        ("connection", "x-one"),
        ("connection", "Keep-Alive, x-two,, close"),
        ("x-one", "1"),
        ("x-two", "2"),
        ("x-kept", "yes"),
    ]);
    remove_hop_by_hop(&mut h, false);
    let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-kept"]);
}

#[test]
fn upgrades_keep_upgrade_headers() {
    let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    assert!(wants_upgrade(&h));
    remove_hop_by_hop(&mut h, true);
    assert_eq!(
        h.get("upgrade").map(|v| v.as_bytes()),
        Some(&b"websocket"[..])
    );
    assert_eq!(
        h.get("connection").map(|v| v.as_bytes()),
        Some(&b"upgrade"[..])
    );
}

#[test]
fn framing_accepts_only_plain_chunked() {
    assert!(check_framing(&headers(&[])).is_ok());
    assert!(check_framing(&headers(&[("transfer-encoding", "chunked")])).is_ok());
    assert!(check_framing(&headers(&[("transfer-encoding", "Chunked")])).is_ok());
    assert!(check_framing(&headers(&[("transfer-encoding", "gzip, chunked")])).is_err());
    assert!(check_framing(&headers(&[
        ("transfer-encoding", "gzip"),
        ("transfer-encoding", "chunked")
    ]))
    .is_err());
}

#[test]
fn host_rules_of_rfc_9112_and_9113() {
    use Version as V;
    let ok: &[(V, &str, &[&str])] = &[
        (V::HTTP_11, "/", &["example.com"]),
        (V::HTTP_11, "/", &["Example.COM:8080"]),
        (V::HTTP_11, "/", &["127.0.0.1:80"]),
        (V::HTTP_11, "/", &["[::1]:443"]),
        (V::HTTP_11, "/", &["a%2Db.example"]),
        (V::HTTP_11, "/", &["x_y~z!$&'()*+,;=.example"]),
        (V::HTTP_10, "/", &[]),
        (V::HTTP_11, "http://example.com/x", &["example.com"]),
        (V::HTTP_11, "http://example.com:80/x", &["EXAMPLE.com"]),
        (V::HTTP_11, "https://example.com/x", &["example.com:443"]),
        (V::HTTP_2, "https://example.com/x", &[]),
        (V::HTTP_2, "https://example.com/x", &["example.com:443"]),
        (V::HTTP_2, "/x", &["example.com"]),
    ];
    for (version, uri, hosts) in ok {
        let uri: Uri = uri.parse().expect("valid uri");
        let pairs: Vec<(&str, &str)> = hosts.iter().map(|h| ("host", *h)).collect();
        let result = check_host(*version, &uri, &headers(&pairs));
        assert!(result.is_ok(), "{version:?} {uri} {hosts:?}: {result:?}");
    }
    let refused: &[(V, &str, &[&str], &str)] = &[
        (
            V::HTTP_11,
            "/",
            &["a.example", "b.example"],
            "more than one Host header",
        ),
        (
            V::HTTP_11,
            "/",
            &["a.example", "a.example"],
            "more than one Host header",
        ),
        (V::HTTP_11, "/", &[], "missing Host header"),
        (
            V::HTTP_11,
            "http://example.com/x",
            &[],
            "missing Host header",
        ),
        (V::HTTP_2, "/", &[], "missing Host header"),
        (V::HTTP_11, "/", &["a b.example"], "invalid Host header"),
        (V::HTTP_11, "/", &["x@evil"], "invalid Host header"),
        (V::HTTP_11, "/", &[""], "invalid Host header"),
        (V::HTTP_11, "/", &[":80"], "invalid Host header"),
        (V::HTTP_11, "/", &["a.example:"], "invalid Host header"),
        (V::HTTP_11, "/", &["a.example:65536"], "invalid Host header"),
        (V::HTTP_11, "/", &["a.example:8x"], "invalid Host header"),
        (V::HTTP_11, "/", &["a.example:80:80"], "invalid Host header"),
        (V::HTTP_11, "/", &["a%zz.example"], "invalid Host header"),
        (V::HTTP_11, "/", &["[::1"], "invalid Host header"),
        (V::HTTP_11, "/", &["[not-v6]"], "invalid Host header"),
        (V::HTTP_11, "/", &["a/b"], "invalid Host header"),
        (
            V::HTTP_11,
            "http://internal.example/x",
            &["public.example"],
            "Host header differs from the authority of the request target",
        ),
        (
            V::HTTP_11,
            "http://example.com:8080/x",
            &["example.com"],
            "Host header differs from the authority of the request target",
        ),
        (
            V::HTTP_2,
            "https://internal.example/x",
            &["public.example"],
            "Host header differs from the authority of the request target",
        ),
        (
            V::HTTP_11,
            "http://user@example.com/x",
            &["example.com"],
            "invalid authority in the request target",
        ),
    ];
    for (version, uri, hosts, why) in refused {
        let uri: Uri = uri.parse().expect("valid uri");
        let mut map = HeaderMap::new();
        for h in *hosts {
            map.append(header::HOST, HeaderValue::from_str(h).expect("value"));
        }
        match check_host(*version, &uri, &map) {
            Err(BadRequest(reason)) => {
                assert_eq!(reason, *why, "{version:?} {uri} {hosts:?}");
            }
            other => panic!("{version:?} {uri} {hosts:?}: {other:?}"),
        }
    }
}

#[test]
fn only_allowed_upgrades_are_kept() {
    let websocket = |p: &[u8]| p.eq_ignore_ascii_case(b"websocket");
    let mut h = headers(&[("connection", "upgrade"), ("upgrade", "h2c, WebSocket")]);
    assert!(keep_allowed_upgrades(&mut h, websocket));
    assert_eq!(h["upgrade"], "WebSocket");
    let mut h2c = headers(&[
        ("connection", "Upgrade, HTTP2-Settings"),
        ("upgrade", "h2c"),
        ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    ]);
    assert!(!keep_allowed_upgrades(&mut h2c, websocket));
    remove_hop_by_hop(&mut h2c, false);
    assert!(h2c.is_empty(), "{h2c:?}");
    let mut unnamed = headers(&[("upgrade", "websocket")]);
    assert!(
        !keep_allowed_upgrades(&mut unnamed, websocket),
        "Connection must name upgrade"
    );
    let mut settings_only = headers(&[("http2-settings", "AAMAAABk")]);
    remove_hop_by_hop(&mut settings_only, false);
    assert!(settings_only.is_empty());
}

#[test]
fn a_length_beside_a_coding_is_dropped() {
    let mut both = headers(&[("content-length", "3"), ("transfer-encoding", "chunked")]);
    assert!(drop_length_beside_coding(&mut both));
    assert!(!both.contains_key("content-length"));
    let mut length = headers(&[("content-length", "3")]);
    assert!(!drop_length_beside_coding(&mut length));
    assert_eq!(length["content-length"], "3");
}

#[test]
fn forwarded_headers_append_and_set() {
    let ip = HeaderValue::from_static("10.0.0.2");
    let mut h = headers(&[("x-forwarded-for", "1.2.3.4")]);
    add_forwarded(&mut h, &ip, true);
    assert_eq!(
        h.get("x-forwarded-for").map(|v| v.as_bytes()),
        Some(&b"1.2.3.4, 10.0.0.2"[..])
    );
    assert_eq!(
        h.get("x-forwarded-proto").map(|v| v.as_bytes()),
        Some(&b"https"[..])
    );
    let mut fresh = HeaderMap::new();
    add_forwarded(&mut fresh, &ip, false);
    assert_eq!(
        fresh.get("x-forwarded-for").map(|v| v.as_bytes()),
        Some(&b"10.0.0.2"[..])
    );
}

#[test]
fn request_ids_are_uuid_v4_and_kept_when_present() {
    let mut h = HeaderMap::new();
    ensure_request_id(&mut h, || u64::MAX);
    let id = h
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    let mut counting = HeaderMap::new();
    let n = std::cell::Cell::new(0u64);
    ensure_request_id(&mut counting, || {
        n.set(n.get() + 1);
        0x0123_4567_89ab_cdef
    });
    let id = counting
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(id, "01234567-89ab-4def-8123-456789abcdef");
    let mut given = headers(&[("x-request-id", "abc")]);
    ensure_request_id(&mut given, || 7);
    assert_eq!(
        given.get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"abc"[..])
    );
}
