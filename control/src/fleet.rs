//! Fleet mode (`store.etcd`): several `sluice-control run` share one etcd. Each stands for
//! election; the leader runs the controller on an [`EtcdStore`] for as long as its term lasts,
//! and the standbys show the state in etcd and forward commands to the leader. A leader that
//! loses its term stops measuring and writing at once and stands by again.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_config::{Config, Etcd};
use sluice_etcd::Client;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::controller::{default_source, CommandError, Controller, Request};
use crate::etcd_store::EtcdStore;
use crate::leader::{Candidate, Election};
use crate::metrics::ControlMetrics;
use crate::status::{FleetStatus, RolloutStatus, Status};
use crate::store::Store;

/// How often a standby refreshes its status from etcd.
const REFRESH: Duration = Duration::from_secs(1);
/// How long one etcd call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// One control of a fleet.
#[derive(Debug)]
pub struct Fleet {
    config_path: PathBuf,
    etcd: Etcd,
    client: Client,
    election: Election,
    /// Reads the rollouts' states for a standby's status.
    reader: EtcdStore,
    metrics: Arc<ControlMetrics>,
    status: watch::Sender<Status>,
    leader: watch::Sender<Option<Candidate>>,
}

impl Fleet {
    /// The control `me` of the fleet in `config`'s `store.etcd`, publishing into `status`
    /// and `metrics`.
    pub fn new(
        config_path: PathBuf,
        etcd: Etcd,
        client: Client,
        me: Candidate,
        metrics: Arc<ControlMetrics>,
        status: watch::Sender<Status>,
    ) -> Self {
        let election = Election::new(client.clone(), etcd.key("leader"), etcd.lease_ttl, me);
        let reader = EtcdStore::new(client.clone(), &etcd, None);
        Self {
            config_path,
            etcd,
            client,
            election,
            reader,
            metrics,
            status,
            leader: watch::Sender::new(None),
        }
    }

    /// Who leads, as this control knows it (for forwarding commands).
    pub fn leader(&self) -> watch::Receiver<Option<Candidate>> {
        self.leader.subscribe()
    }

    /// This control's id.
    pub fn id(&self) -> &str {
        &self.election.me().id
    }

    /// Stands for election and leads when elected, until `shutdown`; then resigns.
    pub async fn run(
        self,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            self.metrics.leader(false);
            // Standing by: campaign, show the state in etcd, turn away commands that raced
            // a change of leader (the admin endpoint forwards the others).
            let term = {
                let campaign = self.election.campaign(&self.leader);
                tokio::pin!(campaign);
                let mut refresh = tokio::time::interval(REFRESH);
                loop {
                    tokio::select! {
                        term = &mut campaign => break term,
                        _ = refresh.tick() => self.refresh_status().await,
                        Some(request) = requests.recv() => {
                            let _ = request.reply.send(Err(CommandError::NotLeader));
                        }
                        () = &mut shutdown => return,
                    }
                }
            };
            let term = Arc::new(term);
            self.leader.send_replace(Some(self.election.me().clone()));
            self.show_role(true);
            let store = Arc::new(EtcdStore::new(
                self.client.clone(),
                &self.etcd,
                Some(term.clone()),
            ));
            let controller = match Controller::with_parts(
                &self.config_path,
                store,
                Box::new(default_source),
                self.metrics.clone(),
                self.status.clone(),
            )
            .await
            {
                Ok(controller) => controller,
                Err(e) => {
                    error!(error = %e, "elected, but cannot load the rollouts from etcd; resigning");
                    self.election.resign(&term).await;
                    tokio::time::sleep(self.etcd.lease_ttl).await;
                    continue;
                }
            };
            self.metrics.leader(true);
            let mut ended = None;
            let stop = async {
                tokio::select! {
                    why = self.election.hold(&term) => ended = Some(why),
                    () = &mut shutdown => {}
                }
            };
            controller.run(&mut requests, stop).await;
            self.leader.send_replace(None);
            match ended {
                Some(why) => {
                    warn!(reason = %why, "leadership lost: stopped measuring and writing; standing by")
                }
                None => {
                    self.metrics.leader(false);
                    self.election.resign(&term).await;
                    return;
                }
            }
        }
    }

    /// A standby's status: the rollouts as the leader last persisted them in etcd.
    async fn refresh_status(&self) {
        self.show_role(false);
        let config = match Config::load(&self.config_path) {
            Ok(config) => config,
            Err(e) => {
                warn!(error = %e, "config unreadable; the status shows the last one read");
                return;
            }
        };
        let mut states = match self.reader.load_states().await {
            Ok(states) => states,
            Err(e) => {
                warn!(error = %e, "cannot read the rollouts from etcd; the status shows the last read");
                return;
            }
        };
        let rollouts = config
            .rollouts
            .iter()
            .map(|r| {
                let state = states.remove(&r.name).unwrap_or_default();
                self.metrics.state(&r.name, &state);
                RolloutStatus::new(r, &state, None, false)
            })
            .collect();
        self.status.send_modify(|status| status.rollouts = rollouts);
    }

    fn show_role(&self, leading: bool) {
        let fleet = FleetStatus {
            role: if leading { "leader" } else { "standby" }.into(),
            id: self.election.me().id.clone(),
            leader: self.leader.borrow().clone(),
        };
        if leading {
            info!(id = %fleet.id, "leading: measuring, deciding and writing");
        }
        self.status.send_modify(|status| status.fleet = Some(fleet));
    }
}

/// A name for this process unique in the fleet: host, pid and a random suffix.
pub fn candidate_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "control".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
