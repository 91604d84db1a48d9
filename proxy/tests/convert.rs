//! `sluice-proxy convert`: golden files for every supported Istio and Gateway API field (each
//! output also parsed back as a valid `sluice.yaml`), and a named error for every field it
//! refuses. `SLUICE_BLESS=1 cargo test -p sluice-proxy --test convert` rewrites the goldens.

use std::path::{Path, PathBuf};

use sluice_config::Config;
use sluice_proxy::convert::{convert, Conversion, ConvertErrors, Input, Options};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/convert")
}

fn options(upstreams: &[&str], ignore: &[&str]) -> Options {
    Options {
        upstreams: upstreams
            .iter()
            .map(|u| Options::parse_upstream(u).expect("valid --upstream"))
            .collect(),
        ignore: ignore.iter().map(|i| i.to_string()).collect(),
        listen: "127.0.0.1:8080".into(),
        admin: "127.0.0.1:9901".into(),
    }
}

fn run(text: &str, options: &Options) -> Result<Conversion, ConvertErrors> {
    let input = Input {
        name: "input.yaml".into(),
        text: text.into(),
    };
    convert(&[input], options)
}

/// Converts `name.yaml` and compares with `name.sluice.yaml`.
fn golden(name: &str, options: &Options) {
    let file = format!("{name}.yaml");
    let text = std::fs::read_to_string(dir().join(&file)).expect("read input");
    let input = Input { name: file, text };
    let conversion = match convert(&[input], options) {
        Ok(c) => c,
        Err(e) => panic!("{name}: {e}"),
    };
    Config::parse(&conversion.yaml, Path::new("sluice.yaml"))
        .unwrap_or_else(|e| panic!("{name}: the output is not a valid sluice.yaml: {e}"));
    let expected_path = dir().join(format!("{name}.sluice.yaml"));
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&expected_path, &conversion.yaml).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert!(
        conversion.yaml == expected,
        "{name}: the output differs from {} (SLUICE_BLESS=1 rewrites it):\n{}",
        expected_path.display(),
        conversion.yaml
    );
}

#[test]
fn istio_canary_of_the_istio_docs() {
    golden(
        "istio-canary",
        &options(
            &["v1=127.0.0.1:9081", "v2=127.0.0.1:9082,127.0.0.1:9083"],
            &[],
        ),
    );
}

#[test]
fn every_supported_istio_field() {
    golden("istio-fields", &options(&["v1=10.0.1.1:8080"], &[]));
}

#[test]
fn every_supported_gateway_api_field() {
    golden("gateway-fields", &options(&["api-v2=10.0.2.2:8080"], &[]));
}

/// A VirtualService with one `http` rule, written as a YAML flow mapping.
fn virtual_service(rule: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: svc }}\n\
         spec:\n  hosts: [svc]\n  http:\n    - {rule}\n"
    )
}

/// A VirtualService whose one rule has `block` as its only match.
fn istio_match(block: &str) -> String {
    virtual_service(&format!(
        "{{ match: [{block}], route: [{{ destination: {{ host: svc }} }}] }}"
    ))
}

/// An HTTPRoute with one rule, written as a YAML flow mapping.
fn http_route(rule: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{ name: web, namespace: ns }}\nspec:\n  rules:\n    - {rule}\n"
    )
}

const ROUTE: &str = "route: [{ destination: { host: svc } }]";
const BACKEND: &str = "backendRefs: [{ name: svc, port: 80 }]";

/// The error text of a conversion that must fail.
fn error_of(text: &str, options: &Options) -> String {
    match run(text, options) {
        Ok(c) => panic!("converted, but should not have:\n{text}\n---\n{}", c.yaml),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_unsupported_field_is_a_named_error() {
    let dr = |spec: &str| {
        format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
             metadata: {{ name: svc }}\nspec: {spec}\n",
            virtual_service(&format!("{{ {ROUTE} }}"))
        )
    };
    let vs_spec = |extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: svc }}\n\
             spec:\n  hosts: [svc]\n  {extra}\n  http:\n    - {{ {ROUTE} }}\n"
        )
    };
    let route_spec = |extra: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{ name: web, namespace: ns }}\nspec:\n  {extra}\n  rules:\n    - {{ {BACKEND} }}\n"
        )
    };
    let filter =
        |kind: &str| http_route(&format!("{{ filters: [{{ type: {kind} }}], {BACKEND} }}"));
    // (document, field path, --ignore key, start of the reason)
    let cases: Vec<(String, &str, &str, &str)> = vec![
        // Istio http[] fields.
        (virtual_service(&format!("{{ corsPolicy: {{ allowOrigins: [] }}, {ROUTE} }}")), "spec.http[0].corsPolicy", "corsPolicy", "CORS policies"),
        (virtual_service(&format!("{{ rewrite: {{ uri: / }}, {ROUTE} }}")), "spec.http[0].rewrite", "rewrite", "URI and authority rewriting"),
        (virtual_service(&format!("{{ redirect: {{ uri: /new }} }}\n    - {{ {ROUTE} }}")), "spec.http[0].redirect", "redirect", "redirects"),
        (virtual_service(&format!("{{ delegate: {{ name: other }} }}\n    - {{ {ROUTE} }}")), "spec.http[0].delegate", "delegate", "delegation"),
        (virtual_service(&format!("{{ bogus: 1, {ROUTE} }}")), "spec.http[0].bogus", "bogus", "a field the converter does not know"),
        (virtual_service(&format!("{{ fault: {{ abort: {{ grpcStatus: UNAVAILABLE, percentage: {{ value: 5 }} }} }}, {ROUTE} }}")), "spec.http[0].fault.abort.grpcStatus", "grpcStatus", "a gRPC status abort is not supported"),
        (virtual_service(&format!("{{ retries: {{ attempts: 3, perTryTimeout: 2s }}, {ROUTE} }}")), "spec.http[0].retries.perTryTimeout", "perTryTimeout", "a per-try timeout is not supported"),
        (virtual_service(&format!("{{ mirrors: [{{ destination: {{ host: svc }} }}, {{ destination: {{ host: other }} }}], {ROUTE} }}")), "spec.http[0].mirrors[1]", "mirrors", "a second mirror"),
        (virtual_service(&format!("{{ headers: {{ request: {{ set: {{ host: y }} }} }}, {ROUTE} }}")), "spec.http[0].headers.request.set.host", "host", "header host cannot be modified by sluice"),
        (virtual_service("{ directResponse: { status: 200, body: { bytes: aGk= } } }"), "spec.http[0].directResponse.body.bytes", "bytes", "a base64 body"),
        // Istio match[] fields.
        (istio_match("{ sourceLabels: { app: web } }"), "spec.http[0].match[0].sourceLabels", "sourceLabels", "matching the client's workload labels"),
        (istio_match("{ sourceNamespace: web }"), "spec.http[0].match[0].sourceNamespace", "sourceNamespace", "matching the client's namespace"),
        (istio_match("{ gateways: [mesh] }"), "spec.http[0].match[0].gateways", "gateways", "per-match gateways"),
        (istio_match("{ port: 8080 }"), "spec.http[0].match[0].port", "port", "matching the port"),
        (istio_match("{ scheme: { exact: https } }"), "spec.http[0].match[0].scheme", "scheme", "matching the scheme"),
        (istio_match("{ statPrefix: web }"), "spec.http[0].match[0].statPrefix", "statPrefix", "stat prefixes"),
        (istio_match("{ method: { prefix: P } }"), "spec.http[0].match[0].method", "method", "a method prefix or regex"),
        (istio_match("{ authority: { regex: \".*\" } }"), "spec.http[0].match[0].authority", "authority", "an authority prefix or regex"),
        (istio_match("{ authority: { exact: \"a.example.com:8080\" } }"), "spec.http[0].match[0].authority", "authority", "an authority with a port"),
        (istio_match("{ queryParams: { v: { prefix: a } } }"), "spec.http[0].match[0].queryParams.v.prefix", "prefix", "Istio does not support prefix matching"),
        (istio_match("{ uri: { exact: /a }, bogus: 1 }"), "spec.http[0].match[0].bogus", "bogus", "a field the converter does not know"),
        // Istio spec and DestinationRule fields.
        (vs_spec("tcp: [{ route: [] }]"), "spec.tcp", "tcp", "TCP routes"),
        (vs_spec("tls: [{ route: [] }]"), "spec.tls", "tls", "TLS passthrough routes"),
        (dr("{ host: svc, trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } } }"), "spec.trafficPolicy", "trafficPolicy", "traffic policies are not converted"),
        (dr("{ host: svc, subsets: [{ name: v1, labels: { version: v1 }, trafficPolicy: {} }] }"), "spec.subsets[0].trafficPolicy", "trafficPolicy", "traffic policies are not converted"),
        (dr("{ host: svc, workloadSelector: { matchLabels: { app: svc } } }"), "spec.workloadSelector", "workloadSelector", "workload selectors"),
        // Gateway API filters, by type.
        (filter("RequestRedirect"), "spec.rules[0].filters[0]", "RequestRedirect", "RequestRedirect filter: redirects"),
        (http_route("{ backendRefs: [{ name: svc, port: 80, filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: m, port: 80 } } }] }] }"), "spec.rules[0].backendRefs[0].filters[0]", "RequestMirror", "a backendRef's RequestMirror filter"),
        (http_route(&format!("{{ retry: {{ attempts: 2, codes: [404] }}, {BACKEND} }}")), "spec.rules[0].retry.codes[0]", "codes", "retrying on 404"),
        (filter("URLRewrite"), "spec.rules[0].filters[0]", "URLRewrite", "URLRewrite filter: URL rewriting"),
        (filter("CORS"), "spec.rules[0].filters[0]", "CORS", "CORS filter: CORS"),
        (filter("ExtensionRef"), "spec.rules[0].filters[0]", "ExtensionRef", "ExtensionRef filter: extension filters"),
        // Gateway API rule and spec fields.
        (http_route(&format!("{{ timeouts: {{ request: 10s, backendRequest: 2s }}, {BACKEND} }}")), "spec.rules[0].timeouts.backendRequest", "backendRequest", "a per-backend-request timeout"),
        (http_route(&format!("{{ sessionPersistence: {{ type: Cookie }}, {BACKEND} }}")), "spec.rules[0].sessionPersistence", "sessionPersistence", "session persistence"),
        (route_spec("useDefaultGateways: All"), "spec.useDefaultGateways", "useDefaultGateways", "a field the converter does not know"),
        (http_route(&format!("{{ matches: [{{ path: {{ type: Exact, value: /a }}, bogus: 1 }}], {BACKEND} }}")), "spec.rules[0].matches[0].bogus", "bogus", "a field the converter does not know"),
    ];
    for (document, field, key, reason) in &cases {
        let error = error_of(document, &options(&[], &[]));
        let want = format!("{field}: {reason}");
        assert!(
            error.contains(&want) && error.contains(&format!("(--ignore {key} drops it)")),
            "want \"{want}\" and --ignore {key}, got:\n{error}\nfor:\n{document}"
        );
        assert!(
            error.contains("(input.yaml, document "),
            "names the document: {error}"
        );
        // The same document converts once the field is dropped, and says so.
        let dropped = run(document, &options(&[], &[key]));
        let dropped = dropped.unwrap_or_else(|e| panic!("--ignore {key}: {e}\nfor:\n{document}"));
        assert!(
            dropped
                .notes
                .iter()
                .any(|n| n.contains(&format!("dropped {field} (--ignore {key})"))),
            "{:?}",
            dropped.notes
        );
    }
}

#[test]
fn ignore_also_takes_a_path_without_indices() {
    let document = virtual_service(&format!(
        "{{ corsPolicy: {{ allowOrigins: [] }}, {ROUTE} }}"
    ));
    let conversion = run(&document, &options(&[], &["spec.http.corsPolicy"])).expect("converts");
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.contains("dropped spec.http[0].corsPolicy (--ignore spec.http.corsPolicy)")));
}

#[test]
fn retries_turned_off_are_exact_and_absent_retries_are_noted() {
    let off = run(
        &virtual_service(&format!("{{ retries: {{ attempts: 0 }}, {ROUTE} }}")),
        &options(&[], &[]),
    )
    .expect("converts");
    assert!(!off
        .notes
        .iter()
        .any(|n| n.contains("retries a failed request")));
    let default = run(
        &virtual_service(&format!("{{ {ROUTE} }}")),
        &options(&[], &[]),
    )
    .expect("converts");
    assert!(default
        .notes
        .iter()
        .any(|n| n.contains("Istio retries a failed request twice")));
}

#[test]
fn invalid_values_are_named_errors_too() {
    let cases: Vec<(String, &str)> = vec![
        (
            virtual_service("{ route: [{ destination: { host: svc, subset: a }, weight: 90 }, { destination: { host: svc, subset: b } }] }"),
            "spec.http[0].route: some destinations have a weight and others do not",
        ),
        (
            virtual_service("{ route: [{ destination: { host: svc }, weight: 0 }] }"),
            "spec.http[0].route: every weight is 0",
        ),
        (
            virtual_service("{ route: [{ destination: { subset: v1 } }] }"),
            "spec.http[0].route[0].destination.host: missing",
        ),
        (
            virtual_service("{ directResponse: { status: 99 } }"),
            "spec.http[0].directResponse.status: 99 is not a status from 200 to 599",
        ),
        (
            istio_match("{ uri: { exact: /a, prefix: /b } }"),
            "spec.http[0].match[0].uri: give exactly one of exact, prefix, regex",
        ),
        (
            istio_match("{ uri: { prefix: api } }"),
            "spec.http[0].match[0].uri: \"api\" does not start with /",
        ),
        (
            virtual_service(&format!("{{ timeout: soon, {ROUTE} }}")),
            "spec.http[0].timeout: invalid duration \"soon\"",
        ),
        (
            virtual_service("{ match: [{ uri: { prefix: /a } }] }"),
            "spec.http[0]: needs route or directResponse",
        ),
        (
            http_route("{ backendRefs: [{ name: svc, port: 80 }, { kind: Bucket, group: example.com, name: b }] }"),
            "spec.rules[0]: valid backendRefs next to invalid ones with a weight (spec.rules[0].backendRefs[1])",
        ),
        (
            http_route("{ backendRefs: [{ name: svc }] }"),
            "spec.rules[0].backendRefs[0]: port is required for a Service backendRef",
        ),
        (
            http_route(&format!("{{ matches: [{{ path: {{ type: Suffix, value: /a }} }}], {BACKEND} }}")),
            "spec.rules[0].matches[0].path.type: unknown path match type \"Suffix\"",
        ),
        (
            http_route(&format!("{{ matches: [{{ headers: [{{ type: Prefix, name: a, value: b }}] }}], {BACKEND} }}")),
            "spec.rules[0].matches[0].headers[0].type: unknown match type \"Prefix\"",
        ),
        (
            http_route(&format!("{{ timeouts: {{ request: forever }}, {BACKEND} }}")),
            "spec.rules[0].timeouts.request: invalid duration \"forever\"",
        ),
    ];
    for (document, want) in &cases {
        let error = error_of(document, &options(&[], &[]));
        assert!(
            error.contains(want),
            "want \"{want}\", got:\n{error}\nfor:\n{document}"
        );
    }
}

#[test]
fn whole_input_problems() {
    let vs = virtual_service(&format!("{{ {ROUTE} }}"));
    let route = http_route(&format!("{{ {BACKEND} }}"));
    let cases: Vec<(String, Options, &str)> = vec![
        (
            vs.clone(),
            options(&["v9=127.0.0.1:1"], &[]),
            "--upstream v9: no route sends to a subset or backend of that name (known: svc)",
        ),
        (
            format!("{vs}---\n{route}"),
            options(&[], &[]),
            "mixes Istio VirtualServices and Gateway API HTTPRoutes",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: { name: svc }\n".into(),
            options(&[], &[]),
            "no route to convert",
        ),
        (
            "kind: [unclosed\n".into(),
            options(&[], &[]),
            "input.yaml: invalid YAML",
        ),
        (
            format!(
                "{vs}---\n{}",
                vs.replace("name: svc }", "name: other }")
                    .replace("hosts: [svc]", "hosts: [ratings]")
            ),
            options(&[], &[]),
            "route different services ([svc] and [ratings])",
        ),
        (
            istio_match("{ uri: { regex: \"/v[0-9\" } }"),
            options(&[], &[]),
            "the converted config does not validate",
        ),
    ];
    for (document, options, want) in &cases {
        let error = error_of(document, options);
        assert!(
            error.contains(want),
            "want \"{want}\", got:\n{error}\nfor:\n{document}"
        );
    }
}

#[test]
fn other_kinds_are_skipped_with_a_note() {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: svc }}\n---\n{}",
        virtual_service(&format!("{{ {ROUTE} }}"))
    );
    let conversion = run(&text, &options(&[], &[])).expect("converts");
    assert!(conversion
        .notes
        .iter()
        .any(|n| n.starts_with("skipped Service svc (input.yaml, document 1)")));
}
