//! The `sluice-proxy` command line: `--check`, `--help`, exit codes, startup errors.

use std::process::Command;

use sluice_tests::process::binary;

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(binary("sluice-proxy"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run sluice-proxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = "listeners:\n  - name: http\n    address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [127.0.0.1:9]\nroutes:\n  - name: r\n    backends: [{ upstream: app, weight: 1 }]\n";

#[test]
fn check_accepts_a_valid_file_with_a_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("sluice.yaml"), GOOD).expect("write");
    let (code, stdout, stderr) = run(&["--check", "--config", "sluice.yaml"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "sluice.yaml: ok (1 listener(s), 1 upstream(s), 1 route(s), 0 rollout(s))\n"
    );
}

#[test]
fn check_prints_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = GOOD
        .replace("upstream: app", "upstream: ap")
        .replace("name: http", "name: http\n    protcol: http1");
    std::fs::write(dir.path().join("sluice.yaml"), bad).expect("write");
    let (code, stdout, stderr) = run(&["--check", "--config", "sluice.yaml"], dir.path());
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "sluice.yaml:3:5: listeners[0]: unknown key \"protcol\" (did you mean \"protocol\"?)\n\
         sluice.yaml:10:28: routes[0].backends[0].upstream: unknown upstream \"ap\" (known: app)\n\
         sluice.yaml: 2 problem(s); nothing was changed\n"
    );
}

#[test]
fn check_validates_the_weights_file_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!("{GOOD}weights_file: weights.yaml\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("weights.yaml"),
        "routes:\n  r: { nope: 1 }\n",
    )
    .expect("write");
    let (code, _, stderr) = run(&["--check", "--config", "sluice.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("weights.yaml:2:8: routes.r.nope: route \"r\" has no backend \"nope\" (its backends: app)"), "{stderr}");
}

#[test]
fn check_reports_a_missing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run(&["--check", "--config", "missing.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("missing.yaml: cannot read file: No such file or directory"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_config_stops_startup_with_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("sluice.yaml"),
        GOOD.replace("weight: 1", "weight: -1"),
    )
    .expect("write");
    let (code, _, stderr) = run(&["--config", "sluice.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("routes[0].backends[0].weight: weight must not be negative, got -1"),
        "{stderr}"
    );
}

#[test]
fn help_explains_every_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, _) = run(&["--help"], dir.path());
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--check",
        "--log-format",
        "--log-level",
        "--workers",
        "--drain-timeout",
        "--header-read-timeout",
        "--body-idle-timeout",
        "--version",
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}:\n{stdout}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run(&["--log-format", "xml"], dir.path());
    assert_eq!(code, 2, "{stderr}");
}
