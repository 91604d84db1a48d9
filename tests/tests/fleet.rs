//! Fleet mode end to end: real etcd (one member or three), real proxies and several
//! `sluice-control run` processes meeting in it. Leader failover (SIGKILL, SIGSTOP), hand
//! edits with `etcdctl`, a fleet of ten proxies following every change, and an etcd leader
//! killed under load.

// Tests print what they measure (propagation, takeover time) for the record.
#![allow(clippy::print_stdout)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sluice_etcd::{Client, Event, WatchMessage};
use sluice_tests::etcd::{self, Etcd};
use sluice_tests::rig::rollout;
use sluice_tests::{eventually, Control, Load, Rig};

const PREFIX: &str = "/sluice/test";
const WEIGHTS: &str = "/sluice/test/weights";
const HEALTHY: &str = "      min_requests: 10\n      max_error_rate: 0.01\n      max_p95: 1s\n      failure_limit: 2\n";

/// The canary weight a weights document gives route `default`.
fn canary_of(document: &str) -> Option<f64> {
    let line = document
        .lines()
        .find(|l| l.trim_start().starts_with("default:"))?;
    let after = line.split("canary:").nth(1)?;
    after
        .trim()
        .trim_end_matches('}')
        .trim()
        .trim_end_matches(',')
        .parse()
        .ok()
}

/// Every canary weight written to etcd, in revision order, as a watch from revision 1 sees it.
#[derive(Clone, Debug, Default)]
struct Written(Arc<Mutex<Vec<f64>>>);

impl Written {
    fn follow(client: Client) -> Self {
        let written = Self::default();
        let list = written.0.clone();
        tokio::spawn(async move {
            let mut watch = client.watch(WEIGHTS, 1).await.expect("watch the weights");
            while let Ok(Some(message)) = watch.next().await {
                if let WatchMessage::Events(events, _) = message {
                    for event in events {
                        if let Event::Put(kv) = event {
                            let text = String::from_utf8_lossy(&kv.value).into_owned();
                            if let Some(weight) = canary_of(&text) {
                                list.lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(weight);
                            }
                        }
                    }
                }
            }
        });
        written
    }

    fn all(&self) -> Vec<f64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Asserts that `written` walks `steps` one at a time from the first: no step repeated or
/// skipped, no jump. Success re-asserts 100% once (the same document: proxies publish
/// nothing); that write is not a step.
fn assert_walks(written: &[f64], steps: &[f64]) {
    assert!(!written.is_empty(), "nothing written");
    let written = match written {
        [walk @ .., last, again] if last == again && *again == 100.0 => walk_with(walk, *last),
        _ => written.to_vec(),
    };
    assert_eq!(
        written.len(),
        steps.len(),
        "written {written:?}, steps {steps:?}"
    );
    for (index, weight) in written.iter().enumerate() {
        assert_eq!(
            Some(weight),
            steps.get(index),
            "write #{index} is {weight}, expected the steps in order: written {written:?}, steps {steps:?}"
        );
    }
}

fn walk_with(walk: &[f64], last: f64) -> Vec<f64> {
    let mut all = walk.to_vec();
    all.push(last);
    all
}

/// The control of `controls` whose status says it leads, once exactly one does.
async fn leader_of(controls: &[Control]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut leading = Vec::new();
        for (index, control) in controls.iter().enumerate() {
            let status = control.status().await;
            if status.fleet.is_some_and(|f| f.role == "leader") {
                leading.push(index);
            }
        }
        if let [leader] = leading[..] {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within 20s: {leading:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The index of etcd's raft leader, once there is one.
async fn etcd_leader(etcd: &Etcd) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(leader) = etcd.leader().await {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "etcd has no raft leader within 20s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_controls(rig: &Rig, rollouts: &str) -> Vec<Control> {
    rig.write_config(rollouts, "v2");
    rig.wait_for_rollouts().await;
    vec![Control::start(rig.dir()), Control::start(rig.dir())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_finishes_the_rollout_of_a_killed_leader_without_repeating_or_skipping_a_step() {
    let Some(binaries) = etcd::find() else { return };
    let etcd = Etcd::start(&binaries, 1).await;
    let rig = Rig::fleet(1, &etcd.endpoints_yaml(), PREFIX, "2s").await;
    let steps = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
    let mut controls = two_controls(
        &rig,
        &rollout("[10, 20, 30, 40, 50, 60, 70, 80, 90, 100]", "1s", HEALTHY),
    )
    .await;
    let written = Written::follow(etcd.client());
    let load = Load::start(&rig.proxies[0].url("/"), 3);
    let leader = leader_of(&controls).await;
    let standby = 1 - leader;
    eventually!(
        controls[standby]
            .status()
            .await
            .fleet
            .is_some_and(|f| f.leader.is_some()),
        "the standby knows the leader"
    );
    // The command goes to the standby, which forwards it to the leader.
    let (code, answer) = controls[standby].command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(written.all().len() >= 3, "the rollout reaches 30%");
    controls[leader].process.kill();
    let killed = Instant::now();
    eventually!(
        controls[standby]
            .status()
            .await
            .fleet
            .is_some_and(|f| f.role == "leader"),
        "the standby takes over"
    );
    let takeover = killed.elapsed();
    println!("takeover after SIGKILL of the leader (lease_ttl 2s): {takeover:?}");
    assert!(
        takeover < Duration::from_secs(8),
        "takeover took {takeover:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while controls[standby].phase("myapp").await != "succeeded" {
        if Instant::now() > deadline {
            panic!(
                "not succeeded; written {:?}; status {:?}",
                written.all(),
                controls[standby].rollout("myapp").await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually!(
        written.all().len() >= steps.len(),
        "every step written: {:?}",
        written.all()
    );
    assert_walks(&written.all(), &steps);
    eventually!(
        rig.canary_weights().await == [100.0],
        "the proxy applies 100%"
    );
    let report = load.stop().await;
    println!(
        "load through the takeover: {} ok, {} failed",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_lease_cannot_write_when_it_wakes_and_steps_down() {
    let Some(binaries) = etcd::find() else { return };
    let etcd = Etcd::start(&binaries, 1).await;
    let rig = Rig::fleet(1, &etcd.endpoints_yaml(), PREFIX, "1s").await;
    // Long intervals: only commands move the weights.
    let controls = two_controls(&rig, &rollout("[10, 20, 30, 40, 50, 100]", "1h", HEALTHY)).await;
    let written = Written::follow(etcd.client());
    let old = leader_of(&controls).await;
    let new = 1 - old;
    let (code, answer) = controls[old].command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(written.all() == [10.0], "10% written");
    controls[old].process.signal(libc::SIGSTOP);
    eventually!(
        controls[new]
            .status()
            .await
            .fleet
            .is_some_and(|f| f.role == "leader"),
        "the standby takes over from the stopped leader"
    );
    let (code, answer) = controls[new].command("myapp", "promote").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(
        written.all() == [10.0, 20.0],
        "the new leader advanced to 20%"
    );
    controls[old].process.signal(libc::SIGCONT);
    eventually!(
        !controls[old]
            .process
            .logs_with_message("leadership lost: stopped measuring and writing; standing by")
            .is_empty(),
        "the woken leader steps down"
    );
    eventually!(
        controls[old]
            .status()
            .await
            .fleet
            .is_some_and(|f| f.role == "standby"),
        "the woken leader shows standby"
    );
    eventually!(
        controls[old]
            .status()
            .await
            .fleet
            .is_some_and(|f| f.leader.is_some()),
        "the woken control knows the leader"
    );
    // A command at the woken one now goes to the leader; nothing it wrote went through.
    let (code, answer) = controls[old].command("myapp", "promote").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(
        written.all() == [10.0, 20.0, 30.0],
        "30% written by the leader"
    );
    assert_walks(&written.all(), &[10.0, 20.0, 30.0]);
    assert_eq!(controls[new].weight("myapp").await, 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_edits_pause_the_rollout_and_a_bad_value_is_refused_by_every_proxy() {
    let Some(binaries) = etcd::find() else { return };
    let etcd = Etcd::start(&binaries, 1).await;
    let rig = Rig::fleet(3, &etcd.endpoints_yaml(), PREFIX, "2s").await;
    let control = {
        rig.write_config(&rollout("[10, 20, 50, 100]", "1h", HEALTHY), "v2");
        rig.wait_for_rollouts().await;
        Control::start(rig.dir())
    };
    leader_of(std::slice::from_ref(&control)).await;
    let (code, answer) = control.command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(
        rig.canary_weights().await == [10.0, 10.0, 10.0],
        "every proxy at 10%"
    );
    etcd.etcdctl(&[
        "put",
        WEIGHTS,
        "routes:\n  default: { stable: 70, canary: 30 }\n",
    ]);
    eventually!(
        control.phase("myapp").await == "paused",
        "a hand edit pauses the rollout"
    );
    eventually!(
        rig.canary_weights().await == [30.0, 30.0, 30.0],
        "the edit applies everywhere"
    );
    let mut errors = Vec::new();
    for proxy in &rig.proxies {
        errors.push(
            proxy
                .metric("sluice_config_reloads_total", &[("result", "error")])
                .await,
        );
    }
    etcd.etcdctl(&[
        "put",
        WEIGHTS,
        "routes:\n  default: { stable: 70, nosuch: 30 }\n",
    ]);
    for (proxy, before) in rig.proxies.iter().zip(errors) {
        eventually!(
            proxy
                .metric("sluice_config_reloads_total", &[("result", "error")])
                .await
                > before,
            "every proxy refuses and counts the bad value"
        );
    }
    assert_eq!(
        rig.canary_weights().await,
        [30.0, 30.0, 30.0],
        "last good weights stay"
    );
    let status = rig.proxies[0].config_json().await;
    println!(
        "proxy /config store section after the bad value: {}",
        status["store"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_proxies_apply_every_one_of_twenty_changes() {
    let Some(binaries) = etcd::find() else { return };
    let etcd = Etcd::start(&binaries, 1).await;
    let rig = Rig::fleet(10, &etcd.endpoints_yaml(), PREFIX, "2s").await;
    let steps: Vec<u32> = (1..=20).map(|i| i * 5).collect();
    let list = steps
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    rig.write_config(&rollout(&format!("[{list}]"), "1h", HEALTHY), "v2");
    rig.wait_for_rollouts().await;
    let control = Control::start(rig.dir());
    leader_of(std::slice::from_ref(&control)).await;
    let mut delays = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let sent = Instant::now();
        let action = if index == 0 { "start" } else { "promote" };
        let (code, answer) = control.command("myapp", action).await;
        assert_eq!(code, 200, "{answer}");
        let expected = f64::from(*step);
        // Every proxy, polled together until each shows the new weight.
        let mut pending: Vec<usize> = (0..rig.proxies.len()).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pending.is_empty() {
            let mut still = Vec::new();
            for index in pending {
                if rig.proxies[index].weight("default", "canary").await == expected {
                    delays.push(sent.elapsed());
                } else {
                    still.push(index);
                }
            }
            pending = still;
            assert!(
                Instant::now() < deadline,
                "step {step}: proxies {pending:?} did not apply it"
            );
        }
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    println!(
        "propagation command->applied over 10 proxies x 20 changes ({} samples, polled): p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        at(0.5),
        at(0.99),
        delays[delays.len() - 1]
    );
    assert_eq!(delays.len(), 200, "every proxy applied every change");
    for proxy in &rig.proxies {
        let ok = proxy
            .metric("sluice_config_reloads_total", &[("result", "ok")])
            .await;
        assert!(ok >= 20.0, "a proxy applied {ok} changes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_of_three_fails_no_request_and_the_rollout_completes() {
    let Some(binaries) = etcd::find() else { return };
    let mut etcd = Etcd::start(&binaries, 3).await;
    let rig = Rig::fleet(2, &etcd.endpoints_yaml(), PREFIX, "3s").await;
    rig.write_config(&rollout("[20, 40, 60, 80, 100]", "1s", HEALTHY), "v2");
    rig.wait_for_rollouts().await;
    let control = Control::start(rig.dir());
    leader_of(std::slice::from_ref(&control)).await;
    let written = Written::follow(etcd.client());
    let loads: Vec<Load> = rig
        .proxies
        .iter()
        .map(|p| Load::start(&p.url("/"), 2))
        .collect();
    let (code, answer) = control.command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    eventually!(written.all().len() >= 2, "the rollout reaches 40%");
    let leader = etcd_leader(&etcd).await;
    etcd.kill(leader);
    println!(
        "killed etcd member {leader} (the raft leader) at {:?}",
        written.all()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.phase("myapp").await != "succeeded" {
        assert!(
            Instant::now() < deadline,
            "not succeeded; phase {}",
            control.phase("myapp").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually!(
        rig.canary_weights().await == [100.0, 100.0],
        "every proxy at 100%"
    );
    let mut failed = 0;
    for load in loads {
        let report = load.stop().await;
        println!("load: {} ok, {} failed", report.ok, report.failed);
        assert_eq!(report.failed, 0, "{:?}", report.failures);
        failed += report.failed;
    }
    assert_eq!(failed, 0);
}
