//! The persisted rollout state: one JSON file, written atomically after every decision, so a
//! restarted control resumes exactly where it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_config::write_atomic;

use crate::rollout::RolloutState;

/// The state file.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    /// Format version, for future migrations.
    version: u32,
    rollouts: BTreeMap<String, RolloutState>,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but cannot be read.
    #[error(
        "cannot read state file {path}: {reason} (fix or remove it; sluice-control will not guess)"
    )]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file cannot be written.
    #[error("cannot write state file {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Store {
    /// The state file at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every rollout's state; empty when the file does not exist yet.
    pub fn load(&self) -> Result<BTreeMap<String, RolloutState>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => {
                return Err(StoreError::Read {
                    path: self.path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| StoreError::Read {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(file.rollouts)
    }

    /// Replaces the file with `rollouts` (temp file, fsync, rename).
    pub fn save(&self, rollouts: &BTreeMap<String, RolloutState>) -> Result<(), StoreError> {
        let file = StateFile {
            version: 1,
            rollouts: rollouts.clone(),
        };
        let text = serde_json::to_string_pretty(&file).unwrap_or_default();
        write_atomic(&self.path, text.as_bytes()).map_err(|source| StoreError::Write {
            path: self.path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Phase;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(&dir.path().join("state.json"));
        assert!(store.load().expect("missing is empty").is_empty());
        let mut states = BTreeMap::new();
        states.insert(
            "myapp".to_string(),
            RolloutState {
                phase: Phase::Progressing,
                step: 2,
                canary_weight: sluice_config::Weight::from_hundredths(2500),
                ..RolloutState::default()
            },
        );
        store.save(&states).expect("save");
        assert_eq!(store.load().expect("load"), states);
        std::fs::write(store.path(), "{ not json").expect("corrupt");
        let err = store.load().expect_err("corrupt state is refused");
        assert!(err.to_string().contains("fix or remove it"), "{err}");
    }
}
