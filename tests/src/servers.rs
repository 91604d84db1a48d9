//! External servers some tests run for real (Prometheus; etcd): find the binary, or skip the
//! test visibly — unless `SLUICE_REQUIRE_SERVERS=1` (set by `.ci/run`, which installs them),
//! where a missing server fails the test.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable that turns a missing server into a failure.
pub const REQUIRE: &str = "SLUICE_REQUIRE_SERVERS";

/// The path of `binary` (searched in `PATH`, then `/usr/sbin`, `/usr/bin`), or `None` after
/// printing `skipped: install PACKAGE` when it is missing and servers are not required.
///
/// # Panics
/// When the binary is missing and `SLUICE_REQUIRE_SERVERS=1`.
pub fn find(binary: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate));
    if found.is_none() {
        let how = format!("install {package} (apt-get install -y {package})");
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
