//! Running sluice's real binaries as child processes: build them if stale, read their JSON
//! logs, learn their ephemeral ports from those logs, send them signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running child process whose stderr JSON log lines are collected.
#[derive(Debug)]
pub struct Process {
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
}

/// The path of a workspace binary. The first test of each test executable (or the `soak`
/// binary) runs `cargo build --bins` (a no-op when fresh), so tests never run a stale binary;
/// a marker file next to the binaries spares the other tests of that executable the cargo call.
pub fn binary(name: &str) -> PathBuf {
    static CHECKED: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable path");
    // Test executables live in target/<profile>/deps, the harness's own binaries (`soak`)
    // next to the proxy in target/<profile>.
    let exe_dir = exe.parent().expect("the executable has a directory");
    let profile_dir = if exe_dir.ends_with("deps") {
        exe_dir.parent().expect("deps lives in target/<profile>")
    } else {
        exe_dir
    }
    .to_path_buf();
    CHECKED.get_or_init(|| {
        let exe_name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let marker = profile_dir.join(format!(".sluice-bins-fresh-for-{exe_name}"));
        let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
        if modified(&marker).is_some() && modified(&marker) >= modified(&exe) {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&workspace)
            .args(["build", "--quiet", "--workspace", "--bins"]);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
        let _ = std::fs::write(&marker, b"");
    });
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run `cargo build --workspace --bins`",
        path.display()
    );
    path
}

impl Process {
    /// Starts `binary` with `args`, collecting its stderr lines (JSON when it logs JSON).
    pub fn spawn(binary: &Path, args: &[&str], dir: &Path) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (logs, raw) = (logs.clone(), raw.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        logs.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(value);
                    }
                    raw.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        Self { child, logs, raw }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// JSON log lines so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every output line so far (stdout and stderr), as text.
    pub fn output(&self) -> String {
        self.raw
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// Log lines whose `message` equals `message`.
    pub fn logs_with_message(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l.get("message").and_then(Value::as_str) == Some(message))
            .collect()
    }

    /// Waits (up to 20 s) for a log line with this message; panics with the output otherwise.
    pub fn wait_for_log(&mut self, message: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.logs_with_message(message).into_iter().next() {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "process exited ({status}) before logging {message:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} log line within 20s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGHUP`, ...).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY-free: libc::kill is a plain syscall wrapper.
        let rc = unsafe_free_kill(pid, signal);
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits (up to `timeout`) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    /// Peak resident memory in KiB since start (Linux `/proc`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `address` field of a log line, as a socket address.
pub fn logged_address(line: &Value) -> SocketAddr {
    line.get("address")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("log line without an address: {line}"))
}

fn unsafe_free_kill(pid: i32, signal: i32) -> i32 {
    // `libc::kill` is `unsafe` to call; the workspace forbids `unsafe`, so go through the
    // `kill` command instead.
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    match status {
        Ok(s) if s.success() => 0,
        _ => -1,
    }
}
