//! Hot reload under load: every way a file can change (edit in place, rename over, delete and
//! recreate, Kubernetes ConfigMap `..data` symlink swap), bad files in between, SIGHUP, and
//! connection pools that survive weight changes.

// Tests print what they measure (requests sent, failures, reload latency) for the record.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_tests::{client, config, eventually, Backend, Load, Proxy};

/// How an operator or a tool writes the weights file.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// Truncate and write the same inode (an editor saving in place).
    InPlace,
    /// Write a temp file, then rename it over (what sluice-control does).
    Rename,
    /// Delete the file, then create it again.
    DeleteRecreate,
}

fn weights(stable: u32, canary: u32) -> String {
    format!("routes:\n  default: {{ stable: {stable}, canary: {canary} }}\n")
}

fn write_weights(dir: &Path, text: &str, style: Style) {
    let path = dir.join("weights.yaml");
    match style {
        Style::InPlace => std::fs::write(&path, text).expect("write in place"),
        Style::Rename => {
            let temp = dir.join(".weights.yaml.tmp");
            std::fs::write(&temp, text).expect("write temp");
            std::fs::rename(&temp, &path).expect("rename over");
        }
        Style::DeleteRecreate => {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, text).expect("recreate");
        }
    }
}

/// Sends probe requests until 20 in a row are answered by `want`; returns how long after
/// `since` the first of those was sent.
async fn observe(proxy: &Proxy, want: &str, since: Instant) -> Duration {
    let probe = client::http1();
    let want = format!("{want}\n");
    let mut run_started = None;
    let mut run = 0;
    while run < 20 {
        let sent = since.elapsed();
        if client::get(&probe, &proxy.url("/"), &[]).await.text() == want {
            run_started.get_or_insert(sent);
            run += 1;
        } else {
            run_started = None;
            run = 0;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "still not {want:?} after 5s"
        );
    }
    run_started.unwrap_or_default()
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    latencies[((latencies.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_weight_flips_in_every_write_style_under_load_fail_nothing() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    let load = Load::start(&proxy.url("/"), 6);
    let styles = [Style::InPlace, Style::Rename, Style::DeleteRecreate];
    let mut latencies = Vec::new();
    for i in 0..51 {
        let to_canary = i % 2 == 0;
        let (text, want) = if to_canary {
            (weights(0, 100), "canary")
        } else {
            (weights(100, 0), "stable")
        };
        let written = Instant::now();
        write_weights(proxy.dir(), &text, styles[i % styles.len()]);
        let seen = observe(&proxy, want, written).await;
        assert!(
            seen < Duration::from_secs(1),
            "write {i} ({:?}) took {seen:?} to apply",
            styles[i % 3]
        );
        latencies.push(seen);
    }
    let report = load.stop().await;
    let (p50, p99) = (
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
    );
    println!(
        "51 weight flips (in place, rename, delete+recreate): {} requests under load, {} failed; applied p50 {p50:?} p99 {p99:?}",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.ok > 1000, "load kept flowing: {}", report.ok);
}

/// A Kubernetes ConfigMap volume: files are symlinks into `..data/`, and `..data` is a symlink
/// swapped atomically to a fresh timestamped directory on every update.
struct ConfigMap {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMap {
    fn new(files: &[(&str, &str)]) -> Self {
        let mut map = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            version: 0,
        };
        map.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), map.dir.path().join(name))
                .expect("file symlink");
        }
        map
    }

    fn update(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let stamp = format!("..2026_11_26_{:06}", self.version);
        let target = self.dir.path().join(&stamp);
        std::fs::create_dir(&target).expect("timestamped dir");
        for (name, text) in files {
            std::fs::write(target.join(name), text).expect("write file");
        }
        let temp_link = self.dir.path().join("..data_tmp");
        let _ = std::fs::remove_file(&temp_link);
        std::os::unix::fs::symlink(&stamp, &temp_link).expect("new ..data link");
        std::fs::rename(&temp_link, self.dir.path().join("..data")).expect("swap ..data");
        if self.version > 1 {
            let old = self
                .dir
                .path()
                .join(format!("..2026_11_26_{:06}", self.version - 1));
            let _ = std::fs::remove_dir_all(old);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_configmap_symlink_swaps_under_load_fail_nothing() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let config = config::split(&stable, &canary, "100", "0");
    let mut map = ConfigMap::new(&[("sluice.yaml", &config), ("weights.yaml", &weights(100, 0))]);
    let proxy = Proxy::start_in(map.dir.path(), &[]);
    let load = Load::start(&proxy.url("/"), 6);
    let mut latencies = Vec::new();
    for i in 0..50 {
        let (text, want) = if i % 2 == 0 {
            (weights(0, 100), "canary")
        } else {
            (weights(100, 0), "stable")
        };
        let written = Instant::now();
        map.update(&[("sluice.yaml", &config), ("weights.yaml", &text)]);
        let seen = observe(&proxy, want, written).await;
        assert!(seen < Duration::from_secs(1), "swap {i} took {seen:?}");
        latencies.push(seen);
    }
    let report = load.stop().await;
    let (p50, p99) = (
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
    );
    println!(
        "50 ConfigMap swaps: {} requests under load, {} failed; applied p50 {p50:?} p99 {p99:?}",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(
        proxy
            .metric("sluice_config_reloads_total", &[("result", "error")])
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_never_take_effect_and_traffic_is_unaffected() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    write_weights(proxy.dir(), &weights(0, 100), Style::Rename);
    observe(&proxy, "canary", Instant::now()).await;
    let load = Load::start(&proxy.url("/"), 4);
    let bad_weights = [
        (
            "syntax error",
            "routes:\n  default: { stable: 100, canary: 0\n",
        ),
        ("unknown backend", "routes:\n  default: { stabel: 100 }\n"),
        ("unknown route", "routes:\n  nope: { stable: 100 }\n"),
        ("all zero", "routes:\n  default: { stable: 0, canary: 0 }\n"),
        ("negative", "routes:\n  default: { stable: -1 }\n"),
        ("truncated", "routes:\n  default: { sta"),
        ("empty", ""),
    ];
    let mut errors = proxy
        .metric("sluice_config_reloads_total", &[("result", "error")])
        .await;
    let generation = proxy.config_json().await["generation"].as_u64();
    for (what, text) in bad_weights {
        write_weights(proxy.dir(), text, Style::Rename);
        eventually!(
            proxy
                .metric("sluice_config_reloads_total", &[("result", "error")])
                .await
                > errors,
            "{what} counted as a reload error"
        );
        errors = proxy
            .metric("sluice_config_reloads_total", &[("result", "error")])
            .await;
        let config = proxy.config_json().await;
        assert_eq!(
            config["generation"].as_u64(),
            generation,
            "{what}: generation unchanged"
        );
        assert_eq!(config["last_reload"]["result"], "error", "{what}");
        assert_eq!(
            proxy.weight("default", "canary").await,
            100.0,
            "{what}: good weights stay"
        );
        assert_eq!(
            client::get_text(&proxy.url("/")).await,
            "canary\n",
            "{what}: traffic unchanged"
        );
    }
    // Deleting the weights file keeps the weights in force.
    std::fs::remove_file(proxy.dir().join("weights.yaml")).expect("delete");
    eventually!(
        proxy
            .metric("sluice_config_reloads_total", &[("result", "error")])
            .await
            > errors,
        "deletion reported"
    );
    assert_eq!(
        proxy.weight("default", "canary").await,
        100.0,
        "deleted: weights stay"
    );
    // A bad config file is rejected too; the good one keeps serving.
    let good_config =
        std::fs::read_to_string(proxy.dir().join("sluice.yaml")).expect("read config");
    proxy.write_config(
        &good_config.replace("upstream: canary, weight: 0", "upstream: canry, weight: 0"),
    );
    eventually!(
        proxy.config_json().await["last_reload"]["error"]
            .as_str()
            .is_some_and(
                |e| e.contains("routes[1].backends[1].upstream: unknown upstream \"canry\"")
            ),
        "config error reported with its location"
    );
    assert_eq!(proxy.config_json().await["generation"].as_u64(), generation);
    // Fixed files are picked up.
    proxy.write_config(&good_config);
    write_weights(proxy.dir(), &weights(100, 0), Style::Rename);
    eventually!(
        proxy.weight("default", "canary").await == 0.0,
        "fixed weights applied"
    );
    observe(&proxy, "stable", Instant::now()).await;
    let report = load.stop().await;
    println!(
        "bad files interleaved: {} requests under load, {} failed",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let error_lines: Vec<_> = proxy
        .process
        .logs_with_message("reload rejected; the previous config stays in force")
        .into_iter()
        .filter_map(|l| l["error"].as_str().map(str::to_string))
        .collect();
    assert!(
        error_lines.iter().any(|e| e
            .contains("weights.yaml:2:33: routes.default: unclosed bracket")
            || e.contains("weights.yaml:2:") && e.contains("unclosed")),
        "{error_lines:#?}"
    );
    assert!(
        error_lines
            .iter()
            .any(|e| e.ends_with("weights.yaml: the file is empty")),
        "{error_lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_only_reloads_keep_every_upstream_connection() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    // Four clients and no other: at most four upstream connections per side are ever needed.
    let load = Load::start(&proxy.url("/"), 4);
    let generation = || async {
        proxy.config_json().await["generation"]
            .as_u64()
            .unwrap_or(0)
    };
    // Warm both pools: all traffic to stable, then all to canary.
    eventually!(load.ok() > 500, "stable pool warm");
    write_weights(proxy.dir(), &weights(0, 100), Style::Rename);
    eventually!(generation().await == 2, "flipped to canary");
    let sent = load.ok();
    eventually!(load.ok() > sent + 500, "canary pool warm");
    let before = (stable.connections(), canary.connections());
    for i in 0..50u64 {
        let text = if i % 2 == 0 {
            weights(100, 0)
        } else {
            weights(0, 100)
        };
        write_weights(proxy.dir(), &text, Style::Rename);
        eventually!(generation().await == 3 + i, "reload {i} applied");
        let sent = load.ok();
        eventually!(
            load.ok() > sent + 100,
            "traffic on the new side after reload {i}"
        );
    }
    let report = load.stop().await;
    let after = (stable.connections(), canary.connections());
    println!("upstream connections accepted before 50 weight reloads {before:?}, after {after:?}; {} requests, {} failed", report.ok, report.failed);
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(
        after, before,
        "no new upstream connection across 50 weight-only reloads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_keep_the_pools_of_endpoints_that_stayed() {
    let stable = Backend::spawn("stable").await;
    let stable2 = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let config = config::split(&stable, &canary, "100", "0");
    let proxy = Proxy::start(&config);
    let client = client::http1();
    for _ in 0..50 {
        client::get(&client, &proxy.url("/"), &[]).await;
    }
    let opened = |json: &serde_json::Value, address: &str| {
        json["upstreams"][0]["endpoints"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["address"] == address))
            .and_then(|e| e["connections_opened"].as_u64())
    };
    let before = proxy.config_json().await;
    assert_eq!(opened(&before, &stable.endpoint()), Some(1));
    proxy.write_config(&config.replacen(
        &format!("endpoints: [{}]", stable.endpoint()),
        &format!("endpoints: [{}, {}]", stable.endpoint(), stable2.endpoint()),
        1,
    ));
    eventually!(
        proxy.config_json().await["upstreams"][0]["endpoints"]
            .as_array()
            .map(Vec::len)
            == Some(2),
        "endpoint added"
    );
    for _ in 0..50 {
        client::get(&client, &proxy.url("/"), &[]).await;
    }
    let after = proxy.config_json().await;
    assert_eq!(
        opened(&after, &stable.endpoint()),
        Some(1),
        "kept endpoint kept its connection"
    );
    assert_eq!(stable.connections(), 1);
    assert!(stable2.hits() > 0, "new endpoint takes traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_changes_need_a_restart_and_the_rest_applies() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let config = config::split(&stable, &canary, "100", "0");
    let proxy = Proxy::start(&config);
    proxy.write_config(
        &config
            .replacen(
                "address: 127.0.0.1:0\nadmin",
                "address: 127.0.0.1:1\nadmin",
                1,
            )
            .replace(
                "{ upstream: stable, weight: 100 }",
                "{ upstream: stable, weight: 0 }",
            )
            .replace(
                "{ upstream: canary, weight: 0 }",
                "{ upstream: canary, weight: 100 }",
            ),
    );
    eventually!(
        proxy.weight("default", "canary").await == 100.0,
        "weights applied"
    );
    assert_eq!(
        client::get_text(&proxy.url("/")).await,
        "canary\n",
        "still served on the old listener"
    );
    let warnings = proxy.process.logs_with_message(
        "listeners changed in the config file; they apply only after a restart (the rest of the change is applied)",
    );
    assert_eq!(warnings.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_forces_a_reload() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    let generation = proxy.config_json().await["generation"]
        .as_u64()
        .unwrap_or(0);
    proxy.process.signal(libc::SIGHUP);
    eventually!(
        proxy.config_json().await["generation"].as_u64() == Some(generation + 1),
        "SIGHUP reloaded"
    );
    assert_eq!(
        proxy.process.logs_with_message("SIGHUP: reloading").len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_files_does_not_trigger_another_reload() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "100", "0"));
    write_weights(proxy.dir(), &weights(0, 100), Style::Rename);
    eventually!(
        proxy.config_json().await["generation"].as_u64() == Some(2),
        "one reload"
    );
    // A quiet period, not a wait for an event: a reload that re-triggers itself (the watcher
    // seeing its own reads) would show up as further generations within a few debounces.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = std::fs::read(proxy.dir().join("weights.yaml"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.config_json().await["generation"].as_u64(), Some(2));
    assert_eq!(
        proxy
            .metric("sluice_config_reloads_total", &[("result", "ok")])
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_refused_for_its_weights_file_applies_once_the_weights_are_fixed() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let config = config::split(&stable, &canary, "100", "0");
    let proxy = Proxy::start(&config);
    write_weights(proxy.dir(), &weights(50, 50), Style::Rename);
    eventually!(
        proxy.weight("default", "canary").await == 50.0,
        "weights applied"
    );
    // The new config drops the canary from the default route; the weights file still names it.
    let without_canary = config.replace("      - { upstream: canary, weight: 0 }\n", "");
    assert_ne!(without_canary, config);
    proxy.write_config(&without_canary);
    eventually!(
        proxy.config_json().await["last_reload"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("has no backend \"canary\"")),
        "config refused because of the weights file"
    );
    write_weights(
        proxy.dir(),
        "routes:\n  default: { stable: 100 }\n",
        Style::Rename,
    );
    eventually!(
        proxy.config_json().await["routes"][1]["backends"]
            .as_array()
            .map(Vec::len)
            == Some(1),
        "the refused config applied after the weights fix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weights_file_moved_to_another_directory_is_watched_there() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let config = config::split(&stable, &canary, "100", "0");
    let proxy = Proxy::start(&config);
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let moved = elsewhere.path().join("next-weights.yaml");
    let moved_config = config.replace(
        "weights_file: weights.yaml",
        &format!("weights_file: {}", moved.display()),
    );
    assert_ne!(moved_config, config);
    proxy.write_config(&moved_config);
    eventually!(
        proxy.config_json().await["weights_file"].as_str() == moved.to_str(),
        "the config moving the weights file applied"
    );
    // The first write may be found by the look the proxy takes once it watches a new
    // directory; the second can only be seen through the new watch.
    std::fs::write(&moved, weights(0, 100)).expect("write moved weights");
    eventually!(
        proxy.weight("default", "canary").await == 100.0,
        "the moved weights file applied"
    );
    std::fs::write(&moved, weights(70, 30)).expect("write moved weights");
    eventually!(
        proxy.weight("default", "canary").await == 30.0,
        "a later write of the moved weights file applied"
    );
    assert!(proxy
        .process
        .logs_with_message("SIGHUP: reloading")
        .is_empty());
}
