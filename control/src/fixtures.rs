//! The rollout most unit tests judge: `myapp` on route `default`, steps 5 → 100 %, 30 s
//! intervals, 100 requests, 1 % errors, p95 500 ms, two failures.

use std::time::Duration;

use sluice_config::{
    Analysis, FailureCounting, MetricsSource, Rollout, Step, Strategy, Weight,
    DEFAULT_GRPC_ERROR_CODES,
};

/// The thresholds of [`rollout`].
pub(crate) fn analysis(counting: FailureCounting) -> Analysis {
    Analysis {
        min_requests: 100,
        max_error_rate: 0.01,
        max_p95: Some(Duration::from_millis(500)),
        max_p95_vs_stable: None,
        max_error_rate_over_stable: None,
        failure_limit: 2,
        failure_counting: counting,
        checks: Vec::new(),
        grpc_error_codes: DEFAULT_GRPC_ERROR_CODES.to_vec(),
    }
}

/// `myapp`, a canary through 5, 10, 25, 50, 75 and 100 %.
pub(crate) fn rollout(counting: FailureCounting) -> Rollout {
    Rollout {
        name: "myapp".into(),
        route: "default".into(),
        stable: "stable".into(),
        canary: "canary".into(),
        steps: [5, 10, 25, 50, 75, 100]
            .iter()
            .map(|p| Step::Weight(Weight::from_hundredths(p * 100)))
            .collect(),
        strategy: Strategy::Canary,
        bake: 0,
        webhooks: Vec::new(),
        prometheus: None,
        interval: Duration::from_secs(30),
        analysis: analysis(counting),
        metrics: MetricsSource::Prometheus {
            url: "http://127.0.0.1:9090".into(),
        },
    }
}
