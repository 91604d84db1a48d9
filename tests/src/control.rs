//! A `sluice-control run` process and helpers to talk to its admin API.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sluice_control::status::{RolloutStatus, Status};

use crate::client;
use crate::process::{binary, logged_address, Process};

/// A running control. Killed when dropped.
#[derive(Debug)]
pub struct Control {
    /// The process.
    pub process: Process,
    /// Its admin address.
    pub admin: SocketAddr,
}

impl Control {
    /// Starts `sluice-control run --config sluice.yaml` in `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Starts `sluice-control run --config sluice.yaml` in `dir` with `extra` arguments.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "run",
            "--config",
            "sluice.yaml",
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ];
        args.extend_from_slice(extra);
        let mut process = Process::spawn(&binary("sluice-control"), &args, dir);
        let admin = logged_address(&process.wait_for_log("control admin listening"));
        Self { process, admin }
    }

    /// `GET /status`, as the typed status the CLI reads.
    pub async fn status(&self) -> Status {
        let text = client::get_text(&format!("http://{}/status", self.admin)).await;
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("/status is not a Status ({e}): {text}"))
    }

    /// The status of rollout `name`.
    pub async fn rollout(&self, name: &str) -> RolloutStatus {
        let status = self.status().await;
        status
            .rollout(name)
            .cloned()
            .unwrap_or_else(|| panic!("no rollout {name} in {status:?}"))
    }

    /// The phase of rollout `name`, as spelled in `status`.
    pub async fn phase(&self, name: &str) -> String {
        self.rollout(name).await.phase.as_str().to_string()
    }

    /// The canary weight the control has in force for `name`.
    pub async fn weight(&self, name: &str) -> f64 {
        self.rollout(name).await.canary_weight.as_f64()
    }

    /// The message of the last decision of rollout `name` ("" before the first).
    pub async fn last_message(&self, name: &str) -> String {
        self.rollout(name)
            .await
            .last_decision
            .map(|d| d.message)
            .unwrap_or_default()
    }

    /// How many of the rollout's decisions so far have a message containing `text`.
    pub async fn decisions_mentioning(&self, name: &str, text: &str) -> usize {
        self.rollout(name)
            .await
            .history
            .iter()
            .filter(|d| d.message.contains(text))
            .count()
    }

    /// `POST /rollouts/NAME/ACTION`: (status code, JSON answer).
    pub async fn command(&self, name: &str, action: &str) -> (u16, Value) {
        let url = format!("http://{}/rollouts/{name}/{action}", self.admin);
        let reply = client::send(
            &client::http1(),
            http::Request::post(url)
                .body(Default::default())
                .expect("request"),
        )
        .await;
        (
            reply.status.as_u16(),
            serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
        )
    }

    /// The sum of a control metric's series matching `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = client::get_text(&format!("http://{}/metrics", self.admin)).await;
        crate::metrics::sum(&text, name, labels)
    }

    /// Checks counted so far for `rollout` with `result`.
    pub async fn checks(&self, rollout: &str, result: &str) -> f64 {
        self.metric(
            "sluice_rollout_checks_total",
            &[("rollout", rollout), ("result", result)],
        )
        .await
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(timeout)
    }
}
