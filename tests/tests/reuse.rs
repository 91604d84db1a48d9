//! Upstream connections are pooled and reused.
// Tests print what they measure (split error, reuse count, memory) for the record.
#![allow(clippy::print_stdout)]

use sluice_tests::{client, config, Backend, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_requests_reuse_a_handful_of_upstream_connections() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "90", "10"));
    let client = client::http1();
    for _ in 0..1000 {
        assert_eq!(client::get(&client, &proxy.url("/"), &[]).await.status, 200);
    }
    let upstream_connections = stable.connections() + canary.connections();
    println!("1000 sequential requests opened {upstream_connections} upstream connections");
    assert_eq!(stable.hits() + canary.hits(), 1000);
    assert!(
        upstream_connections <= 4,
        "opened {upstream_connections} upstream connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_share_the_pool() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = std::sync::Arc::new(Proxy::start(&config::split(&stable, &canary, "50", "50")));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            let client = client::http1();
            for _ in 0..250 {
                assert_eq!(client::get(&client, &proxy.url("/"), &[]).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let opened = stable.connections() + canary.connections();
    assert!(
        opened <= 24,
        "8 concurrent clients opened {opened} upstream connections"
    );
}

/// An upstream that closes each keep-alive connection after one answer, without saying so
/// (its keep-alive timeout ran out): the proxy notices the close before it writes the next
/// request there, and sends it on a new connection. No request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_is_not_used() {
    let upstream = sluice_tests::raw::RawUpstream::spawn_with(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        1,
    )
    .await;
    let proxy = Proxy::start(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n\
         upstreams:\n  app:\n    endpoints: [{}]\n\
         routes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        upstream.endpoint()
    ));
    let client = client::http1();
    for round in 1..=20u64 {
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        assert_eq!(reply.status, 200, "request {round}: {}", reply.text());
        // The upstream has closed the connection that answered before the next request.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while upstream.closed() < round {
            assert!(
                std::time::Instant::now() < deadline,
                "upstream never closed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    assert_eq!(upstream.connections(), 20);
    let resets = proxy
        .metric("sluice_upstream_errors_total", &[("upstream", "app")])
        .await;
    println!("20 requests, each on a connection closed after it: upstream errors counted {resets}");
    assert_eq!(resets, 0.0);
}
