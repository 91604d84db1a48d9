//! The published routing snapshot: one lock-free load per request, one store per reload.
//! The only file that names `arc_swap`.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::snapshot::Snapshot;

/// Holds the snapshot in force. Readers never block writers or each other.
#[derive(Debug)]
pub struct Routing {
    current: ArcSwap<Snapshot>,
}

impl Routing {
    /// Starts with `snapshot` in force.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot in force, owned, so a request can keep it across `.await`s and finish on
    /// the routing it started with even if a reload happens meanwhile.
    #[inline]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a new snapshot; requests already running keep the one they loaded.
    pub fn replace(&self, snapshot: Arc<Snapshot>) -> Arc<Snapshot> {
        self.current.swap(snapshot)
    }
}
