//! Each matcher kind, and first match wins, through a real proxy.

use sluice_tests::{client, Backend, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matcher_kind_routes_to_its_backend_in_file_order() {
    let names = [
        "exact-host",
        "wild-host",
        "path-exact",
        "path-regex",
        "method",
        "hdr-prefix",
        "hdr-regex",
        "hdr-absent",
        "query",
        "prefix",
        "fallback",
    ];
    let mut backends = Vec::new();
    for name in names {
        backends.push(Backend::spawn(name).await);
    }
    let upstreams: String = backends
        .iter()
        .map(|b| format!("  {}:\n    endpoints: [{}]\n", b.name, b.endpoint()))
        .collect();
    let route = |name: &str, matcher: &str| {
        format!("  - name: {name}\n    match: {matcher}\n    backends: [{{ upstream: {name}, weight: 1 }}]\n")
    };
    let routes = [
        route("exact-host", "{ host: api.example.com }"),
        route("wild-host", "{ host: \"*.example.com\" }"),
        route("path-exact", "{ path_exact: /exact }"),
        route("path-regex", "{ path_regex: \"/v[0-9]+/items\" }"),
        route("method", "{ method: DELETE }"),
        route("hdr-prefix", "{ headers: { x-team: { prefix: \"qa-\" } } }"),
        route(
            "hdr-regex",
            "{ headers: { x-version: { regex: \"2\\\\.[0-9]+\" } } }",
        ),
        route(
            "hdr-absent",
            "{ path_prefix: /private, headers: { authorization: { present: false } } }",
        ),
        route("query", "{ query: { variant: { exact: \"b\" } } }"),
        route("prefix", "{ path_prefix: /api }"),
        route("fallback", "{}"),
    ]
    .concat();
    let proxy = Proxy::start(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n{upstreams}routes:\n{routes}"
    ));
    let client = client::http1();
    // (method, path, headers, backend that must answer)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (
            "GET",
            "/anything",
            &[("host", "API.example.com:8080")],
            "exact-host",
        ),
        (
            "GET",
            "/anything",
            &[("host", "www.example.com")],
            "wild-host",
        ),
        ("GET", "/anything", &[("host", "example.com")], "fallback"),
        ("GET", "/exact", &[], "path-exact"),
        ("GET", "/exact/more", &[], "fallback"),
        ("GET", "/v12/items", &[], "path-regex"),
        ("GET", "/v12/items/3", &[], "fallback"),
        ("DELETE", "/api/x", &[], "method"),
        ("GET", "/api/x", &[("x-team", "qa-blue")], "hdr-prefix"),
        ("GET", "/api/x", &[("x-team", "dev")], "prefix"),
        ("GET", "/", &[("x-version", "2.14")], "hdr-regex"),
        ("GET", "/", &[("x-version", "3.1")], "fallback"),
        ("GET", "/private/x", &[], "hdr-absent"),
        (
            "GET",
            "/private/x",
            &[("authorization", "Bearer t")],
            "fallback",
        ),
        ("GET", "/page?variant=b&x=1", &[], "query"),
        ("GET", "/page?variant=a", &[], "fallback"),
        // First match wins: host beats path, header beats the later path prefix.
        (
            "GET",
            "/exact",
            &[("host", "api.example.com")],
            "exact-host",
        ),
        ("DELETE", "/exact", &[], "path-exact"),
    ];
    for (method, path, headers, want) in cases {
        let mut req = http::Request::builder()
            .method(*method)
            .uri(proxy.url(path));
        for (k, v) in *headers {
            req = req.header(*k, *v);
        }
        let reply = client::send(&client, req.body(Default::default()).expect("request")).await;
        assert_eq!(reply.status, 200, "{method} {path} {headers:?}");
        assert_eq!(
            reply.text(),
            format!("{want}\n"),
            "{method} {path} {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_prefixes_inverted_matchers_and_fixed_responses() {
    let segment = Backend::spawn("segment").await;
    let inverted = Backend::spawn("inverted").await;
    let fallback = Backend::spawn("fallback").await;
    let proxy = Proxy::start(&format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  segment: {{ endpoints: [{segment}] }}
  inverted: {{ endpoints: [{inverted}] }}
  fallback: {{ endpoints: [{fallback}] }}
routes:
  - name: maintenance
    match: {{ path_exact: /down }}
    respond: {{ status: 503, body: "down for maintenance" }}
  - name: broken
    match: {{ path_exact: /broken }}
    respond: {{ status: 500 }}
  - name: segment
    match: {{ path_segment_prefix: /api/ }}
    backends: [{{ upstream: segment, weight: 1 }}]
  - name: inverted
    match: {{ path_prefix: /p, headers: {{ x-debug: {{ exact: "1", invert: true }} }} }}
    backends: [{{ upstream: inverted, weight: 1 }}]
  - name: fallback
    backends: [{{ upstream: fallback, weight: 1 }}]
"#,
        segment = segment.endpoint(),
        inverted = inverted.endpoint(),
        fallback = fallback.endpoint(),
    ));
    let client = client::http1();
    // (path, headers, backend that must answer)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("/api", &[], "segment"),
        ("/api/", &[], "segment"),
        ("/api/v1/items", &[], "segment"),
        ("/apiv2", &[], "fallback"),
        ("/p", &[], "inverted"),
        ("/p", &[("x-debug", "2")], "inverted"),
        ("/p", &[("x-debug", "1")], "fallback"),
    ];
    for (path, headers, want) in cases {
        let reply = client::get(&client, &proxy.url(path), headers).await;
        assert_eq!(reply.status, 200, "{path} {headers:?}");
        assert_eq!(reply.text(), format!("{want}\n"), "{path} {headers:?}");
    }
    let down = client::get(&client, &proxy.url("/down"), &[]).await;
    assert_eq!(down.status, 503);
    assert_eq!(down.text(), "down for maintenance");
    assert_eq!(
        down.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/plain; charset=utf-8"[..])
    );
    assert!(
        down.headers.get("x-sluice-error").is_none(),
        "configured, not an error"
    );
    let broken = client::get(&client, &proxy.url("/broken"), &[]).await;
    assert_eq!((broken.status.as_u16(), broken.text().as_str()), (500, ""));
    let fixed = |route: &'static str, code: &'static str| {
        let proxy = &proxy;
        async move {
            proxy
                .metric(
                    "sluice_requests_total",
                    &[("route", route), ("backend", ""), ("code", code)],
                )
                .await
        }
    };
    assert_eq!(fixed("maintenance", "503").await, 1.0);
    assert_eq!(fixed("broken", "500").await, 1.0);
    assert_eq!(fallback.hits(), 2, "fixed responses reach no backend");
    let config = proxy.config_json().await;
    assert_eq!(
        config["routes"][0]["respond"]["status"], 503,
        "/config shows it"
    );
    assert_eq!(
        config["routes"][0]["backends"].as_array().map(Vec::len),
        Some(0)
    );
}
