//! The conformance suite's header modifier, mirroring and retry cases (route YAML verbatim,
//! the tables of requests they check), and an Istio VirtualService with header changes, a
//! mirror, retries and faults: converted with `sluice-proxy convert` and run by a proxy in
//! front of real backends.

use std::time::{Duration, Instant};

use http::HeaderMap;
use sluice_tests::{client, eventually, Backend, Proxy};

use super::conformance::{deploy, BACKENDS};
use super::{convert, refused};

/// A request and what the backend must have received: headers with these values (several
/// values joined by commas) and none of `absent`.
#[derive(Debug)]
struct Received {
    path: &'static str,
    sent: &'static [(&'static str, &'static str)],
    present: &'static [(&'static str, &'static str)],
    absent: &'static [&'static str],
}

/// HTTPRouteRequestHeaderModifier.
const REQUEST_HEADER_MODIFIER: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: request-header-modifier
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /set
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /add
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add:
        - name: X-Header-Add
          value: add-appends-values
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /remove
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        remove:
        - X-Header-Remove
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /multiple
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set-1
          value: header-set-1
        - name: X-Header-Set-2
          value: header-set-2
        add:
        - name: X-Header-Add-1
          value: header-add-1
        - name: X-Header-Add-2
          value: header-add-2
        - name: X-Header-Add-3
          value: header-add-3
        remove:
        - X-Header-Remove-1
        - X-Header-Remove-2
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /case-insensitivity
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: header-set
        add:
        - name: X-Header-Add
          value: header-add
        remove:
        - X-Header-Remove
    backendRefs:
    - name: infra-backend-v1
      port: 8080
"#;

/// HTTPRouteBackendRequestHeaderModifier: the same changes as a backendRef's filters.
const BACKEND_REQUEST_HEADER_MODIFIER: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: request-header-modifier
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /set
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set:
          - name: X-Header-Set
            value: set-overwrites-values
  - matches:
    - path:
        type: PathPrefix
        value: /add
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          add:
          - name: X-Header-Add
            value: add-appends-values
  - matches:
    - path:
        type: PathPrefix
        value: /remove
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          remove:
          - X-Header-Remove
  - matches:
    - path:
        type: PathPrefix
        value: /multiple
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set:
          - name: X-Header-Set-1
            value: header-set-1
          - name: X-Header-Set-2
            value: header-set-2
          add:
          - name: X-Header-Add-1
            value: header-add-1
          - name: X-Header-Add-2
            value: header-add-2
          - name: X-Header-Add-3
            value: header-add-3
          remove:
          - X-Header-Remove-1
          - X-Header-Remove-2
  - matches:
    - path:
        type: PathPrefix
        value: /case-insensitivity
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set:
          - name: X-Header-Set
            value: header-set
          add:
          - name: X-Header-Add
            value: header-add
          remove:
          - X-Header-Remove
"#;

/// The table both header modifier cases check.
const REQUEST_CASES: &[Received] = &[
    Received {
        path: "/set",
        sent: &[("Some-Other-Header", "val")],
        present: &[
            ("Some-Other-Header", "val"),
            ("X-Header-Set", "set-overwrites-values"),
        ],
        absent: &[],
    },
    Received {
        path: "/set",
        sent: &[
            ("Some-Other-Header", "val"),
            ("X-Header-Set", "some-other-value"),
        ],
        present: &[
            ("Some-Other-Header", "val"),
            ("X-Header-Set", "set-overwrites-values"),
        ],
        absent: &[],
    },
    Received {
        path: "/add",
        sent: &[("Some-Other-Header", "val")],
        present: &[
            ("Some-Other-Header", "val"),
            ("X-Header-Add", "add-appends-values"),
        ],
        absent: &[],
    },
    Received {
        path: "/add",
        sent: &[
            ("Some-Other-Header", "val"),
            ("X-Header-Add", "some-other-value"),
        ],
        present: &[
            ("Some-Other-Header", "val"),
            ("X-Header-Add", "some-other-value,add-appends-values"),
        ],
        absent: &[],
    },
    Received {
        path: "/remove",
        sent: &[("X-Header-Remove", "val")],
        present: &[],
        absent: &["X-Header-Remove"],
    },
    Received {
        path: "/multiple",
        sent: &[
            ("X-Header-Set-2", "set-val-2"),
            ("X-Header-Add-2", "add-val-2"),
            ("X-Header-Remove-2", "remove-val-2"),
            ("Another-Header", "another-header-val"),
        ],
        present: &[
            ("X-Header-Set-1", "header-set-1"),
            ("X-Header-Set-2", "header-set-2"),
            ("X-Header-Add-1", "header-add-1"),
            ("X-Header-Add-2", "add-val-2,header-add-2"),
            ("X-Header-Add-3", "header-add-3"),
            ("Another-Header", "another-header-val"),
        ],
        absent: &["X-Header-Remove-1", "X-Header-Remove-2"],
    },
    Received {
        path: "/case-insensitivity",
        sent: &[
            ("x-header-set", "original-val-set"),
            ("x-header-add", "original-val-add"),
            ("x-header-remove", "original-val-remove"),
            ("Another-Header", "another-header-val"),
        ],
        present: &[
            ("X-Header-Set", "header-set"),
            ("X-Header-Add", "original-val-add,header-add"),
            ("Another-Header", "another-header-val"),
        ],
        absent: &["x-header-remove", "X-Header-Remove"],
    },
];

/// HTTPRouteResponseHeaderModifier. The suite's echo backend sets response headers on
/// request; the test backend here does not, so its table keeps what the filters add (a
/// separate route checks a removal, of the header the backend does send).
const RESPONSE_HEADER_MODIFIER: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: response-header-modifier
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /set
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /add
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add:
        - name: X-Header-Add
          value: add-appends-values
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /remove
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        remove:
        - X-Header-Remove
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /multiple
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set-1
          value: header-set-1
        - name: X-Header-Set-2
          value: header-set-2
        add:
        - name: X-Header-Add-1
          value: header-add-1
        - name: X-Header-Add-2
          value: header-add-2
        - name: X-Header-Add-3
          value: header-add-3
        remove:
        - X-Header-Remove-1
        - X-Header-Remove-2
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /case-insensitivity
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set
          value: header-set
        add:
        - name: X-Header-Add
          value: header-add
        - name: x-lowercase-add
          value: lowercase-add
        - name: x-Mixedcase-ADD-1
          value: mixedcase-add-1
        - name: X-mixeDcase-add-2
          value: mixedcase-add-2
        - name: X-UPPERCASE-ADD
          value: uppercase-add
        remove:
        - X-Header-Remove
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - matches:
    - path:
        type: PathPrefix
        value: /response-and-request-header-modifiers
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set:
        - name: X-Header-Set-1
          value: header-set-1
        - name: X-Header-Set-2
          value: header-set-2
        add:
        - name: X-Header-Add-1
          value: header-add-1
        - name: X-Header-Add-2
          value: header-add-2
        remove:
        - X-Header-Remove-1
        - X-Header-Remove-2
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
        add:
        - name: X-Header-Add
          value: header-val-1
        - name: X-Header-Add-Append
          value: header-val-2
        remove:
        - X-Header-Remove
    backendRefs:
    - name: infra-backend-v1
      port: 8080
"#;

/// The response headers each path's answer must carry.
const RESPONSE_CASES: &[(&str, &[(&str, &str)])] = &[
    ("/set", &[("X-Header-Set", "set-overwrites-values")]),
    ("/add", &[("X-Header-Add", "add-appends-values")]),
    (
        "/multiple",
        &[
            ("X-Header-Set-1", "header-set-1"),
            ("X-Header-Set-2", "header-set-2"),
            ("X-Header-Add-1", "header-add-1"),
            ("X-Header-Add-2", "header-add-2"),
            ("X-Header-Add-3", "header-add-3"),
        ],
    ),
    (
        "/case-insensitivity",
        &[
            ("X-Header-Set", "header-set"),
            ("X-Header-Add", "header-add"),
            ("x-lowercase-add", "lowercase-add"),
            ("x-Mixedcase-ADD-1", "mixedcase-add-1"),
            ("X-mixeDcase-add-2", "mixedcase-add-2"),
            ("X-UPPERCASE-ADD", "uppercase-add"),
        ],
    ),
];

/// A removal the test backend can show: it names itself in `x-backend`.
const RESPONSE_REMOVE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: response-header-remove
  namespace: gateway-conformance-infra
spec:
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /anonymous
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        remove:
        - X-Backend
    backendRefs:
    - name: infra-backend-v1
      port: 8080
  - backendRefs:
    - name: infra-backend-v1
      port: 8080
"#;

/// HTTPRouteRequestHeaderModifierBackendWeights.
const BACKEND_WEIGHTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: request-header-modifier-backend-weights
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - backendRefs:
    - name: infra-backend-v1
      port: 8080
      weight: 10
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set:
          - name: Backend
            value: infra-backend-v1
    - name: infra-backend-v2
      port: 8080
      weight: 10
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set:
          - name: Backend
            value: infra-backend-v2
"#;

/// HTTPRouteRequestMirror.
const REQUEST_MIRROR: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: request-mirror
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /mirror
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v2
          namespace: gateway-conformance-infra
          port: 8080
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      namespace: gateway-conformance-infra
  - matches:
    - path:
        type: PathPrefix
        value: /mirror-and-modify-headers
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
        add:
        - name: X-Header-Add
          value: header-val-1
        - name: X-Header-Add-Append
          value: header-val-2
        remove:
        - X-Header-Remove
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v2
          namespace: gateway-conformance-infra
          port: 8080
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      namespace: gateway-conformance-infra
"#;

/// HTTPRouteRequestPercentageMirror.
const PERCENTAGE_MIRROR: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: request-percentage-mirror
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /percent-mirror
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v2
          namespace: gateway-conformance-infra
          port: 8080
        percent: 20
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      namespace: gateway-conformance-infra
  - matches:
    - path:
        type: PathPrefix
        value: /percent-mirror-fraction
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v2
          namespace: gateway-conformance-infra
          port: 8080
        fraction:
          numerator: 25
          denominator: 50
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      namespace: gateway-conformance-infra
  - matches:
    - path:
        type: PathPrefix
        value: /percent-mirror-and-modify-headers
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
        add:
        - name: X-Header-Add
          value: header-val-1
        - name: X-Header-Add-Append
          value: header-val-2
        remove:
        - X-Header-Remove
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v2
          namespace: gateway-conformance-infra
          port: 8080
        percent: 35
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      namespace: gateway-conformance-infra
"#;

/// HTTPRouteRequestMultipleMirrors: sluice mirrors a route to one upstream.
const MULTIPLE_MIRRORS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: request-multiple-mirrors
  namespace: gateway-conformance-infra
spec:
  parentRefs:
  - name: same-namespace
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /multi-mirror
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v2
          namespace: gateway-conformance-infra
          port: 8080
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v3
          namespace: gateway-conformance-infra
          port: 8080
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      namespace: gateway-conformance-infra
  - matches:
    - path:
        type: PathPrefix
        value: /multi-mirror-and-modify-request-headers
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: X-Header-Set
          value: set-overwrites-values
        add:
        - name: X-Header-Add
          value: header-val-1
        - name: X-Header-Add-Append
          value: header-val-2
        remove:
        - X-Header-Remove
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v2
          namespace: gateway-conformance-infra
          port: 8080
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: infra-backend-v3
          namespace: gateway-conformance-infra
          port: 8080
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      namespace: gateway-conformance-infra
"#;

/// HTTPRouteRetry.
const RETRY: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: retries
  namespace: gateway-conformance-infra
spec:
  parentRefs:
    - name: same-namespace
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /retry/code-500-attempts-3
      retry:
        codes:
          - 500
        attempts: 3
      backendRefs:
        - name: infra-backend-v3
          port: 8080
    - matches:
        - path:
            type: PathPrefix
            value: /retry/code-all-attempts-2
      retry:
        codes:
          - 500
          - 502
          - 503
          - 504
        attempts: 2
      backendRefs:
        - name: infra-backend-v3
          port: 8080
"#;

/// HTTPRouteRetryWithTimeouts: its per-try timeouts (`backendRequest`) have no sluice key.
const RETRY_WITH_TIMEOUTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: retries-with-timeouts
  namespace: gateway-conformance-infra
spec:
  parentRefs:
    - name: same-namespace
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /retry/backend-request-timeout-200ms
      retry:
        attempts: 2
      timeouts:
        backendRequest: 200ms
      backendRefs:
        - name: infra-backend-v3
          port: 8080
    - matches:
        - path:
            type: PathPrefix
            value: /retry/request-timeout-200ms
      retry:
        codes:
          - 500
        attempts: 5
      timeouts:
        backendRequest: 200ms
        request: 400ms
      backendRefs:
        - name: infra-backend-v3
          port: 8080
"#;

/// Every value of `name`, joined by commas (how the suite compares them).
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Checks `headers` against `present` and `absent`.
fn assert_headers(headers: &HeaderMap, present: &[(&str, &str)], absent: &[&str], what: &str) {
    for (name, value) in present {
        assert_eq!(
            joined(headers, name).as_deref(),
            Some(*value),
            "{what}: {name} in {headers:?}"
        );
    }
    for name in absent {
        assert!(
            headers.get(*name).is_none(),
            "{what}: {name} in {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_request_header_modifier_cases_pass() {
    for (case, yaml) in [
        ("HTTPRouteRequestHeaderModifier", REQUEST_HEADER_MODIFIER),
        (
            "HTTPRouteBackendRequestHeaderModifier",
            BACKEND_REQUEST_HEADER_MODIFIER,
        ),
    ] {
        let (backends, proxy) = deploy(yaml, &["infra-backend-v1"]).await;
        let client = client::http1();
        for (i, req) in REQUEST_CASES.iter().enumerate() {
            let what = format!("{case} #{i}: {req:?}");
            let reply = client::get(&client, &proxy.url(req.path), req.sent).await;
            assert_eq!(reply.status, 200, "{what}: {}", reply.text());
            assert_eq!(reply.text(), "infra-backend-v1\n", "{what}");
            let received = backends[0]
                .last_headers_on(req.path)
                .unwrap_or_else(|| panic!("{what}: nothing received"));
            assert_headers(&received, req.present, req.absent, &what);
        }
        println!("{case}: {} requests", REQUEST_CASES.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_response_header_modifier_cases_pass() {
    let (backends, proxy) = deploy(RESPONSE_HEADER_MODIFIER, &["infra-backend-v1"]).await;
    let client = client::http1();
    for (path, present) in RESPONSE_CASES {
        let reply = client::get(&client, &proxy.url(path), &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_headers(&reply.headers, present, &[], path);
    }
    // Both modifiers of one rule: the request's and the response's.
    let path = "/response-and-request-header-modifiers";
    let reply = client::get(
        &client,
        &proxy.url(path),
        &[("X-Header-Remove", "val"), ("X-Header-Add-Append", "first")],
    )
    .await;
    assert_headers(
        &reply.headers,
        &[
            ("X-Header-Set-1", "header-set-1"),
            ("X-Header-Add-1", "header-add-1"),
        ],
        &[],
        path,
    );
    let received = backends[0].last_headers_on(path).expect("received");
    assert_headers(
        &received,
        &[
            ("X-Header-Set", "set-overwrites-values"),
            ("X-Header-Add", "header-val-1"),
            ("X-Header-Add-Append", "first,header-val-2"),
        ],
        &["X-Header-Remove"],
        path,
    );

    let (_backends, proxy) = deploy(RESPONSE_REMOVE, &["infra-backend-v1"]).await;
    let named = client::get(&client, &proxy.url("/"), &[]).await;
    assert_eq!(
        joined(&named.headers, "x-backend").as_deref(),
        Some("infra-backend-v1")
    );
    let anonymous = client::get(&client, &proxy.url("/anonymous"), &[]).await;
    assert_eq!(anonymous.text(), "infra-backend-v1\n");
    assert!(
        anonymous.headers.get("x-backend").is_none(),
        "{:?}",
        anonymous.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_backend_weights_with_header_modifiers_pass() {
    let (backends, proxy) = deploy(BACKEND_WEIGHTS, &BACKENDS[..2]).await;
    let client = client::http1();
    // As the suite: 100 requests, each must reach the backend its own header names.
    for i in 0..100 {
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        assert_eq!(reply.status, 200, "#{i}: {}", reply.text());
        let served = reply.text();
        let backend = backends
            .iter()
            .find(|b| served == format!("{}\n", b.name))
            .unwrap_or_else(|| panic!("#{i}: answered by {served:?}"));
        let received = backend.last_headers().expect("received");
        assert_eq!(
            joined(&received, "backend").as_deref(),
            Some(backend.name.as_str()),
            "#{i}"
        );
    }
    assert!(
        backends[0].hits() > 0 && backends[1].hits() > 0,
        "a 50/50 split"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_request_mirror_cases_pass() {
    let (backends, proxy) = deploy(REQUEST_MIRROR, &BACKENDS[..2]).await;
    let client = client::http1();
    let reply = client::get(&client, &proxy.url("/mirror"), &[]).await;
    assert_eq!(reply.text(), "infra-backend-v1\n");
    eventually!(
        backends[1].hits_on("/mirror") == 1,
        "infra-backend-v2 receives the copy of /mirror"
    );

    let path = "/mirror-and-modify-headers";
    let reply = client::get(
        &client,
        &proxy.url(path),
        &[
            ("X-Header-Remove", "remove-val"),
            ("X-Header-Add-Append", "append-val-1"),
        ],
    )
    .await;
    assert_eq!(reply.text(), "infra-backend-v1\n");
    let received = backends[0].last_headers_on(path).expect("received");
    assert_headers(
        &received,
        &[
            ("X-Header-Add", "header-val-1"),
            ("X-Header-Add-Append", "append-val-1,header-val-2"),
            ("X-Header-Set", "set-overwrites-values"),
        ],
        &["X-Header-Remove"],
        path,
    );
    eventually!(
        backends[1].hits_on(path) == 1,
        "infra-backend-v2 receives the copy of {path}"
    );
    assert_eq!(
        backends[0].hits_on("/mirror"),
        1,
        "the original is sent once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_percentage_mirror_cases_pass() {
    let (backends, proxy) = deploy(PERCENTAGE_MIRROR, &BACKENDS[..2]).await;
    let client = client::http1();
    const N: u32 = 400;
    for (path, route, percent) in [
        ("/percent-mirror", "request-percentage-mirror-0", 20.0),
        (
            "/percent-mirror-fraction",
            "request-percentage-mirror-1",
            50.0,
        ),
        (
            "/percent-mirror-and-modify-headers",
            "request-percentage-mirror-2",
            35.0,
        ),
    ] {
        for _ in 0..N {
            let reply = client::get(&client, &proxy.url(path), &[]).await;
            assert_eq!(reply.text(), "infra-backend-v1\n", "{path}");
        }
        // Every copy sent has been answered (or dropped) once the proxy has counted it.
        let counted = || async {
            proxy
                .metric("sluice_mirror_requests_total", &[("route", route)])
                .await
                + proxy
                    .metric("sluice_mirror_dropped_total", &[("route", route)])
                    .await
        };
        eventually!(
            counted().await >= backends[1].hits_on(path) as f64,
            "the copies of {path} are counted"
        );
        // The suite's band is three standard deviations of the binomial count; four here,
        // so that three paths per run fail by chance about once in 5,000 runs.
        let p = percent / 100.0;
        let n = f64::from(N);
        let band = 4.0 * (n * p * (1.0 - p)).sqrt();
        let mirrored = backends[1].hits_on(path) as f64;
        println!("{path}: {mirrored} of {N} mirrored (want {percent}%)");
        assert!(
            (mirrored - n * p).abs() <= band,
            "{path}: {mirrored} of {N} mirrored, want {} ± {band:.0}",
            n * p
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_retry_cases_pass() {
    let (backends, proxy) = deploy(RETRY, &["infra-backend-v3"]).await;
    let v3 = &backends[2];
    let client = client::http1();
    // The suite's backend fails a given number of times and then succeeds; this one fails
    // for good, so each case shows how many attempts the proxy made and what it answered.
    // A success after each case keeps the endpoint from being ejected (5 failures in a row).
    for (path, status, attempts) in [
        ("/retry/code-500-attempts-3", 500, 4),
        ("/retry/code-500-attempts-3", 503, 1),
        ("/retry/code-all-attempts-2", 502, 3),
        ("/retry/code-all-attempts-2", 503, 3),
        ("/retry/code-all-attempts-2", 504, 3),
    ] {
        v3.set_path_status(path, Some(status));
        let before = v3.hits_on(path);
        let reply = client::get(&client, &proxy.url(path), &[]).await;
        assert_eq!(reply.status.as_u16(), status, "{path} {status}");
        assert_eq!(
            v3.hits_on(path) - before,
            attempts,
            "{path}: attempts on {status}"
        );
        v3.set_path_status(path, None);
        let reply = client::get(&client, &proxy.url(path), &[]).await;
        assert_eq!(reply.text(), "infra-backend-v3\n");
    }
}

#[test]
fn conformance_cases_sluice_cannot_honour_are_refused_with_the_reason() {
    let stderr = refused(&[("route.yaml", MULTIPLE_MIRRORS)], &[]);
    assert!(
        stderr.contains("spec.rules[0].filters[1]: a second RequestMirror filter: sluice mirrors a route's requests to one upstream (--ignore RequestMirror drops it)"),
        "{stderr}"
    );
    let stderr = refused(&[("route.yaml", RETRY_WITH_TIMEOUTS)], &[]);
    assert!(
        stderr.contains(
            "spec.rules[0].timeouts.backendRequest: a per-backend-request timeout is not supported"
        ),
        "{stderr}"
    );
    // Dropped knowingly, the first mirror of each rule stays.
    let yaml = convert(
        &[("route.yaml", MULTIPLE_MIRRORS)],
        &["--ignore=RequestMirror".to_string()],
    );
    assert_eq!(
        yaml.matches("mirror: { upstream: infra-backend-v2, percent: 100 }")
            .count(),
        2,
        "{yaml}"
    );
    assert!(!yaml.contains("  infra-backend-v3:\n"), "{yaml}");
}

/// An Istio rule set using all the route policies: header changes per rule and per
/// destination, a mirror, retries on 503, an abort and a delay.
const ISTIO: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
    - reviews
  http:
    - name: drill
      match:
        - uri:
            prefix: /drill
      fault:
        abort:
          httpStatus: 503
          percentage:
            value: 100
      route:
        - destination:
            host: reviews
            subset: v1
    - name: slow
      match:
        - uri:
            prefix: /slow
      fault:
        delay:
          fixedDelay: 300ms
          percentage:
            value: 100
      route:
        - destination:
            host: reviews
            subset: v1
    - name: flaky
      match:
        - uri:
            prefix: /flaky
      retries:
        attempts: 2
        retryOn: "503"
      route:
        - destination:
            host: reviews
            subset: v1
    - name: default
      headers:
        request:
          set:
            x-env: prod
          remove:
            - x-debug
        response:
          set:
            x-served-by: sluice
      mirror:
        host: reviews
        subset: v2
      route:
        - destination:
            host: reviews
            subset: v1
          headers:
            request:
              add:
                x-version: v1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  subsets:
    - name: v1
      labels:
        version: v1
    - name: v2
      labels:
        version: v2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_istio_virtual_service_with_route_policies_runs_as_it_says() {
    let v1 = Backend::spawn("v1").await;
    let v2 = Backend::spawn("v2").await;
    let yaml = convert(
        &[("reviews.yaml", ISTIO)],
        &[
            format!("--upstream=v1={}", v1.endpoint()),
            format!("--upstream=v2={}", v2.endpoint()),
            "--listen=127.0.0.1:0".to_string(),
            "--admin=127.0.0.1:0".to_string(),
        ],
    );
    let proxy = Proxy::start(&yaml);
    let client = client::http1();

    let reply = client::get(&client, &proxy.url("/"), &[("x-debug", "1")]).await;
    assert_eq!(reply.text(), "v1\n");
    assert_eq!(
        joined(&reply.headers, "x-served-by").as_deref(),
        Some("sluice")
    );
    let received = v1.last_headers_on("/").expect("received");
    assert_headers(
        &received,
        &[("x-env", "prod"), ("x-version", "v1")],
        &["x-debug"],
        "the default route",
    );
    eventually!(v2.hits_on("/") == 1, "v2 receives the copy");

    let hits = v1.hits();
    let reply = client::get(&client, &proxy.url("/drill"), &[]).await;
    assert_eq!(reply.status, 503, "the abort answers");
    assert_eq!(v1.hits(), hits, "an aborted request is not forwarded");

    let started = Instant::now();
    let reply = client::get(&client, &proxy.url("/slow"), &[]).await;
    assert_eq!(reply.text(), "v1\n");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "delayed {:?}",
        started.elapsed()
    );

    v1.set_path_status("/flaky", Some(503));
    let reply = client::get(&client, &proxy.url("/flaky"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(v1.hits_on("/flaky"), 3, "the first try and 2 retries");
}
