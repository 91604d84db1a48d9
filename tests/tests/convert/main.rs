//! `sluice-proxy convert` end to end: routes converted from Istio and the Gateway API, run by
//! a real proxy against real backends, answer the way their source says.
// Tests print what they measure (split shares) for the record.
#![allow(clippy::print_stdout)]

mod conformance;
mod policies;

use std::path::Path;
use std::process::Command;

use sluice_config::Config;
use sluice_tests::process::binary;
use sluice_tests::{client, free_port, Backend, Proxy};

/// Runs `sluice-proxy convert` on `files` (name, contents) written to a temporary directory;
/// returns the sluice.yaml it printed, after checking it parses back as a valid config.
fn convert(files: &[(&str, &str)], args: &[String]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write input");
    }
    let out = Command::new(binary("sluice-proxy"))
        .arg("convert")
        .args(files.iter().map(|(name, _)| *name))
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run sluice-proxy convert");
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Err(e) = Config::parse(&yaml, Path::new("sluice.yaml")) {
        panic!("the converted config is invalid: {e}\n{yaml}");
    }
    yaml
}

/// Runs `sluice-proxy convert` on `files` expecting it to refuse them; returns what it printed
/// on stderr.
fn refused(files: &[(&str, &str)], args: &[String]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write input");
    }
    let out = Command::new(binary("sluice-proxy"))
        .arg("convert")
        .args(files.iter().map(|(name, _)| *name))
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run sluice-proxy convert");
    assert!(
        !out.status.success(),
        "converted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `sluice-proxy --check` on `yaml`; returns its stdout.
fn check(yaml: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("sluice.yaml"), yaml).expect("write config");
    let out = Command::new(binary("sluice-proxy"))
        .args(["--check", "--config", "sluice.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run sluice-proxy --check");
    assert!(
        out.status.success(),
        "--check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn share_of(bodies: &[String], backend: &str) -> f64 {
    let hits = bodies
        .iter()
        .filter(|b| **b == format!("{backend}\n"))
        .count();
    hits as f64 * 100.0 / bodies.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_istio_docs_canary_runs_as_its_virtual_service_says() {
    let v1 = Backend::spawn("v1").await;
    let v2 = Backend::spawn("v2").await;
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migrating/istio/reviews.yaml"),
    )
    .expect("read the Istio example");
    let yaml = convert(
        &[("reviews.yaml", &source)],
        &[
            format!("--upstream=v1={}", v1.endpoint()),
            format!("--upstream=v2={}", v2.endpoint()),
            format!("--listen=127.0.0.1:{}", free_port()),
            format!("--admin=127.0.0.1:{}", free_port()),
        ],
    );
    // The 90/10 route becomes a rollout of v2 over v1, which --check validates.
    assert!(yaml.contains("rollouts:\n"), "{yaml}");
    assert!(check(&yaml).contains("1 rollout(s)"));
    let proxy = Proxy::start(&yaml);

    let testers = client::bodies(&proxy.url("/"), &[("canary", "true")], 300, 4).await;
    assert!(
        testers.iter().all(|b| b == "v2\n"),
        "canary: true → v2 always"
    );

    let everyone = client::bodies(&proxy.url("/"), &[], 4_000, 16).await;
    let v2_share = share_of(&everyone, "v2");
    println!("converted 90/10 over 4000 requests: v2 {v2_share:.2}%");
    assert!(
        (8.0..=12.0).contains(&v2_share),
        "v2 got {v2_share:.2}% of 4000 (want 10 ± 2)"
    );
    assert_eq!(share_of(&everyone, "v1") + v2_share, 100.0);
    let split = proxy
        .metric("sluice_requests_total", &[("route", "reviews-1")])
        .await;
    assert_eq!(split, 4_000.0, "counted under the converted route's name");
}
