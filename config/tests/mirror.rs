//! `routes[].mirror`: its default, and the exact message for each value validation refuses.

use sluice_config::{Config, Mirror, Percent};

mod common;

use common::{parse, BASE};

/// `BASE` with a second upstream, `canary`, and `lines` added to route `default` (from line
/// 11, column 5).
fn route_with(lines: &str) -> String {
    let block: String = lines.lines().map(|line| format!("    {line}\n")).collect();
    BASE.replacen(
        "upstreams:\n",
        "upstreams:\n  canary:\n    endpoints: [127.0.0.1:18082]\n",
        1,
    )
    .replacen("    backends:\n", &format!("{block}    backends:\n"), 1)
}

fn mirror(config: &Config) -> Option<&Mirror> {
    config.routes.routes()[0].mirror.as_ref()
}

#[test]
fn absent_means_no_copies() {
    assert_eq!(mirror(&parse(BASE).expect("valid")), None);
}

#[test]
fn the_percent_defaults_to_every_request() {
    let config = parse(&route_with("mirror: { upstream: canary }")).expect("valid");
    let canary = config
        .upstreams
        .iter()
        .position(|u| &*u.name == "canary")
        .expect("declared");
    assert_eq!(
        mirror(&config),
        Some(&Mirror {
            upstream: canary,
            name: "canary".into(),
            percent: Percent::ALL,
        })
    );
    assert_eq!(Percent::ALL.as_f64(), 100.0);
}

#[test]
fn the_percent_keeps_two_decimals() {
    for (given, hundredths) in [
        ("12.5", 1250),
        ("0.01", 1),
        ("33.33", 3333),
        ("0", 0),
        ("100", 10_000),
    ] {
        let text = route_with(&format!("mirror: {{ upstream: canary, percent: {given} }}"));
        let config = parse(&text).unwrap_or_else(|e| panic!("{given}: {e:?}"));
        let got = mirror(&config).map(|m| m.percent);
        assert_eq!(got, Some(Percent::from_hundredths(hundredths)), "{given}");
    }
}

#[test]
fn a_percent_is_from_0_to_100_with_at_most_2_decimals() {
    for (given, shown) in [
        ("101", "101"),
        ("-1", "-1"),
        ("12.345", "12.345"),
        ("half", "\"half\""),
        ("true", "true"),
    ] {
        let text = route_with(&format!("mirror: {{ upstream: canary, percent: {given} }}"));
        assert_eq!(
            parse(&text).expect_err(given),
            [format!("sluice.yaml:11:42: routes[0].mirror.percent: must be a percentage from 0 to 100 with at most 2 decimals, got {shown}")]
        );
    }
}

#[test]
fn the_mirror_is_a_declared_upstream() {
    assert_eq!(
        parse(&route_with("mirror: { upstream: canry, percent: 5 }")).expect_err("unknown"),
        ["sluice.yaml:11:25: routes[0].mirror.upstream: unknown upstream \"canry\" (known: canary, app)"]
    );
    assert_eq!(
        parse(&route_with("mirror: { percent: 5 }")).expect_err("missing"),
        ["sluice.yaml:11:13: routes[0].mirror: missing required field \"upstream\""]
    );
    assert_eq!(
        parse(&route_with("mirror: { upstream: \"\" }")).expect_err("empty"),
        ["sluice.yaml:11:25: routes[0].mirror.upstream: upstream must not be empty"]
    );
}

#[test]
fn a_respond_route_has_nothing_to_copy_retry_or_fault() {
    let text = route_with(
        "respond: { status: 503 }\nmirror: { upstream: canary }\nretries: { attempts: 2 }\nfault: { abort: { status: 500, percent: 1 } }\nresponse_headers: { set: { x-down: \"1\" } }",
    )
        .replacen("    backends:\n      - { upstream: app, weight: 1 }\n", "", 1);
    assert_eq!(
        parse(&text).expect_err("invalid"),
        [
            "sluice.yaml:12:13: routes[0].mirror: a respond route forwards nothing: remove mirror",
            "sluice.yaml:13:14: routes[0].retries: a respond route forwards nothing: remove retries",
            "sluice.yaml:14:12: routes[0].fault: a respond route forwards nothing: remove fault",
        ]
    );
}
