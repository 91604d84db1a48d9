//! `upstreams.<name>.health_check`: its defaults, and the exact message for each value
//! validation refuses.

use std::time::Duration;

use sluice_config::{
    HealthCheck, DEFAULT_HEALTHY_THRESHOLD, DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_UNHEALTHY_THRESHOLD,
};

mod common;

use common::{parse, BASE};

/// `BASE` with `health_check:` and these lines (indented under it) added to upstream `app`.
fn with_check(lines: &str) -> String {
    let block: String = lines
        .lines()
        .map(|line| format!("      {line}\n"))
        .collect();
    BASE.replacen(
        "    endpoints: [127.0.0.1:18081]\n",
        &format!("    endpoints: [127.0.0.1:18081]\n    health_check:\n{block}"),
        1,
    )
}

#[test]
fn absent_means_no_active_checks() {
    let config = parse(BASE).expect("valid");
    assert_eq!(config.upstreams[0].health_check, None);
}

#[test]
fn only_the_path_is_required() {
    let config = parse(&with_check("path: /health")).expect("valid");
    assert_eq!(
        config.upstreams[0].health_check,
        Some(HealthCheck {
            path: "/health".into(),
            interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            timeout: DEFAULT_HEALTH_CHECK_TIMEOUT,
            healthy: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy: DEFAULT_UNHEALTHY_THRESHOLD,
        })
    );
    assert_eq!(
        (DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_TIMEOUT),
        (Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!(
        (DEFAULT_HEALTHY_THRESHOLD, DEFAULT_UNHEALTHY_THRESHOLD),
        (2, 3)
    );
}

#[test]
fn every_setting_is_read() {
    let config = parse(&with_check(
        "path: /ready?deep=1\ninterval: 250ms\ntimeout: 100ms\nhealthy: 1\nunhealthy: 5",
    ))
    .expect("valid");
    assert_eq!(
        config.upstreams[0].health_check,
        Some(HealthCheck {
            path: "/ready?deep=1".into(),
            interval: Duration::from_millis(250),
            timeout: Duration::from_millis(100),
            healthy: 1,
            unhealthy: 5,
        })
    );
}

#[test]
fn bad_values_are_refused_each_with_its_location() {
    let cases: &[(&str, &[&str])] = &[
        (
            "interval: 5s",
            &["sluice.yaml:8:7: upstreams.app.health_check: missing required field \"path\""],
        ),
        (
            "path: health",
            &["sluice.yaml:8:13: upstreams.app.health_check.path: must start with \"/\", got \"health\""],
        ),
        (
            "path: \"/he alth\"",
            &["sluice.yaml:8:13: upstreams.app.health_check.path: ' ' is not allowed in a request path (percent-encode it), got \"/he alth\""],
        ),
        (
            "path: /health\ninterval: 0s",
            &["sluice.yaml:9:17: upstreams.app.health_check.interval: must be greater than 0"],
        ),
        (
            "path: /health\ntimeout: 5",
            &["sluice.yaml:9:16: upstreams.app.health_check.timeout: invalid duration \"5\": missing unit (expected e.g. 250ms, 30s, 5m, 1h30m)"],
        ),
        (
            "path: /health\nhealthy: 0\nunhealthy: -1",
            &[
                "sluice.yaml:9:16: upstreams.app.health_check.healthy: must be a whole number of at least 1, got 0",
                "sluice.yaml:10:18: upstreams.app.health_check.unhealthy: must be a whole number of at least 1, got -1",
            ],
        ),
        (
            "path: /health\nhealthy_threshold: 2",
            &["sluice.yaml:9:7: upstreams.app.health_check: unknown key \"healthy_threshold\""],
        ),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(lines, want)| {
            let got = parse(&with_check(lines)).err().unwrap_or_default();
            (got != *want).then(|| format!("{lines:?}\n  want {want:?}\n  got  {got:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
