//! The controller's status: one typed document that `GET /status` serves, the CLI table
//! prints, `wait` follows and the demo draws.

use serde::{Deserialize, Serialize};
use sluice_config::{known_list, Analysis, FailureCounting, Rollout, Step, Strategy, Weight};

use crate::rollout::{shadowing, CheckRecord, DecisionRecord, Phase, RolloutState};

/// Every rollout of the config, in file order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The rollouts.
    pub rollouts: Vec<RolloutStatus>,
    /// In fleet mode: this control's part in the election.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// One control of a fleet, as its `/status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// `leader` or `standby`.
    pub role: String,
    /// This control's id.
    pub id: String,
    /// The leader's id and admin address, when one is known.
    pub leader: Option<crate::leader::Candidate>,
}

/// One rollout in [`Status`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Name.
    pub name: String,
    /// The route it moves.
    pub route: String,
    /// Stable backend.
    pub stable: String,
    /// Canary backend.
    pub canary: String,
    /// Phase.
    pub phase: Phase,
    /// 1-based step (0 when idle).
    pub step: usize,
    /// The steps: canary percentages, `pause` steps and a first `shadow` step.
    pub steps: Vec<Step>,
    /// At a `shadow` step: the canary has 0% of users, and the checks judge the copies the
    /// route mirrors to it.
    #[serde(default)]
    pub shadow: bool,
    /// Canary (step by step) or blue/green.
    pub strategy: Strategy,
    /// Waiting at a `pause` step for `approve`.
    pub awaiting_approval: bool,
    /// Started, but waiting for the checks before the first step (canary 0%).
    pub gated: bool,
    /// Bake intervals passed at the last step, and how many are needed.
    pub baked: (u32, u32),
    /// Canary weight the rollout has in force (percent).
    pub canary_weight: Weight,
    /// Failures counted towards the limit.
    pub failures: u32,
    /// Why paused.
    pub paused_reason: Option<String>,
    /// The canary's version in sluice.yaml.
    pub canary_version: Option<String>,
    /// Seconds between checks.
    pub interval_seconds: f64,
    /// Seconds until the next check is due, while progressing.
    pub next_check_in_seconds: Option<f64>,
    /// A measurement is under way.
    pub measuring: bool,
    /// The thresholds of each check.
    pub analysis: Thresholds,
    /// The last check.
    pub last_check: Option<CheckRecord>,
    /// The last decision.
    pub last_decision: Option<DecisionRecord>,
    /// Decisions made so far (the `seq` of the last one).
    pub decisions: u64,
    /// The most recent decisions, oldest first (persisted, bounded).
    pub history: Vec<DecisionRecord>,
}

/// A rollout's analysis thresholds as shown in the status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Canary requests needed for a verdict.
    pub min_requests: u64,
    /// Largest acceptable canary error rate (fraction).
    pub max_error_rate: f64,
    /// Largest acceptable canary p95, seconds.
    pub max_p95_seconds: Option<f64>,
    /// Canary p95 at most this multiple of stable's.
    pub max_p95_vs_stable: Option<f64>,
    /// Canary error rate at most stable's plus this.
    pub max_error_rate_over_stable: Option<f64>,
    /// Failed checks before rollback.
    pub failure_limit: u32,
    /// Whether a pass resets the failure count.
    pub failure_counting: FailureCounting,
}

impl RolloutStatus {
    /// The status of `rollout` in `state`; `next_check_in` and `measuring` come from the
    /// controller's schedule.
    pub fn new(
        rollout: &Rollout,
        state: &RolloutState,
        next_check_in: Option<f64>,
        measuring: bool,
    ) -> Self {
        Self {
            name: rollout.name.clone(),
            route: rollout.route.clone(),
            stable: rollout.stable.clone(),
            canary: rollout.canary.clone(),
            phase: state.phase,
            step: if state.phase == Phase::Idle {
                0
            } else {
                state.step + 1
            },
            steps: rollout.steps.clone(),
            shadow: shadowing(rollout, state),
            strategy: rollout.strategy,
            awaiting_approval: state.approval,
            gated: state.gated,
            baked: (state.baked, rollout.bake),
            canary_weight: state.canary_weight,
            failures: state.failures,
            paused_reason: state.paused_reason.clone(),
            canary_version: state.canary_version.clone(),
            interval_seconds: rollout.interval.as_secs_f64(),
            next_check_in_seconds: next_check_in,
            measuring,
            analysis: Thresholds::from(&rollout.analysis),
            last_check: state.last_check.clone(),
            last_decision: state.history.last().cloned(),
            decisions: state.decisions,
            history: state.history.clone(),
        }
    }

    /// The step as the CLI and the demo show it: `3/6`, or `shadow 1/6` at a shadow step.
    pub fn step_label(&self) -> String {
        let position = format!("{}/{}", self.step, self.steps.len());
        if self.shadow {
            format!("shadow {position}")
        } else {
            position
        }
    }
}

impl From<&Analysis> for Thresholds {
    fn from(analysis: &Analysis) -> Self {
        Self {
            min_requests: analysis.min_requests,
            max_error_rate: analysis.max_error_rate,
            max_p95_seconds: analysis.max_p95.map(|d| d.as_secs_f64()),
            max_p95_vs_stable: analysis.max_p95_vs_stable,
            max_error_rate_over_stable: analysis.max_error_rate_over_stable,
            failure_limit: analysis.failure_limit,
            failure_counting: analysis.failure_counting,
        }
    }
}

impl Status {
    /// The rollout named `name`.
    pub fn rollout(&self, name: &str) -> Option<&RolloutStatus> {
        self.rollouts.iter().find(|r| r.name == name)
    }

    /// What to say when no rollout is named `name`: `unknown rollout "x" (known: a, b)`.
    pub fn unknown(&self, name: &str) -> String {
        format!(
            "unknown rollout \"{name}\" (known: {})",
            known_list(self.rollouts.iter().map(|r| r.name.as_str()))
        )
    }
}
