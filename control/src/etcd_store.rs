//! The control's [`Store`] in etcd (fleet mode): the weights document at `<prefix>/weights`,
//! each rollout's state at `<prefix>/rollouts/<name>`. Every write is one transaction that
//! holds only while this control's leadership term does, so a deposed leader cannot write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_config::{Etcd, Rollout, RouteTable, Weight, Weights};
use sluice_etcd::{Client, Compare, Op};
use tracing::warn;

use crate::leader::Term;
use crate::rollout::RolloutState;
use crate::source::BoxFuture;
use crate::store::{Store, StoreError, WriteError};
use crate::weights_file::{entry_of, with_entry, Entry};

/// How often a weights write is tried again when the document changed between its read and
/// its transaction (another rollout of this control, never a person: that is an edit).
const WRITE_ATTEMPTS: usize = 3;

/// Weights and state in etcd, written under one leadership term.
#[derive(Debug)]
pub struct EtcdStore {
    client: Client,
    weights_key: String,
    rollouts_prefix: String,
    /// The leadership term writes are made under; `None`: a reader (a standby's status).
    term: Option<Arc<Term>>,
}

impl EtcdStore {
    /// The keys of `etcd`, written while `term` lasts (never without one).
    pub fn new(client: Client, etcd: &Etcd, term: Option<Arc<Term>>) -> Self {
        Self {
            client,
            weights_key: etcd.key("weights"),
            rollouts_prefix: etcd.key("rollouts/"),
            term,
        }
    }

    fn state_key(&self, rollout: &str) -> String {
        format!("{}{rollout}", self.rollouts_prefix)
    }

    /// The weights document in force and its revision (0: absent), checked against `routes`.
    async fn weights(&self, routes: &RouteTable) -> Result<(Document, i64), String> {
        let read = self
            .client
            .get(&self.weights_key)
            .await
            .map_err(|e| e.to_string())?;
        let Some(kv) = read.kv else {
            return Ok((Document::Absent, 0));
        };
        let text = String::from_utf8_lossy(&kv.value);
        let document = match Weights::parse(&text, &self.weights_path(), routes) {
            Ok(weights) => Document::Valid(weights),
            Err(e) => Document::Invalid(e.to_string()),
        };
        Ok((document, kv.mod_revision))
    }

    /// The name errors give the document: the etcd key.
    fn weights_path(&self) -> PathBuf {
        PathBuf::from(format!("etcd:{}", self.weights_key))
    }

    /// The term, and the condition every write carries: it still holds the leadership.
    fn leading(&self) -> Option<(&Term, Compare)> {
        let term = self.term.as_deref()?;
        Some((term, Compare::create_revision(term.key(), term.revision())))
    }
}

/// The weights document as read.
enum Document {
    Absent,
    Invalid(String),
    Valid(Weights),
}

impl Document {
    fn entry(&self, rollout: &Rollout) -> Entry {
        match self {
            Self::Absent => Entry::NoFile,
            Self::Invalid(e) => Entry::Invalid(e.clone()),
            Self::Valid(weights) => {
                entry_of(weights, &rollout.route, &rollout.stable, &rollout.canary)
            }
        }
    }
}

impl Store for EtcdStore {
    fn load_states(&self) -> BoxFuture<'_, Result<BTreeMap<String, RolloutState>, StoreError>> {
        Box::pin(async move {
            let (kvs, _) = self
                .client
                .get_prefix(&self.rollouts_prefix)
                .await
                .map_err(|e| StoreError::Remote(e.to_string()))?;
            let mut states = BTreeMap::new();
            for kv in kvs {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                let name = key
                    .strip_prefix(&self.rollouts_prefix)
                    .unwrap_or(&key)
                    .to_string();
                let state = serde_json::from_slice(&kv.value).map_err(|e| StoreError::Read {
                    path: format!("etcd:{key}"),
                    reason: e.to_string(),
                })?;
                states.insert(name, state);
            }
            Ok(states)
        })
    }

    fn save_state<'a>(
        &'a self,
        rollout: &'a str,
        state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (term, leading) = self.leading().ok_or(StoreError::NotLeader)?;
            let value = serde_json::to_vec(state).map_err(|e| StoreError::Encode(e.to_string()))?;
            let outcome = self
                .client
                .txn(
                    vec![leading],
                    vec![Op::put(&self.state_key(rollout), &value, 0)],
                    vec![],
                )
                .await
                .map_err(|e| StoreError::Remote(e.to_string()))?;
            if !outcome.succeeded {
                term.deposed("a state write found another leader");
                return Err(StoreError::NotLeader);
            }
            Ok(())
        })
    }

    fn read_weights<'a>(
        &'a self,
        routes: &'a RouteTable,
        rollout: &'a Rollout,
    ) -> BoxFuture<'a, Entry> {
        Box::pin(async move {
            match self.weights(routes).await {
                Ok((document, _)) => document.entry(rollout),
                Err(e) => Entry::Unreadable(e),
            }
        })
    }

    fn write_weights<'a>(
        &'a self,
        routes: &'a RouteTable,
        rollout: &'a Rollout,
        (stable, canary): (Weight, Weight),
        expected: Option<(Weight, Weight)>,
        state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let state = serde_json::to_vec(state).map_err(|e| WriteError::Failed(e.to_string()))?;
            let not_leader =
                || WriteError::Failed("this control is not the leader; nothing written".into());
            let (term, _) = self.leading().ok_or_else(not_leader)?;
            for _ in 0..WRITE_ATTEMPTS {
                let (document, revision) =
                    self.weights(routes).await.map_err(WriteError::Failed)?;
                let entry = document.entry(rollout);
                if let Some(expected) = expected {
                    if !entry.says(expected) {
                        // A write whose answer was lost may have landed: that is not an edit.
                        if entry.says((stable, canary)) {
                            return Ok(());
                        }
                        return Err(WriteError::Edited(entry));
                    }
                }
                let current = match document {
                    Document::Valid(weights) => weights,
                    Document::Absent => Weights::none(),
                    Document::Invalid(e) => {
                        return Err(WriteError::Failed(format!(
                            "the weights in etcd are invalid; writing would discard the rest of them: {e}"
                        )))
                    }
                };
                let text = with_entry(
                    &current,
                    &rollout.route,
                    (&rollout.stable, stable),
                    (&rollout.canary, canary),
                );
                let outcome = self
                    .client
                    .txn(
                        vec![
                            Compare::create_revision(term.key(), term.revision()),
                            Compare::mod_revision(&self.weights_key, revision),
                        ],
                        // The state goes with the weights: a successor never finds weights
                        // the persisted state does not know.
                        vec![
                            Op::put(&self.weights_key, text.as_bytes(), 0),
                            Op::put(&self.state_key(&rollout.name), &state, 0),
                        ],
                        vec![Op::get(term.key())],
                    )
                    .await
                    .map_err(|e| WriteError::Failed(e.to_string()))?;
                if outcome.succeeded {
                    return Ok(());
                }
                let leader = outcome
                    .reads
                    .first()
                    .and_then(|kvs| kvs.first())
                    .map_or(0, |kv| kv.create_revision);
                if leader != term.revision() {
                    term.deposed("a weights write found another leader");
                    return Err(not_leader());
                }
                warn!(key = %self.weights_key, "the weights changed between read and write; reading again");
            }
            Err(WriteError::Failed(format!(
                "{} kept changing under {WRITE_ATTEMPTS} attempts; nothing written",
                self.weights_key
            )))
        })
    }
}
