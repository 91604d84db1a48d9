//! The demo's steady load: a fixed request rate spread over a few keep-alive connections,
//! counting which backend answered and what failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::http::HttpClient;

/// What the load saw so far.
#[derive(Debug, Default)]
pub(super) struct LoadStats {
    /// Answers from the stable upstream.
    pub(super) stable: AtomicU64,
    /// Answers from the canary upstream.
    pub(super) canary: AtomicU64,
    /// Non-2xx answers and transport errors.
    pub(super) errors: AtomicU64,
}

/// Sends `rate` requests per second to `url` until the task is aborted (its workers live in a
/// `JoinSet`, so they stop with it).
pub(super) fn spawn(url: String, rate: u32, stats: Arc<LoadStats>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        const WORKERS: u32 = 8;
        let per_worker = Duration::from_secs_f64(f64::from(WORKERS) / f64::from(rate.max(1)));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..WORKERS {
            let (url, stats) = (url.clone(), stats.clone());
            workers.spawn(async move {
                let client = HttpClient::default();
                let mut tick = tokio::time::interval(per_worker);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match client.get(&url, Duration::from_secs(5)).await {
                        Ok((status, body)) if status.is_success() => {
                            if body.ends_with(b"canary\n") {
                                stats.canary.fetch_add(1, Ordering::Relaxed);
                            } else {
                                stats.stable.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        while workers.join_next().await.is_some() {}
    })
}
