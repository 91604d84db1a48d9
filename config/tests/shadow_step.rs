//! The `shadow` rollout step: where it may stand, and the route mirror it needs.

mod common;

use common::parse;
use sluice_config::{Step, Weight, WEIGHT_SCALE};

/// A rollout whose route mirrors every request to its canary.
const BASE: &str = r#"listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  stable:
    endpoints: [127.0.0.1:18081]
  canary:
    endpoints: [127.0.0.1:18082]
routes:
  - name: default
    mirror: { upstream: canary }
    backends:
      - { upstream: stable, weight: 100 }
      - { upstream: canary, weight: 0 }
weights_file: weights.yaml
rollouts:
  - name: myapp
    route: default
    stable: stable
    canary: canary
    steps: [shadow, 5, 50, 100]
    interval: 30s
"#;

/// `BASE` with one substring replaced (which must exist).
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

fn weight(percent: u64) -> Step {
    Step::Weight(Weight::from_hundredths(percent * WEIGHT_SCALE))
}

#[test]
fn shadow_first_then_weights() {
    let config = parse(BASE).expect("valid");
    let steps = &config.rollouts[0].steps;
    assert_eq!(
        steps.as_slice(),
        [Step::Shadow, weight(5), weight(50), weight(100)]
    );
    assert_eq!(Step::Shadow.weight(), None);
    let paused = parse(&base_with(
        "steps: [shadow, 5, 50, 100]",
        "steps: [shadow, 5, pause, 100]",
    ))
    .expect("valid");
    assert_eq!(
        paused.rollouts[0].steps.as_slice(),
        [Step::Shadow, weight(5), Step::Pause, weight(100)]
    );
}

#[test]
fn shadow_is_only_the_first_step() {
    assert_eq!(
        parse(&base_with(
            "steps: [shadow, 5, 50, 100]",
            "steps: [5, shadow, 100, shadow]"
        ))
        .expect_err("not first"),
        [
            "sluice.yaml:21:16: rollouts[0].steps[1]: shadow can only be the first step: move it to the front, e.g. [shadow, 5, 25, 100]",
            "sluice.yaml:21:29: rollouts[0].steps[3]: shadow can only be the first step: move it to the front, e.g. [shadow, 5, 25, 100]",
        ]
    );
}

#[test]
fn weights_follow_shadow() {
    assert_eq!(
        parse(&base_with("steps: [shadow, 5, 50, 100]", "steps: [shadow]")).expect_err("alone"),
        ["sluice.yaml:21:13: rollouts[0].steps[0]: shadow judges the canary before users reach it: weights must follow it, e.g. [shadow, 5, 25, 100]"]
    );
    assert_eq!(
        parse(&base_with(
            "steps: [shadow, 5, 50, 100]",
            "steps: [shadow, pause, 5, 100]"
        ))
        .expect_err("pause"),
        ["sluice.yaml:21:21: rollouts[0].steps[1]: a pause step holds between two weights, not right after shadow: put it after the first weight, e.g. [shadow, 5, pause, 25, 100]"]
    );
}

#[test]
fn shadow_needs_the_route_to_mirror_the_canary() {
    let fix = "a shadow step judges the copies of the route's requests sent to the canary";
    assert_eq!(
        parse(&base_with("    mirror: { upstream: canary }\n", "")).expect_err("no mirror"),
        [format!("sluice.yaml:20:13: rollouts[0].steps[0]: {fix}: give route \"default\" mirror: {{ upstream: canary }}, or remove the shadow step")]
    );
    assert_eq!(
        parse(&base_with("mirror: { upstream: canary }", "mirror: { upstream: stable }"))
            .expect_err("other upstream"),
        [format!("sluice.yaml:21:13: rollouts[0].steps[0]: {fix}: route \"default\" mirrors to \"stable\": make it mirror: {{ upstream: canary }}, or remove the shadow step")]
    );
    assert_eq!(
        parse(&base_with(
            "mirror: { upstream: canary }",
            "mirror: { upstream: canary, percent: 0 }"
        ))
        .expect_err("no copies"),
        [format!("sluice.yaml:21:13: rollouts[0].steps[0]: {fix}: route \"default\" mirrors 0% of its requests: give its mirror.percent above 0, or remove the shadow step")]
    );
    // Without a shadow step, the mirror may go anywhere (or nowhere).
    let text = base_with("steps: [shadow, 5, 50, 100]", "steps: [5, 50, 100]");
    parse(&text.replacen(
        "mirror: { upstream: canary }",
        "mirror: { upstream: stable }",
        1,
    ))
    .expect("valid");
    parse(&text.replacen("    mirror: { upstream: canary }\n", "", 1)).expect("valid");
}
