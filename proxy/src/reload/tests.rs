use std::sync::mpsc as std_mpsc;

use super::*;

const CONFIG: &str = "listeners: [{ name: http, address: \"127.0.0.1:0\" }]\nupstreams:\n  a: { endpoints: [\"127.0.0.1:1\"] }\nroutes:\n  - { name: r, backends: [{ upstream: a, weight: 1 }] }\n";

/// Two backends, a weights file (etcd's cache in fleet mode), and `extra` appended.
fn two_backends(extra: &str) -> String {
    format!(
        "listeners: [{{ name: http, address: \"127.0.0.1:0\" }}]\nupstreams:\n  a: {{ endpoints: [\"127.0.0.1:1\"] }}\n  b: {{ endpoints: [\"127.0.0.1:2\"] }}\nroutes:\n  - {{ name: r, backends: [{{ upstream: a, weight: 1 }}, {{ upstream: b, weight: 0 }}] }}\nweights_file: weights.yaml\n{extra}"
    )
}

const STORE: &str = "store:\n  etcd: { endpoints: [\"127.0.0.1:1\"], prefix: /sluice/t }\n";

fn file_mode(path: &Path) -> Reloader {
    let start = StartConfig::load(path).expect("valid config");
    let (reloader, _routing) =
        Reloader::start(start, StartWeights::File, Arc::new(Metrics::new())).expect("starts");
    reloader
}

/// A reloader in fleet mode on `dir/sluice.yaml`, starting on `document` (checked here).
fn fleet_mode(dir: &Path, document: Option<&str>) -> (Reloader, Arc<Metrics>) {
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, two_backends(STORE)).expect("write config");
    let start = StartConfig::load(&path).expect("valid config");
    let origin = PathBuf::from("etcd:/sluice/t/weights");
    let document = document.map(|text| {
        WeightsDocument::check(text.into(), &origin, start.config()).expect("valid document")
    });
    let weights = StartWeights::Store {
        origin,
        document,
        refused: None,
    };
    let metrics = Arc::new(Metrics::new());
    let (reloader, _routing) = Reloader::start(start, weights, metrics.clone()).expect("starts");
    (reloader, metrics)
}

fn b_weight(reloader: &Reloader) -> f64 {
    reloader
        .routing
        .snapshot()
        .weights_in_force()
        .find(|(_, backend, _)| *backend == "b")
        .map(|(_, _, weight)| weight)
        .unwrap_or(f64::NAN)
}

fn reloads(metrics: &Metrics, result: &str) -> String {
    let line = format!("sluice_config_reloads_total{{result=\"{result}\"}} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&line).map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn the_last_report_is_read_without_waiting_for_a_reload_in_progress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, CONFIG).expect("write config");
    let reloader = Arc::new(file_mode(&path));
    std::fs::write(&path, "routes: [").expect("write config");
    reloader.reload(Trigger::FilesChanged);
    // A slow reload holds the state for as long as it reads and builds.
    let reloading = reloader.lock();
    let (tx, rx) = std_mpsc::channel();
    let reader = reloader.clone();
    std::thread::spawn(move || {
        let _ = tx.send(reader.last_report().map(|r| r.result));
    });
    let report = rx.recv_timeout(Duration::from_secs(10));
    drop(reloading);
    assert_eq!(report, Ok(Some("error")), "answered during the reload");
}

#[test]
fn documents_from_the_store_are_checked_and_published_like_a_weights_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (reloader, metrics) = fleet_mode(dir.path(), None);
    assert_eq!(b_weight(&reloader), 0.0);

    let good = "routes:\n  r: { a: 0, b: 100 }\n";
    assert_eq!(
        reloader.apply_weights_document(Some(good), 7),
        Offered::Published
    );
    assert_eq!(b_weight(&reloader), 100.0);
    assert_eq!(reloader.routing.snapshot().generation, 2);
    assert_eq!(reloads(&metrics, "ok"), "1");
    assert_eq!(
        reloader.apply_weights_document(Some(good), 8),
        Offered::InForce,
        "the same document again publishes nothing"
    );
    assert_eq!(reloader.routing.snapshot().generation, 2);

    let bad = "routes:\n  r: { a: 0, c: 100 }\n";
    assert_eq!(
        reloader.apply_weights_document(Some(bad), 9),
        Offered::Refused
    );
    assert_eq!(b_weight(&reloader), 100.0, "the weights in force stay");
    assert_eq!(reloads(&metrics, "error"), "1");
    let report = reloader.last_report().expect("a report");
    assert_eq!((report.result, report.what), ("error", "weights"));
    let error = report.error.unwrap_or_default();
    assert!(
        error.starts_with(
            "etcd:/sluice/t/weights:2:14: routes.r.c: route \"r\" has no backend \"c\""
        ),
        "{error}"
    );

    assert_eq!(reloader.apply_weights_document(None, 10), Offered::Refused);
    assert_eq!(
        b_weight(&reloader),
        100.0,
        "a deleted key keeps the weights"
    );
    assert_eq!(reloads(&metrics, "error"), "2");
    assert_eq!(
        reloader.last_report().and_then(|r| r.error).unwrap_or_default(),
        "etcd:/sluice/t/weights: key deleted; keeping the weights in force (put `routes: {}` to drop all overrides)"
    );

    let back = "routes:\n  r: { a: 1, b: 0 }\n";
    assert_eq!(
        reloader.apply_weights_document(Some(back), 11),
        Offered::Published
    );
    assert_eq!(b_weight(&reloader), 0.0);
}

#[test]
fn a_deleted_key_without_a_document_in_force_is_nothing_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (reloader, metrics) = fleet_mode(dir.path(), None);
    assert_eq!(reloader.apply_weights_document(None, 3), Offered::InForce);
    assert_eq!(reloads(&metrics, "error"), "0");
    assert!(reloader.last_report().is_none());
}

#[test]
fn in_fleet_mode_the_weights_file_is_not_read_and_config_reloads_keep_etcds_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (reloader, metrics) = fleet_mode(dir.path(), Some("routes:\n  r: { a: 0, b: 100 }\n"));
    assert_eq!(b_weight(&reloader), 100.0);
    // The cache file is the proxy's own: an edit of it is not applied.
    std::fs::write(
        dir.path().join("weights.yaml"),
        "routes:\n  r: { a: 1, b: 0 }\n",
    )
    .expect("write cache");
    assert!(!reloader.reload(Trigger::FilesChanged));
    assert_eq!(b_weight(&reloader), 100.0);
    // A config change keeps etcd's document, checked against the new config.
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, two_backends(&format!("# edited\n{STORE}"))).expect("write config");
    assert!(reloader.reload(Trigger::FilesChanged));
    assert_eq!(b_weight(&reloader), 100.0);
    assert_eq!(reloads(&metrics, "error"), "0");
}

#[test]
fn a_config_refused_for_the_document_in_force_is_retried_with_the_next_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (reloader, _metrics) = fleet_mode(dir.path(), Some("routes:\n  r: { a: 0, b: 100 }\n"));
    // The new config drops backend b, which etcd's document names.
    let path = dir.path().join("sluice.yaml");
    let without_b = two_backends(STORE)
        .replace(", { upstream: b, weight: 0 }", "")
        .replace("  b: { endpoints: [\"127.0.0.1:2\"] }\n", "");
    std::fs::write(&path, without_b).expect("write config");
    assert!(!reloader.reload(Trigger::FilesChanged));
    let error = reloader
        .last_report()
        .and_then(|r| r.error)
        .unwrap_or_default();
    assert!(
        error.starts_with("the weights in force (from etcd) do not fit the new config"),
        "{error}"
    );
    // A document that fits it lets the pending config in.
    assert_eq!(
        reloader.apply_weights_document(Some("routes:\n  r: { a: 1 }\n"), 5),
        Offered::Published
    );
    let snapshot = reloader.routing.snapshot();
    assert_eq!(
        snapshot.config.upstreams.len(),
        1,
        "the new config is in force"
    );
    assert_eq!(reloader.last_report().map(|r| r.what), Some("config"));
}
