//! Graceful drain: one signal tells every accept loop to stop and every connection to finish
//! its in-flight requests, then the drainer waits for the last connection to close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// The drain trigger, owned by the server.
#[derive(Debug)]
pub struct Drain {
    signal: watch::Sender<bool>,
    open: Arc<Open>,
}

/// A handle for accept loops and connections: tells whether draining started, and registers
/// open connections.
#[derive(Clone, Debug)]
pub struct DrainWatch {
    signal: watch::Receiver<bool>,
    open: Arc<Open>,
}

/// Held by each open connection; the drain completes when all are dropped.
#[derive(Debug)]
pub struct OpenConnection {
    open: Arc<Open>,
}

#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    closed: Notify,
}

impl Drain {
    /// A drain that has not started.
    pub fn new() -> (Self, DrainWatch) {
        let (signal, rx) = watch::channel(false);
        let open = Arc::new(Open::default());
        (
            Self {
                signal,
                open: open.clone(),
            },
            DrainWatch { signal: rx, open },
        )
    }

    /// Starts draining and waits up to `timeout` for every connection to close. Returns how
    /// many were still open when it gave up (0 when all closed in time).
    pub async fn drain(self, timeout: Duration) -> usize {
        let _ = self.signal.send(true);
        let all_closed = async {
            loop {
                let closed = self.open.closed.notified();
                if self.open.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                closed.await;
            }
        };
        let _ = tokio::time::timeout(timeout, all_closed).await;
        self.open.count.load(Ordering::Acquire)
    }
}

impl DrainWatch {
    /// Resolves once draining has started.
    pub async fn started(&mut self) {
        while !*self.signal.borrow_and_update() {
            if self.signal.changed().await.is_err() {
                return;
            }
        }
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn open_connection(&self) -> OpenConnection {
        self.open.count.fetch_add(1, Ordering::AcqRel);
        OpenConnection {
            open: self.open.clone(),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.open.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.open.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_open_connections_then_returns() {
        let (drain, watch) = Drain::new();
        let conn = watch.open_connection();
        let mut w = watch.clone();
        let closer = tokio::spawn(async move {
            w.started().await;
            drop(conn);
        });
        assert_eq!(drain.drain(Duration::from_secs(5)).await, 0);
        closer.await.expect("closer task");
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let (drain, watch) = Drain::new();
        let _stuck = watch.open_connection();
        assert_eq!(drain.drain(Duration::from_millis(20)).await, 1);
    }
}
