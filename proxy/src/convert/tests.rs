use super::render::{quoted, scalar};
use super::*;

fn options() -> Options {
    Options {
        upstreams: Vec::new(),
        ignore: Vec::new(),
        listen: "127.0.0.1:8080".into(),
        admin: "127.0.0.1:9901".into(),
    }
}

fn route_names(yaml: &str) -> Vec<&str> {
    yaml.lines()
        .skip_while(|l| *l != "routes:")
        .take_while(|l| !l.starts_with("rollouts:"))
        .filter_map(|l| l.strip_prefix("  - name: "))
        .collect()
}

#[test]
fn paths_lose_their_indices_for_ignore() {
    assert_eq!(
        strip_indices("spec.http[0].match[12].uri"),
        "spec.http.match.uri"
    );
    assert_eq!(strip_indices("spec"), "spec");
}

#[test]
fn upstream_arguments() {
    assert_eq!(
        Options::parse_upstream("v1=10.0.0.1:8080, reviews-v1:9080").expect("valid"),
        (
            "v1".to_string(),
            vec!["10.0.0.1:8080".to_string(), "reviews-v1:9080".to_string()]
        )
    );
    for bad in ["v1", "=1.2.3.4:80", "v1=1.2.3.4", "v1=1.2.3.4:0", "v1="] {
        assert!(Options::parse_upstream(bad).is_err(), "{bad}");
    }
}

#[test]
fn scalars_are_quoted_unless_plainly_strings() {
    let cases = [
        ("v1", "v1"),
        ("/api/v1", "/api/v1"),
        ("reviews.default.svc:9080", "reviews.default.svc:9080"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("true", "\"true\""),
        ("No", "\"No\""),
        ("10", "\"10\""),
        ("1.5", "\"1.5\""),
        ("*.example.com", "\"*.example.com\""),
        ("a b", "\"a b\""),
        ("", "\"\""),
        ("x:", "\"x:\""),
    ];
    for (text, want) in cases {
        assert_eq!(scalar(text), want, "{text}");
    }
    assert_eq!(quoted("^v[0-9]\\.x\"$"), "\"^v[0-9]\\\\.x\\\"$\"");
}

#[test]
fn gateway_precedence_orders_matches_across_rules_and_routes() {
    // Written in the reverse of the precedence order.
    let text = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: b, namespace: ns }
spec:
  rules:
    - name: query
      matches: [{ queryParams: [{ name: q, value: "1" }] }]
      backendRefs: [{ name: svc, port: 80 }]
    - name: headers
      matches: [{ headers: [{ name: h, value: "1" }, { name: i, value: "1" }] }]
      backendRefs: [{ name: svc, port: 80 }]
    - name: method
      matches: [{ method: GET }]
      backendRefs: [{ name: svc, port: 80 }]
    - name: short-prefix
      matches: [{ path: { type: PathPrefix, value: /a } }]
      backendRefs: [{ name: svc, port: 80 }]
    - name: long-prefix
      matches: [{ path: { type: PathPrefix, value: /a/b/ } }]
      backendRefs: [{ name: svc, port: 80 }]
    - name: regex
      matches: [{ path: { type: RegularExpression, value: "/a/.*" } }]
      backendRefs: [{ name: svc, port: 80 }]
    - name: exact
      matches: [{ path: { type: Exact, value: /a } }]
      backendRefs: [{ name: svc, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: a, namespace: ns }
spec:
  hostnames: ["*.example.com", "www.example.com", "*.b.example.com"]
  rules:
    - name: hosted
      backendRefs: [{ name: svc, port: 80 }]
    - name: hosted-tie
      backendRefs: [{ name: svc, port: 80 }]
"#;
    let input = Input {
        name: "routes.yaml".into(),
        text: text.into(),
    };
    let conversion = convert(&[input], &options()).expect("converts");
    assert_eq!(
        route_names(&conversion.yaml),
        [
            "hosted-host1",
            "hosted-tie-host1",
            "hosted-host2",
            "hosted-tie-host2",
            "hosted-host0",
            "hosted-tie-host0",
            "exact",
            "regex",
            "long-prefix",
            "short-prefix",
            "method",
            "headers",
            "query",
        ]
    );
}

#[test]
fn route_names_are_made_unique() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc }
spec:
  hosts: [svc]
  http:
    - name: same
      match: [{ uri: { prefix: /a } }]
      route: [{ destination: { host: svc } }]
    - name: same
      route: [{ destination: { host: svc } }]
"#;
    let input = Input {
        name: "vs.yaml".into(),
        text: text.into(),
    };
    let conversion = convert(&[input], &options()).expect("converts");
    assert_eq!(route_names(&conversion.yaml), ["same", "same-2"]);
}

#[test]
fn rollout_steps_start_at_the_canary_share() {
    let split = |stable: u64, canary: u64| {
        let text = format!(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: svc }}
spec:
  hosts: [svc]
  http:
    - route:
        - {{ destination: {{ host: svc, subset: a }}, weight: {stable} }}
        - {{ destination: {{ host: svc, subset: b }}, weight: {canary} }}
"#
        );
        let input = Input {
            name: "vs.yaml".into(),
            text,
        };
        let yaml = convert(&[input], &options()).expect("converts").yaml;
        let steps = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("steps: "))
            .map(str::to_string);
        let stable_is = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("stable: "))
            .map(str::to_string);
        (steps, stable_is)
    };
    assert_eq!(
        split(90, 10),
        (Some("[10, 25, 50, 75, 100]".into()), Some("a".into()))
    );
    assert_eq!(
        split(100, 0),
        (Some("[5, 10, 25, 50, 75, 100]".into()), Some("a".into()))
    );
    assert_eq!(
        split(30, 70),
        (Some("[50, 75, 100]".into()), Some("b".into())),
        "stable is the larger weight"
    );
    assert_eq!(
        split(50, 50),
        (Some("[50, 75, 100]".into()), Some("a".into())),
        "a tie keeps the first as stable"
    );
}
