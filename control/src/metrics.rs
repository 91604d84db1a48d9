//! The control's own metrics (names are part of the contract), on its admin `/metrics`.

use metrics::{Key, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::analysis::Check;
use crate::rollout::{Phase, RolloutState};

/// `sluice_rollout_weight{rollout}`: canary weight in percent.
pub const ROLLOUT_WEIGHT: &str = "sluice_rollout_weight";
/// `sluice_rollout_step{rollout}`: 1-based step (0 when idle).
pub const ROLLOUT_STEP: &str = "sluice_rollout_step";
/// `sluice_rollout_phase{rollout,phase}`: 1 for the current phase, 0 for the others.
pub const ROLLOUT_PHASE: &str = "sluice_rollout_phase";
/// `sluice_rollout_checks_total{rollout,result}`: pass, fail, inconclusive.
pub const ROLLOUT_CHECKS: &str = "sluice_rollout_checks_total";
/// `sluice_rollout_canary_error_rate{rollout}`: of the last check.
pub const ROLLOUT_ERROR_RATE: &str = "sluice_rollout_canary_error_rate";
/// `sluice_rollout_canary_p95_seconds{rollout}`: of the last check.
pub const ROLLOUT_P95: &str = "sluice_rollout_canary_p95_seconds";

/// `sluice_control_leader`: 1 on the control that leads (always, without a fleet), 0 on a
/// standby.
pub const CONTROL_LEADER: &str = "sluice_control_leader";

/// `sluice_control_auth_failures_total{reason}`: admin requests refused by authentication
/// or authorization (`missing_token`, `wrong_token`, `unknown_certificate`, `forbidden`).
pub const AUTH_FAILURES: &str = "sluice_control_auth_failures_total";
/// The `reason` values of [`AUTH_FAILURES`].
pub const AUTH_FAILURE_REASONS: [&str; 4] = [
    "missing_token",
    "wrong_token",
    "unknown_certificate",
    "forbidden",
];

/// The control's recorder and handle.
#[derive(Debug)]
pub struct ControlMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl ControlMetrics {
    /// A fresh recorder with every metric described.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let describe = [
            (ROLLOUT_WEIGHT, "Canary weight of the rollout, percent."),
            (
                ROLLOUT_STEP,
                "Current step of the rollout, 1-based (0 when not started).",
            ),
            (
                ROLLOUT_PHASE,
                "1 for the rollout's current phase, 0 for the others.",
            ),
            (
                ROLLOUT_ERROR_RATE,
                "Canary error rate measured by the last check.",
            ),
            (
                ROLLOUT_P95,
                "Canary p95 latency measured by the last check, seconds.",
            ),
            (
                CONTROL_LEADER,
                "1 on the control that leads (measures, decides, writes); 0 on a standby.",
            ),
        ];
        for (name, help) in describe {
            recorder.describe_gauge(name.into(), None, help.into());
        }
        recorder.describe_counter(
            ROLLOUT_CHECKS.into(),
            None,
            "Analysis checks by result (pass, fail, inconclusive).".into(),
        );
        recorder.describe_counter(
            AUTH_FAILURES.into(),
            None,
            "Admin requests refused: missing or wrong token, unknown certificate, or a role too weak."
                .into(),
        );
        for reason in AUTH_FAILURE_REASONS {
            recorder
                .register_counter(&key(AUTH_FAILURES, &[("reason", reason)]), &metadata())
                .increment(0);
        }
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Sets the gauges of `rollout` from its state.
    pub fn state(&self, rollout: &str, state: &RolloutState) {
        self.gauge(ROLLOUT_WEIGHT, &[("rollout", rollout)])
            .set(state.canary_weight.as_f64());
        let step = match state.phase {
            Phase::Idle => 0.0,
            _ => (state.step + 1) as f64,
        };
        self.gauge(ROLLOUT_STEP, &[("rollout", rollout)]).set(step);
        for phase in Phase::ALL {
            let value = if phase == state.phase { 1.0 } else { 0.0 };
            self.gauge(
                ROLLOUT_PHASE,
                &[("rollout", rollout), ("phase", phase.as_str())],
            )
            .set(value);
        }
    }

    /// Sets [`CONTROL_LEADER`].
    pub fn leader(&self, leading: bool) {
        self.gauge(CONTROL_LEADER, &[])
            .set(if leading { 1.0 } else { 0.0 });
    }

    /// Counts a check and records its numbers.
    pub fn check(&self, rollout: &str, check: &Check) {
        self.recorder
            .register_counter(
                &key(
                    ROLLOUT_CHECKS,
                    &[("rollout", rollout), ("result", check.verdict.as_str())],
                ),
                &metadata(),
            )
            .increment(1);
        if let Some(rate) = check.error_rate {
            self.gauge(ROLLOUT_ERROR_RATE, &[("rollout", rollout)])
                .set(rate);
        }
        if let Some(p95) = check.p95 {
            self.gauge(ROLLOUT_P95, &[("rollout", rollout)]).set(p95);
        }
    }

    /// Counts an admin request refused for `reason` (one of [`AUTH_FAILURE_REASONS`]).
    pub fn auth_failure(&self, reason: &'static str) {
        self.recorder
            .register_counter(&key(AUTH_FAILURES, &[("reason", reason)]), &metadata())
            .increment(1);
    }

    /// Makes the check counters of `rollout` exist at 0.
    pub fn register(&self, rollout: &str) {
        for result in ["pass", "fail", "inconclusive"] {
            self.recorder
                .register_counter(
                    &key(ROLLOUT_CHECKS, &[("rollout", rollout), ("result", result)]),
                    &metadata(),
                )
                .increment(0);
        }
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Gauge {
        self.recorder
            .register_gauge(&key(name, labels), &metadata())
    }
}

impl Default for ControlMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, SharedString::from(v.to_string())))
        .collect();
    Key::from_parts(name, labels)
}
