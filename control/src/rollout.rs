//! A rollout's state and the pure function that moves it: `(rollout, state, event) ->
//! (decision, new state)`. No IO, no clock: the controller feeds it events and carries out
//! the decisions (write weights, persist, log).

use serde::{Deserialize, Serialize};
use sluice_config::{
    FailureCounting, HookKind, Rollout, Step as StepKind, Strategy, Weight, WEIGHT_SCALE,
};

use crate::analysis::{custom_summary, gates_summary, millis, percent, Check, Verdict};

/// Where a rollout is. Spelled as in `sluice-control status` and the phase metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started (or never): the canary gets whatever sluice.yaml says.
    #[default]
    Idle,
    /// Advancing step by step as checks pass.
    Progressing,
    /// Frozen by an operator or by a hand-edited weights file.
    Paused,
    /// Finished: canary at 100%.
    Succeeded,
    /// Taken back: canary at 0%.
    RolledBack,
}

/// Everything the controller remembers about one rollout (persisted).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The phase.
    pub phase: Phase,
    /// Index in `steps` of the weight in force while progressing or paused.
    pub step: usize,
    /// The canary weight (percent) the control wants in force.
    pub canary_weight: Weight,
    /// Failed checks counted towards `failure_limit`.
    pub failures: u32,
    /// Why the rollout is paused.
    pub paused_reason: Option<String>,
    /// The canary upstream's `version` last seen in sluice.yaml.
    pub canary_version: Option<String>,
    /// What the control last wrote to the weights file for this rollout's route, as
    /// `(stable, canary)`; a file that says otherwise was edited by hand.
    pub written: Option<(Weight, Weight)>,
    /// The most recent check.
    pub last_check: Option<CheckRecord>,
    /// Started, but the first step waits for its checks (confirm-rollout and pre-rollout
    /// hooks, green health for blue/green): the canary is at 0%.
    #[serde(default)]
    pub gated: bool,
    /// Paused at a `pause` step until `approve` (or `promote`).
    #[serde(default)]
    pub approval: bool,
    /// Bake intervals passed at the last step.
    #[serde(default)]
    pub baked: u32,
    /// Decisions so far (the `seq` of the last one).
    #[serde(default)]
    pub decisions: u64,
    /// The most recent decisions, oldest first, at most [`HISTORY`].
    #[serde(default)]
    pub history: Vec<DecisionRecord>,
}

/// Decisions kept per rollout in its persisted state (the log has them all).
pub const HISTORY: usize = 100;

/// A check with when it happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The check.
    #[serde(flatten)]
    pub check: Check,
    /// Unix seconds.
    pub at: u64,
    /// The canary weight the interval ran at.
    pub canary_weight: Weight,
}

/// A decision with when it happened and where it left the rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// 1 for a rollout's first decision, then counting up (survives restarts).
    #[serde(default)]
    pub seq: u64,
    /// What was decided.
    pub action: Action,
    /// One human sentence with the numbers.
    pub message: String,
    /// Unix seconds.
    pub at: u64,
    /// The phase after the decision.
    #[serde(default)]
    pub phase: Phase,
    /// The canary weight (percent) after the decision.
    #[serde(default)]
    pub canary_weight: Weight,
    /// The check that led to it, when a check did.
    #[serde(default)]
    pub check: Option<Check>,
    /// Who asked, for an operator command: "ci-deploy from 10.1.2.3".
    #[serde(default)]
    pub by: Option<String>,
}

/// What can happen to a rollout.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An analysis interval ended with this check.
    Check(Check),
    /// `start`, or (with `automatic`) the canary's version changed in sluice.yaml.
    Start {
        /// Started by a version change rather than by an operator.
        automatic: bool,
        /// Why, for the log.
        reason: String,
        /// The canary version being deployed (`start --version`), recorded as seen.
        version: Option<String>,
    },
    /// `promote`: the next step now, skipping its analysis.
    Promote,
    /// `promote --full`: canary 100%, succeeded.
    PromoteFull,
    /// `abort`: canary 0% at once.
    Abort,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `retry`: start a rolled-back rollout over.
    Retry,
    /// `approve`: pass a `pause` step.
    Approve,
    /// The weights file no longer says what the control wrote.
    HandEdited(String),
    /// After success, sluice.yaml's stable upstream now runs the version that succeeded:
    /// traffic goes back to stable, so the next canary deploy starts from 0%.
    StablePromoted(String),
}

/// The kind of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Started at the first step.
    Started,
    /// Moved to the next step.
    Advanced,
    /// Finished at 100%.
    Succeeded,
    /// Kept the step (inconclusive check).
    Held,
    /// Counted a failure, kept the step.
    Failed,
    /// Canary back to 0% after too many failures.
    RolledBack,
    /// Canary back to 0% by an operator.
    Aborted,
    /// Frozen.
    Paused,
    /// Unfrozen.
    Resumed,
    /// After success: stable took over the canary's version; canary back to 0%.
    HandedBack,
    /// An operator's command that the phase did not allow (recorded for the audit trail).
    Refused,
    /// A bake interval at the last step passed.
    Baked,
    /// A `pause` step was approved.
    Approved,
}

/// The outcome of an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// What was decided.
    pub action: Action,
    /// One human sentence with the numbers.
    pub message: String,
    /// The weights to write, when they change (or must be re-asserted, on resume).
    pub write: Option<Write>,
}

/// Weights for the rollout's route, as the decision wants them in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The stable backend's weight (percent): 100 − canary.
    pub stable: Weight,
    /// The canary backend's weight (percent).
    pub canary: Weight,
    /// Only if the weights in force are still the ones the control last wrote: a decision
    /// of the schedule (a check) must not overwrite a hand edit made meanwhile; an
    /// operator's command does, on purpose.
    pub if_unchanged: bool,
}

/// What the pure step functions decide before [`decide`] completes the state.
struct Step {
    action: Action,
    message: String,
    write: Option<Weight>,
}

/// Why an operator command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rollout \"{rollout}\" is {phase}: {hint}")]
pub struct Refusal {
    /// The rollout.
    pub rollout: String,
    /// Its phase.
    pub phase: &'static str,
    /// What the operator can do instead.
    pub hint: &'static str,
}

impl Phase {
    /// The phase as spelled in the docs (docs/control.md).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Progressing => "progressing",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled_back",
        }
    }

    /// Every phase, for the one-hot phase metric.
    pub const ALL: [Phase; 5] = [
        Self::Idle,
        Self::Progressing,
        Self::Paused,
        Self::Succeeded,
        Self::RolledBack,
    ];
}

impl Action {
    /// The action as a log/metric word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Advanced => "advanced",
            Self::Succeeded => "succeeded",
            Self::Held => "held",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Aborted => "aborted",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::HandedBack => "handed_back",
            Self::Refused => "refused",
            Self::Baked => "baked",
            Self::Approved => "approved",
        }
    }
}

/// When an event happened and who caused it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// Unix seconds.
    pub at: u64,
    /// The caller behind an operator command, as "ci-deploy from 10.1.2.3"; `None` for the
    /// schedule's own events.
    pub by: Option<String>,
}

const FULL: Weight = Weight::from_hundredths(100 * WEIGHT_SCALE);
const NONE: Weight = Weight::from_hundredths(0);

/// The pure transition function: the decision and the **complete** next state (phase, step,
/// last check, the weights it writes, the decision in the history, who asked). The caller
/// commits the state only once the write succeeded.
pub fn decide(
    rollout: &Rollout,
    state: &RolloutState,
    event: Event,
    context: &Context,
) -> Result<(Decision, RolloutState), Refusal> {
    let mut next = state.clone();
    let at = context.at;
    let who = context.by.as_deref().unwrap_or("an operator");
    let check = match &event {
        Event::Check(check) => Some(check.clone()),
        _ => None,
    };
    let refuse = |hint| Refusal {
        rollout: rollout.name.clone(),
        phase: state.phase.as_str(),
        hint,
    };
    let step = match event {
        Event::Start {
            automatic,
            reason,
            version,
        } => {
            if !automatic && matches!(state.phase, Phase::Progressing | Phase::Paused) {
                return Err(refuse(
                    "it is already running; abort it first to start over",
                ));
            }
            let why = match (&version, automatic) {
                (_, true) => format!("started: {reason}"),
                (Some(v), false) => format!("started by {who} for version {v}"),
                (None, false) => format!("started by {who}"),
            };
            // The version the operator deploys: when the config shows it later, that is
            // this rollout, not a new one.
            if version.is_some() {
                next.canary_version = version;
            }
            start(rollout, &mut next, why)
        }
        Event::Retry => {
            if state.phase != Phase::RolledBack {
                return Err(refuse("only a rolled-back rollout can be retried"));
            }
            start(
                rollout,
                &mut next,
                format!("retried by {who} from the first step"),
            )
        }
        Event::Promote => {
            if !matches!(state.phase, Phase::Progressing | Phase::Paused) {
                return Err(refuse(
                    "only a running rollout can be promoted; start it first",
                ));
            }
            if state.approval {
                // Promoting passes a `pause` step, as approving does.
                approve(rollout, &mut next, &format!("promoted by {who}"))
            } else {
                advance(
                    rollout,
                    &mut next,
                    &format!("promoted by {who} (analysis skipped)"),
                )
            }
        }
        Event::Approve => {
            if !state.approval {
                return Err(refuse(
                    "nothing waits for approval (only a rollout held at a `pause` step can be approved)",
                ));
            }
            approve(rollout, &mut next, &format!("approved by {who}"))
        }
        Event::PromoteFull => {
            if !matches!(state.phase, Phase::Progressing | Phase::Paused) {
                return Err(refuse(
                    "only a running rollout can be promoted; start it first",
                ));
            }
            succeed(&mut next, format!("promoted to 100% by {who}"))
        }
        Event::Abort => {
            if !matches!(
                state.phase,
                Phase::Progressing | Phase::Paused | Phase::Succeeded
            ) {
                return Err(refuse("there is nothing to abort"));
            }
            next.phase = Phase::RolledBack;
            next.paused_reason = None;
            next.approval = false;
            next.gated = false;
            next.canary_weight = NONE;
            Step {
                action: Action::Aborted,
                message: format!("aborted by {who}: canary 0%"),
                write: Some(NONE),
            }
        }
        Event::Pause => {
            if state.phase != Phase::Progressing {
                return Err(refuse("only a progressing rollout can be paused"));
            }
            next.phase = Phase::Paused;
            next.paused_reason = Some(format!("paused by {who}"));
            Step {
                action: Action::Paused,
                message: format!("paused by {who} at canary {}%", state.canary_weight),
                write: None,
            }
        }
        Event::Resume => {
            if state.phase != Phase::Paused {
                return Err(refuse("only a paused rollout can be resumed"));
            }
            if state.approval {
                return Err(refuse(
                    "it waits for approval at a `pause` step: `sluice-control approve` (or promote) passes it",
                ));
            }
            next.phase = Phase::Progressing;
            next.paused_reason = None;
            Step {
                action: Action::Resumed,
                message: format!(
                    "resumed by {who} at canary {}% (weights set to the rollout's step again)",
                    state.canary_weight
                ),
                write: Some(state.canary_weight),
            }
        }
        Event::HandEdited(what) => {
            if state.phase != Phase::Progressing {
                return Err(refuse("a hand edit only pauses a progressing rollout"));
            }
            next.phase = Phase::Paused;
            let reason = format!(
                "weights edited by hand ({what}); the hand-written weights stay until `resume`"
            );
            next.paused_reason = Some(reason.clone());
            Step {
                action: Action::Paused,
                message: reason,
                write: None,
            }
        }
        Event::StablePromoted(version) => {
            if state.phase != Phase::Succeeded {
                return Err(refuse(
                    "only a succeeded rollout hands traffic back to stable",
                ));
            }
            next.canary_weight = NONE;
            Step {
                action: Action::HandedBack,
                message: format!("stable now runs {version}, the version that succeeded: traffic back to stable, canary 0%"),
                write: Some(NONE),
            }
        }
        Event::Check(check) => {
            if state.phase != Phase::Progressing {
                return Err(refuse("checks only run while progressing"));
            }
            judge_step(rollout, &mut next, &check)
        }
    };
    let write = step.write.map(|canary| {
        let canary = canary.min(FULL);
        Write {
            stable: Weight::from_hundredths(FULL.hundredths() - canary.hundredths()),
            canary,
            if_unchanged: check.is_some(),
        }
    });
    if let Some(w) = write {
        next.written = Some((w.stable, w.canary));
    }
    if let Some(check) = &check {
        next.last_check = Some(CheckRecord {
            check: check.clone(),
            at,
            canary_weight: state.canary_weight,
        });
    }
    next.decisions = state.decisions + 1;
    next.history.push(DecisionRecord {
        seq: next.decisions,
        action: step.action,
        message: step.message.clone(),
        at,
        phase: next.phase,
        canary_weight: next.canary_weight,
        check,
        by: context.by.clone(),
    });
    let excess = next.history.len().saturating_sub(HISTORY);
    next.history.drain(..excess);
    let decision = Decision {
        action: step.action,
        message: step.message,
        write,
    };
    Ok((decision, next))
}

/// `state` with a refused operator command in its history: the audit trail keeps every
/// command, carried out or not. Nothing else changes.
pub fn refused(
    state: &RolloutState,
    command: &str,
    refusal: &Refusal,
    context: &Context,
) -> RolloutState {
    let mut next = state.clone();
    next.decisions = state.decisions + 1;
    let who = context.by.as_deref().unwrap_or("an operator");
    next.history.push(DecisionRecord {
        seq: next.decisions,
        action: Action::Refused,
        message: format!("{command} by {who} refused: {refusal}"),
        at: context.at,
        phase: state.phase,
        canary_weight: state.canary_weight,
        check: None,
        by: context.by.clone(),
    });
    let excess = next.history.len().saturating_sub(HISTORY);
    next.history.drain(..excess);
    next
}

/// Whether a start waits for checks before the first step: confirm-rollout and pre-rollout
/// hooks, and for blue/green the green endpoints' health.
pub fn is_gated(rollout: &Rollout) -> bool {
    rollout.strategy == Strategy::BlueGreen
        || rollout.hooks(HookKind::ConfirmRollout).next().is_some()
        || rollout.hooks(HookKind::PreRollout).next().is_some()
}

fn start(rollout: &Rollout, next: &mut RolloutState, message: String) -> Step {
    next.phase = Phase::Progressing;
    next.step = 0;
    next.failures = 0;
    next.paused_reason = None;
    next.approval = false;
    next.baked = 0;
    if is_gated(rollout) {
        // The canary gets no traffic until the checks before the first step pass.
        next.gated = true;
        next.canary_weight = NONE;
        return Step {
            action: Action::Started,
            message: format!(
                "{message}; canary 0% until the checks before the first step pass ({})",
                gate_names(rollout)
            ),
            write: Some(NONE),
        };
    }
    next.gated = false;
    let first = first_weight(rollout);
    next.canary_weight = first;
    let entered = if shadowing(rollout, next) {
        format!("canary 0%, {}", shadow_entry(rollout, 0))
    } else {
        format!("canary {first}% (step 1/{})", rollout.steps.len())
    };
    Step {
        action: Action::Started,
        message: format!("{message}; {entered}"),
        write: Some(first),
    }
}

/// The weight of the first step (a rollout's first step is never a pause; a shadow step
/// keeps the canary at 0%).
fn first_weight(rollout: &Rollout) -> Weight {
    match rollout.steps.first() {
        Some(StepKind::Weight(weight)) => *weight,
        Some(StepKind::Shadow) => NONE,
        Some(StepKind::Pause) | None => FULL,
    }
}

/// Whether the rollout in `state` is at a `shadow` step: the canary has 0% of users and the
/// check judges the copies its route mirrors to it.
pub fn shadowing(rollout: &Rollout, state: &RolloutState) -> bool {
    matches!(state.phase, Phase::Progressing | Phase::Paused)
        && !state.gated
        && rollout.steps.get(state.step) == Some(&StepKind::Shadow)
}

/// How a decision says that the rollout entered the shadow step `step` (0-based).
fn shadow_entry(rollout: &Rollout, step: usize) -> String {
    format!(
        "shadow step: the copies route {} mirrors to {} are judged (step {}/{})",
        rollout.route,
        rollout.canary,
        step + 1,
        rollout.steps.len()
    )
}

/// What a gated start waits for, for messages.
fn gate_names(rollout: &Rollout) -> String {
    let mut names: Vec<String> = rollout
        .webhooks
        .iter()
        .filter(|h| matches!(h.kind, HookKind::ConfirmRollout | HookKind::PreRollout))
        .map(|h| format!("{} hook {}", h.kind.as_str(), h.name))
        .collect();
    if rollout.strategy == Strategy::BlueGreen {
        names.push(format!("health of every {} endpoint", rollout.canary));
    }
    names.join(", ")
}

/// Leaves the gate: the first step's weight (blue/green: the switch to 100%).
fn open_gate(rollout: &Rollout, next: &mut RolloutState, why: &str) -> Step {
    next.gated = false;
    next.step = 0;
    let first = first_weight(rollout);
    next.canary_weight = first;
    let message = if rollout.strategy == Strategy::BlueGreen {
        format!(
            "{why}: switched, {} (green) takes {first}% in one write",
            rollout.canary
        )
    } else if shadowing(rollout, next) {
        format!("{why}: canary 0%, {}", shadow_entry(rollout, 0))
    } else {
        format!(
            "{why}: canary 0% -> {first}% (step 1/{})",
            rollout.steps.len()
        )
    };
    Step {
        action: Action::Advanced,
        message,
        write: Some(first),
    }
}

/// Moves to the next step: a weight (written), a pause (held for approval), or past the last
/// step (bake intervals, then succeeded).
fn advance(rollout: &Rollout, next: &mut RolloutState, why: &str) -> Step {
    if next.gated {
        return open_gate(rollout, next, why);
    }
    if next.step + 1 >= rollout.steps.len() {
        if next.baked < rollout.bake {
            next.baked += 1;
            return Step {
                action: Action::Baked,
                message: format!(
                    "{why}; bake interval {} of {} at canary {}%",
                    next.baked, rollout.bake, next.canary_weight
                ),
                write: None,
            };
        }
        return succeed(next, format!("{why}; that was the last step"));
    }
    let from = next.canary_weight;
    next.step += 1;
    match rollout.steps[next.step] {
        StepKind::Pause => {
            next.phase = Phase::Paused;
            next.approval = true;
            let reason = format!(
                "waiting for approval at canary {from}% (step {}/{}): `sluice-control approve {}`",
                next.step + 1,
                rollout.steps.len(),
                rollout.name
            );
            next.paused_reason = Some(reason.clone());
            Step {
                action: Action::Paused,
                message: format!("{why}; {reason}"),
                write: None,
            }
        }
        // Only a first step is a shadow (the config says so); were one later, it would take
        // the users back off the canary while its mirror is judged.
        StepKind::Shadow => {
            next.canary_weight = NONE;
            Step {
                action: Action::Advanced,
                message: format!(
                    "{why}: canary {from}% -> 0%, {}",
                    shadow_entry(rollout, next.step)
                ),
                write: Some(NONE),
            }
        }
        StepKind::Weight(weight) => {
            next.canary_weight = weight;
            Step {
                action: Action::Advanced,
                message: format!(
                    "{why}: canary {from}% -> {weight}% (step {}/{})",
                    next.step + 1,
                    rollout.steps.len()
                ),
                write: Some(weight),
            }
        }
    }
}

/// Whether the step after the current one is the last weight step (confirm-promotion hooks
/// hold the rollout before it).
pub fn next_is_last(rollout: &Rollout, state: &RolloutState) -> bool {
    !state.gated && state.step + 2 == rollout.steps.len()
}

/// Passes the `pause` step the rollout is held at: progressing again, on to the next step.
fn approve(rollout: &Rollout, next: &mut RolloutState, why: &str) -> Step {
    next.phase = Phase::Progressing;
    next.approval = false;
    next.paused_reason = None;
    let mut step = advance(rollout, next, why);
    if step.action == Action::Advanced {
        step.action = Action::Approved;
    }
    step
}

fn succeed(next: &mut RolloutState, why: String) -> Step {
    next.phase = Phase::Succeeded;
    next.paused_reason = None;
    next.approval = false;
    next.gated = false;
    next.canary_weight = FULL;
    Step {
        action: Action::Succeeded,
        message: format!("{why}: succeeded, canary 100%"),
        write: Some(FULL),
    }
}

fn judge_step(rollout: &Rollout, next: &mut RolloutState, check: &Check) -> Step {
    let analysis = &rollout.analysis;
    let rate = check.error_rate.map_or("-".into(), percent);
    let p95 = check.p95.map_or("-".into(), millis);
    let requests = check.requests.round();
    // A shadow step's numbers are those of the copies mirrored to the canary.
    let (what, inconclusive, traffic) = if shadowing(rollout, next) {
        (
            "shadow check",
            "shadow check inconclusive",
            "mirrored requests",
        )
    } else {
        ("check", "inconclusive", "requests")
    };
    match check.verdict {
        Verdict::Inconclusive => Step {
            action: Action::Held,
            message: format!(
                "{inconclusive}: {}{}; holding at {}%",
                check.reasons.join("; "),
                custom_summary(check),
                next.canary_weight
            ),
            write: None,
        },
        Verdict::Pass => {
            if analysis.failure_counting == FailureCounting::Consecutive {
                next.failures = 0;
            }
            let p95_limit = analysis.max_p95.map_or(String::new(), |m| {
                format!(" <= {}", millis(m.as_secs_f64()))
            });
            let why = if next.gated {
                format!(
                    "checks before the first step passed ({})",
                    gates_summary(check)
                )
            } else {
                format!(
                    "{what} passed ({requests} {traffic}, error rate {rate} <= {}, p95 {p95}{p95_limit}{})",
                    percent(analysis.max_error_rate),
                    custom_summary(check)
                )
            };
            if next_is_last(rollout, next) {
                let waiting: Vec<String> = check
                    .gates
                    .iter()
                    .filter(|g| g.kind == HookKind::ConfirmPromotion.as_str() && !g.passed)
                    .map(|g| format!("{} ({})", g.name, g.detail))
                    .collect();
                if !waiting.is_empty() {
                    return Step {
                        action: Action::Held,
                        message: format!(
                            "{why}; holding at {}%: confirm-promotion hook {} did not confirm the last step",
                            next.canary_weight,
                            waiting.join(", ")
                        ),
                        write: None,
                    };
                }
            }
            advance(rollout, next, &why)
        }
        Verdict::Fail => {
            next.failures += 1;
            let failed = format!(
                "{what} failed: {} ({requests} {traffic}, error rate {rate}, p95 {p95}{})",
                check.reasons.join("; "),
                custom_summary(check)
            );
            if next.failures >= analysis.failure_limit {
                next.phase = Phase::RolledBack;
                next.gated = false;
                next.canary_weight = NONE;
                Step {
                    action: Action::RolledBack,
                    message: format!(
                        "{failed}; {} of {} failures: rolled back, canary 0%",
                        next.failures, analysis.failure_limit
                    ),
                    write: Some(NONE),
                }
            } else {
                Step {
                    action: Action::Failed,
                    message: format!(
                        "{failed}; {} of {} failures, holding at {}%",
                        next.failures, analysis.failure_limit, next.canary_weight
                    ),
                    write: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
