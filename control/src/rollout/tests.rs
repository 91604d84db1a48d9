//! Every transition of the rollout state machine, driven by a fake stream of checks.

use std::time::Duration;

use sluice_config::{FailureCounting, Weight};

use super::*;
use crate::analysis::{Check, Verdict};
use crate::fixtures::rollout;

fn check(verdict: Verdict) -> Check {
    Check {
        verdict,
        requests: 1000.0,
        error_rate: Some(if verdict == Verdict::Fail {
            0.05
        } else {
            0.001
        }),
        p95: Some(0.1),
        stable_requests: 9000.0,
        stable_error_rate: Some(0.0),
        stable_p95: Some(0.1),
        reasons: if verdict == Verdict::Fail {
            vec!["error rate 5.00% > max_error_rate 1.00%".into()]
        } else {
            vec![]
        },
        gates: vec![],
        custom: vec![],
    }
}

fn ctx() -> Context {
    Context { at: 1000, by: None }
}

/// The canary weight a decision writes.
fn canary(decision: &Decision) -> Option<Weight> {
    decision.write.map(|w| w.canary)
}

fn pct(state: &RolloutState) -> u64 {
    state.canary_weight.hundredths() / 100
}

fn apply(r: &Rollout, state: RolloutState, event: Event) -> (Decision, RolloutState) {
    decide(r, &state, event, &ctx()).unwrap_or_else(|e| panic!("refused: {e}"))
}

fn started(r: &Rollout) -> RolloutState {
    apply(
        r,
        RolloutState::default(),
        Event::Start {
            automatic: false,
            reason: "test".into(),
            version: None,
        },
    )
    .1
}

#[test]
fn healthy_checks_walk_every_step_then_succeed() {
    let r = rollout(FailureCounting::Consecutive);
    let (decision, mut state) = apply(
        &r,
        RolloutState::default(),
        Event::Start {
            automatic: false,
            reason: "cli".into(),
            version: None,
        },
    );
    assert_eq!(
        (decision.action, canary(&decision), state.phase),
        (
            Action::Started,
            Some(Weight::from_hundredths(500)),
            Phase::Progressing
        )
    );
    let mut seen = vec![pct(&state)];
    loop {
        let (decision, next) = apply(&r, state, Event::Check(check(Verdict::Pass)));
        state = next;
        seen.push(pct(&state));
        if decision.action == Action::Succeeded {
            assert_eq!(canary(&decision), Some(Weight::from_hundredths(10_000)));
            break;
        }
        assert_eq!(decision.action, Action::Advanced);
    }
    assert_eq!(seen, [5, 10, 25, 50, 75, 100, 100]);
    assert_eq!(state.phase, Phase::Succeeded);
}

#[test]
fn consecutive_failures_roll_back_at_the_limit_and_a_pass_resets_them() {
    let r = rollout(FailureCounting::Consecutive);
    let state = started(&r);
    let (d, state) = apply(&r, state, Event::Check(check(Verdict::Fail)));
    assert_eq!(
        (d.action, canary(&d), state.failures),
        (Action::Failed, None, 1)
    );
    let (d, state) = apply(&r, state, Event::Check(check(Verdict::Pass)));
    assert_eq!(
        (d.action, state.failures, pct(&state)),
        (Action::Advanced, 0, 10)
    );
    let (_, state) = apply(&r, state, Event::Check(check(Verdict::Fail)));
    let (d, state) = apply(&r, state, Event::Check(check(Verdict::Fail)));
    assert_eq!(
        (d.action, canary(&d), state.phase),
        (
            Action::RolledBack,
            Some(Weight::from_hundredths(0)),
            Phase::RolledBack
        )
    );
    assert!(
        d.message.contains("2 of 2 failures: rolled back"),
        "{}",
        d.message
    );
}

#[test]
fn total_failure_counting_does_not_reset_on_pass() {
    let r = rollout(FailureCounting::Total);
    let state = started(&r);
    let (_, state) = apply(&r, state, Event::Check(check(Verdict::Fail)));
    let (_, state) = apply(&r, state, Event::Check(check(Verdict::Pass)));
    assert_eq!(state.failures, 1);
    let (d, state) = apply(&r, state, Event::Check(check(Verdict::Fail)));
    assert_eq!(
        (d.action, state.phase),
        (Action::RolledBack, Phase::RolledBack)
    );
}

#[test]
fn inconclusive_holds_without_failing() {
    let r = rollout(FailureCounting::Consecutive);
    let mut state = started(&r);
    for _ in 0..10 {
        let (d, next) = apply(&r, state, Event::Check(check(Verdict::Inconclusive)));
        assert_eq!((d.action, canary(&d)), (Action::Held, None));
        state = next;
    }
    assert_eq!(
        (state.phase, state.failures, pct(&state)),
        (Phase::Progressing, 0, 5)
    );
}

#[test]
fn operator_commands() {
    let r = rollout(FailureCounting::Consecutive);
    let state = started(&r);
    let (d, state) = apply(&r, state, Event::Promote);
    assert_eq!((d.action, pct(&state)), (Action::Advanced, 10));
    let (d, state) = apply(&r, state, Event::Pause);
    assert_eq!((d.action, state.phase), (Action::Paused, Phase::Paused));
    assert!(
        decide(&r, &state, Event::Check(check(Verdict::Pass)), &ctx()).is_err(),
        "no checks while paused"
    );
    let (d, state) = apply(&r, state, Event::Resume);
    assert_eq!(
        (d.action, canary(&d), state.phase),
        (
            Action::Resumed,
            Some(Weight::from_hundredths(1000)),
            Phase::Progressing
        )
    );
    let (d, state) = apply(&r, state, Event::PromoteFull);
    assert_eq!(
        (d.action, pct(&state), state.phase),
        (Action::Succeeded, 100, Phase::Succeeded)
    );
    let (d, state) = apply(&r, state, Event::Abort);
    assert_eq!(
        (d.action, pct(&state), state.phase),
        (Action::Aborted, 0, Phase::RolledBack)
    );
    let (d, state) = apply(&r, state, Event::Retry);
    assert_eq!(
        (d.action, pct(&state), state.phase, state.step),
        (Action::Started, 5, Phase::Progressing, 0)
    );
}

#[test]
fn promote_at_the_last_step_succeeds() {
    let r = rollout(FailureCounting::Consecutive);
    let mut state = started(&r);
    for _ in 0..5 {
        state = apply(&r, state, Event::Promote).1;
    }
    assert_eq!((pct(&state), state.phase), (100, Phase::Progressing));
    let (d, state) = apply(&r, state, Event::Promote);
    assert_eq!(
        (d.action, state.phase),
        (Action::Succeeded, Phase::Succeeded)
    );
}

#[test]
fn refusals_say_why() {
    let r = rollout(FailureCounting::Consecutive);
    let idle = RolloutState::default();
    for event in [
        Event::Promote,
        Event::PromoteFull,
        Event::Abort,
        Event::Pause,
        Event::Resume,
        Event::Retry,
    ] {
        let refusal = decide(&r, &idle, event.clone(), &ctx()).expect_err("idle refuses");
        assert_eq!(refusal.phase, "idle", "{event:?}");
    }
    let running = started(&r);
    let refusal = decide(
        &r,
        &running,
        Event::Start {
            automatic: false,
            reason: "cli".into(),
            version: None,
        },
        &ctx(),
    )
    .expect_err("running");
    assert_eq!(
        refusal.to_string(),
        "rollout \"myapp\" is progressing: it is already running; abort it first to start over"
    );
    assert!(decide(&r, &running, Event::Resume, &ctx()).is_err());
    assert!(decide(&r, &running, Event::Retry, &ctx()).is_err());
}

#[test]
fn a_version_change_restarts_even_a_running_rollout() {
    let r = rollout(FailureCounting::Consecutive);
    let state = apply(&r, started(&r), Event::Promote).1;
    let (d, state) = apply(
        &r,
        state,
        Event::Start {
            automatic: true,
            reason: "canary version v2 -> v3".into(),
            version: None,
        },
    );
    assert_eq!((d.action, pct(&state), state.step), (Action::Started, 5, 0));
}

#[test]
fn a_hand_edit_pauses_and_keeps_the_hand_weights() {
    let r = rollout(FailureCounting::Consecutive);
    let (d, state) = apply(
        &r,
        started(&r),
        Event::HandEdited("stable=50 canary=50".into()),
    );
    assert_eq!(
        (d.action, canary(&d), state.phase),
        (Action::Paused, None, Phase::Paused)
    );
    assert!(state
        .paused_reason
        .as_deref()
        .is_some_and(|r| r.contains("edited by hand")));
    // Resume re-asserts the rollout's weight.
    let (d, _) = apply(&r, state, Event::Resume);
    assert_eq!(canary(&d), Some(Weight::from_hundredths(500)));
}

#[test]
fn a_succeeded_rollout_hands_traffic_back_when_stable_takes_the_new_version() {
    let r = rollout(FailureCounting::Consecutive);
    let (_, done) = apply(&r, started(&r), Event::PromoteFull);
    let (d, state) = apply(&r, done, Event::StablePromoted("v2".into()));
    assert_eq!(
        (d.action, canary(&d), state.phase),
        (
            Action::HandedBack,
            Some(Weight::from_hundredths(0)),
            Phase::Succeeded
        )
    );
    assert!(decide(&r, &started(&r), Event::StablePromoted("v2".into()), &ctx()).is_err());
}

#[test]
fn commands_record_who_asked_and_refusals_are_kept() {
    let r = rollout(FailureCounting::Consecutive);
    let by = Context {
        at: 2000,
        by: Some("ci-deploy from 10.1.2.3".into()),
    };
    let (d, state) = decide(&r, &started(&r), Event::Abort, &by).expect("abort");
    assert_eq!(d.message, "aborted by ci-deploy from 10.1.2.3: canary 0%");
    let last = state.history.last().expect("recorded");
    assert_eq!(
        (last.by.as_deref(), last.at, last.action),
        (Some("ci-deploy from 10.1.2.3"), 2000, Action::Aborted)
    );
    let refusal = decide(&r, &state, Event::Pause, &by).expect_err("rolled back");
    let kept = refused(&state, "pause", &refusal, &by);
    let last = kept.history.last().expect("refusal recorded");
    assert_eq!(last.action, Action::Refused);
    assert_eq!(
        last.message,
        "pause by ci-deploy from 10.1.2.3 refused: rollout \"myapp\" is rolled_back: only a progressing rollout can be paused"
    );
    assert_eq!(
        (kept.phase, kept.decisions),
        (state.phase, state.decisions + 1)
    );
}

fn pct_weight(p: u64) -> Weight {
    Weight::from_hundredths(p * 100)
}

fn hook(kind: HookKind) -> sluice_config::Webhook {
    sluice_config::Webhook {
        name: kind.as_str().to_string(),
        kind,
        url: "http://127.0.0.1:1/".into(),
        timeout: Duration::from_secs(1),
        headers_env: Vec::new(),
    }
}

fn gate(kind: HookKind, passed: bool) -> crate::analysis::GateResult {
    crate::analysis::GateResult {
        name: kind.as_str().to_string(),
        kind: kind.as_str().to_string(),
        passed,
        detail: if passed { "HTTP 200" } else { "HTTP 503" }.into(),
    }
}

#[test]
fn a_pause_step_holds_for_approval_and_approve_or_promote_passes_it() {
    let mut r = rollout(FailureCounting::Consecutive);
    r.steps = vec![
        StepKind::Weight(pct_weight(5)),
        StepKind::Weight(pct_weight(10)),
        StepKind::Pause,
        StepKind::Weight(pct_weight(50)),
        StepKind::Weight(pct_weight(100)),
    ];
    let state = apply(&r, started(&r), Event::Check(check(Verdict::Pass))).1;
    let (d, held) = apply(&r, state, Event::Check(check(Verdict::Pass)));
    assert_eq!(
        (d.action, canary(&d), held.phase),
        (Action::Paused, None, Phase::Paused)
    );
    assert!(held.approval && pct(&held) == 10, "{held:?}");
    assert!(
        d.message.contains("sluice-control approve myapp"),
        "{}",
        d.message
    );
    // Checks do not run while held; resume does not pass it; approve does.
    assert!(decide(&r, &held, Event::Check(check(Verdict::Pass)), &ctx()).is_err());
    let refusal = decide(&r, &held, Event::Resume, &ctx()).expect_err("resume");
    assert!(refusal.hint.contains("approve"), "{refusal}");
    let (d, approved) = apply(&r, held.clone(), Event::Approve);
    assert_eq!(
        (d.action, canary(&d), approved.phase, approved.approval),
        (
            Action::Approved,
            Some(pct_weight(50)),
            Phase::Progressing,
            false
        )
    );
    let (d, promoted) = apply(&r, held, Event::Promote);
    assert_eq!(
        (canary(&d), promoted.phase),
        (Some(pct_weight(50)), Phase::Progressing)
    );
    assert!(
        decide(&r, &approved, Event::Approve, &ctx()).is_err(),
        "nothing to approve"
    );
}

#[test]
fn bake_intervals_at_the_last_step_come_before_success_and_can_fail() {
    let mut r = rollout(FailureCounting::Consecutive);
    r.steps = vec![
        StepKind::Weight(pct_weight(50)),
        StepKind::Weight(pct_weight(100)),
    ];
    r.bake = 2;
    let at_last = apply(&r, started(&r), Event::Check(check(Verdict::Pass))).1;
    assert_eq!(pct(&at_last), 100);
    let (d, baked) = apply(&r, at_last.clone(), Event::Check(check(Verdict::Pass)));
    assert_eq!(
        (d.action, baked.baked, baked.phase),
        (Action::Baked, 1, Phase::Progressing)
    );
    let (d, baked) = apply(&r, baked, Event::Check(check(Verdict::Pass)));
    assert_eq!((d.action, baked.baked), (Action::Baked, 2));
    let (d, done) = apply(&r, baked.clone(), Event::Check(check(Verdict::Pass)));
    assert_eq!(
        (d.action, done.phase),
        (Action::Succeeded, Phase::Succeeded)
    );
    let failed = apply(&r, baked, Event::Check(check(Verdict::Fail))).1;
    let (d, back) = apply(&r, failed, Event::Check(check(Verdict::Fail)));
    assert_eq!(
        (d.action, canary(&d), back.phase),
        (Action::RolledBack, Some(pct_weight(0)), Phase::RolledBack)
    );
}

#[test]
fn pre_rollout_hooks_gate_the_first_step() {
    let mut r = rollout(FailureCounting::Consecutive);
    r.webhooks = vec![hook(HookKind::ConfirmRollout), hook(HookKind::PreRollout)];
    let (d, gated) = apply(
        &r,
        RolloutState::default(),
        Event::Start {
            automatic: false,
            reason: String::new(),
            version: None,
        },
    );
    assert_eq!(
        (canary(&d), gated.gated, gated.phase),
        (Some(pct_weight(0)), true, Phase::Progressing)
    );
    // confirm-rollout not yet 2xx: hold, no failure.
    let waiting = crate::analysis::judge_gate(vec![
        gate(HookKind::ConfirmRollout, false),
        gate(HookKind::PreRollout, true),
    ]);
    let (d, held) = apply(&r, gated.clone(), Event::Check(waiting));
    assert_eq!(
        (d.action, held.failures, held.gated),
        (Action::Held, 0, true)
    );
    // A failing pre-rollout hook is a failed check; at the limit: rolled back, never any traffic.
    let failing = crate::analysis::judge_gate(vec![
        gate(HookKind::ConfirmRollout, true),
        gate(HookKind::PreRollout, false),
    ]);
    let once = apply(&r, gated.clone(), Event::Check(failing.clone())).1;
    let (d, back) = apply(&r, once, Event::Check(failing));
    assert_eq!(
        (d.action, canary(&d), back.phase),
        (Action::RolledBack, Some(pct_weight(0)), Phase::RolledBack)
    );
    // All pass: the first step.
    let passing = crate::analysis::judge_gate(vec![
        gate(HookKind::ConfirmRollout, true),
        gate(HookKind::PreRollout, true),
    ]);
    let (d, open) = apply(&r, gated, Event::Check(passing));
    assert_eq!(
        (d.action, canary(&d), open.gated, open.step),
        (Action::Advanced, Some(pct_weight(5)), false, 0)
    );
}

#[test]
fn confirm_promotion_holds_before_the_last_step() {
    let mut r = rollout(FailureCounting::Consecutive);
    r.steps = vec![
        StepKind::Weight(pct_weight(10)),
        StepKind::Weight(pct_weight(50)),
        StepKind::Weight(pct_weight(100)),
    ];
    r.webhooks = vec![hook(HookKind::ConfirmPromotion)];
    let at_50 = apply(&r, started(&r), Event::Check(check(Verdict::Pass))).1;
    assert!(next_is_last(&r, &at_50));
    let mut unconfirmed = check(Verdict::Pass);
    unconfirmed.gates = vec![gate(HookKind::ConfirmPromotion, false)];
    let (d, held) = apply(&r, at_50.clone(), Event::Check(unconfirmed));
    assert_eq!((d.action, pct(&held)), (Action::Held, 50));
    assert!(d.message.contains("confirm-promotion"), "{}", d.message);
    let mut confirmed = check(Verdict::Pass);
    confirmed.gates = vec![gate(HookKind::ConfirmPromotion, true)];
    let (d, last) = apply(&r, held, Event::Check(confirmed));
    assert_eq!((d.action, pct(&last)), (Action::Advanced, 100));
}

#[test]
fn blue_green_switches_in_one_write_after_its_gate_and_back_in_one_write() {
    let mut r = rollout(FailureCounting::Consecutive);
    r.strategy = Strategy::BlueGreen;
    r.steps = vec![StepKind::Weight(pct_weight(100))];
    r.bake = 1;
    let (d, gated) = apply(
        &r,
        RolloutState::default(),
        Event::Start {
            automatic: false,
            reason: String::new(),
            version: None,
        },
    );
    assert_eq!((canary(&d), gated.gated), (Some(pct_weight(0)), true));
    let mut health = gate(HookKind::PreRollout, false);
    health.kind = "health".into();
    let unhealthy = crate::analysis::judge_gate(vec![health.clone()]);
    let (d, still) = apply(&r, gated.clone(), Event::Check(unhealthy));
    assert_eq!(
        (d.action, canary(&d), still.gated),
        (Action::Failed, None, true)
    );
    health.passed = true;
    let (d, switched) = apply(
        &r,
        gated,
        Event::Check(crate::analysis::judge_gate(vec![health])),
    );
    assert_eq!(
        d.write.map(|w| (w.stable, w.canary)),
        Some((pct_weight(0), pct_weight(100)))
    );
    assert!(d.message.contains("switched"), "{}", d.message);
    let once = apply(&r, switched, Event::Check(check(Verdict::Fail))).1;
    let (d, back) = apply(&r, once, Event::Check(check(Verdict::Fail)));
    assert_eq!(
        d.write.map(|w| (w.stable, w.canary)),
        Some((pct_weight(100), pct_weight(0)))
    );
    assert_eq!(back.phase, Phase::RolledBack);
}

/// `myapp` with a shadow step first: `[shadow, 5, 25, 100]`.
fn shadowed() -> Rollout {
    let mut r = rollout(FailureCounting::Consecutive);
    r.steps = vec![
        StepKind::Shadow,
        StepKind::Weight(pct_weight(5)),
        StepKind::Weight(pct_weight(25)),
        StepKind::Weight(pct_weight(100)),
    ];
    r
}

#[test]
fn a_shadow_step_judges_the_mirror_at_canary_0_then_the_first_weight_follows() {
    let r = shadowed();
    let (d, state) = apply(
        &r,
        RolloutState::default(),
        Event::Start {
            automatic: false,
            reason: String::new(),
            version: None,
        },
    );
    assert_eq!(
        d.write.map(|w| (w.stable, w.canary)),
        Some((pct_weight(100), pct_weight(0)))
    );
    assert_eq!(
        d.message,
        "started by an operator; canary 0%, shadow step: the copies route default mirrors to canary are judged (step 1/4)"
    );
    assert_eq!((state.step, pct(&state), state.gated), (0, 0, false));
    assert!(shadowing(&r, &state));
    // Too few mirrored copies: wait another interval, nothing counted.
    let mut few = check(Verdict::Inconclusive);
    few.reasons = vec!["12 canary requests < min_requests 100".into()];
    let (d, held) = apply(&r, state, Event::Check(few));
    assert_eq!(
        (d.action, canary(&d), held.failures, held.step),
        (Action::Held, None, 0, 0)
    );
    assert_eq!(
        d.message,
        "shadow check inconclusive: 12 canary requests < min_requests 100; holding at 0%"
    );
    let (d, first) = apply(&r, held, Event::Check(check(Verdict::Pass)));
    assert_eq!(
        (d.action, canary(&d), first.step, first.phase),
        (Action::Advanced, Some(pct_weight(5)), 1, Phase::Progressing)
    );
    assert_eq!(
        d.message,
        "shadow check passed (1000 mirrored requests, error rate 0.10% <= 1.00%, p95 100.0ms <= 500.0ms): canary 0% -> 5% (step 2/4)"
    );
    assert!(!shadowing(&r, &first), "users reach the canary from here");
    let (d, _) = apply(&r, first, Event::Check(check(Verdict::Pass)));
    assert!(
        d.message.starts_with("check passed (1000 requests"),
        "{}",
        d.message
    );
}

#[test]
fn a_failing_shadow_rolls_back_and_the_canary_never_rises_above_0() {
    let r = shadowed();
    let mut state = started(&r);
    let mut decisions = Vec::new();
    for _ in 0..2 {
        let (d, next) = apply(&r, state, Event::Check(check(Verdict::Fail)));
        decisions.push(d);
        state = next;
    }
    assert_eq!(
        decisions.iter().map(|d| d.action).collect::<Vec<_>>(),
        [Action::Failed, Action::RolledBack]
    );
    assert_eq!(
        decisions[0].message,
        "shadow check failed: error rate 5.00% > max_error_rate 1.00% (1000 mirrored requests, error rate 5.00%, p95 100.0ms); 1 of 2 failures, holding at 0%"
    );
    assert_eq!(
        decisions[1].write.map(|w| (w.stable, w.canary)),
        Some((pct_weight(100), pct_weight(0)))
    );
    assert_eq!((state.phase, state.failures), (Phase::RolledBack, 2));
    assert!(
        state
            .history
            .iter()
            .all(|record| record.canary_weight == pct_weight(0)),
        "{:?}",
        state.history
    );
    assert!(!shadowing(&r, &state));
    // Retry starts from the shadow step again, still without users on the canary.
    let (d, again) = apply(&r, state, Event::Retry);
    assert_eq!(
        (canary(&d), again.step, again.failures, again.phase),
        (Some(pct_weight(0)), 0, 0, Phase::Progressing)
    );
    assert!(shadowing(&r, &again));
}

#[test]
fn promote_passes_the_shadow_step_and_a_gate_opens_onto_it() {
    let r = shadowed();
    let (d, promoted) = apply(&r, started(&r), Event::Promote);
    assert_eq!(
        (d.action, canary(&d), promoted.step),
        (Action::Advanced, Some(pct_weight(5)), 1)
    );
    assert_eq!(
        d.message,
        "promoted by an operator (analysis skipped): canary 0% -> 5% (step 2/4)"
    );
    let mut gated = shadowed();
    gated.webhooks = vec![hook(HookKind::PreRollout)];
    let waiting = started(&gated);
    assert!(waiting.gated && !shadowing(&gated, &waiting));
    let passing = crate::analysis::judge_gate(vec![gate(HookKind::PreRollout, true)]);
    let (d, open) = apply(&gated, waiting, Event::Check(passing));
    assert_eq!(
        (d.action, canary(&d), open.step, open.gated),
        (Action::Advanced, Some(pct_weight(0)), 0, false)
    );
    assert!(shadowing(&gated, &open), "{}", d.message);
    assert!(
        d.message
            .ends_with(": canary 0%, shadow step: the copies route default mirrors to canary are judged (step 1/4)"),
        "{}",
        d.message
    );
}
