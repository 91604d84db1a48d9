//! The weighted split: proportions, header routing, zero weights, stickiness.
// Tests print what they measure (split error, reuse count, memory) for the record.
#![allow(clippy::print_stdout)]

use sluice_tests::{client, config, eventually, Backend, Proxy};

/// Sends `n` GETs over `concurrency` keep-alive connections (each answer must be a 200).
async fn load(
    proxy: &Proxy,
    n: usize,
    concurrency: usize,
    headers: &'static [(&'static str, &'static str)],
) {
    client::bodies(&proxy.url("/"), headers, n, concurrency).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_ten_split_lands_within_two_points_over_10000_requests() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "90", "10"));
    load(&proxy, 10_000, 16, &[]).await;
    let total = (stable.hits() + canary.hits()) as f64;
    let canary_share = canary.hits() as f64 / total * 100.0;
    println!("90/10 split over {total} requests: canary {canary_share:.2}%");
    assert_eq!(total, 10_000.0);
    assert!(
        (8.0..=12.0).contains(&canary_share),
        "canary got {canary_share:.2}%"
    );
    let counted = proxy
        .metric(
            "sluice_requests_total",
            &[("route", "default"), ("code", "200")],
        )
        .await;
    assert_eq!(counted, 10_000.0);
    let canary_counted = proxy
        .metric(
            "sluice_requests_total",
            &[("route", "default"), ("backend", "canary")],
        )
        .await;
    assert_eq!(canary_counted, canary.hits() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_header_always_reaches_the_canary() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    load(&proxy, 500, 4, &[("canary", "true")]).await;
    assert_eq!(canary.hits(), 500);
    assert_eq!(stable.hits(), 0);
    let routed = proxy
        .metric(
            "sluice_requests_total",
            &[("route", "testers"), ("backend", "canary")],
        )
        .await;
    assert_eq!(routed, 500.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_weight_side_is_never_touched() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    load(&proxy, 2_000, 8, &[]).await;
    assert_eq!((stable.hits(), canary.hits()), (2_000, 0));

    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "0", "100"));
    load(&proxy, 2_000, 8, &[]).await;
    assert_eq!((stable.hits(), canary.hits()), (0, 2_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimal_weights_split_accordingly() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "99.5", "0.5"));
    load(&proxy, 10_000, 16, &[]).await;
    let share = canary.hits() as f64 / 100.0;
    assert!((0.2..=0.9).contains(&share), "canary got {share}%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_stay_on_one_backend_and_keep_it_while_the_canary_grows() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let sticky = config::split(&stable, &canary, "50", "50").replace(
        "    timeout: 5s\n",
        "    timeout: 5s\n    sticky:\n      header: x-user-id\n",
    );
    let proxy = Proxy::start(&sticky);
    let client = client::http1();
    let mut on_canary = Vec::new();
    for user in 0..200 {
        let id = format!("user-{user}");
        let first = client::get(&client, &proxy.url("/"), &[("x-user-id", &id)])
            .await
            .text();
        for _ in 0..4 {
            let again = client::get(&client, &proxy.url("/"), &[("x-user-id", &id)])
                .await
                .text();
            assert_eq!(again, first, "{id} moved");
        }
        if first == "canary\n" {
            on_canary.push(id);
        }
    }
    assert!(
        (60..=140).contains(&on_canary.len()),
        "{} of 200 users on canary",
        on_canary.len()
    );
    // The canary grows: nobody already on it goes back.
    std::fs::write(
        proxy.dir().join("weights.yaml"),
        "routes:\n  default: { stable: 25, canary: 75 }\n",
    )
    .expect("write weights");
    eventually!(
        proxy.weight("default", "canary").await == 75.0,
        "weights applied"
    );
    for id in &on_canary {
        let now = client::get(&client, &proxy.url("/"), &[("x-user-id", id)])
            .await
            .text();
        assert_eq!(now, "canary\n", "{id} left the canary");
    }
}
