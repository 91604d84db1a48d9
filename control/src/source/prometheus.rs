//! The `prometheus` source: the interval's numbers as PromQL over the Prometheus HTTP API,
//! which aggregates the whole fleet's counters and histograms.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_config::metric_names::{
    ENDPOINT_HEALTHY, LABEL_BACKEND, LABEL_CODE, LABEL_ENDPOINT, LABEL_GRPC_STATUS, LABEL_ROUTE,
};
use sluice_config::{GrpcCode, Rollout};

use super::{BoxFuture, Health, MeasureError, MetricSource};
use crate::http::HttpClient;
use crate::window::{BackendWindow, Measurement, Subject};

/// A PromQL client of one Prometheus: instant queries over `/api/v1/query`.
#[derive(Clone, Debug)]
pub struct PromQl {
    client: HttpClient,
    url: String,
    timeout: Duration,
}

/// Queries `url`'s `/api/v1/query`.
#[derive(Debug)]
pub struct PrometheusSource {
    promql: PromQl,
    route: String,
    stable: String,
    canary: String,
    grpc_errors: Vec<GrpcCode>,
    started: Instant,
}

impl PromQl {
    /// A client of the Prometheus at `url`; each query may take up to `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        Self {
            client: HttpClient::default(),
            url: url.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// Evaluates `query` at `time` (Unix seconds; every query of an interval uses the same
    /// instant). `None` for an empty result or NaN (PromQL's answer when there is no data).
    pub async fn scalar(&self, query: &str, time: f64) -> Result<Option<f64>, MeasureError> {
        let samples = self.vector(query, time).await?;
        if samples.len() > 1 {
            return Err(MeasureError::Query(format!(
                "{query} returned {} series; aggregate it to one value (e.g. sum, max or avg)",
                samples.len()
            )));
        }
        let Some((_, value)) = samples.into_iter().next() else {
            return Ok(None);
        };
        Ok((!value.is_nan()).then_some(value))
    }

    /// Evaluates `query` at `time`: every sample as (labels, value); a scalar result is one
    /// sample without labels. Infinite values are errors; NaN is kept.
    pub async fn vector(
        &self,
        query: &str,
        time: f64,
    ) -> Result<Vec<(serde_json::Map<String, Value>, f64)>, MeasureError> {
        let url = format!(
            "{}/api/v1/query?{}",
            self.url,
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", query)
                .append_pair("time", &format!("{time:.3}"))
                .finish()
        );
        let (status, body) = self
            .client
            .get(&url, self.timeout)
            .await
            .map_err(|e| MeasureError::Query(format!("{}: {e}", self.url)))?;
        let json: Value = serde_json::from_slice(&body)
            .map_err(|e| MeasureError::Query(format!("HTTP {status}, not JSON: {e}")))?;
        if json["status"] != "success" {
            return Err(MeasureError::Query(format!(
                "HTTP {status}: {} ({query})",
                json["error"].as_str().unwrap_or("unknown error")
            )));
        }
        if json["data"]["resultType"] == "scalar" {
            let text = json["data"]["result"][1].as_str().unwrap_or("NaN");
            let value: f64 = text
                .parse()
                .map_err(|_| MeasureError::Query(format!("value {text:?} is not a number")))?;
            return Ok(vec![(serde_json::Map::new(), value)]);
        }
        let Some(result) = json["data"]["result"].as_array() else {
            return Err(MeasureError::Query(format!(
                "unexpected answer shape for {query}"
            )));
        };
        let value_of = |value: &Value| -> Result<f64, MeasureError> {
            let text = value[1].as_str().ok_or_else(|| {
                MeasureError::Query(format!("sample without a value for {query}"))
            })?;
            let value: f64 = text
                .parse()
                .map_err(|_| MeasureError::Query(format!("value {text:?} is not a number")))?;
            if value.is_infinite() {
                return Err(MeasureError::Query(format!("value {text} for {query}")));
            }
            Ok(value)
        };
        result
            .iter()
            .map(|sample| {
                let labels = sample["metric"].as_object().cloned().unwrap_or_default();
                Ok((labels, value_of(&sample["value"])?))
            })
            .collect()
    }
}

impl PrometheusSource {
    /// A source for `rollout` querying the Prometheus at `url`.
    pub fn new(rollout: &Rollout, url: &str, timeout: Duration) -> Self {
        Self {
            promql: PromQl::new(url, timeout),
            route: rollout.route.clone(),
            stable: rollout.stable.clone(),
            canary: rollout.canary.clone(),
            grpc_errors: rollout.analysis.grpc_error_codes.clone(),
            started: Instant::now(),
        }
    }

    /// The PromQL expressions for upstream `name` as `subject` of `route` over `range`
    /// milliseconds: (requests incl. failovers, failures incl. failovers and gRPC responses
    /// with a status in `grpc_errors`, p95).
    pub fn queries(
        route: &str,
        subject: Subject,
        name: &str,
        grpc_errors: &[GrpcCode],
        range: u64,
    ) -> [String; 3] {
        let selector = format!(
            "{LABEL_ROUTE}=\"{}\",{}=\"{}\"",
            escape(route),
            subject.label(),
            escape(name)
        );
        let increase = |metric: &str, only: &str| {
            format!("sum(increase({metric}{{{selector}{only}}}[{range}ms]))")
        };
        // A counter without series yet (no failover, no gRPC error) must add 0, not empty
        // the sum.
        let or_zero = |query: String| format!("({query} or vector(0))");
        let failovers = subject.failovers().map(|m| or_zero(increase(m, "")));
        let grpc_errors = (!grpc_errors.is_empty()).then(|| {
            let names: Vec<&str> = grpc_errors.iter().map(|c| c.name()).collect();
            or_zero(increase(
                subject.grpc_responses(),
                &format!(",{LABEL_GRPC_STATUS}=~\"{}\"", names.join("|")),
            ))
        });
        let requests = std::iter::once(increase(subject.requests(), ""))
            .chain(failovers.clone())
            .collect::<Vec<_>>()
            .join(" + ");
        let failed = std::iter::once(or_zero(increase(
            subject.requests(),
            &format!(",{LABEL_CODE}=~\"5..\""),
        )))
        .chain(grpc_errors)
        .chain(failovers)
        .collect::<Vec<_>>()
        .join(" + ");
        [
            requests,
            failed,
            format!(
                "histogram_quantile(0.95, sum by (le) (rate({}{{{selector}}}[{range}ms])))",
                subject.duration_bucket()
            ),
        ]
    }

    async fn window(
        &self,
        subject: Subject,
        name: &str,
        range: u64,
        time: f64,
    ) -> Result<BackendWindow, MeasureError> {
        let [requests, failed, p95] =
            Self::queries(&self.route, subject, name, &self.grpc_errors, range);
        Ok(BackendWindow {
            requests: self.promql.scalar(&requests, time).await?.unwrap_or(0.0),
            failed: self.promql.scalar(&failed, time).await?.unwrap_or(0.0),
            p95: self.promql.scalar(&p95, time).await?,
        })
    }
}

impl MetricSource for PrometheusSource {
    fn health<'a>(&'a mut self, backend: &'a str) -> BoxFuture<'a, Result<Health, MeasureError>> {
        Box::pin(async move {
            let query = format!(
                "{ENDPOINT_HEALTHY}{{{LABEL_BACKEND}=\"{}\"}}",
                escape(backend)
            );
            let samples = self.promql.vector(&query, now_seconds()).await?;
            let mut health = Health::default();
            for (labels, value) in samples {
                if value >= 1.0 {
                    health.healthy += 1;
                } else {
                    let label = |key: &str| {
                        labels
                            .get(key)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    health.unhealthy.push(format!(
                        "{} (on {})",
                        label(LABEL_ENDPOINT),
                        label("instance")
                    ));
                }
            }
            Ok(health)
        })
    }

    fn begin(&mut self) -> BoxFuture<'_, ()> {
        self.started = Instant::now();
        Box::pin(async {})
    }

    fn finish(&mut self, subject: Subject) -> BoxFuture<'_, Result<Measurement, MeasureError>> {
        let range = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1000);
        self.started = Instant::now();
        let time = now_seconds();
        Box::pin(async move {
            Ok(Measurement {
                canary: self.window(subject, &self.canary, range, time).await?,
                stable: self
                    .window(Subject::Backend, &self.stable, range, time)
                    .await?,
            })
        })
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Now, as Unix seconds with milliseconds: the evaluation instant of an immediate query.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use sluice_config::DEFAULT_GRPC_ERROR_CODES;

    use super::*;

    #[test]
    fn queries_are_promql_over_the_interval() {
        let [requests, failed, p95] = PrometheusSource::queries(
            "default",
            Subject::Backend,
            "canary",
            &DEFAULT_GRPC_ERROR_CODES,
            30_000,
        );
        assert_eq!(
            requests,
            "sum(increase(sluice_requests_total{route=\"default\",backend=\"canary\"}[30000ms])) + (sum(increase(sluice_backend_failovers_total{route=\"default\",backend=\"canary\"}[30000ms])) or vector(0))"
        );
        assert_eq!(
            failed,
            "(sum(increase(sluice_requests_total{route=\"default\",backend=\"canary\",code=~\"5..\"}[30000ms])) or vector(0)) + (sum(increase(sluice_grpc_responses_total{route=\"default\",backend=\"canary\",grpc_status=~\"UNKNOWN|DEADLINE_EXCEEDED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS\"}[30000ms])) or vector(0)) + (sum(increase(sluice_backend_failovers_total{route=\"default\",backend=\"canary\"}[30000ms])) or vector(0))"
        );
        assert_eq!(
            p95,
            "histogram_quantile(0.95, sum by (le) (rate(sluice_request_duration_seconds_bucket{route=\"default\",backend=\"canary\"}[30000ms])))"
        );
        let [odd, _, _] = PrometheusSource::queries("a\"b", Subject::Backend, "c", &[], 5000);
        assert!(odd.contains("route=\"a\\\"b\""));
    }

    #[test]
    fn without_grpc_error_codes_only_5xx_and_failovers_fail() {
        let [_, failed, _] =
            PrometheusSource::queries("default", Subject::Backend, "canary", &[], 1000);
        assert_eq!(
            failed,
            "(sum(increase(sluice_requests_total{route=\"default\",backend=\"canary\",code=~\"5..\"}[1000ms])) or vector(0)) + (sum(increase(sluice_backend_failovers_total{route=\"default\",backend=\"canary\"}[1000ms])) or vector(0))"
        );
    }

    #[test]
    fn the_mirror_subject_queries_the_mirror_series_without_failovers() {
        let unavailable = GrpcCode::parse("UNAVAILABLE").expect("a gRPC status");
        let [requests, failed, p95] =
            PrometheusSource::queries("default", Subject::Mirror, "canary", &[unavailable], 60_000);
        assert_eq!(
            requests,
            "sum(increase(sluice_mirror_requests_total{route=\"default\",upstream=\"canary\"}[60000ms]))"
        );
        assert_eq!(
            failed,
            "(sum(increase(sluice_mirror_requests_total{route=\"default\",upstream=\"canary\",code=~\"5..\"}[60000ms])) or vector(0)) + (sum(increase(sluice_mirror_grpc_responses_total{route=\"default\",upstream=\"canary\",grpc_status=~\"UNAVAILABLE\"}[60000ms])) or vector(0))"
        );
        assert_eq!(
            p95,
            "histogram_quantile(0.95, sum by (le) (rate(sluice_mirror_request_duration_seconds_bucket{route=\"default\",upstream=\"canary\"}[60000ms])))"
        );
    }
}
