//! `rollouts[].analysis.grpc_error_codes`: the default set, names and numbers, and the exact
//! message for each value validation refuses.

mod common;

use common::parse;
use sluice_config::{GrpcCode, DEFAULT_GRPC_ERROR_CODES, GRPC_CODE_NAMES};

/// A rollout with an `analysis:` block (its content from line 22, under it).
const BASE: &str = r#"listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  stable:
    endpoints: [127.0.0.1:18081]
  canary:
    endpoints: [127.0.0.1:18082]
routes:
  - name: default
    backends:
      - { upstream: stable, weight: 90 }
      - { upstream: canary, weight: 10 }
weights_file: weights.yaml
rollouts:
  - name: myapp
    route: default
    stable: stable
    canary: canary
    steps: [5, 50, 100]
    interval: 30s
"#;

/// `BASE` with `analysis: { grpc_error_codes: <codes> }` (line 22, the list at column 35).
fn with_codes(codes: &str) -> String {
    format!("{BASE}    analysis: {{ grpc_error_codes: {codes} }}\n")
}

fn codes(text: &str) -> Vec<&'static str> {
    let config = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
    let codes = &config.rollouts[0].analysis.grpc_error_codes;
    codes.iter().map(|code| code.name()).collect()
}

#[test]
fn the_default_is_the_server_failures() {
    let want = [
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
    ];
    assert_eq!(codes(BASE), want);
    assert_eq!(DEFAULT_GRPC_ERROR_CODES.map(GrpcCode::name), want);
    assert_eq!(
        DEFAULT_GRPC_ERROR_CODES.map(GrpcCode::number),
        [2, 4, 12, 13, 14, 15]
    );
}

#[test]
fn names_and_numbers_are_accepted_once() {
    assert_eq!(
        codes(&with_codes(
            "[unavailable, 13, \"4\", DATA_LOSS, UNAVAILABLE, 14, RESOURCE_EXHAUSTED]"
        )),
        [
            "UNAVAILABLE",
            "INTERNAL",
            "DEADLINE_EXCEEDED",
            "DATA_LOSS",
            "RESOURCE_EXHAUSTED"
        ]
    );
    assert!(codes(&with_codes("[]")).is_empty());
    assert_eq!(GRPC_CODE_NAMES.len(), 17);
    assert_eq!(
        GrpcCode::parse("16").map(GrpcCode::name),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(GrpcCode::from_header(b"14").name(), "UNAVAILABLE");
}

#[test]
fn unknown_codes_and_ok_are_refused() {
    let expected = "is not a gRPC status (a name such as UNAVAILABLE, or a number 0-16)";
    assert_eq!(
        parse(&with_codes("[UNAVAILABEL, 17, -1, OK, 0, 14]")).expect_err("invalid"),
        [
            format!("sluice.yaml:22:36: rollouts[0].analysis.grpc_error_codes[0]: \"UNAVAILABEL\" {expected}"),
            format!("sluice.yaml:22:49: rollouts[0].analysis.grpc_error_codes[1]: 17 {expected}"),
            format!("sluice.yaml:22:53: rollouts[0].analysis.grpc_error_codes[2]: -1 {expected}"),
            "sluice.yaml:22:57: rollouts[0].analysis.grpc_error_codes[3]: \"OK\" is OK, the success status: it cannot count as an error; remove it".to_string(),
            "sluice.yaml:22:61: rollouts[0].analysis.grpc_error_codes[4]: 0 is OK, the success status: it cannot count as an error; remove it".to_string(),
        ]
    );
}
