//! Every example config is valid (`sluice-proxy --check`), the TLS ones with certificates
//! made by their generator script, the Kubernetes one as embedded in its ConfigMap.

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

#[test]
fn tls_examples_are_valid_with_generated_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("tls")).expect("tls dir");
    for file in ["edge-tls.yaml", "mesh-mtls.yaml"] {
        std::fs::copy(examples().join(file), dir.path().join(file)).expect("copy example");
    }
    std::fs::copy(
        examples().join("tls/gen-certs.sh"),
        dir.path().join("tls/gen-certs.sh"),
    )
    .expect("copy script");
    let status = Command::new("bash")
        .arg(dir.path().join("tls/gen-certs.sh"))
        .status()
        .expect("run gen-certs.sh");
    assert!(status.success());
    for file in ["edge-tls.yaml", "mesh-mtls.yaml"] {
        check(dir.path(), file);
    }
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
