//! Every example config is valid (`sluice-proxy --check`), the TLS ones with certificates
//! made by their generator script, the Kubernetes one as embedded in its ConfigMap; the
//! migration examples convert to the `sluice.yaml` next to them and agree with their sources.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_tests::process::binary;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn check(dir: &Path, file: &str) {
    let out = Command::new(binary("sluice-proxy"))
        .args(["--check", "--config", file])
        .current_dir(dir)
        .output()
        .expect("run sluice-proxy --check");
    assert!(
        out.status.success(),
        "{file}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plain_examples_are_valid() {
    for file in ["quickstart.yaml", "sidecar.yaml"] {
        check(&examples(), file);
    }
}

/// Copies `files` of `examples/<from>` and its `tls/gen-certs.sh` to a temporary directory,
/// runs the script there, and checks each file.
fn check_with_certificates(from: &str, files: &[&str]) {
    let source = examples().join(from);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("tls")).expect("tls dir");
    for file in files {
        std::fs::copy(source.join(file), dir.path().join(file)).expect("copy example");
    }
    std::fs::copy(
        source.join("tls/gen-certs.sh"),
        dir.path().join("tls/gen-certs.sh"),
    )
    .expect("copy script");
    let status = Command::new("bash")
        .arg(dir.path().join("tls/gen-certs.sh"))
        .current_dir(dir.path())
        .status()
        .expect("run gen-certs.sh");
    assert!(status.success());
    for file in files {
        check(dir.path(), file);
    }
}

#[test]
fn tls_examples_are_valid_with_generated_certificates() {
    check_with_certificates("", &["edge-tls.yaml", "mesh-mtls.yaml"]);
}

#[test]
fn the_fleet_example_is_valid_with_generated_certificates() {
    check_with_certificates("fleet", &["sluice.yaml"]);
}

#[test]
fn the_kubernetes_configmap_holds_a_valid_config() {
    let text = std::fs::read_to_string(examples().join("kubernetes/configmap.yaml"))
        .expect("read configmap");
    // The `sluice.yaml: |` block, de-indented.
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "sluice.yaml: |")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .collect();
    let config: String = block
        .iter()
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    assert!(config.contains("rollouts:"), "{config}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("sluice.yaml"), config).expect("write");
    std::fs::write(dir.path().join("weights.yaml"), "routes: {}\n").expect("write");
    check(dir.path(), "sluice.yaml");
}

#[test]
fn the_kubernetes_control_tokens_secret_holds_a_valid_tokens_file() {
    let text = std::fs::read_to_string(examples().join("kubernetes/control.yaml"))
        .expect("read control.yaml");
    // The `tokens.yaml: |` block of the Secret, de-indented.
    let tokens: String = text
        .lines()
        .skip_while(|l| l.trim() != "tokens.yaml: |")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    let parsed = sluice_config::Tokens::parse(&tokens, Path::new("tokens.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{tokens}"));
    let roles: Vec<&str> = parsed.callers().iter().map(|c| c.role.as_str()).collect();
    assert_eq!(roles, ["release", "operate", "read"]);
    let configmap = std::fs::read_to_string(examples().join("kubernetes/configmap.yaml"))
        .expect("read configmap");
    assert!(
        configmap.contains("tokens_file: /etc/sluice-tokens/tokens.yaml")
            && text.contains("mountPath: /etc/sluice-tokens"),
        "the ConfigMap's tokens_file is where control.yaml mounts the Secret"
    );
}

/// The `# Convert: sluice-proxy convert ARGS > sluice.yaml` line of a migration example.
fn convert_args(source: &str) -> Vec<String> {
    let line = source
        .lines()
        .find_map(|l| l.strip_prefix("# Convert: sluice-proxy convert "))
        .expect("the example says how it is converted");
    line.split('>')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn migration_examples_convert_to_the_sluice_yaml_next_to_them() {
    for (dir, source) in [("istio", "reviews.yaml"), ("gateway-api", "store.yaml")] {
        let dir = examples().join("migrating").join(dir);
        let text = std::fs::read_to_string(dir.join(source)).expect("read example source");
        let out = Command::new(binary("sluice-proxy"))
            .arg("convert")
            .args(convert_args(&text))
            .current_dir(&dir)
            .output()
            .expect("run sluice-proxy convert");
        assert!(
            out.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = std::fs::read_to_string(dir.join("sluice.yaml")).expect("read sluice.yaml");
        assert!(
            String::from_utf8_lossy(&out.stdout) == committed,
            "{}/sluice.yaml is not what `sluice-proxy convert {}` prints now; regenerate it",
            dir.display(),
            convert_args(&text).join(" ")
        );
        check(&dir, "sluice.yaml");
    }
}

#[test]
fn migration_examples_say_what_their_sources_say() {
    let dir = examples().join("migrating");
    for sub in ["nginx", "progressive-canary"] {
        check(&dir.join(sub), "sluice.yaml");
    }
    let load = |path: &Path| {
        sluice_config::Config::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    // NGINX: split_clients' percentage is the canary's weight, on the same key.
    let nginx = std::fs::read_to_string(dir.join("nginx/nginx.conf")).expect("read nginx.conf");
    let config = load(&dir.join("nginx/sluice.yaml"));
    let default = config
        .routes
        .routes()
        .iter()
        .find(|r| &*r.name == "default")
        .expect("a default route");
    let canary_weight = default.split.backends()[1].weight.to_string();
    assert!(
        nginx.contains(&format!("{canary_weight}%     canary;")),
        "{nginx}"
    );
    assert!(nginx.contains("split_clients \"${http_x_user_id}\""));
    assert_eq!(
        default.sticky,
        Some(sluice_config::Sticky::Header(
            http::HeaderName::from_static("x-user-id")
        ))
    );
    // The script: its steps, interval and thresholds are the rollout's.
    let script = std::fs::read_to_string(dir.join("progressive-canary/progressive-canary.sh"))
        .expect("read the script");
    let config = load(&dir.join("progressive-canary/sluice.yaml"));
    let rollout = &config.rollouts[0];
    let steps: Vec<String> = rollout
        .steps
        .iter()
        .filter_map(|s| s.weight())
        .map(|w| w.to_string())
        .collect();
    assert!(script.contains(&format!("STEPS=\"{}\"", steps.join(" "))));
    assert!(script.contains(&format!("INTERVAL={}", rollout.interval.as_secs())));
    assert!(script.contains(&format!(
        "MAX_ERROR_RATE={}",
        rollout.analysis.max_error_rate
    )));
    let p95 = rollout.analysis.max_p95.expect("a p95 limit").as_secs_f64();
    assert!(script.contains(&format!("MAX_P95={p95}")));
    assert_eq!(
        rollout.analysis.failure_limit, 1,
        "the script rolls back at once"
    );
}
