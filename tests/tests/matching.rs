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
