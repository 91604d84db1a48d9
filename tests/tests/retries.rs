//! Retries with a budget: a flaky upstream's failures mostly disappear, a dead one is not
//! hammered beyond the budget, only replayable idempotent requests are retried, and a retry
//! goes to another endpoint.

// Tests print what they measure (failure rates, the retry budget figure) for the record.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use sluice_tests::{client, Backend, Behavior, Proxy};

fn config(upstreams_and_routes: &str) -> String {
    format!("listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n{upstreams_and_routes}")
}

/// An upstream `app` over `endpoints`, never ejected (so every attempt reaches the test's
/// backends), and a route `r` with `retries` (a YAML flow mapping, or none).
fn one_route(endpoints: &[&Backend], retries: Option<&str>) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|b| b.endpoint()).collect();
    route_to(&endpoints, retries)
}

/// [`one_route`] to endpoints given by address.
fn route_to(endpoints: &[String], retries: Option<&str>) -> String {
    let retries = retries.map_or(String::new(), |r| format!("    retries: {r}\n"));
    config(&format!(
        "upstreams:\n  app:\n    endpoints: [{}]\n    outlier_detection: {{ consecutive_failures: 0 }}\nroutes:\n  - name: r\n    timeout: 5s\n{retries}    backends: [{{ upstream: app, weight: 1 }}]\n",
        endpoints.join(", ")
    ))
}

/// The statuses of `n` GETs of `url` over `concurrency` keep-alive connections.
async fn statuses(url: &str, n: usize, concurrency: usize) -> BTreeMap<u16, usize> {
    let url = Arc::new(url.to_string());
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let url = url.clone();
            let share = n / concurrency + usize::from(worker < n % concurrency);
            tokio::spawn(async move {
                let client = client::http1();
                let mut seen = Vec::with_capacity(share);
                for _ in 0..share {
                    seen.push(client::get(&client, &url, &[]).await.status.as_u16());
                }
                seen
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for task in tasks {
        for status in task.await.expect("client task") {
            *counts.entry(status).or_default() += 1;
        }
    }
    counts
}

fn failure_rate(counts: &BTreeMap<u16, usize>) -> f64 {
    let total: usize = counts.values().sum();
    let failed: usize = counts
        .iter()
        .filter(|(status, _)| **status != 200)
        .map(|(_, n)| n)
        .sum();
    failed as f64 / total as f64
}

async fn retries(proxy: &Proxy, result: &str) -> f64 {
    proxy
        .metric(
            "sluice_retries_total",
            &[("route", "r"), ("backend", "app"), ("result", result)],
        )
        .await
}

/// Retries made (granted by the budget), whatever their outcome.
async fn retries_made(proxy: &Proxy) -> f64 {
    retries(proxy, "ok").await + retries(proxy, "failed").await
}

async fn send(proxy: &Proxy, method: &str, path: &str, body: Bytes) -> client::Reply {
    client::send(
        &client::http1(),
        Request::builder()
            .method(method)
            .uri(proxy.url(path))
            .body(Full::new(body))
            .expect("request"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_retries_hide_most_of_an_upstream_resetting_thirty_percent_of_connections() {
    let a = Backend::spawn("a").await;
    let b = Backend::spawn("b").await;
    a.set_behavior(Behavior::Reset(0.3));
    b.set_behavior(Behavior::Reset(0.3));
    // The budget is raised above the ~39% of extra attempts this failure rate needs (0.3 +
    // 0.09): this test is about what retries achieve, the next ones about the budget.
    let retrying = Proxy::start(&one_route(
        &[&a, &b],
        Some("{ attempts: 2, on: [connect-failure, reset], budget_percent: 60 }"),
    ));
    let plain = Proxy::start(&one_route(&[&a, &b], None));
    let n = 1000;

    let without = statuses(&plain.url("/"), n, 4).await;
    let with = statuses(&retrying.url("/"), n, 4).await;
    let (without_rate, with_rate) = (failure_rate(&without), failure_rate(&with));
    let made = retries_made(&retrying).await;
    println!(
        "upstream resetting 30% of requests: {:.1}% failed without retries, {:.1}% with 2 retries (expected 0.3^3 = 2.7%); {made} retries for {n} requests",
        without_rate * 100.0,
        with_rate * 100.0
    );
    assert!(
        (0.2..0.4).contains(&without_rate),
        "without retries the resets reach the clients: {without:?}"
    );
    assert!(
        with_rate < 0.08,
        "with two retries about 2.7% should fail: {with:?}"
    );
    assert!(
        with.keys().all(|status| [200, 502].contains(status)),
        "{with:?}"
    );
    assert!(retries(&retrying, "ok").await > 0.0);
    assert_eq!(retries(&retrying, "budget_exhausted").await, 0.0);
    assert_eq!(
        retries_made(&plain).await,
        0.0,
        "no retries unless configured"
    );
}

/// Full outage: `attempts` retries wanted for every request, the budget grants a share.
async fn full_outage(
    behavior: Behavior,
    retries_yaml: &str,
    n: usize,
) -> (Proxy, Backend, f64, BTreeMap<u16, usize>, f64) {
    let dead = Backend::spawn("dead").await;
    dead.set_behavior(behavior);
    let proxy = Proxy::start(&one_route(&[&dead], Some(retries_yaml)));
    let started = Instant::now();
    let counts = statuses(&proxy.url("/"), n, 8).await;
    let seconds = started.elapsed().as_secs_f64();
    let made = retries_made(&proxy).await;
    (proxy, dead, made, counts, seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_full_outage_retries_stay_within_the_budget_share_exactly() {
    // No minimum rate: retries may add at most 20% to the requests, however long the outage.
    let n = 2000;
    let (proxy, dead, made, counts, seconds) = full_outage(
        Behavior::Status(503),
        "{ attempts: 2, on: [\"503\"], budget_percent: 20, min_per_second: 0 }",
        n,
    )
    .await;
    println!(
        "retry budget under full outage (503s, budget 20%, min_per_second 0): {made} retries / {n} requests = {:.1}% over {seconds:.1}s",
        made / n as f64 * 100.0
    );
    assert_eq!(counts.get(&503), Some(&n), "{counts:?}");
    // Concurrent requests may each pass the check before either counts its retry: at most the
    // number of clients over.
    let slack = 8.0;
    assert!(
        made <= 0.2 * n as f64 + slack,
        "{made} retries for {n} requests"
    );
    assert!(
        made >= 0.1 * n as f64,
        "the budget is used, not just respected: {made} retries"
    );
    assert_eq!(dead.hits() as f64, n as f64 + made, "every attempt arrived");
    let denied = retries(&proxy, "budget_exhausted").await;
    assert!(
        denied >= n as f64 * 0.5,
        "most requests found the budget spent: {denied}"
    );
    assert_eq!(retries(&proxy, "ok").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_full_outage_of_resets_the_default_budget_caps_retries() {
    // The defaults: 20% of the requests over 10 s, plus 10 per second.
    let n = 3000;
    let (proxy, dead, made, counts, seconds) =
        full_outage(Behavior::ResetEvery(1), "{ attempts: 2 }", n).await;
    println!(
        "retry budget under full outage: {made} retries / {n} requests = {:.1}% (resets, attempts 2, budget_percent 20, min_per_second 10, {seconds:.1}s)",
        made / n as f64 * 100.0
    );
    assert_eq!(counts.get(&502), Some(&n), "{counts:?}");
    // 20% of the requests, plus the reserve of each 10 s window the run touched, plus one
    // retry per concurrent client racing the check.
    let windows = (seconds / 10.0).ceil() + 1.0;
    let bound = 0.2 * n as f64 + 10.0 * 10.0 * windows + 8.0;
    assert!(
        made <= bound,
        "{made} retries for {n} requests (bound {bound})"
    );
    assert!(made >= 0.2 * n as f64 * 0.5, "{made} retries");
    assert_eq!(dead.resets() as f64, n as f64 + made);
    assert!(retries(&proxy, "budget_exhausted").await > 0.0);
    assert_eq!(
        proxy
            .metric(
                "sluice_requests_total",
                &[("route", "r"), ("backend", "app"), ("code", "502")]
            )
            .await,
        n as f64,
        "each request counted once, whatever its attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_retried_only_when_listed() {
    let default = Backend::spawn("default").await;
    let listed = Backend::spawn("listed").await;
    default.set_behavior(Behavior::ResetEvery(1));
    listed.set_behavior(Behavior::ResetEvery(1));
    let by_default = Proxy::start(&one_route(&[&default], Some("{ attempts: 2 }")));
    let with_post = Proxy::start(&one_route(
        &[&listed],
        Some("{ attempts: 2, methods: [GET, POST] }"),
    ));
    let body = Bytes::from_static(b"order=1");

    let reply = send(&by_default, "POST", "/orders", body.clone()).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.headers["x-sluice-error"], "reset");
    assert_eq!(default.resets(), 1, "POST is not idempotent: sent once");
    assert_eq!(retries_made(&by_default).await, 0.0);
    // GET is idempotent: retried by default.
    assert_eq!(
        send(&by_default, "GET", "/", Bytes::new()).await.status,
        502
    );
    assert_eq!(default.resets(), 4);

    assert_eq!(send(&with_post, "POST", "/orders", body).await.status, 502);
    assert_eq!(listed.resets(), 3, "listed: the first try and two retries");
    assert_eq!(retries(&with_post, "failed").await, 2.0);
    // Listing methods replaces the default: PUT is no longer retried.
    assert_eq!(
        send(&with_post, "PUT", "/x", Bytes::new()).await.status,
        502
    );
    assert_eq!(listed.resets(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_bodies_of_known_length_up_to_64_kib_are_replayed() {
    let backend = Backend::spawn("flaky").await;
    backend.set_behavior(Behavior::ResetEvery(1));
    let proxy = Proxy::start(&one_route(&[&backend], Some("{ attempts: 2 }")));

    let at_bound = Bytes::from(vec![b'a'; 64 * 1024]);
    assert_eq!(send(&proxy, "PUT", "/upload", at_bound).await.status, 502);
    assert_eq!(backend.resets(), 3, "64 KiB: held, and sent three times");

    let over = Bytes::from(vec![b'a'; 64 * 1024 + 1]);
    assert_eq!(send(&proxy, "PUT", "/upload", over).await.status, 502);
    assert_eq!(backend.resets(), 4, "64 KiB + 1: streamed once");

    // A chunked body (no length) is streamed, never held: sent once.
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
    >(4);
    tokio::spawn(async move {
        for _ in 0..3 {
            let chunk = hyper::body::Frame::data(Bytes::from_static(b"chunk"));
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    let chunked = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http()
        .request(
            Request::put(proxy.url("/upload"))
                .body(sluice_tests::backend::channel_body(rx))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(chunked.status(), 502);
    assert_eq!(backend.resets(), 5, "chunked: streamed once");
    assert_eq!(retries(&proxy, "failed").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_put_body_arrives_intact() {
    let backend = Backend::spawn("flaky").await;
    // Drops the 1st, 3rd, 5th... request: each PUT's first attempt fails, its retry arrives.
    backend.set_behavior(Behavior::ResetEvery(2));
    let proxy = Proxy::start(&one_route(&[&backend], Some("{ attempts: 2 }")));
    for size in [0usize, 1, 1000, 64 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let expected = format!(
            "{} {:016x}\n",
            body.len(),
            xxhash_rust::xxh3::xxh3_64(&body)
        );
        let reply = send(&proxy, "PUT", "/upload", Bytes::from(body)).await;
        assert_eq!(reply.status, 200, "{size} bytes: {}", reply.text());
        assert_eq!(reply.text(), expected, "{size} bytes arrived intact");
    }
    assert_eq!(backend.resets(), 4, "every first attempt was dropped");
    assert_eq!(backend.hits_on("/upload"), 4);
    assert_eq!(retries(&proxy, "ok").await, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_to_another_endpoint() {
    let good = Backend::spawn("good").await;
    let bad = Backend::spawn("bad").await;
    bad.set_behavior(Behavior::ResetEvery(1));
    // One retry (the default), and a budget that is never the limit here.
    let proxy = Proxy::start(&one_route(
        &[&good, &bad],
        Some("{ attempts: 1, budget_percent: 100 }"),
    ));
    let n = 300;
    let counts = statuses(&proxy.url("/"), n, 3).await;
    assert_eq!(
        counts.get(&200),
        Some(&n),
        "every request succeeds: {counts:?}"
    );
    assert_eq!(
        good.hits(),
        n as u64,
        "the good endpoint served every answer"
    );
    assert_eq!(bad.hits(), 0);
    assert!(
        bad.resets() > n as u64 / 5,
        "the bad endpoint was tried first about half the time: {}",
        bad.resets()
    );
    assert_eq!(retries(&proxy, "ok").await, bad.resets() as f64);
    assert_eq!(retries(&proxy, "failed").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_is_retried_on_the_other_endpoint() {
    let good = Backend::spawn("good").await;
    let dead = format!("127.0.0.1:{}", sluice_tests::free_port());
    // The default retries: once, on connect failures and resets.
    let proxy = Proxy::start(&route_to(&[dead, good.endpoint()], Some("{}")));
    let n = 100;
    let counts = statuses(&proxy.url("/"), n, 1).await;
    assert_eq!(counts.get(&200), Some(&n), "{counts:?}");
    assert_eq!(good.hits(), n as u64);
    let refused = proxy
        .metric(
            "sluice_upstream_errors_total",
            &[("backend", "app"), ("kind", "connect")],
        )
        .await;
    assert!(refused > 0.0, "the dead endpoint was tried first at times");
    assert_eq!(retries(&proxy, "ok").await, refused);
}
