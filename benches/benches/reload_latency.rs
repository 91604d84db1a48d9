//! Reload-to-applied latency: how long after a weights file is renamed into place the proxy
//! routes by it. 100 reloads alternating 100/0 and 0/100; prints p50/p99/max.
//!
//! Run: `cargo bench -p sluice-benches --bench reload_latency` (uses the release proxy).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use sluice_tests::{client, config, Backend, Proxy};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(measure());
}

async fn measure() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    let probe = client::http1();
    let mut latencies = Vec::new();
    for i in 0..100 {
        let (text, want) = if i % 2 == 0 {
            (
                "routes:\n  default: { stable: 0, canary: 100 }\n",
                "canary\n",
            )
        } else {
            (
                "routes:\n  default: { stable: 100, canary: 0 }\n",
                "stable\n",
            )
        };
        let temp = proxy.dir().join(".weights.tmp");
        std::fs::write(&temp, text).unwrap_or_else(|e| panic!("write: {e}"));
        let written = Instant::now();
        std::fs::rename(&temp, proxy.dir().join("weights.yaml"))
            .unwrap_or_else(|e| panic!("rename: {e}"));
        loop {
            if client::get(&probe, &proxy.url("/"), &[]).await.text() == want {
                latencies.push(written.elapsed());
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(5),
                "reload {i} not applied within 5s"
            );
        }
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "reload-to-applied over {} reloads (rename into place, inotify, 30 ms debounce): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}
