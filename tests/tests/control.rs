//! sluice-control end to end: real proxy processes, real HTTP load, short intervals.

// Tests print what they measure (time to rollback, numbers checked) for the record.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use sluice_tests::rig::rollout;
use sluice_tests::{client, eventually, Behavior, Control, Load, Rig};

/// A rig whose proxies have loaded `rollouts`, and a running control.
async fn rig_with(proxies: usize, rollouts: &str) -> (Rig, Control) {
    let rig = Rig::new(proxies).await;
    let control = rig.with_control(rollouts).await;
    (rig, control)
}

/// The canary weight each proxy applies, from its `/config`.
async fn proxy_weights(rig: &Rig) -> Vec<f64> {
    rig.canary_weights().await
}

fn loads(rig: &Rig, connections: usize) -> Vec<Load> {
    rig.proxies
        .iter()
        .map(|p| Load::start(&p.url("/"), connections))
        .collect()
}

async fn stop(loads: Vec<Load>) {
    for load in loads {
        load.stop().await;
    }
}

const HEALTHY: &str = "      min_requests: 10\n      max_error_rate: 0.01\n      max_p95: 1s\n      failure_limit: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_goes_through_every_step_and_succeeds() {
    let (rig, control) = rig_with(2, &rollout("[5, 10, 25, 50, 75, 100]", "1s", HEALTHY)).await;
    let load = loads(&rig, 3);
    let (code, answer) = control.command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    let mut seen: Vec<f64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.phase("myapp").await != "succeeded" {
        let weights = proxy_weights(&rig).await;
        if seen.last() != Some(&weights[0]) {
            seen.push(weights[0]);
        }
        assert!(
            Instant::now() < deadline,
            "not succeeded within 60s; weights seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually!(
        proxy_weights(&rig).await == [100.0, 100.0],
        "every proxy at 100%"
    );
    seen.push(100.0);
    seen.dedup();
    println!("proxy weights followed the rollout: {seen:?}");
    let steps: Vec<f64> = seen.iter().copied().filter(|w| *w > 0.0).collect();
    assert_eq!(
        steps,
        [5.0, 10.0, 25.0, 50.0, 75.0, 100.0],
        "all seen: {seen:?}"
    );
    assert_eq!(control.checks("myapp", "pass").await, 6.0);
    assert_eq!(control.checks("myapp", "fail").await, 0.0);
    assert_eq!(
        control
            .metric(
                "sluice_rollout_phase",
                &[("rollout", "myapp"), ("phase", "succeeded")]
            )
            .await,
        1.0
    );
    assert_eq!(
        control
            .metric("sluice_rollout_weight", &[("rollout", "myapp")])
            .await,
        100.0
    );
    stop(load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_ten_percent_500s_is_rolled_back_after_exactly_failure_limit_failures() {
    let analysis = "      min_requests: 10\n      max_error_rate: 0.05\n      max_p95: 1s\n      failure_limit: 2\n";
    let (rig, control) = rig_with(1, &rollout("[5, 10, 25, 50, 75, 100]", "1s", analysis)).await;
    let load = loads(&rig, 4);
    control.command("myapp", "start").await;
    eventually!(
        control.weight("myapp").await >= 10.0,
        "reached the second step while healthy"
    );
    rig.canary.set_behavior(Behavior::ErrorRate(0.10));
    let went_bad = Instant::now();
    eventually!(control.phase("myapp").await == "rolled_back", "rolled back");
    let took = went_bad.elapsed();
    eventually!(proxy_weights(&rig).await == [0.0], "proxy at canary 0%");
    let fails = control.checks("myapp", "fail").await;
    let rollout = control.rollout("myapp").await;
    let message = control.last_message("myapp").await;
    println!(
        "canary went bad at 10% errors; rolled back {took:?} later after {fails} failed checks (interval 1s): {message}"
    );
    assert_eq!(fails, 2.0, "exactly failure_limit failing intervals");
    assert_eq!(rollout.canary_weight.as_f64(), 0.0);
    assert!(
        message.contains("> max_error_rate 5.00%")
            && message.contains("2 of 2 failures: rolled back"),
        "{message}"
    );
    stop(load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_300ms_slower_than_max_p95_is_rolled_back() {
    let analysis = "      min_requests: 5\n      max_error_rate: 0.01\n      max_p95: 200ms\n      failure_limit: 2\n";
    let (rig, control) = rig_with(1, &rollout("[10, 50, 100]", "1500ms", analysis)).await;
    rig.canary
        .set_behavior(Behavior::Slow(Duration::from_millis(300)));
    let load = loads(&rig, 16);
    control.command("myapp", "start").await;
    eventually!(
        control.phase("myapp").await == "rolled_back",
        "rolled back on p95"
    );
    let message = control.last_message("myapp").await;
    assert!(message.contains("> max_p95 200.0ms"), "{message}");
    eventually!(
        proxy_weights(&rig).await == [0.0],
        "the proxy takes the canary out"
    );
    stop(load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equally_slow_canary_and_stable_progress_under_max_p95_vs_stable() {
    let analysis = "      min_requests: 5\n      max_error_rate: 0.01\n      max_p95_vs_stable: 1.5\n      failure_limit: 2\n";
    let (rig, control) = rig_with(1, &rollout("[10, 50, 100]", "1500ms", analysis)).await;
    rig.stable
        .set_behavior(Behavior::Slow(Duration::from_millis(300)));
    rig.canary
        .set_behavior(Behavior::Slow(Duration::from_millis(300)));
    let load = loads(&rig, 40);
    control.command("myapp", "start").await;
    eventually!(
        control.phase("myapp").await == "succeeded",
        "progressed to the end"
    );
    assert_eq!(control.checks("myapp", "fail").await, 0.0);
    let check = control.rollout("myapp").await.last_check;
    println!("both at ~300ms: last check {check:?}");
    stop(load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_traffic_is_inconclusive_and_holds_the_weight() {
    let analysis = "      min_requests: 50\n      max_error_rate: 0.01\n      failure_limit: 1\n";
    let (rig, control) = rig_with(1, &rollout("[5, 50, 100]", "1s", analysis)).await;
    control.command("myapp", "start").await;
    // A trickle: far below 50 canary requests per interval.
    let trickle = client::http1();
    for _ in 0..20 {
        client::get(&trickle, &rig.proxies[0].url("/"), &[]).await;
    }
    eventually!(
        control.checks("myapp", "inconclusive").await >= 3.0,
        "three inconclusive checks"
    );
    let rollout = control.rollout("myapp").await;
    assert_eq!(rollout.phase.as_str(), "progressing");
    assert_eq!(rollout.canary_weight.as_f64(), 5.0);
    assert_eq!(rollout.failures, 0);
    assert_eq!(control.checks("myapp", "fail").await, 0.0);
    assert!(
        rollout
            .last_check
            .as_ref()
            .and_then(|c| c.check.reasons.first())
            .is_some_and(|r| r.contains("< min_requests 50")),
        "{rollout:?}"
    );
    assert_eq!(proxy_weights(&rig).await, [5.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_proxies_is_analysed_as_the_sum_of_what_it_served() {
    // min_requests out of reach: every check is inconclusive, so the weight stays at 50% and
    // the test alone decides what each interval contains.
    let analysis = "      min_requests: 1000000\n      max_error_rate: 0.01\n";
    let (rig, control) = rig_with(3, &rollout("[50, 100]", "4s", analysis)).await;
    control.command("myapp", "start").await;
    eventually!(
        proxy_weights(&rig).await == [50.0, 50.0, 50.0],
        "the fleet applied 50%"
    );
    let checks = || async { control.checks("myapp", "inconclusive").await };
    let before = checks().await;
    eventually!(checks().await > before, "an interval boundary");
    // Right after a check: send exactly 40 requests through each proxy.
    let client = client::http1();
    let (mut canary_answers, mut stable_answers) = (0.0, 0.0);
    for proxy in &rig.proxies {
        for _ in 0..40 {
            match client::get(&client, &proxy.url("/"), &[])
                .await
                .text()
                .as_str()
            {
                "canary\n" => canary_answers += 1.0,
                _ => stable_answers += 1.0,
            }
        }
    }
    let sent_at = checks().await;
    eventually!(checks().await > sent_at, "the next check");
    let check = control
        .rollout("myapp")
        .await
        .last_check
        .expect("a check")
        .check;
    println!("sent {canary_answers} canary + {stable_answers} stable answers over 3 proxies; control measured {check:?}");
    assert_eq!(check.requests, canary_answers, "{check:?}");
    assert_eq!(check.stable_requests, stable_answers, "{check:?}");
    assert_eq!(canary_answers + stable_answers, 120.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_control_resumes_at_the_same_step_without_a_weight_jump() {
    let (rig, mut control) = rig_with(1, &rollout("[5, 10, 25, 50, 75, 100]", "2s", HEALTHY)).await;
    let load = loads(&rig, 3);
    control.command("myapp", "start").await;
    eventually!(control.weight("myapp").await >= 25.0, "mid-rollout");
    control.process.signal(libc::SIGKILL);
    control.wait_exit(Duration::from_secs(5)).expect("killed");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(rig.dir().join("control-state.json")).expect("state file"),
    )
    .expect("JSON");
    let step = state["rollouts"]["myapp"]["step"].as_u64();
    let weight = state["rollouts"]["myapp"]["canary_weight"].as_f64();
    // The last write before the kill reaches the proxy (a reload takes ~30 ms).
    let last_written = weight.unwrap_or(f64::NAN);
    eventually!(
        proxy_weights(&rig).await == [last_written],
        "the proxy applied the last write"
    );
    let weights_file = rig.weights_text();
    let restarted = Control::start(rig.dir());
    let resumed = restarted.rollout("myapp").await;
    assert_eq!(resumed.phase.as_str(), "progressing");
    assert_eq!(Some(resumed.step as u64), step.map(|s| s + 1), "same step");
    assert_eq!(Some(resumed.canary_weight.as_f64()), weight, "same weight");
    assert_eq!(rig.weights_text(), weights_file, "no write at restart");
    assert_eq!(
        proxy_weights(&rig).await,
        [last_written],
        "no jump in weights"
    );
    let mut restarted = restarted;
    restarted.process.wait_for_log("resuming rollout");
    eventually!(
        restarted.phase("myapp").await == "succeeded",
        "continues to the end"
    );
    stop(load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edited_weights_file_pauses_the_rollout_and_keeps_the_hand_weights() {
    let (rig, control) = rig_with(1, &rollout("[5, 10, 25, 50, 75, 100]", "1s", HEALTHY)).await;
    let load = loads(&rig, 3);
    control.command("myapp", "start").await;
    eventually!(control.weight("myapp").await >= 10.0, "progressing");
    rig.write_weights("routes:\n  default: { stable: 60, canary: 40 }\n");
    eventually!(
        control.phase("myapp").await == "paused",
        "paused by the hand edit"
    );
    let rollout = control.rollout("myapp").await;
    let reason = rollout.paused_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("edited by hand") && reason.contains("stable=60 canary=40"),
        "{reason}"
    );
    eventually!(
        proxy_weights(&rig).await == [40.0],
        "the proxies apply the hand weights"
    );
    // A quiet period, not a wait for an event: the control must not overwrite the hand
    // weights over the next intervals.
    let checks = control.checks("myapp", "pass").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rig.weights_text(),
        "routes:\n  default: { stable: 60, canary: 40 }\n"
    );
    assert_eq!(
        control.checks("myapp", "pass").await,
        checks,
        "no checks while paused"
    );
    // `resume` takes control again at the rollout's own step.
    let (code, _) = control.command("myapp", "resume").await;
    assert_eq!(code, 200);
    let weight = control.weight("myapp").await;
    eventually!(
        proxy_weights(&rig).await == [weight],
        "rollout weight re-asserted"
    );
    stop(load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restarted_mid_interval_yields_no_bogus_numbers() {
    let rig = Rig::new_fixed_ports().await;
    rig.write_config(&rollout("[5, 10, 25, 50, 75, 100]", "2s", HEALTHY), "v2");
    eventually!(
        rig.proxies[0].config_json().await["rollouts"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "reloaded"
    );
    let control = Control::start(rig.dir());
    let url = rig.proxies[0].url("/");
    let load = Load::start(&url, 3);
    control.command("myapp", "start").await;
    eventually!(control.weight("myapp").await >= 10.0, "a few checks in");
    // Restart the proxy in the middle of an interval, on the same ports.
    let mut rig = rig;
    rig.restart_proxy(0);
    eventually!(
        control.phase("myapp").await == "succeeded",
        "the rollout carries on"
    );
    let _ = load.stop().await;
    let decisions = control.rollout("myapp").await.history;
    for decision in decisions {
        let message = decision.message;
        assert!(
            !message.contains("requests, error rate -") || message.starts_with("inconclusive"),
            "{message}"
        );
        assert!(
            !message.contains('-') || !message.contains(" -1"),
            "negative number: {message}"
        );
    }
    assert_eq!(
        control.checks("myapp", "fail").await,
        0.0,
        "a counter reset is not a failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_canary_version_in_the_config_starts_the_rollout() {
    let (rig, control) = rig_with(1, &rollout("[5, 100]", "1s", HEALTHY)).await;
    assert_eq!(
        control.phase("myapp").await,
        "idle",
        "the first version seen is the baseline"
    );
    rig.write_config(&rollout("[5, 100]", "1s", HEALTHY), "v3");
    eventually!(
        control.phase("myapp").await == "progressing",
        "started by the version change"
    );
    let message = control.last_message("myapp").await;
    assert!(message.contains("canary version v2 -> v3"), "{message}");
    eventually!(proxy_weights(&rig).await == [5.0], "first step applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_status_and_commands_with_clear_errors() {
    let (_rig, control) = rig_with(1, &rollout("[5, 100]", "1s", HEALTHY)).await;
    let admin = control.admin.to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(sluice_tests::process::binary("sluice-control"))
            .args(args)
            .args(["--admin", &admin])
            .output()
            .expect("run sluice-control");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = cli(&["status"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("ROLLOUT  PHASE  STEP  WEIGHT  REQUESTS  ERROR RATE"),
        "{stdout}"
    );
    assert!(stdout.contains("myapp    idle   0/2   -"), "{stdout}");
    let (code, _, stderr) = cli(&["start", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "sluice-control: unknown rollout \"nope\" (known: myapp)\n"
    );
    let (code, _, stderr) = cli(&["pause", "myapp"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "sluice-control: rollout \"myapp\" is idle: only a progressing rollout can be paused\n"
    );
    let (code, stdout, _) = cli(&["start", "myapp"]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "myapp: started by anonymous from 127.0.0.1; canary 5% (step 1/2)\n"
    );
    let (code, stdout, _) = cli(&["abort", "myapp"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "myapp: aborted by anonymous from 127.0.0.1: canary 0%\n")
    );
    let (code, stdout, _) = cli(&["status"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("myapp    rolled_back"), "{stdout}");
    assert!(
        stdout.contains("last decision") && stdout.contains("aborted by anonymous"),
        "{stdout}"
    );
    let unreachable = std::process::Command::new(sluice_tests::process::binary("sluice-control"))
        .args(["status", "--admin", "127.0.0.1:9"])
        .output()
        .expect("run");
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr)
        .contains("cannot reach sluice-control at 127.0.0.1:9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_ejected_by_outlier_detection_is_rolled_back_through_its_failovers() {
    let (rig, control) = rig_with(1, &rollout("[10, 50, 100]", "1500ms", HEALTHY)).await;
    // Outlier detection on for the canary: after 3 failures it is ejected, and the split sends
    // its share to stable. The control must still see those requests as failed canary ones.
    rig.edit_config(|config| {
        config.replace(
            "outlier_detection: { consecutive_failures: 0 }",
            "outlier_detection: { consecutive_failures: 3, base_ejection_time: 60s }",
        )
    });
    eventually!(
        rig.proxies[0].config_json().await["upstreams"][1]["endpoints"][0]["healthy"] == true,
        "proxy reloaded"
    );
    rig.canary.set_behavior(Behavior::Status(500));
    let load = loads(&rig, 3);
    control.command("myapp", "start").await;
    eventually!(
        control.phase("myapp").await == "rolled_back",
        "an ejected canary is rolled back"
    );
    assert!(
        rig.proxies[0]
            .metric("sluice_backend_failovers_total", &[("backend", "canary")])
            .await
            > 0.0
    );
    let message = control.last_message("myapp").await;
    assert!(
        message.contains("error rate 100.00% > max_error_rate"),
        "{message}"
    );
    stop(load).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_success_promoting_stable_to_the_new_version_hands_traffic_back() {
    let (rig, control) = rig_with(1, &rollout("[50, 100]", "1s", HEALTHY)).await;
    control.command("myapp", "start").await;
    let (code, _) = control.command("myapp", "promote?full=true").await;
    assert_eq!(code, 200);
    eventually!(
        proxy_weights(&rig).await == [100.0],
        "canary takes everything"
    );
    // The operator promotes: stable now runs v2 (in real life, new endpoints too).
    rig.edit_config(|config| config.replacen("version: v1", "version: v2", 1));
    eventually!(proxy_weights(&rig).await == [0.0], "traffic back to stable");
    // The weights are written before the decision is published: wait for it to show.
    eventually!(
        control
            .rollout("myapp")
            .await
            .last_decision
            .is_some_and(|d| d.message.contains("stable now runs v2")),
        "the hand-back is published"
    );
    let rollout = control.rollout("myapp").await;
    assert_eq!(rollout.phase.as_str(), "succeeded");
    assert!(
        rollout
            .last_decision
            .as_ref()
            .is_some_and(|d| d.message.contains("stable now runs v2")),
        "{rollout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_answered_at_once_while_a_scrape_target_hangs() {
    // A target that accepts connections (the kernel's backlog does) and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hanging = hanging.local_addr().expect("address");
    let rig = Rig::new(1).await;
    let targets = format!("[{}, {hanging}]", rig.proxies[0].admin);
    // A 20 s interval: every scrape of the hanging target waits its full 10 s timeout.
    let rollouts =
        rollout("[5, 10, 25, 50, 75, 100]", "20s", HEALTHY).replace("{targets}", &targets);
    rig.write_config(&rollouts, "v2");
    rig.wait_for_rollouts().await;
    let control = Control::start(rig.dir());
    let mut slowest = Duration::ZERO;
    // `start` takes the first baseline, which hangs on the dead target: the answer must not.
    for (action, phase) in [
        ("start", "progressing"),
        ("pause", "paused"),
        ("resume", "progressing"),
        ("promote", "progressing"),
        ("abort", "rolled_back"),
    ] {
        let sent = Instant::now();
        let (code, answer) = control.command("myapp", action).await;
        let took = sent.elapsed();
        let status_sent = Instant::now();
        let status = control.phase("myapp").await;
        let status_took = status_sent.elapsed();
        println!("{action}: answered in {took:?}; status in {status_took:?}");
        assert_eq!((code, status.as_str()), (200, phase), "{action}: {answer}");
        slowest = slowest.max(took).max(status_took);
    }
    println!("slowest command or status answer while a target hangs: {slowest:?}");
    // Generous for a loaded CI machine; the figure printed above is the measurement.
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    eventually!(
        proxy_weights(&rig).await == [0.0],
        "the abort reached the proxy"
    );
}
