//! The HTTPRoute cases of the Gateway API conformance suite, ported: each case's route YAML
//! (verbatim) and its table of requests with the backend (or status) that must answer. Each
//! is converted with `sluice-proxy convert`, run by a proxy in front of backends named like
//! the suite's (`infra-backend-v1` ...), and every request of its table is checked.

use sluice_tests::{client, Backend, Proxy};

use super::{convert, share_of};

/// What must answer a request.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This backend, with a 200.
    Backend(&'static str),
    /// The proxy, with this status.
    Status(u16),
}

/// One request of a case's table.
#[derive(Clone, Copy, Debug)]
struct Req {
    method: &'static str,
    path: &'static str,
    host: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

/// A ported conformance test: its name in the suite, its route YAML, the backends its routes
/// send to (each gets `--upstream`), its table.
struct Case {
    name: &'static str,
    yaml: &'static str,
    backends: &'static [&'static str],
    requests: &'static [Req],
}

const V1: Expect = Expect::Backend("infra-backend-v1");
const V2: Expect = Expect::Backend("infra-backend-v2");
const V3: Expect = Expect::Backend("infra-backend-v3");
const NOT_FOUND: Expect = Expect::Status(404);
const SERVER_ERROR: Expect = Expect::Status(500);

const fn get(path: &'static str, expect: Expect) -> Req {
    Req {
        method: "GET",
        path,
        host: None,
        headers: &[],
        expect,
    }
}

const fn with(
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Req {
    Req {
        method,
        path,
        host: None,
        headers,
        expect,
    }
}

const fn at(
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Req {
    Req {
        method: "GET",
        path,
        host: Some(host),
        headers,
        expect,
    }
}

const CASES: &[Case] = &[
    Case {
        name: "HTTPRouteSimpleSameNamespace",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: gateway-conformance-infra-test
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - backendRefs:
    - name: infra-backend-v1
      port: 8080
"#,
        backends: &["infra-backend-v1"],
        requests: &[get("/", V1)],
    },
    Case {
        name: "HTTPRouteMatching",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: matching
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    - headers:
      - name: version
        value: one
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /v2
    - headers:
      - name: version
        value: two
    backendRefs:
    - name: infra-backend-v2
      port: 8080
"#,
        backends: &["infra-backend-v1", "infra-backend-v2"],
        requests: &[
            get("/", V1),
            get("/example", V1),
            with("GET", "/", &[("Version", "one")], V1),
            get("/v2", V2),
            get("/v2/example", V2),
            with("GET", "/", &[("Version", "two")], V2),
            get("/v2/", V2),
            // Not a path segment prefix so should not match /v2.
            get("/v2example", V1),
            get("/foo/v2/example", V1),
        ],
    },
    Case {
        name: "HTTPRouteExactPathMatching",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: exact-matching
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: Exact
        value: /one
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: Exact
        value: /two
    backendRefs:
    - name: infra-backend-v2
      port: 8080
"#,
        backends: &["infra-backend-v1", "infra-backend-v2"],
        requests: &[
            get("/one", V1),
            get("/two", V2),
            get("/", NOT_FOUND),
            get("/one/example", NOT_FOUND),
            get("/two/", NOT_FOUND),
            get("/Two", NOT_FOUND),
        ],
    },
    Case {
        name: "HTTPRouteHeaderMatching",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: header-matching
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  # Matches "version: one"
  - matches:
    - headers:
      - name: version
        value: one
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  # Matches "version: two"
  - matches:
    - headers:
      - name: version
        value: two
    backendRefs:
    - name: infra-backend-v2
      port: 8080
  # Matches "version: two" AND "color: orange"
  - matches:
    - headers:
      - name: version
        value: two
      - name: color
        value: orange
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  # Matches "color: blue" OR "color: green"
  - matches:
    - headers:
      - name: color
        value: blue
    - headers:
      - name: color
        value: green
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  # Matches "color: red" OR "color: yellow"
  - matches:
    - headers:
      - name: color
        value: red
    - headers:
      - name: color
        value: yellow
    backendRefs:
    - name: infra-backend-v2
      port: 8080
"#,
        backends: &["infra-backend-v1", "infra-backend-v2"],
        requests: &[
            with("GET", "/", &[("Version", "one")], V1),
            with("GET", "/", &[("Version", "two")], V2),
            with("GET", "/", &[("Version", "two"), ("Color", "orange")], V1),
            with("GET", "/", &[("Version", "two"), ("Color", "blue")], V2),
            with("GET", "/", &[("Color", "orange")], NOT_FOUND),
            with("GET", "/", &[("Some-Other-Header", "one")], NOT_FOUND),
            with("GET", "/", &[("Color", "blue")], V1),
            with("GET", "/", &[("Color", "green")], V1),
            with("GET", "/", &[("Color", "red")], V2),
            with("GET", "/", &[("Color", "yellow")], V2),
            with("GET", "/", &[("Color", "purple")], NOT_FOUND),
        ],
    },
    Case {
        name: "HTTPRouteQueryParamMatching",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: query-param-matching
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - queryParams:
      - name: animal
        value: whale
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - queryParams:
      - name: animal
        value: dolphin
    backendRefs:
    - name: infra-backend-v2
      port: 8080
  - matches:
    - queryParams:
      - name: animal
        value: dolphin
      - name: color
        value: blue
    - queryParams:
      - name: ANIMAL
        value: Whale
    backendRefs:
    - name: infra-backend-v3
      port: 8080

  # Combinations with core match types.
  - matches:
    - path:
        type: PathPrefix
        value: /path1
      queryParams:
      - name: animal
        value: whale
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - headers:
      - name: version
        value: one
      queryParams:
      - name: animal
        value: whale
    backendRefs:
    - name: infra-backend-v2
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /path2
      headers:
      - name: version
        value: two
      queryParams:
      - name: animal
        value: whale
    backendRefs:
    - name: infra-backend-v3
      port: 8080

  # Match of the form (cond1 AND cond2) OR (cond3 AND cond4 AND cond5)
  - matches:
    - path:
        type: PathPrefix
        value: /path3
      queryParams:
      - name: animal
        value: shark
    - path:
        type: PathPrefix
        value: /path4
      headers:
      - name: version
        value: three
      queryParams:
      - name: animal
        value: kraken
    backendRefs:
    - name: infra-backend-v1
      port: 8080

  # Matches for checking precedence.
  - matches:
    - path:
        type: PathPrefix
        value: /path5
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - queryParams:
      - name: animal
        value: hydra
    backendRefs:
    - name: infra-backend-v2
      port: 8080
  - matches:
    - headers:
      - name: version
        value: four
    backendRefs:
    - name: infra-backend-v3
      port: 8080
"#,
        backends: &["infra-backend-v1", "infra-backend-v2", "infra-backend-v3"],
        requests: &[
            get("/?animal=whale", V1),
            get("/?animal=dolphin", V2),
            get("/?animal=dolphin&color=blue", V3),
            get("/?ANIMAL=Whale", V3),
            get("/?animal=whale&otherparam=irrelevant", V1),
            get("/?animal=dolphin&color=yellow", V2),
            get("/?color=blue", NOT_FOUND),
            get("/?animal=dog", NOT_FOUND),
            get("/?animal=whaledolphin", NOT_FOUND),
            get("/", NOT_FOUND),
            // Combinations of query param matching with other core matches.
            get("/path1?animal=whale", V1),
            with("GET", "/?animal=whale", &[("version", "one")], V2),
            with("GET", "/path2?animal=whale", &[("version", "two")], V3),
            // ORed matches match when only one of them is used in the request.
            get("/path3?animal=shark", V1),
            with("GET", "/path4?animal=kraken", &[("version", "three")], V1),
            // ANDed match types do not match when only some are used in the request.
            get("/?animal=shark", NOT_FOUND),
            get("/path4?animal=kraken", NOT_FOUND),
            // Precedence.
            get("/path5?animal=hydra", V1),
            with("GET", "/?animal=hydra", &[("version", "four")], V3),
        ],
    },
    Case {
        name: "HTTPRouteMethodMatching",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: method-matching
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - method: POST
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - method: GET
    backendRefs:
    - name: infra-backend-v2
      port: 8080

  # Combinations with core match types.
  - matches:
    - path:
        type: PathPrefix
        value: /path1
      method: GET
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - headers:
      - name: version
        value: one
      method: PUT
    backendRefs:
    - name: infra-backend-v2
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /path2
      headers:
      - name: version
        value: two
      method: POST
    backendRefs:
    - name: infra-backend-v3
      port: 8080

  # Match of the form (cond1 AND cond2) OR (cond3 AND cond4 AND cond5)
  - matches:
    - path:
        type: PathPrefix
        value: /path3
      method: PATCH
    - path:
        type: PathPrefix
        value: /path4
      headers:
      - name: version
        value: three
      method: DELETE
    backendRefs:
    - name: infra-backend-v1
      port: 8080

  # Matches for checking precedence.
  - matches:
    - path:
        type: PathPrefix
        value: /path5
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - method: PATCH
    backendRefs:
    - name: infra-backend-v2
      port: 8080
  - matches:
    - headers:
      - name: version
        value: four
    backendRefs:
    - name: infra-backend-v3
      port: 8080
"#,
        backends: &["infra-backend-v1", "infra-backend-v2", "infra-backend-v3"],
        requests: &[
            with("POST", "/", &[], V1),
            with("GET", "/", &[], V2),
            with("HEAD", "/", &[], NOT_FOUND),
            // Combinations of method matching with other core matches.
            with("GET", "/path1", &[], V1),
            with("PUT", "/", &[("version", "one")], V2),
            with("POST", "/path2", &[("version", "two")], V3),
            // ORed matches match when only one of them is used in the request.
            with("PATCH", "/path3", &[], V1),
            with("DELETE", "/path4", &[("version", "three")], V1),
            // ANDed match types do not match when only some are used in the request.
            with("PUT", "/", &[], NOT_FOUND),
            with("DELETE", "/path4", &[], NOT_FOUND),
            // Precedence.
            with("PATCH", "/path5", &[], V1),
            with("PATCH", "/", &[("version", "four")], V2),
        ],
    },
    Case {
        name: "HTTPRoutePathMatchOrder",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: path-matching-order
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: Exact
        value: /match
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: Exact
        value: /match/exact
    backendRefs:
    - name: infra-backend-v2
      port: 8080
  - matches:
    - path:
        type: Exact
        value: /match/exact/one
    backendRefs:
    - name: infra-backend-v3
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /match/
    backendRefs:
    - name: infra-backend-v3
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /match/prefix/
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /match/prefix/one
    backendRefs:
    - name: infra-backend-v2
      port: 8080
"#,
        backends: &["infra-backend-v1", "infra-backend-v2", "infra-backend-v3"],
        requests: &[
            get("/match/exact/one", V3),
            get("/match/exact", V2),
            get("/match", V1),
            get("/match/prefix/one/any", V2),
            get("/match/prefix/any", V1),
            get("/match/any", V3),
        ],
    },
    Case {
        name: "HTTPRouteMatchingAcrossRoutes",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: matching-part1
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  hostnames:
  - example.com
  - example.net
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    - headers:
      - name: version
        value: one
    backendRefs:
    - name: infra-backend-v1
      port: 8080
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: matching-part2
  namespace: gateway-conformance-infra
spec:
  hostnames:
  - example.com
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /v2
    - headers:
      - name: version
        value: two
    backendRefs:
    - name: infra-backend-v2
      port: 8080
"#,
        backends: &["infra-backend-v1", "infra-backend-v2"],
        requests: &[
            at("example.com", "/", &[], V1),
            at("example.com", "/example", &[], V1),
            at("example.net", "/example", &[], V1),
            at("example.com", "/example", &[("Version", "one")], V1),
            at("example.com", "/v2", &[], V2),
            at("example.net", "/v2", &[], V1),
            at("example.com", "/v2/example", &[], V2),
            at("example.com", "/", &[("Version", "two")], V2),
        ],
    },
    Case {
        name: "HTTPRouteOmittedBackendRefs",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: omitted-backendrefs
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: Exact
        value: /omitted-no-forward
  - matches:
    - path:
        type: Exact
        value: /empty-no-forward
    backendRefs: []
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - name: infra-backend-v1
      port: 8080
"#,
        backends: &["infra-backend-v1"],
        requests: &[
            get("/forward", V1),
            get("/omitted-no-forward", SERVER_ERROR),
            get("/empty-no-forward", SERVER_ERROR),
        ],
    },
    Case {
        name: "HTTPRouteInvalidBackendRefUnknownKind",
        yaml: r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: invalid-backend-ref-unknown-kind
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - backendRefs:
    - group: unknownkind.example.com
      kind: NonExistent
      name: infra-backend-v1
      port: 8080
"#,
        backends: &[],
        requests: &[with("GET", "/v2", &[], SERVER_ERROR)],
    },
];

/// The suite's weight case: 70/30/0.
const WEIGHT_YAML: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: weighted-backends
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - backendRefs:
    - name: infra-backend-v1
      port: 8080
      weight: 70
    - name: infra-backend-v2
      port: 8080
      weight: 30
    - name: infra-backend-v3
      port: 8080
      weight: 0
"#;

pub(super) const BACKENDS: [&str; 3] = ["infra-backend-v1", "infra-backend-v2", "infra-backend-v3"];

/// The suite's three backends, and a proxy running the conversion of `yaml` in front of them.
pub(super) async fn deploy(yaml: &str, served: &[&str]) -> (Vec<Backend>, Proxy) {
    let mut backends = Vec::new();
    let mut args = vec![
        "--listen=127.0.0.1:0".to_string(),
        "--admin=127.0.0.1:0".to_string(),
    ];
    for name in BACKENDS {
        let backend = Backend::spawn(name).await;
        // Only backends the routes send to: --upstream for anything else is refused.
        if served.contains(&name) {
            args.push(format!("--upstream={name}={}", backend.endpoint()));
        }
        backends.push(backend);
    }
    let config = convert(&[("route.yaml", yaml)], &args);
    (backends, Proxy::start(&config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_conformance_cases_pass() {
    let mut passed = 0;
    let mut total = 0;
    for case in CASES {
        let (_backends, proxy) = deploy(case.yaml, case.backends).await;
        let client = client::http1();
        for (i, req) in case.requests.iter().enumerate() {
            total += 1;
            let mut builder = http::Request::builder()
                .method(req.method)
                .uri(proxy.url(req.path));
            if let Some(host) = req.host {
                builder = builder.header("host", host);
            }
            for (name, value) in req.headers {
                builder = builder.header(*name, *value);
            }
            let reply =
                client::send(&client, builder.body(Default::default()).expect("request")).await;
            let what = format!("{} #{i}: {req:?}", case.name);
            match req.expect {
                Expect::Backend(name) => {
                    assert_eq!(reply.status, 200, "{what}: {}", reply.text());
                    assert_eq!(reply.text(), format!("{name}\n"), "{what}");
                }
                Expect::Status(status) => {
                    assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.text());
                    assert!(
                        !BACKENDS.iter().any(|b| reply.text() == format!("{b}\n")),
                        "{what}: answered by a backend"
                    );
                }
            }
            passed += 1;
        }
    }
    println!(
        "Gateway API conformance: {passed}/{total} requests of {} cases",
        CASES.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_conformance_weights_70_30_0() {
    let (backends, proxy) = deploy(WEIGHT_YAML, &BACKENDS).await;
    // As the suite: 500 requests, 10 at a time, each share within 5 points; a statistical
    // miss is retried up to 10 times before it counts as a failure.
    let mut last = String::new();
    for attempt in 1..=10 {
        let seen = client::bodies(&proxy.url("/"), &[], 500, 10).await;
        let shares: Vec<f64> = BACKENDS.iter().map(|b| share_of(&seen, b)).collect();
        last = format!(
            "attempt {attempt}: v1 {:.1}%, v2 {:.1}%, v3 {:.1}%",
            shares[0], shares[1], shares[2]
        );
        println!("{last}");
        if (shares[0] - 70.0).abs() <= 5.0 && (shares[1] - 30.0).abs() <= 5.0 && shares[2] == 0.0 {
            assert_eq!(backends[2].hits(), 0, "weight 0 is never picked");
            return;
        }
    }
    panic!("weighted distribution out of tolerance 10 times; {last}");
}
