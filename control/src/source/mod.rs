//! Where an interval's numbers come from: scraping the proxies' `/metrics` and summing, or
//! querying a Prometheus that scrapes them. Behind a small trait so tests can feed numbers.

use std::future::Future;
use std::pin::Pin;

use crate::window::Measurement;

mod prometheus;
mod scrape;

pub use prometheus::PrometheusSource;
pub use scrape::ScrapeSource;

/// A boxed, sendable future (the trait is object-safe so rollouts can mix sources).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Measures one rollout's canary and stable backends, one interval at a time.
pub trait MetricSource: Send + std::fmt::Debug {
    /// Starts a new interval now (after a weight change, so the next measurement sees only
    /// traffic at the new weight).
    fn begin(&mut self) -> BoxFuture<'_, ()>;

    /// Measures from the start of the interval until now, and starts the next interval.
    fn finish(&mut self) -> BoxFuture<'_, Result<Measurement, MeasureError>>;
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
