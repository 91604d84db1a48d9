//! Mirroring: copies go to the mirror upstream with their bodies up to the bound, the real
//! path is unaffected by a slow or dead mirror, and a `shadow` step judges the copies before
//! any user reaches the canary.

// Tests print what they measure (the mirror's effect on real-path latency) for the record.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use sluice_tests::rig::rollout;
use sluice_tests::{client, eventually, Backend, Behavior, Control, Load, Proxy, Rig};

const MIRROR_HEADER: &str = "x-sluice-mirror";

/// The latency test takes it alone (`write`), the other tests of this file shared (`read`):
/// their load would otherwise be measured as the mirror's effect.
static QUIET: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// One listener and admin on port 0, the `upstreams` given (YAML, indented 2) and `routes`.
fn config(upstreams: &str, routes: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n{upstreams}routes:\n{routes}"
    )
}

/// An upstream `name` at `endpoint`, without outlier detection (so a dead mirror is still
/// tried, and every copy counted with its failure).
fn upstream(name: &str, endpoint: &str) -> String {
    format!(
        "  {name}:\n    endpoints: [{endpoint}]\n    outlier_detection: {{ consecutive_failures: 0 }}\n"
    )
}

/// The mirror metric `name` of route `route` (mirror upstream `upstream`) with `labels`.
async fn mirror_metric(
    proxy: &Proxy,
    name: &str,
    route: &str,
    upstream: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let mut all = vec![("route", route), ("upstream", upstream)];
    all.extend_from_slice(labels);
    proxy.metric(name, &all).await
}

/// Latencies of the real path, and what failed.
#[derive(Debug, Default)]
struct Latencies {
    all: Vec<Duration>,
    failures: Vec<String>,
}

impl Latencies {
    /// The `p`-quantile (`0 < p <= 1`), nearest rank.
    fn quantile(&self, p: f64) -> Duration {
        let mut sorted = self.all.clone();
        sorted.sort();
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }
}

/// Sends `n` GETs of `url` over `concurrency` keep-alive connections, timing each.
async fn time_requests(url: &str, n: usize, concurrency: usize, into: &mut Latencies) {
    let url = Arc::new(url.to_string());
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let url = url.clone();
        let share = n / concurrency + usize::from(worker < n % concurrency);
        tasks.push(tokio::spawn(async move {
            let client = client::http1();
            let mut seen = Latencies::default();
            for _ in 0..share {
                let req = Request::get(url.as_str())
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let sent = Instant::now();
                match client.request(req).await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.into_body().collect().await;
                        seen.all.push(sent.elapsed());
                        if status != 200 || body.is_err() {
                            seen.failures
                                .push(format!("status {status}, body {body:?}"));
                        }
                    }
                    Err(e) => seen.failures.push(format!("transport: {e:?}")),
                }
            }
            seen
        }));
    }
    for task in tasks {
        let seen = task.await.expect("client task");
        into.all.extend(seen.all);
        into.failures.extend(seen.failures);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_path_is_unaffected_by_a_slow_or_dead_mirror() {
    let _alone = QUIET.write().await;
    let real = Backend::spawn("real").await;
    let slow = Backend::spawn("slow").await;
    slow.set_behavior(Behavior::Slow(Duration::from_secs(2)));
    // Nothing listens there: every copy's connection is refused.
    let dead = format!("127.0.0.1:{}", sluice_tests::free_port());
    let upstreams = [
        upstream("real", &real.endpoint()),
        upstream("slow", &slow.endpoint()),
        upstream("down", &dead),
    ]
    .concat();
    // The same upstream behind three routes: no mirror, a mirror answering after 2 s (a copy
    // gives up at the route's 1.5 s timeout), a mirror that refuses connections.
    let route = |name: &str, mirror: &str| {
        format!(
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    timeout: 1500ms\n{mirror}    backends: [{{ upstream: real, weight: 1 }}]\n"
        )
    };
    let routes = [
        route("none", ""),
        route("slow", "    mirror: { upstream: slow }\n"),
        route("down", "    mirror: { upstream: down }\n"),
    ]
    .concat();
    let proxy = Proxy::start(&config(&upstreams, &routes));

    // Warm up every path (connections, pools), then measure in interleaved rounds so a noisy
    // neighbour on the machine weighs on all three alike.
    let concurrency = 16;
    // Every copy of a route's requests is either dropped at once or counted when it ends:
    // waiting for all to be counted keeps one phase's copies out of the next phase.
    let settled = |route: &'static str, sent: f64| {
        let proxy = &proxy;
        async move {
            let counted = proxy
                .metric("sluice_mirror_requests_total", &[("route", route)])
                .await
                + proxy
                    .metric("sluice_mirror_dropped_total", &[("route", route)])
                    .await;
            counted == sent
        }
    };
    let mut sent = 0.0;
    let mut measured: [Latencies; 3] = Default::default();
    for round in 0..4 {
        // Round 0 warms up every path (connections, pools) and is not measured. The rounds
        // interleave so that a noisy neighbour on the machine weighs on all three alike.
        let n = if round == 0 { 200 } else { 1500 };
        let mut warm_up = Latencies::default();
        for (i, name) in ["none", "slow", "down"].iter().enumerate() {
            let into = if round == 0 {
                &mut warm_up
            } else {
                &mut measured[i]
            };
            time_requests(&proxy.url(&format!("/{name}")), n, concurrency, into).await;
        }
        sent += n as f64;
        eventually!(
            settled("slow", sent).await && settled("down", sent).await,
            "every copy of round {round} sent or dropped"
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let [none, slow_mirror, down_mirror] = &measured;
    println!(
        "mirror effect on real-path p50: none {:.2} ms, slow {:.2} ms, down {:.2} ms",
        ms(none.quantile(0.5)),
        ms(slow_mirror.quantile(0.5)),
        ms(down_mirror.quantile(0.5))
    );
    println!(
        "mirror effect on real-path p99: none {:.2} ms, slow {:.2} ms, down {:.2} ms ({} requests each, {concurrency} connections)",
        ms(none.quantile(0.99)),
        ms(slow_mirror.quantile(0.99)),
        ms(down_mirror.quantile(0.99)),
        none.all.len()
    );
    println!(
        "mirror effect on real-path max: none {:.2} ms, slow {:.2} ms, down {:.2} ms",
        ms(none.quantile(1.0)),
        ms(slow_mirror.quantile(1.0)),
        ms(down_mirror.quantile(1.0))
    );
    for (name, latencies) in ["none", "slow", "down"].iter().zip(&measured) {
        assert!(
            latencies.failures.is_empty(),
            "{} real requests failed on /{name}: {:?}",
            latencies.failures.len(),
            &latencies.failures[..latencies.failures.len().min(5)]
        );
        assert_eq!(latencies.all.len(), 4500, "/{name}");
    }
    // Generous for a shared CI machine (a neighbour's build can add 100 ms to any p99): the
    // point is that nobody waits for the mirror's 2 s or its 1.5 s timeout, not a tight
    // comparison; the printed figures are the measurement.
    let bound = none.quantile(0.99) * 3 + Duration::from_millis(200);
    let median_bound = none.quantile(0.5) * 2 + Duration::from_millis(20);
    for (name, latencies) in [("slow", slow_mirror), ("down", down_mirror)] {
        let p99 = latencies.quantile(0.99);
        assert!(
            p99 <= bound,
            "p99 with a {name} mirror {p99:?} > {bound:?} (no mirror: {:?})",
            none.quantile(0.99)
        );
        let p50 = latencies.quantile(0.5);
        assert!(
            p50 <= median_bound,
            "p50 with a {name} mirror {p50:?} > {median_bound:?} (no mirror: {:?})",
            none.quantile(0.5)
        );
    }
    assert_eq!(real.hits_with_header(MIRROR_HEADER), 0);

    // The slow mirror was saturated: at most 128 copies wait on it, the rest are dropped.
    let overloaded = mirror_metric(
        &proxy,
        "sluice_mirror_dropped_total",
        "slow",
        "slow",
        &[("reason", "overloaded")],
    )
    .await;
    assert!(overloaded > 0.0, "no copy dropped as overloaded");
    // Copies that reached the slow mirror time out (504); those to the dead one fail (502).
    eventually!(
        mirror_metric(
            &proxy,
            "sluice_mirror_requests_total",
            "slow",
            "slow",
            &[("code", "504")]
        )
        .await
            > 0.0,
        "timed-out copies counted as 504"
    );
    let down_502 = mirror_metric(
        &proxy,
        "sluice_mirror_requests_total",
        "down",
        "down",
        &[("code", "502")],
    )
    .await;
    assert!(down_502 > 0.0, "refused copies counted as 502");
    let slow_copies = slow.hits();
    assert!(slow_copies > 0);
    assert_eq!(slow.hits_with_header(MIRROR_HEADER), slow_copies);
    println!(
        "slow mirror: {slow_copies} copies received, {overloaded} dropped as overloaded; dead mirror: {down_502} copies counted 502"
    );
    // The route without a mirror records no mirror metrics at all.
    assert_eq!(
        proxy
            .metric("sluice_mirror_requests_total", &[("route", "none")])
            .await,
        0.0
    );
}

/// A body of `len` bytes, different for each `seed`.
fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed.wrapping_mul(37)))
        .collect()
}

/// POSTs `data` to `url` with a `Content-Length`, or chunked in 7000-byte chunks.
async fn upload(url: &str, data: Vec<u8>, chunked: bool) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let body = if chunked {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(2);
        tokio::spawn(async move {
            for chunk in data.chunks(7000) {
                if tx
                    .send(Ok(Frame::data(Bytes::copy_from_slice(chunk))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        sluice_tests::backend::channel_body(rx).boxed()
    } else {
        Full::new(Bytes::from(data)).boxed()
    };
    let response = client
        .request(Request::post(url).body(body).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let text = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_carry_bodies_up_to_64_kib_intact_and_larger_ones_are_not_mirrored() {
    let _shared = QUIET.read().await;
    let real = Backend::spawn("real").await;
    let mirror = Backend::spawn("mirror").await;
    let upstreams = [
        upstream("real", &real.endpoint()),
        upstream("mirror", &mirror.endpoint()),
    ]
    .concat();
    let proxy = Proxy::start(&config(
        &upstreams,
        "  - name: default\n    mirror: { upstream: mirror }\n    backends: [{ upstream: real, weight: 1 }]\n",
    ));
    // (length, chunked): up to and including the bound, both framings.
    let mirrored = [
        (1024, false),
        (1024, true),
        (60 * 1024, false),
        (60 * 1024, true),
        (64 * 1024, false),
        (64 * 1024, true),
    ];
    let too_large = [
        (64 * 1024 + 1, false),
        (64 * 1024 + 1, true),
        (1024 * 1024, true),
    ];
    let mut sent = Vec::new();
    for (seed, &(len, chunked)) in mirrored.iter().chain(&too_large).enumerate() {
        let data = body(len, seed as u8);
        let want = format!("{len} {:016x}\n", xxhash_rust::xxh3::xxh3_64(&data));
        // The real request gets its whole body, mirrored or not.
        let answer = upload(&proxy.url("/upload"), data.clone(), chunked).await;
        assert_eq!(answer, want, "{len} bytes, chunked {chunked}");
        sent.push(data);
    }
    eventually!(
        mirror.uploads().len() == mirrored.len()
            && mirror_metric(
                &proxy,
                "sluice_mirror_dropped_total",
                "default",
                "mirror",
                &[("reason", "body_too_large")]
            )
            .await
                == too_large.len() as f64,
        "{} copies received ({} expected), drops counted",
        mirror.uploads().len(),
        mirrored.len()
    );
    let real_uploads = real.uploads();
    assert_eq!(real_uploads.len(), mirrored.len() + too_large.len());
    let header = |headers: &http::HeaderMap, name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    for copy in mirror.uploads() {
        assert_eq!(header(&copy.headers, MIRROR_HEADER).as_deref(), Some("1"));
        let id = header(&copy.headers, "x-request-id").expect("a request id on the copy");
        // The real request it copies: the one with the same request id.
        let original = real_uploads
            .iter()
            .find(|u| header(&u.headers, "x-request-id").as_deref() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no real request with x-request-id {id}"));
        assert!(
            copy.body == original.body,
            "copy of {} bytes differs from the real body of {} bytes",
            copy.body.len(),
            original.body.len()
        );
        assert!(
            sent.iter()
                .take(mirrored.len())
                .any(|s| s[..] == copy.body[..]),
            "a copy of {} bytes that was not sent",
            copy.body.len()
        );
        assert!(copy.body.len() <= 64 * 1024);
    }
    let mut lengths: Vec<usize> = mirror.uploads().iter().map(|u| u.body.len()).collect();
    lengths.sort_unstable();
    let mut want: Vec<usize> = mirrored.iter().map(|(len, _)| *len).collect();
    want.sort_unstable();
    assert_eq!(lengths, want);
    assert_eq!(real.hits_with_header(MIRROR_HEADER), 0);
    assert_eq!(
        mirror_metric(
            &proxy,
            "sluice_mirror_requests_total",
            "default",
            "mirror",
            &[("code", "200")]
        )
        .await,
        mirrored.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_50_mirrors_about_half_the_requests() {
    let _shared = QUIET.read().await;
    let real = Backend::spawn("real").await;
    let mirror = Backend::spawn("mirror").await;
    let upstreams = [
        upstream("real", &real.endpoint()),
        upstream("mirror", &mirror.endpoint()),
    ]
    .concat();
    let proxy = Proxy::start(&config(
        &upstreams,
        "  - name: default\n    mirror: { upstream: mirror, percent: 50 }\n    backends: [{ upstream: real, weight: 1 }]\n",
    ));
    let n = 4000;
    client::bodies(&proxy.url("/"), &[], n, 8).await;
    let counted = || async {
        mirror_metric(
            &proxy,
            "sluice_mirror_requests_total",
            "default",
            "mirror",
            &[],
        )
        .await
    };
    // Copies are sent in the background: wait until those received are all counted.
    eventually!(
        mirror.hits() > 0 && counted().await == mirror.hits() as f64,
        "copies answered and counted"
    );
    let share = mirror.hits() as f64 / n as f64 * 100.0;
    println!(
        "percent 50: {} of {n} requests mirrored ({share:.1}%)",
        mirror.hits()
    );
    assert!((45.0..=55.0).contains(&share), "{share:.1}% mirrored");
    assert_eq!(real.hits(), n as u64);
    assert_eq!(mirror.hits_with_header(MIRROR_HEADER), mirror.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_already_going_to_the_mirror_upstream_are_not_copied() {
    let _shared = QUIET.read().await;
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let upstreams = [
        upstream("stable", &stable.endpoint()),
        upstream("canary", &canary.endpoint()),
    ]
    .concat();
    let proxy = Proxy::start(&config(
        &upstreams,
        "  - name: default\n    mirror: { upstream: canary }\n    backends:\n      - { upstream: stable, weight: 50 }\n      - { upstream: canary, weight: 50 }\n",
    ));
    let n = 2000;
    client::bodies(&proxy.url("/"), &[], n, 8).await;
    let copies = || canary.hits_with_header(MIRROR_HEADER);
    // Every request stable served was copied to the canary; none the canary served itself.
    eventually!(
        copies() == stable.hits(),
        "{} copies for {} stable requests",
        copies(),
        stable.hits()
    );
    let canary_users = user_requests(&canary);
    assert_eq!(stable.hits() + canary_users, n as u64);
    assert!(canary_users > 0 && stable.hits() > 0);
    assert_eq!(
        mirror_metric(
            &proxy,
            "sluice_mirror_requests_total",
            "default",
            "canary",
            &[]
        )
        .await,
        stable.hits() as f64
    );
}

const SHADOW_ANALYSIS: &str =
    "      min_requests: 10\n      max_error_rate: 0.01\n      max_p95: 1s\n      failure_limit: 2\n";

/// A one-proxy rig whose route mirrors every request to the canary, with `rollouts` loaded,
/// a control, and load on the proxy.
async fn shadow_rig(rollouts: &str) -> (Rig, Control) {
    let rig = Rig::new(1).await;
    rig.write_config(rollouts, "v2");
    rig.edit_config(|text| {
        text.replacen(
            "    timeout: 5s\n",
            "    timeout: 5s\n    mirror: { upstream: canary }\n",
            1,
        )
    });
    rig.wait_for_rollouts().await;
    let control = Control::start(rig.dir());
    (rig, control)
}

/// Requests the canary served to users (copies carry `x-sluice-mirror`). Both counts are read
/// in one step: two reads let a copy arriving between them count as a user (or, the other way
/// round, make the difference negative).
fn user_requests(canary: &Backend) -> u64 {
    canary.hits_without_header(MIRROR_HEADER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_from_the_shadow_step_without_serving_a_user() {
    let _shared = QUIET.read().await;
    let (rig, control) = shadow_rig(&rollout("[shadow, 50, 100]", "1s", SHADOW_ANALYSIS)).await;
    rig.canary.set_behavior(Behavior::Status(500));
    let load = Load::start(&rig.proxies[0].url("/"), 3);
    let (code, answer) = control.command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    let started = Instant::now();
    let mut weights_seen = Vec::new();
    while control.phase("myapp").await != "rolled_back" {
        weights_seen.push(rig.proxies[0].weight("default", "canary").await);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not rolled back within 30s: {:?}",
            control.rollout("myapp").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let report = load.stop().await;
    let message = control.last_message("myapp").await;
    let copies = rig.canary.hits_with_header(MIRROR_HEADER);
    println!(
        "failing canary rolled back from the shadow step {took:?} after start: {copies} copies judged, {} user requests to the canary: {message}",
        user_requests(&rig.canary)
    );
    assert_eq!(user_requests(&rig.canary), 0, "a user reached the canary");
    assert!(copies > 0, "no copy reached the canary");
    assert!(
        weights_seen.iter().all(|w| *w == 0.0),
        "the proxy gave the canary users: {weights_seen:?}"
    );
    assert_eq!(rig.canary_weights().await, [0.0]);
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    // counted just after the status shows the rollback
    eventually!(
        control.checks("myapp", "fail").await == 2.0,
        "both failed checks counted"
    );
    assert_eq!(control.checks("myapp", "pass").await, 0.0);
    assert!(
        message.contains("shadow") && message.contains("rolled back"),
        "{message}"
    );
    assert!(
        rig.proxies[0]
            .metric(
                "sluice_mirror_requests_total",
                &[
                    ("route", "default"),
                    ("upstream", "canary"),
                    ("code", "500")
                ]
            )
            .await
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_passes_the_shadow_step_then_gets_its_first_weight() {
    let _shared = QUIET.read().await;
    let (rig, control) = shadow_rig(&rollout("[shadow, 50, 100]", "1s", SHADOW_ANALYSIS)).await;
    let load = Load::start(&rig.proxies[0].url("/"), 3);
    let (code, answer) = control.command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(
        rig.canary.hits_with_header(MIRROR_HEADER) > 0,
        "copies reach the canary"
    );
    // While the control judges the shadow, users stay off the canary. The count is read
    // before the weight: when the weight still reads 0, every request counted came before 50.
    let mut users_before_50 = 0;
    eventually!(
        {
            let users = user_requests(&rig.canary);
            let weight = rig.proxies[0].weight("default", "canary").await;
            if weight == 0.0 {
                users_before_50 = users;
            }
            weight == 50.0
        },
        "the first weight after the shadow step"
    );
    assert_eq!(
        users_before_50, 0,
        "users reached the canary in the shadow step"
    );
    // The control writes the weights before it records the decision that moved them (a failed
    // write changes nothing), so the record can trail the weight the proxy already applies.
    const PASSED: &str = "shadow check passed";
    eventually!(
        control
            .rollout("myapp")
            .await
            .history
            .iter()
            .any(|d| d.message.starts_with(PASSED)),
        "the passed shadow check in the rollout's history"
    );
    let history = control.rollout("myapp").await.history;
    let passed = history
        .iter()
        .find(|d| d.message.starts_with(PASSED))
        .unwrap_or_else(|| panic!("no passed shadow check in {history:?}"));
    println!("shadow step passed: {}", passed.message);
    // counted just after the status shows it
    eventually!(
        control.checks("myapp", "pass").await >= 1.0,
        "the passed check counted"
    );
    eventually!(
        user_requests(&rig.canary) > 0,
        "users reach the canary at 50%"
    );
    eventually!(
        control.phase("myapp").await == "succeeded",
        "the rollout goes on to the end"
    );
    let report = load.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
}
