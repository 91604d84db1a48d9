//! The `scrape` source: fetch `/metrics` from every proxy, take per-series increases since the
//! previous scrape (restarts handled), and sum the fleet.

use std::collections::HashMap;
use std::time::Duration;

use sluice_config::{Address, Rollout};

use super::{BoxFuture, MeasureError, MetricSource};
use crate::exposition;
use crate::http::HttpClient;
use crate::window::{accumulate, extract, increase, BackendWindow, Measurement, SeriesMap};

/// Scrapes a fixed list of proxy admin addresses.
#[derive(Debug)]
pub struct ScrapeSource {
    client: HttpClient,
    targets: Vec<Address>,
    route: String,
    stable: String,
    canary: String,
    timeout: Duration,
    /// The last good scrape of each target: `(stable, canary)` series.
    baselines: HashMap<Address, (SeriesMap, SeriesMap)>,
}

impl ScrapeSource {
    /// A source for `rollout` scraping `targets`; each scrape may take up to `timeout`.
    pub fn new(rollout: &Rollout, targets: Vec<Address>, timeout: Duration) -> Self {
        Self {
            client: HttpClient::default(),
            targets,
            route: rollout.route.clone(),
            stable: rollout.stable.clone(),
            canary: rollout.canary.clone(),
            timeout,
            baselines: HashMap::new(),
        }
    }

    /// Scrapes every target concurrently.
    async fn scrape_all(&self) -> Vec<(Address, Result<(SeriesMap, SeriesMap), MeasureError>)> {
        let scrapes = self.targets.iter().map(|target| async move {
            let url = format!("http://{target}/metrics");
            let result = match self.client.get(&url, self.timeout).await {
                Err(e) => Err(MeasureError::Unreachable {
                    target: target.to_string(),
                    reason: e.to_string(),
                }),
                Ok((status, _)) if !status.is_success() => Err(MeasureError::Unreachable {
                    target: target.to_string(),
                    reason: format!("HTTP {status}"),
                }),
                Ok((_, body)) => match exposition::parse(&String::from_utf8_lossy(&body)) {
                    Ok(samples) => Ok((
                        extract(&samples, &self.route, &self.stable),
                        extract(&samples, &self.route, &self.canary),
                    )),
                    Err(e) => Err(MeasureError::Unreadable {
                        target: target.to_string(),
                        reason: e.to_string(),
                    }),
                },
            };
            (target.clone(), result)
        });
        futures_util::future::join_all(scrapes).await
    }
}

impl MetricSource for ScrapeSource {
    fn begin(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let scrapes = self.scrape_all().await;
            self.baselines.clear();
            for (target, result) in scrapes {
                if let Ok(series) = result {
                    self.baselines.insert(target, series);
                }
            }
        })
    }

    fn finish(&mut self) -> BoxFuture<'_, Result<Measurement, MeasureError>> {
        Box::pin(async move {
            let scrapes = self.scrape_all().await;
            let mut stable = SeriesMap::new();
            let mut canary = SeriesMap::new();
            let mut first_error = None;
            let previous = std::mem::take(&mut self.baselines);
            for (target, result) in scrapes {
                match (result, previous.get(&target)) {
                    (Ok(now), Some(before)) => {
                        accumulate(&mut stable, &increase(&before.0, &now.0));
                        accumulate(&mut canary, &increase(&before.1, &now.1));
                        self.baselines.insert(target, now);
                    }
                    (Ok(now), None) => {
                        first_error.get_or_insert(MeasureError::NoBaseline {
                            target: target.to_string(),
                        });
                        self.baselines.insert(target, now);
                    }
                    (Err(e), _) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(Measurement {
                    canary: BackendWindow::from_series(&canary),
                    stable: BackendWindow::from_series(&stable),
                }),
            }
        })
    }
}
