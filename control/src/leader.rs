//! Leader election among the controls of a fleet: the leader holds `<prefix>/leader`, a key
//! attached to its lease. Keeping the lease alive keeps the leadership; a control that dies
//! stops renewing, etcd deletes the key when the lease expires, and a standby creates it.
//! Each term is named by the key's create revision, which every write of the leader
//! compares ([`Term::revision`]): a deposed leader's writes fail.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_etcd::{Client, Compare, Op};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Who a control is, as written in the leader key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// A name unique to this process (host, pid, random).
    pub id: String,
    /// The admin address the other controls forward commands to (`host:port`).
    pub admin: String,
}

/// One leadership term.
#[derive(Debug)]
pub struct Term {
    key: String,
    revision: i64,
    lease: i64,
    /// Set once, with the reason, when the term is over.
    ended: watch::Sender<Option<String>>,
}

impl Term {
    /// The leader key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The leader key's create revision for this term.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Ends the term: something showed that another control leads now.
    pub fn deposed(&self, why: &str) {
        self.ended.send_if_modified(|ended| {
            if ended.is_some() {
                return false;
            }
            *ended = Some(why.to_string());
            true
        });
    }

    /// Waits until the term ends; returns why.
    pub async fn ended(&self) -> String {
        let mut ended = self.ended.subscribe();
        loop {
            if let Some(why) = ended.borrow_and_update().clone() {
                return why;
            }
            if ended.changed().await.is_err() {
                return "the term was dropped".into();
            }
        }
    }
}

/// The election of one deployment (one `prefix`).
#[derive(Debug)]
pub struct Election {
    client: Client,
    key: String,
    ttl: Duration,
    me: Candidate,
}

impl Election {
    /// The election at `key` with leases of `ttl`, standing as `me`.
    pub fn new(client: Client, key: String, ttl: Duration, me: Candidate) -> Self {
        Self {
            client,
            key,
            ttl,
            me,
        }
    }

    /// This control.
    pub fn me(&self) -> &Candidate {
        &self.me
    }

    /// How often a standby tries to take the key, and a leader renews its lease.
    fn retry(&self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(100), Duration::from_millis(500))
    }

    /// Tries until this control leads; `leader` is told who leads meanwhile (`None`: nobody,
    /// or etcd cannot be reached).
    pub async fn campaign(&self, leader: &watch::Sender<Option<Candidate>>) -> Term {
        let mut lease = 0;
        loop {
            match self.try_lead(&mut lease).await {
                Ok(Ok(term)) => return term,
                Ok(Err(current)) => {
                    leader.send_if_modified(|l| replace(l, current));
                }
                Err(e) => {
                    debug!(error = %e, "election: etcd not reachable");
                    leader.send_if_modified(|l| replace(l, None));
                }
            }
            tokio::time::sleep(self.retry()).await;
        }
    }

    /// One attempt: `Ok(Ok(term))` when this control now leads, `Ok(Err(leader))` when
    /// another does.
    async fn try_lead(
        &self,
        lease: &mut i64,
    ) -> Result<Result<Term, Option<Candidate>>, sluice_etcd::Error> {
        // A standby keeps a lease of its own ready, so taking over is one transaction.
        if *lease == 0 || self.client.keep_alive(*lease).await? == 0 {
            *lease = self.client.grant(ttl_seconds(self.ttl)).await?;
        }
        let value = serde_json::to_vec(&self.me)
            .map_err(|e| sluice_etcd::Error::Etcd(format!("cannot encode the candidate: {e}")))?;
        let outcome = self
            .client
            .txn(
                vec![Compare::create_revision(&self.key, 0)],
                vec![Op::put(&self.key, &value, *lease)],
                vec![Op::get(&self.key)],
            )
            .await?;
        if outcome.succeeded {
            info!(id = %self.me.id, revision = outcome.revision, "elected leader");
            return Ok(Ok(Term {
                key: self.key.clone(),
                revision: outcome.revision,
                lease: std::mem::take(lease),
                ended: watch::Sender::new(None),
            }));
        }
        let current = outcome
            .reads
            .first()
            .and_then(|kvs| kvs.first())
            .and_then(|kv| serde_json::from_slice::<Candidate>(&kv.value).ok());
        Ok(Err(current))
    }

    /// Keeps `term`'s lease alive until the term ends: the lease expired, it could not be
    /// renewed for a whole TTL (etcd has let it go by then), or a write found another leader.
    pub async fn hold(&self, term: &Term) -> String {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                why = term.ended() => return why,
                () = tokio::time::sleep(self.retry()) => {}
            }
            match self.client.keep_alive(term.lease).await {
                Ok(ttl) if ttl > 0 => renewed = Instant::now(),
                Ok(_) => {
                    term.deposed("the lease expired");
                }
                Err(e) if renewed.elapsed() >= self.ttl => {
                    term.deposed(&format!(
                        "the lease could not be renewed for {:?}: {e}",
                        self.ttl
                    ));
                }
                Err(e) => warn!(error = %e, "cannot renew the leader lease; retrying"),
            }
        }
    }

    /// Gives the leadership up at once (on shutdown): a standby takes over without waiting
    /// for the lease to expire.
    pub async fn resign(&self, term: &Term) {
        term.deposed("resigned");
        match self.client.revoke(term.lease).await {
            Ok(()) => info!(id = %self.me.id, "resigned the leadership"),
            Err(e) => {
                warn!(error = %e, "cannot resign; a standby takes over when the lease expires");
            }
        }
    }
}

fn replace(slot: &mut Option<Candidate>, value: Option<Candidate>) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

/// etcd leases count whole seconds.
fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}
