//! Active health checks (`upstreams.<name>.health_check`): an endpoint failing its checks takes
//! no traffic, a backend whose every endpoint fails them fails over, `sluice_endpoint_healthy`
//! shows it, probes use the configured path (over the upstream's protocol and TLS), and
//! reloads change the checks without forgetting what they found.

use sluice_tests::tls::Pki;
use sluice_tests::{client, eventually, Backend, Proxy};

/// A proxy config with these `upstreams:` and `routes:` entries (already indented).
fn config(upstreams: &str, routes: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n{upstreams}routes:\n{routes}"
    )
}

/// Route `r` sending everything to upstream `app`.
const ONE_ROUTE: &str = "  - name: r\n    backends: [{ upstream: app, weight: 1 }]\n";

/// `sluice_endpoint_healthy` of `endpoint` in `backend`.
async fn gauge(proxy: &Proxy, backend: &str, endpoint: &Backend) -> f64 {
    proxy
        .metric(
            "sluice_endpoint_healthy",
            &[("backend", backend), ("endpoint", &endpoint.endpoint())],
        )
        .await
}

/// The endpoint's health-check status as `/config` shows it.
async fn status(proxy: &Proxy, backend: &str, endpoint: &Backend) -> String {
    let config = proxy.config_json().await;
    let address = endpoint.endpoint();
    config["upstreams"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == backend))
        .and_then(|u| u["endpoints"].as_array())
        .and_then(|e| e.iter().find(|e| e["address"] == address.as_str()))
        .and_then(|e| e["health_check"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// Sends `n` requests to `/`; all must succeed.
async fn send(proxy: &Proxy, n: usize) {
    let http = client::http1();
    for _ in 0..n {
        let reply = client::get(&http, &proxy.url("/"), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_its_checks_takes_no_traffic_until_it_passes_again() {
    let a = Backend::spawn("a").await;
    let b = Backend::spawn("b").await;
    let proxy = Proxy::start(&config(
        &format!(
            "  app:\n    endpoints: [{}, {}]\n    outlier_detection: {{ consecutive_failures: 0 }}\n    health_check: {{ path: /health, interval: 50ms, healthy: 2, unhealthy: 3 }}\n",
            a.endpoint(),
            b.endpoint()
        ),
        ONE_ROUTE,
    ));
    eventually!(
        gauge(&proxy, "app", &a).await == 1.0 && gauge(&proxy, "app", &b).await == 1.0,
        "both endpoints pass their first checks"
    );

    b.set_path_status("/health", Some(500));
    let before = b.hits_on("/health");
    eventually!(
        status(&proxy, "app", &b).await == "unhealthy",
        "b fails its checks"
    );
    let failures = b.hits_on("/health") - before;
    assert!(failures >= 3, "out after {failures} failures, not 3");
    eventually!(
        gauge(&proxy, "app", &b).await == 0.0,
        "sluice_endpoint_healthy shows b out"
    );
    assert_eq!(gauge(&proxy, "app", &a).await, 1.0);

    let (a_before, b_before) = (a.hits_on("/"), b.hits_on("/"));
    send(&proxy, 40).await;
    assert_eq!(a.hits_on("/") - a_before, 40, "a takes all the traffic");
    assert_eq!(b.hits_on("/"), b_before, "b takes none");

    b.set_path_status("/health", None);
    let recovering = b.hits_on("/health");
    eventually!(
        status(&proxy, "app", &b).await == "healthy",
        "b passes again"
    );
    let passes = b.hits_on("/health") - recovering;
    assert!(passes >= 2, "back after {passes} passes, not 2");
    eventually!(
        gauge(&proxy, "app", &b).await == 1.0,
        "sluice_endpoint_healthy shows b back"
    );
    eventually!(
        {
            send(&proxy, 10).await;
            b.hits_on("/") > b_before
        },
        "b takes traffic again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_whose_every_endpoint_fails_its_checks_fails_over_from_the_start() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    // Failing before the proxy starts: a new endpoint is out of service until its first pass,
    // so not a single request reaches it.
    stable.set_path_status("/health", Some(503));
    let proxy = Proxy::start(&config(
        &format!(
            "  stable:\n    endpoints: [{}]\n    health_check: {{ path: /health, interval: 50ms }}\n  canary:\n    endpoints: [{}]\n",
            stable.endpoint(),
            canary.endpoint()
        ),
        "  - name: r\n    backends:\n      - { upstream: stable, weight: 50 }\n      - { upstream: canary, weight: 50 }\n",
    ));
    send(&proxy, 40).await;
    assert_eq!(stable.hits_on("/"), 0, "no request before or after a probe");
    assert_eq!(canary.hits_on("/"), 40);
    assert!(stable.hits_on("/health") >= 1, "probed");
    let failovers = proxy
        .metric(
            "sluice_backend_failovers_total",
            &[("route", "r"), ("backend", "stable")],
        )
        .await;
    assert!(
        failovers > 0.0 && failovers < 40.0,
        "the split's share of stable failed over: {failovers}"
    );
    assert_eq!(
        proxy
            .metric(
                "sluice_requests_total",
                &[("route", "r"), ("backend", "canary"), ("code", "200")]
            )
            .await,
        40.0
    );
    assert_eq!(gauge(&proxy, "stable", &stable).await, 0.0);
    assert_eq!(status(&proxy, "stable", &stable).await, "pending");
    assert_eq!(gauge(&proxy, "canary", &canary).await, 1.0);
    assert_eq!(status(&proxy, "canary", &canary).await, "unchecked");

    // One pass puts a new endpoint in service.
    stable.set_path_status("/health", None);
    eventually!(
        gauge(&proxy, "stable", &stable).await == 1.0,
        "stable passes its first check"
    );
    eventually!(
        {
            send(&proxy, 10).await;
            stable.hits_on("/") > 0
        },
        "stable takes traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_use_the_configured_path_and_a_reload_changes_it() {
    let app = Backend::spawn("app").await;
    let upstream = |path: &str| {
        format!(
            "  app:\n    endpoints: [{}]\n    health_check: {{ path: \"{path}\", interval: 50ms, unhealthy: 2 }}\n",
            app.endpoint()
        )
    };
    let proxy = Proxy::start(&config(&upstream("/healthz?deep=1"), ONE_ROUTE));
    eventually!(app.hits_on("/healthz") >= 2, "probes on /healthz");
    let headers = app
        .last_headers_on("/healthz")
        .expect("a probe was answered");
    assert_eq!(headers["user-agent"], "sluice-health-check");
    assert_eq!(
        headers["host"].to_str().ok(),
        Some(app.endpoint().as_str()),
        "no TLS server name: the endpoint's address is the host"
    );
    assert_eq!(app.hits_on("/"), 0, "probes go to the configured path only");
    eventually!(status(&proxy, "app", &app).await == "healthy", "app passes");

    // The new path fails: the verdict follows the new path.
    app.set_path_status("/ready", Some(500));
    proxy.write_config(&config(&upstream("/ready"), ONE_ROUTE));
    eventually!(
        status(&proxy, "app", &app).await == "unhealthy",
        "app fails its checks on /ready"
    );
    let old = app.hits_on("/healthz");
    let new = app.hits_on("/ready");
    eventually!(app.hits_on("/ready") >= new + 3, "probes go on on /ready");
    assert_eq!(app.hits_on("/healthz"), old, "no probe on the old path");
    eventually!(
        gauge(&proxy, "app", &app).await == 0.0,
        "sluice_endpoint_healthy shows app out"
    );
    let reply = client::get(&client::http1(), &proxy.url("/"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers["x-sluice-error"], "no_healthy_endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_what_the_checks_found_for_endpoints_that_stay() {
    let a = Backend::spawn("a").await;
    let b = Backend::spawn("b").await;
    let c = Backend::spawn("c").await;
    // `healthy: 1000`: once out, b stays out for the whole test unless a reload forgets it.
    let upstream = |endpoints: &[&Backend], connect_timeout: &str, interval: &str| {
        let list: Vec<String> = endpoints.iter().map(|e| e.endpoint()).collect();
        format!(
            "  app:\n    endpoints: [{}]\n    connect_timeout: {connect_timeout}\n    health_check: {{ path: /health, interval: {interval}, healthy: 1000, unhealthy: 1 }}\n",
            list.join(", ")
        )
    };
    let proxy = Proxy::start(&config(&upstream(&[&a, &b], "1s", "50ms"), ONE_ROUTE));
    // In service first (a failing first probe would leave it pending, not unhealthy).
    eventually!(
        status(&proxy, "app", &b).await == "healthy",
        "b passes its first check"
    );
    b.set_path_status("/health", Some(500));
    eventually!(
        status(&proxy, "app", &b).await == "unhealthy",
        "b fails its check"
    );
    b.set_path_status("/health", None);

    // A new endpoint, a new connect timeout (every endpoint is rebuilt), a new interval.
    proxy.write_config(&config(&upstream(&[&a, &b, &c], "2s", "40ms"), ONE_ROUTE));
    eventually!(
        status(&proxy, "app", &c).await == "healthy",
        "the new endpoint c passes its first check"
    );
    let probed = b.hits_on("/health");
    eventually!(b.hits_on("/health") >= probed + 3, "b is probed on");
    assert_eq!(status(&proxy, "app", &b).await, "unhealthy", "b stays out");
    assert_eq!(status(&proxy, "app", &a).await, "healthy", "a stays in");
    eventually!(
        gauge(&proxy, "app", &c).await == 1.0,
        "sluice_endpoint_healthy shows c in"
    );
    assert_eq!(gauge(&proxy, "app", &b).await, 0.0);
    let b_before = b.hits_on("/");
    send(&proxy, 30).await;
    assert_eq!(b.hits_on("/"), b_before, "b takes no traffic");
    assert!(a.hits_on("/") > 0 && c.hits_on("/") > 0, "a and c share it");

    // Removing the check puts every endpoint back in service.
    let plain = format!(
        "  app:\n    endpoints: [{}, {}, {}]\n",
        a.endpoint(),
        b.endpoint(),
        c.endpoint()
    );
    proxy.write_config(&config(&plain, ONE_ROUTE));
    eventually!(
        status(&proxy, "app", &b).await == "unchecked",
        "the check is gone"
    );
    eventually!(
        {
            send(&proxy, 10).await;
            b.hits_on("/") > b_before
        },
        "b takes traffic again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_speak_the_upstreams_protocol_and_tls_with_its_server_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let upstream_id = pki.issue("upstream", &["app.svc.local"]);
    pki.issue("proxy-client", &["proxy.svc.local"]);
    for (protocol, alpn, version) in [
        ("http2", "h2", http::Version::HTTP_2),
        ("http1", "http/1.1", http::Version::HTTP_11),
    ] {
        // mTLS: the backend requires the proxy's client certificate, probes included.
        let backend =
            Backend::spawn_with_tls("app", Some(pki.server_config(&upstream_id, &[alpn], true)))
                .await;
        std::fs::write(
            dir.path().join("sluice.yaml"),
            config(
                &format!(
                    "  app:\n    protocol: {protocol}\n    endpoints: [{}]\n    tls: {{ ca: ca.pem, server_name: app.svc.local, cert: proxy-client.pem, key: proxy-client.key }}\n    health_check: {{ path: /health, interval: 50ms }}\n",
                    backend.endpoint()
                ),
                ONE_ROUTE,
            ),
        )
        .expect("write config");
        let proxy = Proxy::start_in(dir.path(), &[]);
        eventually!(
            status(&proxy, "app", &backend).await == "healthy",
            "{protocol}: the probe passes over TLS"
        );
        assert_eq!(backend.last_version(), Some(version), "{protocol}");
        if protocol == "http1" {
            let headers = backend.last_headers_on("/health").expect("probed");
            assert_eq!(headers["host"], "app.svc.local", "the TLS server name");
        }
        let reply = client::get(&client::http1(), &proxy.url("/"), &[]).await;
        assert_eq!(reply.status, 200, "{protocol}: {}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_removed_by_a_reload_is_no_longer_probed() {
    let a = Backend::spawn("a").await;
    let b = Backend::spawn("b").await;
    let upstream = |endpoints: &[&Backend]| {
        let list: Vec<String> = endpoints.iter().map(|e| e.endpoint()).collect();
        format!(
            "  app:\n    endpoints: [{}]\n    health_check: {{ path: /health, interval: 50ms }}\n",
            list.join(", ")
        )
    };
    let proxy = Proxy::start(&config(&upstream(&[&a, &b]), ONE_ROUTE));
    eventually!(b.hits_on("/health") >= 2, "b is probed");
    proxy.write_config(&config(&upstream(&[&a]), ONE_ROUTE));
    eventually!(
        status(&proxy, "app", &b).await == "absent",
        "b is gone from the config in force"
    );
    // One probe may have been under way at the reload.
    let after_reload = b.hits_on("/health");
    let a_now = a.hits_on("/health");
    eventually!(a.hits_on("/health") >= a_now + 5, "a is probed on");
    assert!(
        b.hits_on("/health") <= after_reload + 1,
        "b was probed {} times after its removal",
        b.hits_on("/health") - after_reload
    );
}
