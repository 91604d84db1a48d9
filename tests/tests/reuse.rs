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
