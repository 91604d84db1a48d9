//! Fault injection: aborts answered by the proxy and delays before forwarding, counted under
//! the backend; and the drill it exists for: write a fault on the canary, watch the control
//! roll back, remove the fault.

// Tests print what they measure (abort share, delays, time to rollback) for the record.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use sluice_tests::rig::rollout;
use sluice_tests::{client, eventually, Backend, Load, Proxy, Rig};

fn config(upstreams_and_routes: &str) -> String {
    format!("listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n{upstreams_and_routes}")
}

/// Upstream `app` at `backend` and route `r` with the route-level `fault` (a flow mapping).
fn faulty(backend: &Backend, fault: &str) -> String {
    config(&format!(
        "upstreams:\n  app:\n    endpoints: [{}]\nroutes:\n  - name: r\n    fault: {fault}\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        backend.endpoint()
    ))
}

async fn faults(proxy: &Proxy, backend: &str, kind: &str) -> f64 {
    proxy
        .metric(
            "sluice_faults_injected_total",
            &[("route", "r"), ("backend", backend), ("kind", kind)],
        )
        .await
}

async fn requests(proxy: &Proxy, backend: &str, code: &str) -> f64 {
    proxy
        .metric(
            "sluice_requests_total",
            &[("route", "r"), ("backend", backend), ("code", code)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_of_every_request_is_answered_by_the_proxy_and_counted() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&faulty(
        &backend,
        "{ abort: { status: 503, percent: 100 } }",
    ));
    let client = client::http1();
    for _ in 0..20 {
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.headers["x-sluice-error"], "fault");
        assert_eq!(
            reply.text(),
            "sluice: fault injected (routes[].fault.abort)\n"
        );
    }
    assert_eq!(backend.hits(), 0, "aborted requests are not forwarded");
    assert_eq!(faults(&proxy, "app", "abort").await, 20.0);
    assert_eq!(faults(&proxy, "app", "delay").await, 0.0);
    assert_eq!(
        requests(&proxy, "app", "503").await,
        20.0,
        "counted under the backend, as the control reads it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_of_every_request_holds_it_before_forwarding() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&faulty(
        &backend,
        "{ delay: { duration: 200ms, percent: 100 } }",
    ));
    let client = client::http1();
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        took.push(started.elapsed());
        assert_eq!(
            (reply.status.as_u16(), reply.text().as_str()),
            (200, "app\n")
        );
    }
    println!("a 200ms delay fault: requests took {took:?}");
    assert!(
        took.iter()
            .all(|t| *t >= Duration::from_millis(200) && *t < Duration::from_secs(3)),
        "{took:?}"
    );
    assert_eq!(backend.hits(), 5);
    assert_eq!(faults(&proxy, "app", "delay").await, 5.0);
    assert_eq!(requests(&proxy, "app", "200").await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_longer_than_the_route_timeout_ends_at_the_timeout_without_blaming_the_upstream() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  app:\n    endpoints: [{}]\n    outlier_detection: {{ consecutive_failures: 1 }}\nroutes:\n  - name: r\n    timeout: 300ms\n    fault: {{ delay: {{ duration: 2s, percent: 100 }} }}\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        backend.endpoint()
    )));
    let client = client::http1();
    for _ in 0..3 {
        let started = Instant::now();
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        let took = started.elapsed();
        assert_eq!(reply.status, 504, "{}", reply.text());
        assert_eq!(reply.headers["x-sluice-error"], "timeout");
        assert!(
            took >= Duration::from_millis(280) && took < Duration::from_millis(1500),
            "the route timeout counts from arrival, delay included: took {took:?}"
        );
    }
    assert_eq!(backend.hits(), 0, "the upstream never saw the requests");
    assert_eq!(
        proxy
            .metric("sluice_upstream_errors_total", &[("backend", "app")])
            .await,
        0.0,
        "nor is it blamed for them"
    );
    assert_eq!(
        proxy
            .metric("sluice_endpoint_healthy", &[("backend", "app")])
            .await,
        1.0,
        "not ejected"
    );
    assert_eq!(requests(&proxy, "app", "504").await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_percent_abort_hits_about_ten_percent() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&faulty(&backend, "{ abort: { status: 500, percent: 10 } }"));
    let n = 2000;
    let url = std::sync::Arc::new(proxy.url("/"));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = client::http1();
            let mut aborted = 0u64;
            for _ in 0..n / 4 {
                let reply = client::get(&client, &url, &[]).await;
                match reply.status.as_u16() {
                    200 => {}
                    500 => {
                        assert_eq!(reply.headers["x-sluice-error"], "fault");
                        aborted += 1;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            aborted
        }));
    }
    let mut aborted = 0;
    for task in tasks {
        aborted += task.await.expect("client task");
    }
    let share = aborted as f64 / n as f64;
    println!(
        "a 10% abort fault aborted {aborted} of {n} requests ({:.1}%)",
        share * 100.0
    );
    assert!((0.06..0.14).contains(&share), "{aborted} of {n}");
    assert_eq!(faults(&proxy, "app", "abort").await, aborted as f64);
    assert_eq!(backend.hits(), n - aborted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_fault_replaces_the_route_fault_for_that_backend() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  stable:\n    endpoints: [{}]\n  canary:\n    endpoints: [{}]\nroutes:\n  - name: r\n    fault: {{ abort: {{ status: 503, percent: 100 }} }}\n    backends:\n      - {{ upstream: stable, weight: 50 }}\n      - upstream: canary\n        weight: 50\n        fault: {{ abort: {{ status: 418, percent: 100 }} }}\n",
        stable.endpoint(),
        canary.endpoint()
    )));
    let client = client::http1();
    let mut seen = std::collections::BTreeMap::<u16, u32>::new();
    for _ in 0..100 {
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        *seen.entry(reply.status.as_u16()).or_default() += 1;
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        [418, 503],
        "{seen:?}"
    );
    assert_eq!(stable.hits() + canary.hits(), 0);
    assert_eq!(
        requests(&proxy, "canary", "418").await,
        f64::from(seen[&418])
    );
    assert_eq!(
        requests(&proxy, "stable", "503").await,
        f64::from(seen[&503])
    );
    assert_eq!(
        faults(&proxy, "canary", "abort").await,
        f64::from(seen[&418])
    );
}

/// The canary's line in the rig's config, and the same line carrying `fault`.
const CANARY_LINE: &str = "      - { upstream: canary, weight: 0 }\n";

fn with_canary_fault(text: &str, fault: &str) -> String {
    assert!(
        text.contains(CANARY_LINE),
        "the rig's config changed: {text}"
    );
    text.replacen(
        CANARY_LINE,
        &format!("      - {{ upstream: canary, weight: 0, fault: {fault} }}\n"),
        1,
    )
}

/// The canary's fault as the proxy's `/config` shows it (`null` when none).
async fn canary_fault(proxy: &Proxy) -> serde_json::Value {
    let config = proxy.config_json().await;
    config["routes"][0]["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["upstream"] == "canary"))
        .map(|b| b["fault"].clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_a_ten_percent_abort_on_the_canary_rolls_back_and_removing_it_restores_service() {
    let analysis = "      min_requests: 10\n      max_error_rate: 0.05\n      max_p95: 1s\n      failure_limit: 2\n";
    let rollouts = rollout("[10, 20, 30, 40, 50, 100]", "1s", analysis);
    let rig = Rig::new(1).await;
    let control = rig.with_control(&rollouts).await;
    let proxy = &rig.proxies[0];
    let load = Load::start(&proxy.url("/"), 4);
    control.command("myapp", "start").await;
    eventually!(
        control.weight("myapp").await >= 10.0,
        "the rollout is progressing"
    );

    // The drill: write the fault, watch the control roll back.
    let text = rig.config_text(&rollouts, "v2");
    rig.write_config_text(&with_canary_fault(
        &text,
        "{ abort: { status: 503, percent: 10 } }",
    ));
    eventually!(
        canary_fault(proxy).await["abort"]["percent"] == 10.0,
        "/config shows the fault in force"
    );
    let written = Instant::now();
    let weight_then = control.weight("myapp").await;
    eventually!(control.phase("myapp").await == "rolled_back", "rolled back");
    let took = written.elapsed();
    eventually!(rig.canary_weights().await == [0.0], "canary out");
    let message = control.last_message("myapp").await;
    let aborted = proxy
        .metric(
            "sluice_faults_injected_total",
            &[
                ("route", "default"),
                ("backend", "canary"),
                ("kind", "abort"),
            ],
        )
        .await;
    let canary_503 = proxy
        .metric(
            "sluice_requests_total",
            &[("route", "default"), ("backend", "canary"), ("code", "503")],
        )
        .await;
    let during = load.stop().await;
    println!(
        "fault drill: 10% abort on the canary at {weight_then}%, rolled back {took:?} after the fault was in force ({aborted} aborts; clients saw {} failures of {}): {message}",
        during.failed,
        during.ok + during.failed
    );
    assert!(aborted > 0.0);
    assert_eq!(
        canary_503, aborted,
        "every abort counted as the canary's 503"
    );
    assert!(
        message.contains("> max_error_rate 5.00%") && message.contains("rolled back"),
        "{message}"
    );

    // Remove the fault: normal service, and the rollout can go again.
    rig.write_config_text(&text);
    eventually!(
        canary_fault(proxy).await.is_null(),
        "/config shows no fault"
    );
    let after = Load::start(&proxy.url("/"), 4);
    let (code, answer) = control.command("myapp", "retry").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(
        control.phase("myapp").await == "succeeded",
        "the rollout succeeds without the fault"
    );
    let report = after.stop().await;
    println!(
        "fault removed: the retried rollout succeeded, {} requests, {} failed",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.ok > 0);
    assert!(rig.canary.hits() > 0, "the canary served again");
    assert_eq!(
        proxy
            .metric(
                "sluice_faults_injected_total",
                &[
                    ("route", "default"),
                    ("backend", "canary"),
                    ("kind", "abort")
                ],
            )
            .await,
        aborted,
        "no fault answers once it is removed"
    );
}
