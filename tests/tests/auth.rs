//! Authenticated control commands and the audit trail: bearer tokens with roles, 401 and 403
//! counted, tokens never logged, a rotated tokens file applied without a restart, refusal to
//! serve an open admin API off loopback, mutual TLS with the certificate's subject as caller.

// The test prints the history it checks, for the record.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;

use sluice_tests::process::binary;
use sluice_tests::tls::Pki;
use sluice_tests::{client, eventually, Control};

const RELEASE: &str = "release-token-5f0c7a9e1b2d";
const OPERATE: &str = "operate-token-8e3b6d2a4c1f";
const READ: &str = "read-token-3c9a1e7b5d2f00";

fn config(dir: &Path, admin: &str, control_extra: &str) -> String {
    let config = format!(
        "listeners: [{{ name: h, address: 127.0.0.1:0 }}]
upstreams:
  stable: {{ endpoints: [127.0.0.1:1], version: v1 }}
  canary: {{ endpoints: [127.0.0.1:2], version: v2 }}
routes:
  - name: default
    backends: [{{ upstream: stable, weight: 100 }}, {{ upstream: canary, weight: 0 }}]
weights_file: weights.yaml
control:
  admin: {admin}
{control_extra}rollouts:
  - name: myapp
    route: default
    stable: stable
    canary: canary
    steps: [5, 50, 100]
    interval: 1h
    metrics: {{ targets: [127.0.0.1:1] }}
"
    );
    std::fs::write(dir.join("sluice.yaml"), &config).expect("write config");
    config
}

fn tokens(dir: &Path, release: &str) {
    std::fs::write(
        dir.join("tokens.yaml"),
        format!(
            "tokens:\n  - {{ name: ci-deploy, role: release, token: \"{release}\" }}\n  - {{ name: oncall, role: operate, token: \"{OPERATE}\" }}\n  - {{ name: dashboards, role: read, token: \"{READ}\" }}\n"
        ),
    )
    .expect("write tokens");
}

/// `METHOD path` on the control with an optional bearer token: (status, body).
async fn call(
    control: &Control,
    method: http::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", control.admin));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let reply = client::send(
        &client::http1(),
        request.body(Default::default()).expect("request"),
    )
    .await;
    (reply.status.as_u16(), reply.text())
}

/// `POST /rollouts/myapp/ACTION`.
async fn post(control: &Control, action: &str, token: Option<&str>) -> (u16, String) {
    let path = format!("/rollouts/myapp/{action}");
    call(control, http::Method::POST, &path, token).await
}

/// `GET path`.
async fn get(control: &Control, path: &str, token: Option<&str>) -> (u16, String) {
    call(control, http::Method::GET, path, token).await
}

/// Runs the CLI in `dir`: (exit code, stdout, stderr).
fn cli(dir: &Path, args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(binary("sluice-control"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("SLUICE_TOKEN");
    if let Some(token) = token {
        command.env("SLUICE_TOKEN", token);
    }
    let out = command.output().expect("run sluice-control");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn failures(control: &Control, reason: &str) -> f64 {
    let (code, text) = get(control, "/metrics", Some(READ)).await;
    assert_eq!(code, 200, "{text}");
    sluice_tests::metrics::sum(
        &text,
        "sluice_control_auth_failures_total",
        &[("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_decide_who_may_do_what_and_refusals_are_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    tokens(dir.path(), RELEASE);
    config(
        dir.path(),
        "127.0.0.1:0",
        "  auth: { tokens_file: tokens.yaml }\n",
    );
    let control = Control::start(dir.path());
    // Health stays open for probes; everything else needs a token.
    assert_eq!(get(&control, "/health", None).await.0, 200);
    let (code, body) = get(&control, "/status", None).await;
    assert_eq!(code, 401, "{body}");
    assert!(
        body.contains("--token-file FILE, or SLUICE_TOKEN"),
        "{body}"
    );
    let (code, body) = post(&control, "start", Some("not-a-valid-token-at-all")).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&control, "start", Some(READ)).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("dashboards has role read; this needs role release"),
        "{body}"
    );
    let (code, body) = post(&control, "start", Some(OPERATE)).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(get(&control, "/status", Some(READ)).await.0, 200);
    let (code, body) = post(&control, "start", Some(RELEASE)).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("started by ci-deploy from 127.0.0.1"),
        "{body}"
    );
    let (code, body) = post(&control, "pause", Some(OPERATE)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("paused by oncall from 127.0.0.1"), "{body}");
    assert_eq!(failures(&control, "missing_token").await, 1.0);
    assert_eq!(failures(&control, "wrong_token").await, 1.0);
    assert_eq!(failures(&control, "forbidden").await, 2.0);
    // The CLI passes the token and says where it came from when it is refused.
    let (code, _, stderr) = cli(
        dir.path(),
        &["abort", "myapp", "--admin", &control.admin.to_string()],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("401")
            && stderr.contains("no token (pass --token-file FILE or set SLUICE_TOKEN)"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(
        dir.path(),
        &["abort", "myapp", "--admin", &control.admin.to_string()],
        Some(OPERATE),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("403") && stderr.contains("sent the token from SLUICE_TOKEN"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("ci.token"), format!("{RELEASE}\n")).expect("token file");
    let (code, stdout, stderr) = cli(
        dir.path(),
        &[
            "abort",
            "myapp",
            "--admin",
            &control.admin.to_string(),
            "--token-file",
            "ci.token",
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "myapp: aborted by ci-deploy from 127.0.0.1: canary 0%\n"
    );
    // The audit trail: every command, carried out or refused, with who asked.
    let (code, history, stderr) = cli(
        dir.path(),
        &["history", "myapp", "--admin", &control.admin.to_string()],
        Some(READ),
    );
    assert_eq!(code, 0, "{stderr}");
    println!("{history}");
    for expected in [
        "started by ci-deploy from 127.0.0.1",
        "paused by oncall from 127.0.0.1",
        "aborted by ci-deploy from 127.0.0.1",
        "[ci-deploy from 127.0.0.1]",
    ] {
        assert!(history.contains(expected), "{expected:?} in\n{history}");
    }
    let (_, _) = post(&control, "pause", Some(OPERATE)).await;
    eventually!(
        cli(
            dir.path(),
            &["history", "myapp", "--admin", &control.admin.to_string()],
            Some(READ)
        )
        .1
        .contains("pause by oncall from 127.0.0.1 refused"),
        "the refused command is in the history"
    );
    // One log line per command naming the caller; never a token.
    let output = control.process.output();
    for token in [RELEASE, OPERATE, READ, "not-a-valid-token-at-all"] {
        assert!(!output.contains(token), "a token leaked into the log");
    }
    let aborted = control
        .process
        .logs()
        .into_iter()
        .find(|l| l["action"] == "aborted")
        .expect("abort logged");
    assert_eq!(aborted["by"], "ci-deploy from 127.0.0.1", "{aborted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_tokens_file_applies_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    tokens(dir.path(), RELEASE);
    config(
        dir.path(),
        "127.0.0.1:0",
        "  auth: { tokens_file: tokens.yaml }\n",
    );
    let mut control = Control::start(dir.path());
    assert_eq!(get(&control, "/status", Some(RELEASE)).await.0, 200);
    let rotated = "rotated-release-token-77aa";
    let temp = dir.path().join("tokens.yaml.tmp");
    std::fs::write(
        &temp,
        format!("tokens:\n  - {{ name: ci-deploy, role: release, token: \"{rotated}\" }}\n"),
    )
    .expect("write");
    std::fs::rename(&temp, dir.path().join("tokens.yaml")).expect("rotate");
    eventually!(
        get(&control, "/status", Some(rotated)).await.0 == 200,
        "the new token works"
    );
    assert_eq!(
        get(&control, "/status", Some(RELEASE)).await.0,
        401,
        "the old one stopped"
    );
    // A broken file keeps the tokens in force.
    std::fs::write(dir.path().join("tokens.yaml"), "tokens: [").expect("break");
    control
        .process
        .wait_for_log("tokens file rejected; the previous tokens stay in force");
    assert_eq!(get(&control, "/status", Some(rotated)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_admin_off_loopback_refuses_to_start_unless_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    config(dir.path(), "0.0.0.0:0", "");
    let out = Command::new(binary("sluice-control"))
        .args(["run", "--config", "sluice.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("control.admin 0.0.0.0:0 is not a loopback address and the admin API has no authentication")
            && stderr.contains("--insecure-admin"),
        "{stderr}"
    );
    let control = Control::start_with(dir.path(), &["--insecure-admin"]);
    assert!(
        control
            .process
            .output()
            .contains("--insecure-admin: the admin API on a non-loopback address"),
        "{}",
        control.process.output()
    );
    // Reached through loopback: it serves.
    let local = format!("127.0.0.1:{}", control.admin.port());
    let reply = client::try_get(&format!("http://{local}/health")).await;
    assert!(reply.is_some_and(|r| r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_names_the_caller_by_its_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let server = pki.issue("control", &["localhost"]);
    let runner = pki.issue("ci-runner", &["ci-runner"]);
    config(
        dir.path(),
        "127.0.0.1:0",
        &format!(
            "  tls: {{ cert: {}, key: {}, client_ca: {} }}\n",
            server.cert.display(),
            server.key.display(),
            pki.ca.display()
        ),
    );
    let control = Control::start(dir.path());
    let admin = control.admin.to_string();
    let ca = pki.ca.display().to_string();
    let tls = ["--admin", &admin, "--ca", &ca, "--server-name", "localhost"];
    // No client certificate: refused in the handshake.
    let (code, _, stderr) = cli(dir.path(), &[&["status"][..], &tls].concat(), None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach sluice-control"), "{stderr}");
    // With one from the CA: allowed, and named by its subject.
    let cert = runner.cert.display().to_string();
    let key = runner.key.display().to_string();
    let with_cert = [&tls[..], &["--cert", &cert, "--key", &key]].concat();
    let (code, stdout, stderr) = cli(
        dir.path(),
        &[&["start", "myapp"][..], &with_cert].concat(),
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "myapp: started by ci-runner from 127.0.0.1; canary 5% (step 1/3)\n"
    );
    let started = control
        .process
        .logs()
        .into_iter()
        .find(|l| l["action"] == "started")
        .expect("start logged");
    assert_eq!(started["by"], "ci-runner from 127.0.0.1");
    let plain = client::try_get(&format!("http://{admin}/health")).await;
    assert!(
        plain.is_none_or(|r| r.status != 200),
        "no plain HTTP on a TLS admin"
    );
}
