//! Where an interval's numbers come from: scraping the proxies' `/metrics` and summing, or
//! querying a Prometheus that scrapes them. Behind a small trait so tests can feed numbers.

use std::future::Future;
use std::pin::Pin;

use crate::window::{Measurement, Subject};

mod prometheus;
mod scrape;

pub use prometheus::{now_seconds, PromQl, PrometheusSource};
pub use scrape::ScrapeSource;

/// A boxed, sendable future (the trait is object-safe so rollouts can mix sources).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Measures one rollout's canary and stable backends, one interval at a time.
pub trait MetricSource: Send + std::fmt::Debug {
    /// Starts a new interval now (after a weight change, so the next measurement sees only
    /// traffic at the new weight).
    fn begin(&mut self) -> BoxFuture<'_, ()>;

    /// Measures from the start of the interval until now — the canary as `canary` (the
    /// traffic its route's split gave it, or in a shadow step the copies the route mirrored to
    /// it) and the stable backend — and starts the next interval.
    fn finish(&mut self, canary: Subject) -> BoxFuture<'_, Result<Measurement, MeasureError>>;

    /// What the proxies report of `backend`'s endpoints (`sluice_endpoint_healthy`): the gate
    /// of a blue/green switch.
    fn health<'a>(&'a mut self, backend: &'a str) -> BoxFuture<'a, Result<Health, MeasureError>>;
}

/// The endpoints of one backend as the proxies see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// `(proxy, endpoint)` pairs reported healthy.
    pub healthy: usize,
    /// `proxy endpoint` of each one reported unhealthy.
    pub unhealthy: Vec<String>,
}

impl Health {
    /// Healthy when at least one endpoint is reported and none is unhealthy.
    pub fn all_healthy(&self) -> bool {
        self.healthy > 0 && self.unhealthy.is_empty()
    }

    /// `3 of 3 endpoint reports healthy`, or which are not.
    pub fn describe(&self) -> String {
        let total = self.healthy + self.unhealthy.len();
        if total == 0 {
            return "no proxy reports any endpoint of it".into();
        }
        if self.unhealthy.is_empty() {
            format!("{total} of {total} endpoint reports healthy")
        } else {
            format!(
                "{} of {total} endpoint reports unhealthy: {}",
                self.unhealthy.len(),
                self.unhealthy.join(", ")
            )
        }
    }
}

/// Why an interval could not be measured. The check is then inconclusive, never a pass.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A proxy could not be scraped.
    #[error("target {target} could not be scraped: {reason}")]
    Unreachable {
        /// The proxy admin address.
        target: String,
        /// Why.
        reason: String,
    },
    /// A proxy's `/metrics` is not valid exposition text.
    #[error("target {target} served unreadable metrics: {reason}")]
    Unreadable {
        /// The proxy admin address.
        target: String,
        /// The parse error.
        reason: String,
    },
    /// A target has no sample from the start of the interval (it was down then).
    #[error("target {target} has no sample from the start of the interval")]
    NoBaseline {
        /// The proxy admin address.
        target: String,
    },
    /// A Prometheus query failed.
    #[error("prometheus query failed: {0}")]
    Query(String),
}
