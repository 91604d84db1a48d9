//! Real etcd for fleet-mode tests: one member or a cluster of several, each on ephemeral
//! loopback ports, started from Debian's `etcd-server`, with the faults the tests need
//! (SIGKILL a member, stop and restart one on its data, find the raft leader) and `etcdctl`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_etcd::{Client, Settings};

use crate::{free_port, servers};

/// The etcd binaries, or `None` after printing `skipped: install etcd-server etcd-client`.
///
/// # Panics
/// When they are missing and `SLUICE_REQUIRE_SERVERS=1`.
pub fn find() -> Option<(PathBuf, PathBuf)> {
    let etcd = servers::find("etcd", "etcd-server")?;
    let etcdctl = servers::find("etcdctl", "etcd-client")?;
    Some((etcd, etcdctl))
}

/// One member's process and addresses.
#[derive(Debug)]
struct Member {
    name: String,
    client: String,
    peer: String,
    child: Option<Child>,
}

/// An etcd cluster on loopback. Every member is killed when dropped.
#[derive(Debug)]
pub struct Etcd {
    binary: PathBuf,
    etcdctl: PathBuf,
    members: Vec<Member>,
    token: String,
    data: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Etcd {
    /// Starts a cluster of `size` members and waits until it has a leader.
    pub async fn start((binary, etcdctl): &(PathBuf, PathBuf), size: usize) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let members = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let token = format!(
            "sluice-test-{}-{}",
            std::process::id(),
            data.path().display()
        );
        let mut etcd = Self {
            binary: binary.clone(),
            etcdctl: etcdctl.clone(),
            members,
            token,
            data,
        };
        for index in 0..size {
            etcd.spawn(index, "new");
        }
        etcd.wait_ready().await;
        for member in &mut etcd.members {
            if let Some(Ok(Some(status))) = member.child.as_mut().map(Child::try_wait) {
                panic!(
                    "etcd member {} exited ({status}) at start; its log is in {}",
                    member.name,
                    etcd.data.path().display()
                );
            }
        }
        etcd
    }

    fn spawn(&mut self, index: usize, state: &str) {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let member = &self.members[index];
        let dir = self.data.path().join(&member.name);
        let log = std::fs::File::create(self.data.path().join(format!("{}.log", member.name)))
            .expect("etcd log file");
        let child = Command::new(&self.binary)
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&dir)
            .arg(format!("--listen-client-urls=http://{}", member.client))
            .arg(format!("--advertise-client-urls=http://{}", member.client))
            .arg(format!("--listen-peer-urls=http://{}", member.peer))
            .arg(format!(
                "--initial-advertise-peer-urls=http://{}",
                member.peer
            ))
            .arg(format!("--initial-cluster={cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            // Fast elections: a killed leader is replaced in well under a second.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", self.binary.display()));
        self.members[index].child = Some(child);
    }

    /// Client addresses (`host:port`) of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// The endpoints as a YAML flow list: `["127.0.0.1:1", ...]`.
    pub fn endpoints_yaml(&self) -> String {
        let quoted: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// A client of the whole cluster.
    pub fn client(&self) -> Client {
        Client::new(Settings {
            endpoints: self.endpoints(),
            tls: None,
            credentials: None,
            timeout: Duration::from_secs(2),
        })
    }

    /// Waits until a read goes through (the cluster has a leader and quorum).
    pub async fn wait_ready(&self) {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get("/sluice-test-ready").await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become ready in 30 s; its logs are in {}",
                self.data.path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs member `index` (its data stays for [`restart`](Self::restart)).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `index` again on its data and ports.
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index, "existing");
    }

    /// The index of the raft leader, asked of the members that answer.
    pub async fn leader(&self) -> Option<usize> {
        for (index, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let Some(status) = maintenance_status(&member.client).await else {
                continue;
            };
            let leader = status["leader"].as_str().unwrap_or_default().to_string();
            let me = status["header"]["member_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !leader.is_empty() && leader == me {
                return Some(index);
            }
        }
        None
    }

    /// Runs `etcdctl` against the cluster with `args`; returns its stdout, panicking with its
    /// stderr when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let output = Command::new(&self.etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints().join(",")))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", self.etcdctl.display()));
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Where the members' logs are.
    pub fn logs(&self) -> &Path {
        self.data.path()
    }
}

/// `POST /v3/maintenance/status` on one member.
async fn maintenance_status(endpoint: &str) -> Option<serde_json::Value> {
    let url = format!("http://{endpoint}/v3/maintenance/status");
    let reply = crate::client::try_post_json(&url, "{}").await?;
    if reply.status != 200 {
        return None;
    }
    serde_json::from_slice(&reply.body).ok()
}
