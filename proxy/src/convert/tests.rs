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

/// Converts one file, dropping the fields named in `ignore`.
fn convert_text(text: &str, ignore: &[&str]) -> Result<Conversion, ConvertErrors> {
    let input = Input {
        name: "in.yaml".into(),
        text: text.into(),
    };
    let mut options = options();
    options.ignore = ignore.iter().map(|i| i.to_string()).collect();
    convert(&[input], &options)
}

/// The conversion of `text` and the config it parses back to.
fn converted(text: &str, ignore: &[&str]) -> (Conversion, sluice_config::Config) {
    let conversion = convert_text(text, ignore).unwrap_or_else(|e| panic!("converts: {e}"));
    let config = Config::parse(&conversion.yaml, Path::new("sluice.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", conversion.yaml));
    (conversion, config)
}

/// Why `text` does not convert: one line per problem.
fn refused(text: &str) -> Vec<String> {
    match convert_text(text, &[]) {
        Ok(conversion) => panic!("converted:\n{}", conversion.yaml),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn route<'a>(config: &'a sluice_config::Config, name: &str) -> &'a sluice_config::Route {
    config
        .routes
        .routes()
        .iter()
        .find(|r| &*r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

/// A modifier as `(set, add, remove)` text, for comparing.
type Changes = (Vec<(String, String)>, Vec<(String, String)>, Vec<String>);

fn changes(modifier: Option<&sluice_config::HeaderModifier>) -> Changes {
    let pairs = |list: &[(http::HeaderName, http::HeaderValue)]| {
        list.iter()
            .map(|(n, v)| {
                let value = v.to_str().unwrap_or_default().to_string();
                (n.to_string(), value)
            })
            .collect()
    };
    modifier.map_or_else(Default::default, |m| {
        (
            pairs(&m.set),
            pairs(&m.add),
            m.remove.iter().map(ToString::to_string).collect(),
        )
    })
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// An HTTPRoute with one rule: `rule` (YAML at the rule's indentation, without matches).
fn http_route(rule: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: r, \
         namespace: ns }}\nspec:\n  rules:\n    - name: rule\n{rule}"
    )
}

/// A VirtualService with one http rule: `rule` (YAML at the rule's indentation), and a
/// DestinationRule with subsets v1, v2 and v3.
fn virtual_service(rule: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: svc }}\n\
         spec:\n  hosts: [svc]\n  http:\n    - name: rule\n{rule}---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: svc }}\n\
         spec:\n  host: svc\n  subsets:\n    - {{ name: v1, labels: {{ version: v1 }} }}\n\
         \x20   - {{ name: v2, labels: {{ version: v2 }} }}\n\
         \x20   - {{ name: v3, labels: {{ version: v3 }} }}\n"
    )
}

#[test]
fn percentages_keep_hundredths() {
    use super::plan::{PercentError, PercentPlan};
    let shown = |p: PercentPlan| p.to_string();
    assert_eq!(shown(PercentPlan::ALL), "100");
    assert_eq!(shown(PercentPlan::from_f64(12.5).expect("valid")), "12.5");
    assert_eq!(shown(PercentPlan::from_f64(0.01).expect("valid")), "0.01");
    assert_eq!(shown(PercentPlan::from_f64(0.1).expect("valid")), "0.1");
    assert_eq!(shown(PercentPlan(0)), "0");
    assert_eq!(PercentPlan::from_f64(0.001), Err(PercentError::TooFine));
    assert_eq!(PercentPlan::from_f64(100.5), Err(PercentError::OutOfRange));
    assert_eq!(PercentPlan::from_f64(-1.0), Err(PercentError::OutOfRange));
    assert_eq!(
        shown(PercentPlan::from_fraction(25, 50).expect("valid")),
        "50"
    );
    assert_eq!(
        shown(PercentPlan::from_fraction(1, 8).expect("valid")),
        "12.5"
    );
    assert_eq!(PercentPlan::from_fraction(1, 3), Err(PercentError::TooFine));
    assert_eq!(
        PercentPlan::from_fraction(3, 2),
        Err(PercentError::OutOfRange)
    );
    assert_eq!(
        PercentPlan::from_fraction(1, 0),
        Err(PercentError::OutOfRange)
    );
}

#[test]
fn the_framing_headers_are_those_sluice_refuses() {
    let config = |name: &str| {
        format!(
            "listeners: [{{ name: http, address: 127.0.0.1:8080 }}]\nadmin: {{ address: \
             127.0.0.1:9901 }}\nupstreams: {{ a: {{ endpoints: [127.0.0.1:9000] }} }}\n\
             routes:\n  - name: r\n    request_headers: {{ set: {{ {name}: x }} }}\n    \
             backends: [{{ upstream: a, weight: 1 }}]\n"
        )
    };
    let parses = |name: &str| Config::parse(&config(name), Path::new("sluice.yaml")).is_ok();
    for name in sluice_config::UNMODIFIABLE_HEADERS {
        assert!(
            !parses(name),
            "sluice accepts {name}: drop it from UNMODIFIABLE_HEADERS"
        );
    }
    assert!(parses("x-anything"));
}

#[test]
fn gateway_header_filters_become_route_and_backend_modifiers() {
    let text = http_route(
        r#"      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{ name: X-Env, value: prod }]
            add: [{ name: X-Tag, value: a }, { name: x-tag, value: ignored }]
            remove: [X-Debug]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            add: [{ name: X-Served-By, value: sluice }]
      backendRefs:
        - name: stable
          port: 80
          weight: 90
        - name: canary
          port: 80
          weight: 10
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set: [{ name: X-Canary, value: "1" }]
            - type: ResponseHeaderModifier
              responseHeaderModifier:
                remove: [Server]
"#,
    );
    let (conversion, config) = converted(&text, &[]);
    let rule = route(&config, "rule");
    assert_eq!(
        changes(rule.request_headers.as_deref()),
        (
            owned(&[("x-env", "prod")]),
            owned(&[("x-tag", "a")]),
            vec!["x-debug".to_string()]
        )
    );
    assert_eq!(
        changes(rule.response_headers.as_deref()),
        (vec![], owned(&[("x-served-by", "sluice")]), vec![])
    );
    assert_eq!(rule.backend_policies[0], Default::default());
    let canary = &rule.backend_policies[1];
    assert_eq!(
        changes(canary.request_headers.as_deref()),
        (owned(&[("x-canary", "1")]), vec![], vec![])
    );
    assert_eq!(
        changes(canary.response_headers.as_deref()),
        (vec![], vec![], vec!["server".to_string()])
    );
    assert!(
        conversion
            .notes
            .iter()
            .any(|n| n.contains("repeats x-tag; only the first entry counts")),
        "{:?}",
        conversion.notes
    );
    assert!(conversion.yaml.contains(
        "      - upstream: canary\n        weight: 10\n        request_headers:\n          set:\n            x-canary: \"1\"\n"
    ));
}

#[test]
fn gateway_mirrors_become_a_route_mirror() {
    let mirror = |config: &str| {
        http_route(&format!(
            "      filters:\n        - type: RequestMirror\n          requestMirror:\n            \
             backendRef: {{ name: shadow, port: 8080 }}\n{config}      backendRefs: [{{ name: \
             app, port: 80 }}]\n"
        ))
    };
    let cases = [
        ("", 100.0),
        ("            percent: 20\n", 20.0),
        (
            "            fraction: { numerator: 25, denominator: 50 }\n",
            50.0,
        ),
        ("            fraction: { numerator: 5 }\n", 5.0),
        (
            "            fraction: { numerator: 1, denominator: 8 }\n",
            12.5,
        ),
    ];
    for (config, percent) in cases {
        let (conversion, parsed) = converted(&mirror(config), &[]);
        let m = route(&parsed, "rule").mirror.as_ref().expect("a mirror");
        assert_eq!(&*m.name, "shadow", "{config}");
        assert_eq!(m.percent.as_f64(), percent, "{config}");
        assert!(
            conversion
                .yaml
                .contains("  shadow:\n    endpoints: [shadow.ns:8080]\n"),
            "the mirror's upstream: {}",
            conversion.yaml
        );
    }
    let errors = refused(&mirror(
        "            fraction: { numerator: 1, denominator: 3 }\n",
    ));
    assert!(
        errors[0].contains("spec.rules[0].filters[0].requestMirror.fraction: 1/3: sluice's percentages have at most 2 decimals"),
        "{errors:?}"
    );
    let errors = refused(&mirror(
        "            percent: 20\n            fraction: { numerator: 1 }\n",
    ));
    assert!(
        errors[0].contains("give percent or fraction, not both"),
        "{errors:?}"
    );
}

#[test]
fn gateway_mirrors_sluice_cannot_honour_are_reported() {
    let two = http_route(
        r#"      filters:
        - type: RequestMirror
          requestMirror: { backendRef: { name: first, port: 80 } }
        - type: RequestMirror
          requestMirror: { backendRef: { name: second, port: 80 } }
      backendRefs: [{ name: app, port: 80 }]
"#,
    );
    assert_eq!(
        refused(&two),
        ["HTTPRoute ns/r (in.yaml, document 1): spec.rules[0].filters[1]: a second RequestMirror \
          filter: sluice mirrors a route's requests to one upstream (--ignore RequestMirror drops it)"]
    );
    // Dropped knowingly: the first mirror stays, the second is noted, no upstream is made.
    let (conversion, config) = converted(&two, &["RequestMirror"]);
    assert_eq!(
        route(&config, "rule").mirror.as_ref().map(|m| &*m.name),
        Some("first")
    );
    assert!(
        !conversion.yaml.contains("  second:\n"),
        "{}",
        conversion.yaml
    );
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.contains("dropped spec.rules[0].filters[1] (--ignore RequestMirror)")));

    let per_backend = http_route(
        r#"      backendRefs:
        - name: app
          port: 80
          filters:
            - type: RequestMirror
              requestMirror: { backendRef: { name: shadow, port: 80 } }
"#,
    );
    let errors = refused(&per_backend);
    assert!(
        errors[0].contains(
            "spec.rules[0].backendRefs[0].filters[0]: a backendRef's RequestMirror filter"
        ),
        "{errors:?}"
    );

    let answering = http_route(
        r#"      filters:
        - type: RequestMirror
          requestMirror: { backendRef: { name: shadow, port: 80 } }
"#,
    );
    let errors = refused(&answering);
    assert!(
        errors[0].contains("the rule forwards nothing (it answers 500)"),
        "{errors:?}"
    );
}

#[test]
fn gateway_retries_become_route_retries() {
    let (conversion, config) = converted(
        &http_route(
            r#"      retry: { attempts: 3, codes: [500, 503, 429], backoff: 100ms }
      backendRefs: [{ name: app, port: 80 }]
"#,
        ),
        &[],
    );
    let retries = route(&config, "rule").retries.as_ref().expect("retries");
    assert_eq!(retries.attempts, 3);
    assert!(retries.on.connect_failure && retries.on.reset);
    let statuses: Vec<u16> = retries.on.statuses.iter().map(|s| s.as_u16()).collect();
    assert_eq!(statuses, [429, 500, 503]);
    assert!(conversion.yaml.contains(
        "retries: { attempts: 3, on: [connect-failure, reset, \"429\", \"500\", \"503\"] }"
    ));
    assert!(
        conversion
            .notes
            .iter()
            .any(|n| n.contains("spec.rules[0].retry.backoff (100ms) is not converted")),
        "{:?}",
        conversion.notes
    );

    let retry = |retry: &str| {
        let text = http_route(&format!(
            "      retry: {retry}\n      backendRefs: [{{ name: app, port: 80 }}]\n"
        ));
        let (_, config) = converted(&text, &[]);
        route(&config, "rule")
            .retries
            .as_ref()
            .map(|r| (r.attempts, r.on.statuses.len()))
    };
    assert_eq!(retry("{ attempts: 0, codes: [503] }"), None, "0 disables");
    assert_eq!(retry("{ codes: [503] }"), Some((1, 1)), "sluice's default");
    assert_eq!(retry("{}"), Some((1, 0)), "connection failures only");

    let errors = refused(&http_route(
        "      retry: { attempts: 11, codes: [404] }\n      backendRefs: [{ name: app, port: 80 }]\n",
    ));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("retry.codes[0]: retrying on 404: sluice retries on 408, 429 and 5xx statuses (--ignore codes drops it)"), "{errors:?}");
    assert!(
        errors[1].contains("retry.attempts: 11 retries: sluice retries a request at most 10 times"),
        "{errors:?}"
    );

    // A rule that answers 500 forwards nothing to retry.
    let (conversion, config) = converted(&http_route("      retry: { attempts: 2 }\n"), &[]);
    assert!(route(&config, "rule").retries.is_none());
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.contains("spec.rules[0].retry has no effect")));
}

#[test]
fn header_changes_sluice_refuses_are_reported_not_written() {
    let text = http_route(
        r#"      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{ name: Host, value: example.com }, { name: x-ok, value: "1" }]
            remove: [Transfer-Encoding]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            add: [{ name: x-text, value: "bell\u0007" }]
      backendRefs: [{ name: app, port: 80 }]
"#,
    );
    let errors = refused(&text);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].ends_with("spec.rules[0].filters[0].requestHeaderModifier.set[0]: header host cannot be modified by sluice: it frames the message or the connection (--ignore host drops it)"), "{errors:?}");
    assert!(
        errors[1].contains("remove[0]: header transfer-encoding cannot be modified"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("the value of header x-text is not one sluice can write"),
        "{errors:?}"
    );
    let (conversion, config) = converted(&text, &["host", "transfer-encoding", "x-text"]);
    assert_eq!(
        changes(route(&config, "rule").request_headers.as_deref()),
        (owned(&[("x-ok", "1")]), vec![], vec![])
    );
    assert!(route(&config, "rule").response_headers.is_none());
    assert!(!conversion.yaml.contains("host:"), "{}", conversion.yaml);
    assert_eq!(
        conversion
            .notes
            .iter()
            .filter(|n| n.contains("dropped"))
            .count(),
        3
    );

    let istio = virtual_service(
        r#"      headers:
        request:
          set: { ":authority": example.com, x-client: "%DOWNSTREAM_REMOTE_ADDRESS%" }
      route: [{ destination: { host: svc, subset: v1 } }]
"#,
    );
    let errors = refused(&istio);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("\":authority\" is not a header name sluice can modify"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains(
            "headers.request.set.x-client: the value of header x-client uses an Envoy variable"
        ),
        "{errors:?}"
    );
}

#[test]
fn istio_headers_become_route_and_backend_modifiers() {
    let text = virtual_service(
        r#"      headers:
        request:
          set: { X-Env: prod }
          add: { x-offer: "50%% off" }
          remove: [x-debug]
        response:
          set: { x-served-by: sluice }
      route:
        - destination: { host: svc, subset: v1 }
          weight: 90
        - destination: { host: svc, subset: v2 }
          weight: 10
          headers:
            request: { set: { x-canary: "1" } }
            response: { add: { x-version: v2 } }
"#,
    );
    let (_, config) = converted(&text, &[]);
    let rule = route(&config, "rule");
    assert_eq!(
        changes(rule.request_headers.as_deref()),
        (
            owned(&[("x-env", "prod")]),
            owned(&[("x-offer", "50% off")]),
            vec!["x-debug".to_string()]
        )
    );
    assert_eq!(
        changes(rule.response_headers.as_deref()),
        (owned(&[("x-served-by", "sluice")]), vec![], vec![])
    );
    let canary = &rule.backend_policies[1];
    assert_eq!(
        changes(canary.request_headers.as_deref()),
        (owned(&[("x-canary", "1")]), vec![], vec![])
    );
    assert_eq!(
        changes(canary.response_headers.as_deref()),
        (vec![], owned(&[("x-version", "v2")]), vec![])
    );

    // Envoy applies the rule's request change after the destination's, sluice before.
    let both = virtual_service(
        r#"      headers: { request: { set: { x-env: prod } } }
      route:
        - destination: { host: svc, subset: v1 }
          headers: { request: { remove: [X-Env] } }
"#,
    );
    let errors = refused(&both);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.http[0].route[0].headers.request: request header x-env is changed by both the rule and this destination"),
        "{errors:?}"
    );
    // Dropped knowingly: the rule's change alone, as in Envoy.
    let (_, config) = converted(&both, &["x-env"]);
    let rule = route(&config, "rule");
    assert_eq!(
        changes(rule.request_headers.as_deref()),
        (owned(&[("x-env", "prod")]), vec![], vec![])
    );
    assert_eq!(rule.backend_policies[0], Default::default());
}

/// Retries as `(attempts, connect_failure, reset, statuses)`.
type RetryShape = (u32, bool, bool, Vec<u16>);

#[test]
fn istio_retry_conditions_map_to_sluice_conditions() {
    let retries = |retries: &str| {
        let text = virtual_service(&format!(
            "      retries: {retries}\n      route: [{{ destination: {{ host: svc, subset: v1 }} }}]\n"
        ));
        let (conversion, config) = converted(&text, &[]);
        let on = route(&config, "rule").retries.as_ref().map(|r| {
            let mut statuses: Vec<u16> = r.on.statuses.iter().map(|s| s.as_u16()).collect();
            statuses.sort_unstable();
            (r.attempts, r.on.connect_failure, r.on.reset, statuses)
        });
        (on, conversion.notes)
    };
    let gateway = vec![502, 503, 504];
    let cases: [(&str, Option<RetryShape>); 9] = [
        (
            "{ attempts: 3, retryOn: connect-failure }",
            Some((3, true, false, vec![])),
        ),
        (
            "{ attempts: 3, retryOn: reset }",
            Some((3, false, true, vec![])),
        ),
        (
            "{ attempts: 2, retryOn: 5xx }",
            Some((2, true, true, (500..=599).collect())),
        ),
        (
            "{ attempts: 2, retryOn: gateway-error }",
            Some((2, true, true, gateway.clone())),
        ),
        (
            "{ attempts: 2, retryOn: \"503,retriable-status-codes\" }",
            Some((2, false, false, vec![503])),
        ),
        (
            "{ attempts: 2, retryOn: \"429, 408\" }",
            Some((2, false, false, vec![408, 429])),
        ),
        (
            "{ attempts: 2, retryOn: \"connect-failure,refused-stream\" }",
            Some((2, true, true, vec![])),
        ),
        ("{ attempts: 0, retryOn: 5xx }", None),
        ("{ retryOn: 5xx }", None),
    ];
    for (given, want) in cases {
        assert_eq!(retries(given).0, want, "{given}");
    }
    let (on, notes) = retries("{ attempts: 2 }");
    assert_eq!(on, Some((2, true, true, vec![])), "Istio's default retryOn");
    assert!(notes
        .iter()
        .any(|n| n.contains("retryOn not given: Istio's default")));
    assert!(notes
        .iter()
        .any(|n| n.contains("sluice retries only idempotent methods")));
    let (_, notes) = retries("{ attempts: 2, retryOn: refused-stream }");
    assert!(notes
        .iter()
        .any(|n| n.contains("refused-stream converts to reset")));
    let (_, notes) = retries("{ attempts: 2, retryOn: reset, backoff: 50ms }");
    assert!(notes
        .iter()
        .any(|n| n.contains("retries.backoff (50ms) is not converted")));
}

#[test]
fn istio_retries_sluice_cannot_honour_are_reported() {
    let refused_retries = |retries: &str| {
        refused(&virtual_service(&format!(
            "      retries: {retries}\n      route: [{{ destination: {{ host: svc, subset: v1 }} }}]\n"
        )))
    };
    let cases = [
        ("{ attempts: 2, retryOn: unavailable }", "retryOn unavailable: a gRPC status: sluice does not retry on grpc-status (--ignore unavailable drops it)"),
        ("{ attempts: 2, retryOn: retriable-status-codes }", "retryOn retriable-status-codes: without statuses in retryOn"),
        ("{ attempts: 2, retryOn: retriable-4xx }", "retryOn retriable-4xx: it retries 409"),
        ("{ attempts: 2, retryOn: \"409\" }", "retryOn 409: sluice retries on 408, 429 and 5xx statuses"),
        ("{ attempts: 2, retryOn: reset-before-request }", "retryOn reset-before-request: sluice's reset also retries"),
        ("{ attempts: 2, retryOn: sometimes }", "spec.http[0].retries.retryOn: unknown retry condition \"sometimes\""),
        ("{ attempts: 2, perTryTimeout: 1s }", "spec.http[0].retries.perTryTimeout: a per-try timeout is not supported"),
        ("{ attempts: 20 }", "spec.http[0].retries.attempts: 20 retries: sluice retries a request at most 10 times"),
        ("{ attempts: 2, retryRemoteLocalities: true }", "retryRemoteLocalities: retrying in other localities"),
        ("{ attempts: 2, retryIgnorePreviousHosts: false }", "retryIgnorePreviousHosts: retrying on the same endpoint"),
    ];
    for (given, want) in cases {
        let errors = refused_retries(given);
        assert_eq!(errors.len(), 1, "{given}: {errors:?}");
        assert!(errors[0].contains(want), "{given}: {errors:?}");
    }
    // Every condition dropped: no retries at all.
    let text = virtual_service(
        "      retries: { attempts: 2, retryOn: unavailable }\n      route: [{ destination: { host: svc, subset: v1 } }]\n",
    );
    let (conversion, config) = converted(&text, &["unavailable"]);
    assert!(route(&config, "rule").retries.is_none());
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.contains("no retry condition is left")));
    // A rule that answers itself forwards nothing to retry.
    let text =
        virtual_service("      retries: { attempts: 2 }\n      directResponse: { status: 503 }\n");
    let (conversion, config) = converted(&text, &[]);
    assert!(route(&config, "rule").retries.is_none());
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.contains("spec.http[0].retries has no effect")));
}

#[test]
fn istio_faults_become_route_faults() {
    let text = virtual_service(
        r#"      fault:
        abort: { httpStatus: 503, percentage: { value: 12.5 } }
        delay: { fixedDelay: 1.5s, percentage: { value: 0.1 } }
      route: [{ destination: { host: svc, subset: v1 } }]
"#,
    );
    let (conversion, config) = converted(&text, &[]);
    let fault = route(&config, "rule").fault.as_ref().expect("a fault");
    let abort = fault.abort.expect("an abort");
    assert_eq!((abort.status.as_u16(), abort.percent.as_f64()), (503, 12.5));
    let delay = fault.delay.expect("a delay");
    assert_eq!(
        (delay.duration, delay.percent.as_f64()),
        (std::time::Duration::from_millis(1500), 0.1)
    );
    assert!(conversion.yaml.contains(
        "    fault:\n      abort: { status: 503, percent: 12.5 }\n      delay: { duration: 1.5s, percent: 0.1 }\n"
    ));

    // Without a percentage Istio injects nothing; so does the converted fault.
    let (conversion, config) = converted(
        &virtual_service(
            "      fault: { abort: { httpStatus: 500 } }\n      route: [{ destination: { host: svc, subset: v1 } }]\n",
        ),
        &[],
    );
    let abort = route(&config, "rule")
        .fault
        .as_ref()
        .and_then(|f| f.abort)
        .expect("an abort");
    assert_eq!(abort.percent.as_f64(), 0.0);
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.contains("has no percentage")));

    let cases = [
        ("{ abort: { grpcStatus: UNAVAILABLE, percentage: { value: 10 } } }", "fault.abort.grpcStatus: a gRPC status abort is not supported"),
        ("{ abort: { httpStatus: 200, percentage: { value: 10 } } }", "fault.abort.httpStatus: aborting with 200: sluice aborts with a status from 400 to 599"),
        ("{ abort: { httpStatus: 503, percentage: { value: 0.001 } } }", "fault.abort.percentage.value: 0.001%: sluice's percentages have at most 2 decimals"),
        ("{ delay: { fixedDelay: 2m, percentage: { value: 1 } } }", "fault.delay.fixedDelay: a delay of 2m: sluice delays at most 1m"),
        ("{ delay: { fixedDelay: 1s, percent: 10 } }", "fault.delay.percent: the deprecated integer percent is not converted"),
    ];
    for (given, want) in cases {
        let errors = refused(&virtual_service(&format!(
            "      fault: {given}\n      route: [{{ destination: {{ host: svc, subset: v1 }} }}]\n"
        )));
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{given}: {errors:?}"
        );
    }
    // The abort dropped, the delay stays.
    let (_, config) = converted(
        &virtual_service(
            "      fault:\n        abort: { grpcStatus: UNAVAILABLE }\n        delay: { fixedDelay: 1s, percentage: { value: 5 } }\n      route: [{ destination: { host: svc, subset: v1 } }]\n",
        ),
        &["grpcStatus"],
    );
    let fault = route(&config, "rule").fault.as_ref().expect("a fault");
    assert!(fault.abort.is_none() && fault.delay.is_some());
}

#[test]
fn istio_mirrors_become_a_route_mirror() {
    let mirror = |rule: &str| {
        let text = virtual_service(&format!(
            "{rule}      route: [{{ destination: {{ host: svc, subset: v1 }} }}]\n"
        ));
        let (_, config) = converted(&text, &[]);
        route(&config, "rule")
            .mirror
            .as_ref()
            .map(|m| (m.name.to_string(), m.percent.as_f64()))
    };
    let v2 = |percent: f64| Some(("v2".to_string(), percent));
    assert_eq!(
        mirror("      mirror: { host: svc, subset: v2 }\n"),
        v2(100.0)
    );
    assert_eq!(
        mirror(
            "      mirror: { host: svc, subset: v2 }\n      mirrorPercentage: { value: 12.5 }\n"
        ),
        v2(12.5)
    );
    assert_eq!(
        mirror("      mirror: { host: svc, subset: v2 }\n      mirrorPercent: 30\n"),
        v2(30.0)
    );
    assert_eq!(
        mirror("      mirrors:\n        - destination: { host: svc, subset: v2 }\n          percentage: { value: 50 }\n"),
        v2(50.0)
    );
    assert_eq!(
        mirror("      mirror: { host: shadow.test.svc.cluster.local }\n"),
        Some(("shadow".to_string(), 100.0)),
        "a host without subset is an upstream of its own"
    );

    let two = virtual_service(
        r#"      mirrors:
        - destination: { host: svc, subset: v2 }
        - destination: { host: svc, subset: v3 }
      route: [{ destination: { host: svc, subset: v1 } }]
"#,
    );
    let errors = refused(&two);
    assert_eq!(
        errors,
        [
            "VirtualService svc (in.yaml, document 1): spec.http[0].mirrors[1]: a second mirror: \
          sluice mirrors a route's requests to one upstream (--ignore mirrors drops it)"
        ]
    );
    let cases = [
        ("      mirror: { host: svc, subset: v2 }\n      directResponse: { status: 503 }\n", "spec.http[0].mirror: the rule answers itself"),
        ("      mirror: { host: svc, subset: v2 }\n      mirrors: [{ destination: { host: svc, subset: v3 } }]\n      route: [{ destination: { host: svc, subset: v1 } }]\n", "mirror and mirrors together"),
        ("      mirrorPercentage: { value: 5 }\n      route: [{ destination: { host: svc, subset: v1 } }]\n", "a mirror percentage without mirror"),
    ];
    for (rule, want) in cases {
        let errors = refused(&virtual_service(rule));
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{rule}: {errors:?}"
        );
    }
}

#[test]
fn a_route_mirroring_to_its_canary_rolls_out_with_a_shadow_step() {
    let text = virtual_service(
        r#"      mirror: { host: svc, subset: v2 }
      route:
        - destination: { host: svc, subset: v1 }
          weight: 100
        - destination: { host: svc, subset: v2 }
          weight: 0
"#,
    );
    let (conversion, config) = converted(&text, &[]);
    let steps: Vec<String> = config.rollouts[0]
        .steps
        .iter()
        .map(|s| format!("{s:?}"))
        .collect();
    assert_eq!(
        steps.first().map(String::as_str),
        Some("Shadow"),
        "{steps:?}"
    );
    assert!(conversion
        .yaml
        .contains("steps: [shadow, 5, 10, 25, 50, 75, 100]"));
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.contains("mirrors to v2, one of its own backends")));
}
