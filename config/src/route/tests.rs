use std::sync::Arc;

use http::{HeaderName, Method, Request};

use super::*;
use crate::matcher::ValueMatch;
use crate::split::{Backend, Weight};

fn split() -> Split {
    Split::new(vec![Backend {
        name: "b".into(),
        upstream: 0,
        weight: Weight::from_hundredths(100),
    }])
    .expect("positive")
}

fn route(name: &str, matches: RouteMatch) -> Route {
    Route {
        name: Arc::from(name),
        matches,
        timeout: None,
        sticky: None,
        split: split(),
        respond: None,
        upgrades: Vec::new(),
        mirror: None,
        retries: None,
        fault: None,
        request_headers: None,
        response_headers: None,
        backend_policies: Arc::from([BackendPolicy::default()]),
    }
}

fn header(name: &'static str, m: ValueMatch) -> RouteMatch {
    RouteMatch {
        headers: vec![(HeaderName::from_static(name), m)],
        ..RouteMatch::default()
    }
}

fn find<'t>(table: &'t RouteTable, req: &Request<()>) -> Option<&'t str> {
    let head = RequestHead {
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
    };
    table.find(&head).map(|(_, r)| &*r.name)
}

/// The reference semantics: scan every route in order.
fn find_by_scan<'t>(table: &'t RouteTable, req: &Request<()>) -> Option<&'t str> {
    let host = request_host(req.uri(), req.headers());
    let head = RequestHead {
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
    };
    table
        .routes()
        .iter()
        .find(|r| r.matches.matches(&head, host))
        .map(|r| &*r.name)
}

#[test]
fn first_match_wins_in_file_order() {
    let table = RouteTable::new(vec![
        route(
            "testers",
            header("canary", ValueMatch::Exact("true".into())),
        ),
        route(
            "api",
            RouteMatch {
                path: Some(PathMatch::Prefix("/api".into())),
                ..RouteMatch::default()
            },
        ),
        route("default", RouteMatch::default()),
    ]);
    let tester = Request::get("/api/x")
        .header("canary", "true")
        .body(())
        .expect("request");
    assert_eq!(find(&table, &tester), Some("testers"));
    let api = Request::get("/api/x").body(()).expect("request");
    assert_eq!(find(&table, &api), Some("api"));
    let other = Request::get("/")
        .header("canary", "false")
        .body(())
        .expect("request");
    assert_eq!(find(&table, &other), Some("default"));
}

#[test]
fn no_route_matches() {
    let table = RouteTable::new(vec![route(
        "only-post",
        RouteMatch {
            method: Some(Method::POST),
            ..RouteMatch::default()
        },
    )]);
    let get = Request::get("/").body(()).expect("request");
    assert_eq!(find(&table, &get), None);
}

#[test]
fn tenant_routes_are_indexed_and_keep_order() {
    let mut routes: Vec<Route> = (0..1000)
        .map(|i| {
            route(
                &format!("tenant-{i}"),
                header("x-tenant", ValueMatch::Exact(format!("t{}", i % 500))),
            )
        })
        .collect();
    routes.push(route("default", RouteMatch::default()));
    let table = RouteTable::new(routes);
    assert_eq!(table.index_blocks(), 2, "one indexed block, one scan");
    let req = Request::get("/")
        .header("x-tenant", "t7")
        .body(())
        .expect("request");
    assert_eq!(
        find(&table, &req),
        Some("tenant-7"),
        "the first of two routes wins"
    );
    let unknown = Request::get("/")
        .header("x-tenant", "zzz")
        .body(())
        .expect("request");
    assert_eq!(find(&table, &unknown), Some("default"));
    let repeated = Request::get("/")
        .header("x-tenant", "zzz")
        .header("x-tenant", "t9")
        .body(())
        .expect("request");
    assert_eq!(find(&table, &repeated), Some("tenant-9"));
}

#[test]
fn index_agrees_with_a_plain_scan() {
    // Mixed runs of indexable and plain routes, some with extra conditions that fail.
    let mut routes = Vec::new();
    for i in 0..40 {
        let mut m = header("x-t", ValueMatch::Exact(format!("v{}", i % 7)));
        if i % 3 == 0 {
            m.method = Some(Method::POST);
        }
        routes.push(route(&format!("h{i}"), m));
    }
    for i in 0..20 {
        routes.push(route(
            &format!("host{i}"),
            RouteMatch {
                host: Some(HostMatch::Exact(format!("h{}.example.com", i % 5))),
                path: (i % 2 == 0).then(|| PathMatch::Prefix("/a".into())),
                ..RouteMatch::default()
            },
        ));
    }
    for i in 0..12 {
        routes.push(route(
            &format!("path{i}"),
            RouteMatch {
                path: Some(PathMatch::Exact(format!("/p{}", i % 4))),
                ..RouteMatch::default()
            },
        ));
    }
    routes.push(route(
        "prefix",
        RouteMatch {
            path: Some(PathMatch::Prefix("/p".into())),
            ..RouteMatch::default()
        },
    ));
    let table = RouteTable::new(routes);
    assert!(table.index_blocks() >= 4);
    for method in [Method::GET, Method::POST] {
        for t in ["v0", "v3", "v6", "v9", ""] {
            for host in ["h1.example.com", "H3.Example.COM", "other"] {
                for path in ["/a", "/b", "/p1", "/p3", "/p9"] {
                    let mut req = Request::builder()
                        .method(method.clone())
                        .uri(path)
                        .header("host", host);
                    if !t.is_empty() {
                        req = req.header("x-t", t);
                    }
                    let req = req.body(()).expect("request");
                    assert_eq!(
                        find(&table, &req),
                        find_by_scan(&table, &req),
                        "{method} {t} {host} {path}"
                    );
                }
            }
        }
    }
}

#[test]
fn inverted_and_segment_matchers_keep_the_index_correct() {
    // Indexed runs whose routes also carry inverted headers and segment prefixes, next to
    // routes that only have those (never indexed).
    let mut routes = Vec::new();
    for i in 0..24 {
        let mut m = header("x-t", ValueMatch::Exact(format!("v{}", i % 4)));
        if i % 2 == 0 {
            m.headers.push((
                HeaderName::from_static("x-t"),
                ValueMatch::Not(Box::new(ValueMatch::Exact("v9".into()))),
            ));
        }
        if i % 3 == 0 {
            m.path = Some(PathMatch::segment_prefix("/api/"));
        }
        routes.push(route(&format!("h{i}"), m));
    }
    for i in 0..10 {
        let mut m = header(
            "x-u",
            ValueMatch::Not(Box::new(ValueMatch::Present(i % 2 == 0))),
        );
        m.path = Some(PathMatch::segment_prefix(if i % 2 == 0 {
            "/api"
        } else {
            "/"
        }));
        routes.push(route(&format!("n{i}"), m));
    }
    let table = RouteTable::new(routes);
    assert!(table.index_blocks() >= 2);
    for xt in [&[][..], &["v1"], &["v2", "v9"], &["v9"], &["v3"]] {
        for xu in [None, Some("1")] {
            for path in ["/", "/api", "/api/x", "/apix"] {
                let mut req = Request::get(path);
                for v in xt {
                    req = req.header("x-t", *v);
                }
                if let Some(v) = xu {
                    req = req.header("x-u", v);
                }
                let req = req.body(()).expect("request");
                assert_eq!(
                    find(&table, &req),
                    find_by_scan(&table, &req),
                    "{xt:?} {xu:?} {path}"
                );
            }
        }
    }
    let plain = Request::get("/apix")
        .header("x-t", "v3")
        .body(())
        .expect("request");
    assert_eq!(
        find(&table, &plain),
        Some("h7"),
        "h3 wants /api/, which /apix is not under"
    );
    let absent = Request::get("/api/x").body(()).expect("request");
    assert_eq!(find(&table, &absent), Some("n0"), "x-u absent, under /api");
    let present = Request::get("/apix")
        .header("x-u", "1")
        .body(())
        .expect("request");
    assert_eq!(
        find(&table, &present),
        Some("n1"),
        "x-u present, / matches all"
    );
}

#[test]
fn sticky_keys_from_header_and_cookie() {
    let req = Request::get("/")
        .header("x-user-id", "42")
        .header("cookie", "a=1; session=abc; b=2")
        .body(())
        .expect("request");
    let by_header = Sticky::Header(HeaderName::from_static("x-user-id"));
    assert_eq!(by_header.key(req.headers()), Some(&b"42"[..]));
    let by_cookie = Sticky::Cookie(StickyCookie {
        name: "session".into(),
        set_cookie: false,
        max_age: DEFAULT_STICKY_MAX_AGE,
    });
    assert_eq!(by_cookie.key(req.headers()), Some(&b"abc"[..]));
    assert_eq!(
        Sticky::Cookie(StickyCookie {
            name: "missing".into(),
            set_cookie: false,
            max_age: DEFAULT_STICKY_MAX_AGE
        })
        .key(req.headers()),
        None
    );
    assert_eq!(Sticky::hash(b"42"), Sticky::hash(b"42"));
    assert_ne!(Sticky::hash(b"42"), Sticky::hash(b"43"));
}
