//! `routes[].fault` and `routes[].backends[].fault`: what a fault compiles to, and the exact
//! message for each value validation refuses.

use std::time::Duration;

use http::StatusCode;
use sluice_config::{Fault, FaultAbort, FaultDelay, Percent, MAX_FAULT_DELAY};

mod common;

use common::{parse, BASE};

/// `BASE` with `fault:` and these lines (indented under it, from line 10) added to route
/// `default`.
fn with_fault(lines: &str) -> String {
    let block: String = lines
        .lines()
        .map(|line| format!("      {line}\n"))
        .collect();
    BASE.replacen(
        "    backends:\n",
        &format!("    fault:\n{block}    backends:\n"),
        1,
    )
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("valid status")
}

#[test]
fn absent_means_no_fault() {
    let config = parse(BASE).expect("valid");
    let route = &config.routes.routes()[0];
    assert_eq!(route.fault, None);
    assert_eq!(route.backend_policies.len(), 1);
    assert_eq!(route.backend_policies[0].fault, None);
}

#[test]
fn abort_and_delay_are_read() {
    let config = parse(&with_fault(
        "abort: { status: 503, percent: 10 }\ndelay: { duration: 200ms, percent: 5.5 }",
    ))
    .expect("valid");
    assert_eq!(
        config.routes.routes()[0].fault.as_deref(),
        Some(&Fault {
            abort: Some(FaultAbort {
                status: status(503),
                percent: Percent::from_hundredths(1000),
            }),
            delay: Some(FaultDelay {
                duration: Duration::from_millis(200),
                percent: Percent::from_hundredths(550),
            }),
        })
    );
    let only_delay = parse(&with_fault("delay: { duration: 60s, percent: 100 }")).expect("valid");
    assert_eq!(
        only_delay.routes.routes()[0].fault.as_deref(),
        Some(&Fault {
            abort: None,
            delay: Some(FaultDelay {
                duration: MAX_FAULT_DELAY,
                percent: Percent::ALL,
            }),
        })
    );
    assert_eq!(MAX_FAULT_DELAY, Duration::from_secs(60));
}

#[test]
fn a_backend_has_its_own_fault() {
    let text = BASE.replacen(
        "      - { upstream: app, weight: 1 }\n",
        "      - upstream: app\n        weight: 1\n        fault: { abort: { status: 400, percent: 0.5 } }\n",
        1,
    );
    let config = parse(&text).expect("valid");
    let route = &config.routes.routes()[0];
    assert_eq!(route.fault, None);
    assert_eq!(
        route.backend_policies[0].fault.as_deref(),
        Some(&Fault {
            abort: Some(FaultAbort {
                status: status(400),
                percent: Percent::from_hundredths(50),
            }),
            delay: None,
        })
    );
    let bad = text.replace("status: 400", "status: 302");
    assert_eq!(
        parse(&bad).expect_err("invalid"),
        ["sluice.yaml:12:35: routes[0].backends[0].fault.abort.status: must be an error status from 400 to 599, got 302"]
    );
}

#[test]
fn a_fault_aborts_or_delays() {
    assert_eq!(
        parse(&BASE.replacen("    backends:\n", "    fault: {}\n    backends:\n", 1)).expect_err("empty"),
        ["sluice.yaml:9:12: routes[0].fault: a fault needs abort: { status, percent }, delay: { duration, percent }, or both (or remove fault)"]
    );
}

#[test]
fn abort_status_is_an_error_status() {
    for (given, shown) in [
        ("200", "200"),
        ("600", "600"),
        ("x", "\"x\""),
        ("\"503\"", "\"503\""),
    ] {
        assert_eq!(
            parse(&with_fault(&format!("abort: {{ status: {given}, percent: 10 }}"))).expect_err(given),
            [format!("sluice.yaml:10:24: routes[0].fault.abort.status: must be an error status from 400 to 599, got {shown}")]
        );
    }
}

#[test]
fn abort_and_delay_need_their_percent() {
    assert_eq!(
        parse(&with_fault(
            "abort: { status: 503 }\ndelay: { duration: 1s }"
        ))
        .expect_err("missing"),
        [
            "sluice.yaml:10:14: routes[0].fault.abort: missing required field \"percent\"",
            "sluice.yaml:11:14: routes[0].fault.delay: missing required field \"percent\"",
        ]
    );
    assert_eq!(
        parse(&with_fault(
            "abort: { percent: 10 }\ndelay: { percent: 10 }"
        ))
        .expect_err("missing"),
        [
            "sluice.yaml:10:14: routes[0].fault.abort: missing required field \"status\"",
            "sluice.yaml:11:14: routes[0].fault.delay: missing required field \"duration\"",
        ]
    );
    assert_eq!(
        parse(&with_fault("abort: { status: 503, percent: 100.001 }")).expect_err("precision"),
        ["sluice.yaml:10:38: routes[0].fault.abort.percent: must be a percentage from 0 to 100 with at most 2 decimals, got 100.001"]
    );
}

#[test]
fn a_delay_is_positive_and_at_most_60s() {
    assert_eq!(
        parse(&with_fault("delay: { duration: 61s, percent: 5 }")).expect_err("long"),
        ["sluice.yaml:10:26: routes[0].fault.delay.duration: a fault delay is at most 60s, got \"61s\""]
    );
    assert_eq!(
        parse(&with_fault("delay: { duration: 0s, percent: 5 }")).expect_err("zero"),
        ["sluice.yaml:10:26: routes[0].fault.delay.duration: must be greater than 0"]
    );
    assert_eq!(
        parse(&with_fault("delay: { duration: 5, percent: 5 }")).expect_err("unit"),
        ["sluice.yaml:10:26: routes[0].fault.delay.duration: invalid duration \"5\": missing unit (expected e.g. 250ms, 30s, 5m, 1h30m)"]
    );
}
