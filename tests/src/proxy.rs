//! A `sluice-proxy` process with its config in a temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::process::{binary, logged_address, Process};

/// A running proxy. Killed when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// The process.
    pub process: Process,
    /// The first listener's address.
    pub http: SocketAddr,
    /// The admin address.
    pub admin: SocketAddr,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Proxy {
    /// Writes `config` to `sluice.yaml` in a fresh temporary directory and starts the proxy.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, &[])
    }

    /// Like [`Proxy::start`], with extra command-line arguments.
    pub fn start_with(config: &str, args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        std::fs::write(dir.join("sluice.yaml"), config).expect("write config");
        let mut proxy = Self::start_in(&dir, args);
        proxy._temp = Some(temp);
        proxy
    }

    /// Starts the proxy on `dir/sluice.yaml` (the caller owns the directory).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        let mut all = vec![
            "--config",
            "sluice.yaml",
            "--log-format",
            "json",
            "--workers",
            "2",
        ];
        all.extend_from_slice(args);
        let mut process = Process::spawn(&binary("sluice-proxy"), &all, dir);
        process.wait_for_log("ready");
        let http = logged_address(&process.wait_for_log("listening"));
        let admin = logged_address(&process.wait_for_log("admin listening"));
        Self {
            process,
            http,
            admin,
            dir: dir.to_path_buf(),
            _temp: None,
        }
    }

    /// The directory holding `sluice.yaml`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `http://<listener>` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Replaces `sluice.yaml` (written in place).
    pub fn write_config(&self, config: &str) {
        std::fs::write(self.dir.join("sluice.yaml"), config).expect("write config");
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        crate::client::get_text(&format!("http://{}/metrics", self.admin)).await
    }

    /// The sum of every series of `name` whose labels include all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        crate::metrics::sum(&self.metrics().await, name, labels)
    }

    /// The `/config` document.
    pub async fn config_json(&self) -> Value {
        serde_json::from_str(
            &crate::client::get_text(&format!("http://{}/config", self.admin)).await,
        )
        .expect("/config is JSON")
    }

    /// `weights[route][backend]` as `/config` reports it in force.
    pub async fn weight(&self, route: &str, backend: &str) -> f64 {
        let config = self.config_json().await;
        config["routes"]
            .as_array()
            .and_then(|routes| routes.iter().find(|r| r["name"] == route))
            .and_then(|r| r["backends"].as_array())
            .and_then(|b| b.iter().find(|b| b["upstream"] == backend))
            .and_then(|b| b["weight"].as_f64())
            .unwrap_or(f64::NAN)
    }

    /// Waits for the process to exit after a signal.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(timeout)
    }
}
