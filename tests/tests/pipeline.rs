//! Pipelines and people: `sluice-control wait` as a CI gate (across a control restart),
//! `pause` steps with `approve`, webhooks of every kind in order with their numbers, a failing
//! pre-rollout hook that keeps every request away from the canary, a hook that hangs without
//! delaying anyone, and custom PromQL checks against a real Prometheus.

// Tests print what they measure for the record.
#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_tests::hooks::{HookServer, Reply};
use sluice_tests::process::binary;
use sluice_tests::rig::rollout;
use sluice_tests::servers::{self, Prometheus};
use sluice_tests::{eventually, Behavior, Control, Load, Rig};

const HEALTHY: &str = "      min_requests: 10\n      max_error_rate: 0.05\n      max_p95: 1s\n      failure_limit: 2\n";

/// `sluice-control wait NAME` against `admin`, its output captured.
fn wait_cli(admin: &str, timeout: &str) -> Child {
    Command::new(binary("sluice-control"))
        .args(["wait", "myapp", "--admin", admin, "--timeout", timeout])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice-control wait")
}

/// Waits (up to 60 s) for `child` to exit: (exit code, stdout + stderr).
async fn exit_of(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let output = child.wait_with_output().expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            return (status.code().unwrap_or(-1), text);
        }
        assert!(Instant::now() < deadline, "wait did not exit within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The config's control admin moved to a fixed free port, so a restarted control is found
/// at the same address.
fn fix_control_port(rig: &Rig) -> String {
    let port = sluice_tests::free_port();
    rig.edit_config(|text| {
        text.replacen(
            "  admin: 127.0.0.1:0\n  state:",
            &format!("  admin: 127.0.0.1:{port}\n  state:"),
            1,
        )
    });
    format!("127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_with_the_outcome_and_survives_a_control_restart() {
    let rig = Rig::new(1).await;
    rig.write_config(&rollout("[10, 50, 100]", "1s", HEALTHY), "v2");
    let admin = fix_control_port(&rig);
    rig.wait_for_rollouts().await;
    let mut control = Control::start(rig.dir());
    let load = Load::start(&rig.proxies[0].url("/"), 4);
    assert_eq!(control.command("myapp", "start").await.0, 200);
    let waiting = wait_cli(&admin, "2m");
    eventually!(control.weight("myapp").await >= 50.0, "a few decisions in");
    // The control dies and comes back in the middle: wait keeps following, no false outcome.
    control.process.kill();
    let restarted = Control::start(rig.dir());
    let (code, output) = exit_of(waiting).await;
    println!("wait across a restart:\n{output}");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("myapp: succeeded"), "{output}");
    assert!(output.contains("started"), "{output}");
    // Every decision printed once, even though the control restarted meanwhile.
    let advanced = output
        .lines()
        .filter(|l| l.contains("canary 10% -> 50%"))
        .count();
    assert_eq!(advanced, 1, "{output}");

    // A bad canary: exit 1.
    rig.canary.set_behavior(Behavior::ErrorRate(0.3));
    assert_eq!(restarted.command("myapp", "start").await.0, 200);
    let (code, output) = exit_of(wait_cli(&admin, "2m")).await;
    println!("wait on a bad canary:\n{output}");
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("myapp: rolled back"), "{output}");

    // Still running when the timeout comes: exit 2.
    rig.canary.set_behavior(Behavior::Ok);
    assert_eq!(restarted.command("myapp", "retry").await.0, 200);
    let (code, output) = exit_of(wait_cli(&admin, "1s")).await;
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("timed out after 1s"), "{output}");
    // An unknown rollout cannot be followed: exit 3.
    let unknown = Command::new(binary("sluice-control"))
        .args(["wait", "nope", "--admin", &admin])
        .output()
        .expect("run");
    assert_eq!(unknown.status.code(), Some(3));
    load.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_steps_hold_until_approved_and_promote_passes_them() {
    let rig = Rig::new(1).await;
    let control = rig
        .with_control(&rollout("[5, pause, 50, pause, 100]", "1s", HEALTHY))
        .await;
    let load = Load::start(&rig.proxies[0].url("/"), 4);
    assert_eq!(control.command("myapp", "start").await.0, 200);
    eventually!(
        control.rollout("myapp").await.awaiting_approval,
        "held at the first pause step"
    );
    let held = control.rollout("myapp").await;
    assert_eq!(
        (held.phase.as_str(), held.canary_weight.as_f64()),
        ("paused", 5.0)
    );
    assert!(
        held.paused_reason
            .as_deref()
            .is_some_and(|r| r.contains("sluice-control approve myapp")),
        "{held:?}"
    );
    // A quiet period, not a wait for an event: several intervals pass and nothing moves.
    let checks = control.checks("myapp", "pass").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let still = control.rollout("myapp").await;
    assert_eq!(
        (still.phase.as_str(), still.canary_weight.as_f64()),
        ("paused", 5.0)
    );
    assert_eq!(
        control.checks("myapp", "pass").await,
        checks,
        "no checks while held"
    );
    assert_eq!(rig.canary_weights().await, [5.0]);
    // resume does not pass it; approve does.
    assert_eq!(control.command("myapp", "resume").await.0, 409);
    let (code, answer) = control.command("myapp", "approve").await;
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("approved by anonymous from 127.0.0.1: canary 5% -> 50%")),
        "{answer}"
    );
    eventually!(rig.canary_weights().await == [50.0], "the proxy at 50%");
    eventually!(
        control.rollout("myapp").await.awaiting_approval,
        "held at the second pause step"
    );
    // promote passes a pause step too.
    assert_eq!(control.command("myapp", "promote").await.0, 200);
    eventually!(
        control.phase("myapp").await == "succeeded",
        "succeeded after the last step"
    );
    assert_eq!(control.command("myapp", "approve").await.0, 409);
    load.stop().await;
}

/// A rollout with one hook of every kind on `hooks`.
fn with_hooks(hooks: &HookServer) -> String {
    let mut text = rollout("[10, 50, 100]", "1s", HEALTHY);
    text.push_str("    webhooks:\n");
    for (kind, path) in [
        ("confirm-rollout", "/confirm-rollout"),
        ("pre-rollout", "/pre"),
        ("rollout", "/each"),
        ("confirm-promotion", "/confirm-promotion"),
        ("post-rollout", "/post"),
        ("event", "/event"),
    ] {
        text.push_str(&format!(
            "      - {{ name: {}, type: {kind}, url: \"{}\", timeout: 2s }}\n",
            path.trim_start_matches('/'),
            hooks.url(path)
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_called_in_order_with_their_numbers_and_gates_hold() {
    let hooks = HookServer::spawn().await;
    hooks.reply("/confirm-promotion", Reply::Status(503));
    let rig = Rig::new(1).await;
    let control = rig.with_control(&with_hooks(&hooks)).await;
    let load = Load::start(&rig.proxies[0].url("/"), 4);
    assert_eq!(control.command("myapp", "start").await.0, 200);
    // Held before the last step until confirm-promotion answers 2xx.
    eventually!(
        control
            .decisions_mentioning("myapp", "confirm-promotion hook")
            .await
            >= 2,
        "held twice waiting for confirm-promotion"
    );
    assert_eq!(control.weight("myapp").await, 50.0);
    hooks.reply("/confirm-promotion", Reply::Status(200));
    eventually!(
        control.phase("myapp").await == "succeeded",
        "succeeded once confirmed"
    );
    eventually!(!hooks.bodies("/post").is_empty(), "post-rollout called");
    // The last decision's event and post-rollout hooks are delivered at once, on their own
    // tasks: either may arrive first.
    eventually!(
        hooks
            .bodies("/event")
            .iter()
            .any(|e| e["action"] == "succeeded"),
        "the succeeded event delivered"
    );
    let order: Vec<String> = hooks.received().iter().map(|r| r.path.clone()).collect();
    let first = |path: &str| order.iter().position(|p| p == path).unwrap_or(usize::MAX);
    let last = |path: &str| order.iter().rposition(|p| p == path).unwrap_or(0);
    println!("hook calls in order: {order:?}");
    // Gates before the first step, then the intervals, confirmation before the last step,
    // post-rollout at the end.
    assert!(first("/confirm-rollout") < first("/each"), "{order:?}");
    assert!(first("/pre") < first("/each"), "{order:?}");
    assert!(last("/confirm-promotion") < first("/post"), "{order:?}");
    let pre = &hooks.bodies("/pre")[0];
    assert_eq!(
        (pre["type"].as_str(), pre["weight"].as_f64()),
        (Some("pre-rollout"), Some(0.0))
    );
    let post = hooks.bodies("/post").pop().unwrap_or_default();
    assert_eq!(post["phase"], "succeeded");
    assert_eq!(post["canary_version"], "v2");
    // Events: every decision, in order, with its numbers and a human line.
    let events = hooks.bodies("/event");
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    println!("event actions: {actions:?}");
    assert_eq!(actions.first(), Some(&"started"));
    assert_eq!(actions.last(), Some(&"succeeded"));
    let advanced = events
        .iter()
        .find(|e| e["action"] == "advanced" && e["weight"] == 50)
        .expect("an advance to 50%");
    println!("an event body: {advanced:#}");
    assert!(
        advanced["check"]["requests"]
            .as_f64()
            .is_some_and(|r| r >= 10.0),
        "{advanced}"
    );
    assert!(
        advanced["text"].as_str().is_some_and(
            |t| t.starts_with("sluice: rollout myapp advanced (canary 50%): check passed")
        ),
        "{advanced}"
    );
    load.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_rollout_hook_rolls_back_before_any_request_reaches_the_canary() {
    let hooks = HookServer::spawn().await;
    hooks.reply("/pre", Reply::Status(500));
    // The event hook hangs: nothing may wait for it.
    hooks.reply("/event", Reply::Hang);
    let rig = Rig::new(1).await;
    let control = rig.with_control(&with_hooks(&hooks)).await;
    let load = Load::start(&rig.proxies[0].url("/"), 4);
    assert_eq!(control.command("myapp", "start").await.0, 200);
    let mut slowest = Duration::ZERO;
    while control.phase("myapp").await != "rolled_back" {
        let asked = Instant::now();
        let _ = control.status().await;
        slowest = slowest.max(asked.elapsed());
        assert!(
            rig.canary_weights().await == [0.0],
            "the canary never gets a weight"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("slowest /status while the event hook hangs: {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    let last = control.last_message("myapp").await;
    assert!(
        last.contains("pre-rollout hook pre failed: HTTP 500") && last.contains("rolled back"),
        "{last}"
    );
    load.stop().await;
    assert_eq!(rig.canary.hits(), 0, "no request reached the canary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_promql_check_rolls_back_a_canary_whose_numbers_are_fine() {
    let Some(prometheus_binary) = servers::find("prometheus", "prometheus") else {
        return;
    };
    // The application's own metric: the canary version burns CPU.
    let exporter = HookServer::spawn().await;
    exporter.reply(
        "/metrics",
        Reply::Body(
            "app_cpu_usage{version=\"v1\"} 0.21\napp_cpu_usage{version=\"v2\"} 0.93\n".into(),
        ),
    );
    let prometheus = Prometheus::start(&prometheus_binary, &format!("['{}']", exporter.addr));
    let up = format!("{}/api/v1/query?query=app_cpu_usage", prometheus.url);
    eventually!(
        sluice_tests::client::try_get(&up)
            .await
            .is_some_and(|r| r.text().contains("0.93")),
        "prometheus scraped the exporter"
    );
    let rig = Rig::new(1).await;
    // The rollout's analysis with a CPU check, and the Prometheus that answers it.
    let with_check = |query: &str| {
        let analysis = format!(
            "{HEALTHY}      checks:\n        - {{ name: cpu, query: '{query}', max: 0.8 }}\n"
        );
        rollout("[10, 50, 100]", "1s", &analysis).replace(
            "      targets: {targets}\n",
            &format!(
                "      targets: {{targets}}\n      prometheus: {{ url: \"{}\" }}\n",
                prometheus.url
            ),
        )
    };
    // First a query with no data: inconclusive, never a pass.
    let empty = with_check("max(app_cpu_usage{version=\"nope\"})");
    let control = rig.with_control(&empty).await;
    let load = Load::start(&rig.proxies[0].url("/"), 4);
    assert_eq!(control.command("myapp", "start").await.0, 200);
    eventually!(
        control.checks("myapp", "inconclusive").await >= 2.0,
        "inconclusive on an empty result"
    );
    assert_eq!(control.weight("myapp").await, 10.0);
    assert!(
        control
            .last_message("myapp")
            .await
            .contains("check cpu: empty result or NaN"),
        "{}",
        control.last_message("myapp").await
    );
    // The real query: the canary's CPU is over the bound while error rate and p95 are fine.
    let real = with_check("max(app_cpu_usage{version=\"{{canary_version}}\"})");
    rig.write_config(&real, "v2");
    eventually!(
        control.phase("myapp").await == "rolled_back",
        "rolled back on the custom check"
    );
    let message = control.last_message("myapp").await;
    println!("{message}");
    assert!(message.contains("check cpu 0.93 > max 0.8"), "{message}");
    assert!(message.contains("error rate 0.00%"), "{message}");
    load.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_only_to_healthy_green_and_back_in_one_write() {
    let rig = Rig::new(1).await;
    let analysis = "      min_requests: 10\n      max_error_rate: 0.05\n      max_p95: 200ms\n      failure_limit: 2\n";
    let blue_green = rollout("[100]", "1s", analysis).replace(
        "    interval: 1s\n",
        "    interval: 1s\n    strategy: blue_green\n    bake: 2\n",
    );
    rig.write_config(&blue_green, "v2");
    // The green (canary) upstream is health-checked by the proxy.
    rig.edit_config(|text| {
        text.replacen(
            "    outlier_detection: { consecutive_failures: 0 }\n",
            "    outlier_detection: { consecutive_failures: 0 }\n    health_check: { path: /health, interval: 200ms, timeout: 500ms, healthy: 1, unhealthy: 1 }\n",
            1,
        )
    });
    rig.canary.set_path_status("/health", Some(503));
    rig.wait_for_rollouts().await;
    let control = Control::start(rig.dir());
    let load = Load::start(&rig.proxies[0].url("/"), 4);
    // An unhealthy green endpoint blocks the switch: rolled back without green ever taking
    // traffic.
    assert_eq!(control.command("myapp", "start").await.0, 200);
    while control.phase("myapp").await != "rolled_back" {
        assert_eq!(
            rig.canary_weights().await,
            [0.0],
            "no switch to an unhealthy green"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blocked = control.last_message("myapp").await;
    assert!(blocked.contains("green not healthy"), "{blocked}");
    assert_eq!(rig.canary.hits_on("/"), 0, "green took no request");
    // Healthy green: one write moves 100%.
    rig.canary.set_path_status("/health", None);
    assert_eq!(control.command("myapp", "retry").await.0, 200);
    eventually!(rig.canary_weights().await == [100.0], "switched to green");
    // The weights are written before the decision is published: wait for it to show.
    eventually!(
        control.decisions_mentioning("myapp", "switched").await >= 1,
        "the switch is in the history"
    );
    assert_eq!(
        control.decisions_mentioning("myapp", "switched").await,
        1,
        "one switch"
    );
    // Green goes bad during the bake: switched back in one write.
    rig.canary
        .set_behavior(Behavior::Slow(Duration::from_millis(300)));
    let went_bad = Instant::now();
    eventually!(
        control.phase("myapp").await == "rolled_back",
        "switched back"
    );
    eventually!(rig.canary_weights().await == [0.0], "blue takes 100% again");
    let back = went_bad.elapsed();
    println!("blue/green switch-back {back:?} after green went bad (interval 1s, failure_limit 2)");
    let report = load.stop().await;
    println!(
        "clients during both switches: {} ok, {} failed",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
}
