//! `routes[].sticky` with a cookie: its defaults, and the exact message for each value
//! validation refuses.

use std::time::Duration;

use sluice_config::{Sticky, StickyCookie, DEFAULT_STICKY_MAX_AGE};

mod common;

use common::{parse, BASE};

/// `BASE` with `sticky: <sticky>` added to route `default` (line 9, the value at column 13).
fn with_sticky(sticky: &str) -> String {
    BASE.replacen(
        "    backends:\n",
        &format!("    sticky: {sticky}\n    backends:\n"),
        1,
    )
}

fn sticky(text: &str) -> Option<Sticky> {
    let config = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
    config.routes.routes()[0].sticky.clone()
}

#[test]
fn a_cookie_is_only_read_unless_set_cookie_is_given() {
    assert_eq!(
        sticky(&with_sticky("{ cookie: session }")),
        Some(Sticky::Cookie(StickyCookie {
            name: "session".into(),
            set_cookie: false,
            max_age: DEFAULT_STICKY_MAX_AGE,
        }))
    );
    assert_eq!(DEFAULT_STICKY_MAX_AGE, Duration::from_secs(24 * 60 * 60));
}

#[test]
fn set_cookie_and_max_age_are_read() {
    assert_eq!(
        sticky(&with_sticky("{ cookie: sluice-id, set_cookie: true }")),
        Some(Sticky::Cookie(StickyCookie {
            name: "sluice-id".into(),
            set_cookie: true,
            max_age: DEFAULT_STICKY_MAX_AGE,
        }))
    );
    assert_eq!(
        sticky(&with_sticky(
            "{ cookie: sluice-id, set_cookie: true, max_age: 1h30m }"
        )),
        Some(Sticky::Cookie(StickyCookie {
            name: "sluice-id".into(),
            set_cookie: true,
            max_age: Duration::from_secs(90 * 60),
        }))
    );
}

#[test]
fn the_cookie_name_is_a_token() {
    for (given, shown) in [
        ("\"my cookie\"", "\"my cookie\""),
        ("\"a;b\"", "\"a;b\""),
        ("\"\"", "\"\""),
    ] {
        assert_eq!(
            parse(&with_sticky(&format!("{{ cookie: {given}, set_cookie: true }}"))).expect_err(given),
            [format!("sluice.yaml:9:23: routes[0].sticky.cookie: {shown} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)")]
        );
    }
}

#[test]
fn max_age_is_whole_positive_seconds() {
    assert_eq!(
        parse(&with_sticky(
            "{ cookie: id, set_cookie: true, max_age: 0s }"
        ))
        .expect_err("zero"),
        ["sluice.yaml:9:54: routes[0].sticky.max_age: must be greater than 0"]
    );
    assert_eq!(
        parse(&with_sticky("{ cookie: id, set_cookie: true, max_age: 1500ms }")).expect_err("fraction"),
        ["sluice.yaml:9:54: routes[0].sticky.max_age: Max-Age counts whole seconds: give e.g. 30s, 90m or 24h, got \"1500ms\""]
    );
    assert_eq!(
        parse(&with_sticky("{ cookie: id, set_cookie: true, max_age: soon }")).expect_err("text"),
        ["sluice.yaml:9:54: routes[0].sticky.max_age: invalid duration \"soon\": expected a number at \"soon\" (expected e.g. 250ms, 30s, 5m, 1h30m)"]
    );
}

#[test]
fn set_cookie_and_max_age_belong_to_a_cookie() {
    assert_eq!(
        parse(&with_sticky("{ header: x-user, set_cookie: true, max_age: 1h }")).expect_err("header"),
        [
            "sluice.yaml:9:43: routes[0].sticky.set_cookie: set_cookie applies to a sticky cookie, not a header: remove it, or stick by cookie instead of header",
            "sluice.yaml:9:58: routes[0].sticky.max_age: max_age applies to a sticky cookie, not a header: remove it, or stick by cookie instead of header",
        ]
    );
    assert_eq!(
        parse(&with_sticky("{ header: x-user, cookie: id }")).expect_err("both"),
        ["sluice.yaml:9:13: routes[0].sticky: give exactly one of header, cookie"]
    );
}
