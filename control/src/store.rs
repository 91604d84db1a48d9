//! Where the control keeps what must outlive it: the weights it writes for the proxies and
//! each rollout's persisted state. One small trait ([`Store`]) with the operations the
//! controller needs, files as the default implementation ([`FileStore`]), and an in-memory one
//! for tests ([`MemoryStore`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_config::{write_atomic, Config, Rollout, RouteTable, Weight};

use crate::rollout::RolloutState;
use crate::source::BoxFuture;
use crate::weights_file::{Entry, WeightsFile, WriteError as FileWriteError};

/// The control's storage: weights for the proxies, and rollout state.
///
/// `write_weights` is conditional: with `expected`, it writes only while the rollout's entry
/// still says what the control last wrote, and otherwise answers [`WriteError::Edited`] — the
/// way a hand edit wins over a decision made while it happened.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Every rollout's persisted state (empty on first start).
    fn load_states(&self) -> BoxFuture<'_, Result<BTreeMap<String, RolloutState>, StoreError>>;

    /// Persists one rollout's state (atomically: the old or the new, never half).
    fn save_state<'a>(
        &'a self,
        rollout: &'a str,
        state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// What the weights in force say for `rollout`'s route, stable and canary backends.
    fn read_weights<'a>(
        &'a self,
        routes: &'a RouteTable,
        rollout: &'a Rollout,
    ) -> BoxFuture<'a, Entry>;

    /// Sets `rollout`'s route to `(stable, canary)`, keeping every other route's entry; with
    /// `expected`, only if the entry in force is exactly that pair. `state` is the rollout's
    /// state once the write is done: a store that can persist both in one step does (etcd: one
    /// transaction), so a control killed between the two never leaves weights its persisted
    /// state does not know (its successor would take them for a hand edit). The others persist
    /// it with [`Store::save_state`], which the caller runs next anyway.
    fn write_weights<'a>(
        &'a self,
        routes: &'a RouteTable,
        rollout: &'a Rollout,
        weights: (Weight, Weight),
        expected: Option<(Weight, Weight)>,
        state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), WriteError>>;
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state exists but cannot be read.
    #[error(
        "cannot read state file {path}: {reason} (fix or remove it; sluice-control will not guess)"
    )]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The remote store (etcd) could not be read or written.
    #[error("etcd: {0}")]
    Remote(String),
    /// A write was refused: another control holds the leadership now.
    #[error("this control is no longer the leader; nothing written")]
    NotLeader,
    /// The state could not be encoded; nothing was written.
    #[error("cannot encode the rollout state: {0}")]
    Encode(String),
    /// The state cannot be written.
    #[error("cannot write state file {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why the weights were not written. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The entry in force is not what the control last wrote: someone edited it.
    #[error("the weights in force were changed by someone else")]
    Edited(Entry),
    /// The weights could not be written.
    #[error("{0}")]
    Failed(String),
}

/// Files: `weights_file` for the proxies, `control.state` for the rollouts (the default).
#[derive(Debug)]
pub struct FileStore {
    weights: WeightsFile,
    state_path: PathBuf,
    /// Every rollout's state as last loaded or saved: the file holds them all.
    states: Mutex<BTreeMap<String, RolloutState>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    /// Format version, for future migrations.
    version: u32,
    rollouts: BTreeMap<String, RolloutState>,
}

impl FileStore {
    /// The files named by `config` (read from `config_path`): `weights_file` (default
    /// `weights.yaml` next to the config) and `control.state`.
    pub fn for_config(config: &Config, config_path: &Path) -> Self {
        let weights = config
            .weights_file
            .clone()
            .unwrap_or_else(|| config_path.with_file_name("weights.yaml"));
        Self::new(&weights, &config.control.state)
    }

    /// The weights file at `weights` and the state file at `state`.
    pub fn new(weights: &Path, state: &Path) -> Self {
        Self {
            weights: WeightsFile::new(weights),
            state_path: state.to_path_buf(),
            states: Mutex::new(BTreeMap::new()),
        }
    }

    /// The state file's path.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    fn read_states(&self) -> Result<BTreeMap<String, RolloutState>, StoreError> {
        let path = self.state_path.display().to_string();
        let text = match std::fs::read_to_string(&self.state_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(StoreError::Read {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| StoreError::Read {
            path,
            reason: e.to_string(),
        })?;
        Ok(file.rollouts)
    }

    fn write_states(&self, rollouts: BTreeMap<String, RolloutState>) -> Result<(), StoreError> {
        let file = StateFile {
            version: 1,
            rollouts,
        };
        // Never write what could not be produced: an encoding error leaves the file as is.
        let text =
            serde_json::to_string_pretty(&file).map_err(|e| StoreError::Encode(e.to_string()))?;
        write_atomic(&self.state_path, text.as_bytes()).map_err(|source| StoreError::Write {
            path: self.state_path.display().to_string(),
            source,
        })
    }
}

impl Store for FileStore {
    fn load_states(&self) -> BoxFuture<'_, Result<BTreeMap<String, RolloutState>, StoreError>> {
        Box::pin(async move {
            let states = self.read_states()?;
            *self.states.lock().unwrap_or_else(PoisonError::into_inner) = states.clone();
            Ok(states)
        })
    }

    fn save_state<'a>(
        &'a self,
        rollout: &'a str,
        state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
            let mut next = states.clone();
            next.insert(rollout.to_string(), state.clone());
            self.write_states(next.clone())?;
            *states = next;
            Ok(())
        })
    }

    fn read_weights<'a>(
        &'a self,
        routes: &'a RouteTable,
        rollout: &'a Rollout,
    ) -> BoxFuture<'a, Entry> {
        Box::pin(async move {
            self.weights
                .entry(routes, &rollout.route, &rollout.stable, &rollout.canary)
        })
    }

    fn write_weights<'a>(
        &'a self,
        routes: &'a RouteTable,
        rollout: &'a Rollout,
        (stable, canary): (Weight, Weight),
        expected: Option<(Weight, Weight)>,
        _state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            if let Some(expected) = expected {
                let entry =
                    self.weights
                        .entry(routes, &rollout.route, &rollout.stable, &rollout.canary);
                if !entry.says(expected) {
                    return Err(WriteError::Edited(entry));
                }
            }
            self.weights
                .set(
                    routes,
                    &rollout.route,
                    (&rollout.stable, stable),
                    (&rollout.canary, canary),
                )
                .map_err(|e: FileWriteError| WriteError::Failed(e.to_string()))
        })
    }
}

/// A store in memory, for tests: weights per route as `(stable, canary)`, states per rollout.
/// Clones share the same contents, so a test can edit the weights "by hand" or make writes
/// fail while a controller uses it.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    weights: BTreeMap<String, (Weight, Weight)>,
    states: BTreeMap<String, RolloutState>,
    writes: Vec<(String, Weight, Weight)>,
    fail_writes: bool,
}

impl MemoryStore {
    /// Sets a route's weights as a person editing them would.
    pub fn edit_weights(&self, route: &str, weights: (Weight, Weight)) {
        self.lock().weights.insert(route.to_string(), weights);
    }

    /// The weights in force for `route`.
    pub fn weights(&self, route: &str) -> Option<(Weight, Weight)> {
        self.lock().weights.get(route).copied()
    }

    /// Every successful write so far as `(route, stable, canary)`, in order.
    pub fn writes(&self) -> Vec<(String, Weight, Weight)> {
        self.lock().writes.clone()
    }

    /// The persisted state of `rollout`.
    pub fn state(&self, rollout: &str) -> Option<RolloutState> {
        self.lock().states.get(rollout).cloned()
    }

    /// Makes every later weights write fail (or succeed again).
    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn load_states(&self) -> BoxFuture<'_, Result<BTreeMap<String, RolloutState>, StoreError>> {
        let states = self.lock().states.clone();
        Box::pin(async move { Ok(states) })
    }

    fn save_state<'a>(
        &'a self,
        rollout: &'a str,
        state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.lock()
            .states
            .insert(rollout.to_string(), state.clone());
        Box::pin(async { Ok(()) })
    }

    fn read_weights<'a>(
        &'a self,
        _routes: &'a RouteTable,
        rollout: &'a Rollout,
    ) -> BoxFuture<'a, Entry> {
        let entry = match self.weights(&rollout.route) {
            Some((s, c)) => Entry::Weights(Some(s), Some(c)),
            None => Entry::Missing,
        };
        Box::pin(async move { entry })
    }

    fn write_weights<'a>(
        &'a self,
        _routes: &'a RouteTable,
        rollout: &'a Rollout,
        (stable, canary): (Weight, Weight),
        expected: Option<(Weight, Weight)>,
        _state: &'a RolloutState,
    ) -> BoxFuture<'a, Result<(), WriteError>> {
        let mut memory = self.lock();
        let result = if memory.fail_writes {
            Err(WriteError::Failed("writes fail (test)".into()))
        } else {
            let current = memory.weights.get(&rollout.route).copied();
            match (expected, current) {
                (Some(expected), Some(current)) if expected != current => Err(WriteError::Edited(
                    Entry::Weights(Some(current.0), Some(current.1)),
                )),
                (Some(_), None) => Err(WriteError::Edited(Entry::Missing)),
                _ => {
                    memory
                        .weights
                        .insert(rollout.route.clone(), (stable, canary));
                    memory.writes.push((rollout.route.clone(), stable, canary));
                    Ok(())
                }
            }
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Phase;

    #[tokio::test]
    async fn state_file_round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileStore::new(&dir.path().join("w.yaml"), &dir.path().join("state.json"));
        assert!(store
            .load_states()
            .await
            .expect("missing is empty")
            .is_empty());
        let state = RolloutState {
            phase: Phase::Progressing,
            step: 2,
            canary_weight: Weight::from_hundredths(2500),
            ..RolloutState::default()
        };
        store.save_state("myapp", &state).await.expect("save");
        store
            .save_state("other", &RolloutState::default())
            .await
            .expect("save other");
        let loaded = store.load_states().await.expect("load");
        assert_eq!(loaded.get("myapp"), Some(&state));
        assert_eq!(loaded.len(), 2, "saving one rollout keeps the others");
        std::fs::write(store.state_path(), "{ not json").expect("corrupt");
        let err = store
            .load_states()
            .await
            .expect_err("corrupt state is refused");
        assert!(err.to_string().contains("fix or remove it"), "{err}");
    }
}
