//! The `scrape` source: fetch `/metrics` from every proxy, take per-series increases since the
//! previous scrape (restarts handled), and sum the fleet.

use std::collections::HashMap;
use std::time::Duration;

use sluice_config::{Address, GrpcCode, Rollout};

use sluice_config::metric_names::{ENDPOINT_HEALTHY, LABEL_BACKEND, LABEL_ENDPOINT};

use super::{BoxFuture, Health, MeasureError, MetricSource};
use crate::exposition;
use crate::http::HttpClient;
use crate::window::{
    accumulate, extract, increase, BackendWindow, Measurement, SeriesMap, Subject,
};

/// Scrapes a fixed list of proxy admin addresses.
#[derive(Debug)]
pub struct ScrapeSource {
    client: HttpClient,
    targets: Vec<Address>,
    route: String,
    stable: String,
    canary: String,
    grpc_errors: Vec<GrpcCode>,
    timeout: Duration,
    /// The last good scrape of each target.
    baselines: HashMap<Address, Scraped>,
}

/// The rollout's series in one scrape of one target.
#[derive(Debug)]
struct Scraped {
    stable: SeriesMap,
    /// The canary's series as a backend of the route.
    canary: SeriesMap,
    /// The route's mirrored copies to the canary (measured in a shadow step).
    mirrored: SeriesMap,
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
            grpc_errors: rollout.analysis.grpc_error_codes.clone(),
            timeout,
            baselines: HashMap::new(),
        }
    }

    /// Scrapes every target concurrently.
    async fn scrape_all(&self) -> Vec<(Address, Result<Scraped, MeasureError>)> {
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
                    Ok(samples) => Ok(Scraped {
                        stable: extract(&samples, &self.route, Subject::Backend, &self.stable),
                        canary: extract(&samples, &self.route, Subject::Backend, &self.canary),
                        mirrored: extract(&samples, &self.route, Subject::Mirror, &self.canary),
                    }),
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

impl ScrapeSource {
    /// `sluice_endpoint_healthy` of `backend` on every target.
    async fn endpoint_health(&self, backend: &str) -> Result<Health, MeasureError> {
        let mut health = Health::default();
        for target in &self.targets {
            let url = format!("http://{target}/metrics");
            let (status, body) = self.client.get(&url, self.timeout).await.map_err(|e| {
                MeasureError::Unreachable {
                    target: target.to_string(),
                    reason: e.to_string(),
                }
            })?;
            if !status.is_success() {
                return Err(MeasureError::Unreachable {
                    target: target.to_string(),
                    reason: format!("HTTP {status}"),
                });
            }
            let samples = exposition::parse(&String::from_utf8_lossy(&body)).map_err(|e| {
                MeasureError::Unreadable {
                    target: target.to_string(),
                    reason: e.to_string(),
                }
            })?;
            for sample in samples.iter().filter(|s| {
                s.name == ENDPOINT_HEALTHY
                    && s.labels.get(LABEL_BACKEND).map(String::as_str) == Some(backend)
            }) {
                if sample.value >= 1.0 {
                    health.healthy += 1;
                } else {
                    let endpoint = sample
                        .labels
                        .get(LABEL_ENDPOINT)
                        .cloned()
                        .unwrap_or_default();
                    health.unhealthy.push(format!("{endpoint} (on {target})"));
                }
            }
        }
        Ok(health)
    }
}

impl Scraped {
    /// The canary's series as `subject`.
    fn canary(&self, subject: Subject) -> &SeriesMap {
        match subject {
            Subject::Backend => &self.canary,
            Subject::Mirror => &self.mirrored,
        }
    }
}

impl MetricSource for ScrapeSource {
    fn health<'a>(&'a mut self, backend: &'a str) -> BoxFuture<'a, Result<Health, MeasureError>> {
        Box::pin(self.endpoint_health(backend))
    }

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

    fn finish(&mut self, subject: Subject) -> BoxFuture<'_, Result<Measurement, MeasureError>> {
        Box::pin(async move {
            let scrapes = self.scrape_all().await;
            let mut stable = SeriesMap::new();
            let mut canary = SeriesMap::new();
            let mut first_error = None;
            let previous = std::mem::take(&mut self.baselines);
            for (target, result) in scrapes {
                match (result, previous.get(&target)) {
                    (Ok(now), Some(before)) => {
                        accumulate(&mut stable, &increase(&before.stable, &now.stable));
                        accumulate(
                            &mut canary,
                            &increase(before.canary(subject), now.canary(subject)),
                        );
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
                    canary: BackendWindow::from_series(&canary, &self.grpc_errors),
                    stable: BackendWindow::from_series(&stable, &self.grpc_errors),
                }),
            }
        })
    }
}
