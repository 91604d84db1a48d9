//! Every traffic policy key at once (mirror, retries, fault, header modifiers, sticky cookie,
//! shadow step, gRPC error codes), in YAML and in TOML: a full file is valid and compiles to
//! the values given.

use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use sluice_config::{
    Config, Fault, FaultAbort, FaultDelay, GrpcCode, HeaderModifier, Percent, Retries, RetryOn,
    Route, Step, Sticky, StickyCookie,
};

const FULL: &str = r#"listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  stable:
    endpoints: [127.0.0.1:18081]
  canary:
    endpoints: [127.0.0.1:18082]
routes:
  - name: default
    sticky: { cookie: sluice-id, set_cookie: true, max_age: 24h }
    mirror: { upstream: canary, percent: 100 }
    retries:
      attempts: 2
      on: [connect-failure, reset, "503"]
      budget_percent: 20
      min_per_second: 10
      methods: [GET, PUT]
    fault:
      abort: { status: 503, percent: 10 }
      delay: { duration: 200ms, percent: 5 }
    request_headers: { set: { x-env: prod }, add: { x-tag: a }, remove: [x-debug] }
    response_headers: { set: { x-frame-options: DENY }, add: { x-route: default }, remove: [server] }
    backends:
      - upstream: stable
        weight: 90
      - upstream: canary
        weight: 10
        fault: { abort: { status: 503, percent: 10 } }
        request_headers: { set: { x-canary: "1" } }
        response_headers: { add: { x-served-by: canary } }
weights_file: weights.yaml
rollouts:
  - name: myapp
    route: default
    stable: stable
    canary: canary
    steps: [shadow, 5, 10, 25, 50, 100]
    interval: 30s
    analysis:
      grpc_error_codes: [UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, 8]
"#;

/// `FULL` in TOML.
const FULL_TOML: &str = r#"weights_file = "weights.yaml"

[[listeners]]
name = "http"
address = "127.0.0.1:8080"

[upstreams.stable]
endpoints = ["127.0.0.1:18081"]
[upstreams.canary]
endpoints = ["127.0.0.1:18082"]

[[routes]]
name = "default"
sticky = { cookie = "sluice-id", set_cookie = true, max_age = "24h" }
mirror = { upstream = "canary", percent = 100 }
retries = { attempts = 2, on = ["connect-failure", "reset", 503], budget_percent = 20, min_per_second = 10, methods = ["GET", "PUT"] }
fault = { abort = { status = 503, percent = 10 }, delay = { duration = "200ms", percent = 5 } }
request_headers = { set = { x-env = "prod" }, add = { x-tag = "a" }, remove = ["x-debug"] }
response_headers = { set = { x-frame-options = "DENY" }, add = { x-route = "default" }, remove = ["server"] }
[[routes.backends]]
upstream = "stable"
weight = 90
[[routes.backends]]
upstream = "canary"
weight = 10
fault = { abort = { status = 503, percent = 10 } }
request_headers = { set = { x-canary = "1" } }
response_headers = { add = { x-served-by = "canary" } }

[[rollouts]]
name = "myapp"
route = "default"
stable = "stable"
canary = "canary"
steps = ["shadow", 5, 10, 25, 50, 100]
interval = "30s"
analysis = { grpc_error_codes = ["UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", 8] }
"#;

fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("valid status")
}

fn assert_full(config: &Config) {
    let route: &Route = &config.routes.routes()[0];
    assert_eq!(
        route.sticky,
        Some(Sticky::Cookie(StickyCookie {
            name: "sluice-id".into(),
            set_cookie: true,
            max_age: Duration::from_secs(24 * 3600),
        }))
    );
    let mirror = route.mirror.as_ref().expect("a mirror");
    assert_eq!((&*mirror.name, mirror.percent), ("canary", Percent::ALL));
    assert_eq!(&*config.upstreams[mirror.upstream].name, "canary");
    assert_eq!(
        route.retries.as_deref(),
        Some(&Retries {
            attempts: 2,
            on: RetryOn {
                connect_failure: true,
                reset: true,
                statuses: vec![status(503)],
            },
            budget_percent: 20.0,
            min_per_second: 10,
            methods: vec![Method::GET, Method::PUT],
        })
    );
    let abort = FaultAbort {
        status: status(503),
        percent: Percent::from_hundredths(1000),
    };
    assert_eq!(
        route.fault.as_deref(),
        Some(&Fault {
            abort: Some(abort),
            delay: Some(FaultDelay {
                duration: Duration::from_millis(200),
                percent: Percent::from_hundredths(500),
            }),
        })
    );
    assert_eq!(
        route.request_headers.as_deref(),
        Some(&HeaderModifier {
            set: vec![header("x-env", "prod")],
            add: vec![header("x-tag", "a")],
            remove: vec![HeaderName::from_static("x-debug")],
        })
    );
    assert_eq!(
        route.response_headers.as_deref(),
        Some(&HeaderModifier {
            set: vec![header("x-frame-options", "DENY")],
            add: vec![header("x-route", "default")],
            remove: vec![HeaderName::from_static("server")],
        })
    );
    // Backend policies follow the split's order.
    let names: Vec<&str> = route.split.backends().iter().map(|b| &*b.name).collect();
    assert_eq!(names, ["stable", "canary"]);
    let [stable, canary] = &*route.backend_policies else {
        panic!("one policy per backend: {:?}", route.backend_policies);
    };
    assert_eq!(*stable, Default::default());
    assert_eq!(
        canary.fault.as_deref(),
        Some(&Fault {
            abort: Some(abort),
            delay: None,
        })
    );
    assert_eq!(
        canary.request_headers.as_deref(),
        Some(&HeaderModifier {
            set: vec![header("x-canary", "1")],
            ..HeaderModifier::default()
        })
    );
    assert_eq!(
        canary.response_headers.as_deref(),
        Some(&HeaderModifier {
            add: vec![header("x-served-by", "canary")],
            ..HeaderModifier::default()
        })
    );

    let rollout = &config.rollouts[0];
    assert_eq!(rollout.steps[0], Step::Shadow);
    assert_eq!(rollout.steps.len(), 6);
    let codes: Vec<&str> = rollout
        .analysis
        .grpc_error_codes
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(
        codes,
        [
            "UNKNOWN",
            "DEADLINE_EXCEEDED",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "RESOURCE_EXHAUSTED"
        ]
    );
    assert_eq!(
        rollout.analysis.grpc_error_codes.last(),
        GrpcCode::parse("RESOURCE_EXHAUSTED").as_ref()
    );
}

#[test]
fn a_file_with_every_policy_is_valid_in_yaml() {
    let config = Config::parse(FULL, Path::new("sluice.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_full(&config);
}

#[test]
fn a_file_with_every_policy_is_valid_in_toml() {
    let config =
        Config::parse(FULL_TOML, Path::new("sluice.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_full(&config);
}
