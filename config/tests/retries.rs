//! `routes[].retries`: its defaults, and the exact message for each value validation refuses.

use http::{Method, StatusCode};
use sluice_config::{
    Retries, RetryOn, DEFAULT_RETRY_BUDGET_PERCENT, DEFAULT_RETRY_MIN_PER_SECOND,
    MAX_RETRY_ATTEMPTS,
};

mod common;

use common::{parse, BASE};

/// `BASE` with `retries:` and these lines (indented under it, from line 9) added to route
/// `default`.
fn with_retries(lines: &str) -> String {
    let block: String = lines
        .lines()
        .map(|line| format!("      {line}\n"))
        .collect();
    BASE.replacen(
        "    backends:\n",
        &format!("    retries:\n{block}    backends:\n"),
        1,
    )
}

fn retries(text: &str) -> Retries {
    let config = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
    let retries = config.routes.routes()[0].retries.as_deref().cloned();
    retries.expect("retries configured")
}

#[test]
fn absent_means_no_retries() {
    assert_eq!(parse(BASE).expect("valid").routes.routes()[0].retries, None);
}

#[test]
fn an_empty_block_retries_once_on_connection_failures_within_the_budget() {
    let text = BASE.replacen("    backends:\n", "    retries: {}\n    backends:\n", 1);
    assert_eq!(
        retries(&text),
        Retries {
            attempts: 1,
            on: RetryOn {
                connect_failure: true,
                reset: true,
                statuses: Vec::new(),
            },
            budget_percent: 20.0,
            min_per_second: 10,
            methods: Vec::new(),
        }
    );
    assert_eq!(
        (
            DEFAULT_RETRY_BUDGET_PERCENT,
            DEFAULT_RETRY_MIN_PER_SECOND,
            MAX_RETRY_ATTEMPTS
        ),
        (20.0, 10, 10)
    );
    let retries = retries(&text);
    for method in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        assert!(retries.allows_method(&method), "{method}");
    }
    for method in [Method::POST, Method::PATCH] {
        assert!(!retries.allows_method(&method), "{method}");
    }
}

#[test]
fn every_setting_is_read() {
    let got = retries(&with_retries(
        "attempts: 10\non: [reset, \"503\", 429, gateway-error, 408]\nbudget_percent: 12.5\nmin_per_second: 0\nmethods: [get, POST]",
    ));
    let status = |code| StatusCode::from_u16(code).expect("valid status");
    assert_eq!(
        got,
        Retries {
            attempts: 10,
            on: RetryOn {
                connect_failure: false,
                reset: true,
                statuses: [503, 429, 502, 504, 408].map(status).to_vec(),
            },
            budget_percent: 12.5,
            min_per_second: 0,
            methods: vec![Method::GET, Method::POST],
        }
    );
    assert!(got.on.status(status(502)));
    assert!(!got.on.status(status(500)));
    assert!(got.allows_method(&Method::POST));
    assert!(!got.allows_method(&Method::PUT));

    let every_5xx = retries(&with_retries("on: [5xx, connect-failure, \"500\"]"));
    assert!(every_5xx.on.connect_failure && !every_5xx.on.reset);
    assert_eq!(every_5xx.on.statuses.len(), 100);
    assert!(every_5xx.on.status(status(599)));
    assert!(!every_5xx.on.status(status(429)));
}

#[test]
fn attempts_are_from_1_to_10() {
    assert_eq!(
        parse(&with_retries("attempts: 0")).expect_err("0"),
        ["sluice.yaml:10:17: routes[0].retries.attempts: must be a whole number from 1 to 10 (retries after the first attempt), got 0; to turn retries off, remove retries"]
    );
    assert_eq!(
        parse(&with_retries("attempts: 11")).expect_err("11"),
        ["sluice.yaml:10:17: routes[0].retries.attempts: must be a whole number from 1 to 10 (retries after the first attempt), got 11"]
    );
    assert_eq!(
        parse(&with_retries("attempts: 1.5")).expect_err("1.5"),
        ["sluice.yaml:10:17: routes[0].retries.attempts: must be a whole number from 1 to 10 (retries after the first attempt), got 1.5"]
    );
}

#[test]
fn on_names_known_failures_and_retryable_statuses() {
    assert_eq!(
        parse(&with_retries("on: [reset, timeout, 404, \"5O3\", 503]")).expect_err("invalid"),
        [
            "sluice.yaml:10:19: routes[0].retries.on[1]: cannot retry on \"timeout\": give connect-failure, reset, gateway-error (502, 503, 504), 5xx, or a status among 408, 429, 500-599",
            "sluice.yaml:10:28: routes[0].retries.on[2]: cannot retry on 404: give connect-failure, reset, gateway-error (502, 503, 504), 5xx, or a status among 408, 429, 500-599",
            "sluice.yaml:10:33: routes[0].retries.on[3]: cannot retry on \"5O3\": give connect-failure, reset, gateway-error (502, 503, 504), 5xx, or a status among 408, 429, 500-599",
        ]
    );
    assert_eq!(
        parse(&with_retries("on: []")).expect_err("empty"),
        ["sluice.yaml:10:11: routes[0].retries.on: must not be empty: list the failures to retry, or leave on out for [connect-failure, reset]"]
    );
}

#[test]
fn the_budget_is_a_percentage() {
    assert_eq!(
        parse(&with_retries("budget_percent: 100.5")).expect_err("over 100"),
        ["sluice.yaml:10:23: routes[0].retries.budget_percent: must be a percentage from 0 to 100, got 100.5"]
    );
    assert_eq!(
        parse(&with_retries("budget_percent: -1\nmin_per_second: -2")).expect_err("negative"),
        [
            "sluice.yaml:10:23: routes[0].retries.budget_percent: must not be negative, got -1",
            "sluice.yaml:11:23: routes[0].retries.min_per_second: must be a whole number of at least 0, got -2",
        ]
    );
    assert_eq!(
        retries(&with_retries("budget_percent: 0")).budget_percent,
        0.0
    );
}

#[test]
fn methods_are_http_methods_that_can_be_retried() {
    assert_eq!(
        parse(&with_retries("methods: []")).expect_err("empty"),
        ["sluice.yaml:10:16: routes[0].retries.methods: must not be empty: list the methods to retry, or leave methods out to retry the idempotent ones (GET, HEAD, OPTIONS, TRACE, PUT, DELETE)"]
    );
    assert_eq!(
        parse(&with_retries("methods: [GET, \"GE T\", connect, \"\"]")).expect_err("bad"),
        [
            "sluice.yaml:10:22: routes[0].retries.methods[1]: \"GE T\" is not an HTTP method (e.g. GET, PUT, POST)",
            "sluice.yaml:10:30: routes[0].retries.methods[2]: \"connect\" opens a tunnel, which cannot be retried: remove it",
            "sluice.yaml:10:39: routes[0].retries.methods[3]: \"\" is not an HTTP method (e.g. GET, PUT, POST)",
        ]
    );
}
