//! An upstream's circuit breaker (Envoy's term): at most `max_connections` connections open to
//! its endpoints together, at most `max_pending_requests` requests waiting for one; one more
//! is refused at once with 503 `overloaded` rather than queued without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use metrics::Counter;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::endpoint::Endpoint;
use crate::error::ProxyError;

/// The limits and counts of one upstream, shared by its endpoints across config generations
/// (a reload changes the limits in place, the counts carry on).
#[derive(Debug)]
pub struct Breaker {
    max_connections: AtomicUsize,
    max_pending: AtomicUsize,
    open: AtomicUsize,
    pending: AtomicUsize,
    /// Woken when a connection closes or goes back to a pool.
    freed: Notify,
    /// The upstream's endpoints, to close an idle connection of one of them when another needs
    /// the slot.
    endpoints: Mutex<Vec<Weak<Endpoint>>>,
    /// `sluice_upstream_overloaded_total{backend}`.
    overloaded: Counter,
}

/// One open upstream connection counted against `max_connections` until dropped.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Breaker>);

/// A request waiting for a connection, counted against `max_pending_requests` until dropped.
#[derive(Debug)]
pub(super) struct Waiting<'a>(&'a Breaker);

impl Breaker {
    /// A breaker with these limits.
    pub fn new(max_connections: usize, max_pending: usize, overloaded: Counter) -> Arc<Self> {
        overloaded.increment(0);
        Arc::new(Self {
            max_connections: AtomicUsize::new(max_connections),
            max_pending: AtomicUsize::new(max_pending),
            open: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            freed: Notify::new(),
            endpoints: Mutex::new(Vec::new()),
            overloaded,
        })
    }

    /// Applies the limits of a reloaded config; connections and waiting requests stay.
    pub fn set_limits(&self, max_connections: usize, max_pending: usize) {
        self.max_connections
            .store(max_connections, Ordering::Relaxed);
        self.max_pending.store(max_pending, Ordering::Relaxed);
        self.release_idle();
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Requests waiting for a connection now.
    pub fn waiting(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Whether a new connection may be opened now.
    pub(super) fn has_room(&self) -> bool {
        self.open.load(Ordering::SeqCst) < self.max_connections.load(Ordering::Relaxed)
    }

    /// A slot for a new connection, unless `max_connections` are open.
    pub(super) fn try_open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.max_connections.load(Ordering::Relaxed);
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.clone()))
    }

    /// A slot whatever the limit: an HTTP/2 connection (one per endpoint), or a tunnel that
    /// goes on using a connection whose own slot ended with its HTTP exchange.
    pub(super) fn hold(self: &Arc<Self>) -> ConnectionSlot {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnectionSlot(self.clone())
    }

    /// Counts the caller as waiting for a connection, or refuses (and counts the refusal) when
    /// `max_pending_requests` already wait.
    pub(super) fn wait(&self) -> Result<Waiting<'_>, ProxyError> {
        let max = self.max_pending.load(Ordering::Relaxed);
        match self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |pending| {
                (pending < max).then_some(pending + 1)
            }) {
            Ok(_) => Ok(Waiting(self)),
            Err(_) => {
                self.overloaded.increment(1);
                Err(ProxyError::Overloaded)
            }
        }
    }

    /// Resolves when a connection closes or goes back to a pool. Count yourself waiting
    /// ([`Breaker::wait`]) and enable it before checking for a free connection, so a release in
    /// between is not missed.
    pub(super) fn freed(&self) -> Notified<'_> {
        self.freed.notified()
    }

    /// Wakes the waiters: a connection went back to a pool. Only when someone waits: the
    /// request path pays one atomic load, not `Notify`'s lock. A waiter counted after this
    /// load looks at the pool itself once armed.
    pub(super) fn release_idle(&self) {
        if self.pending.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Registers an endpoint of this upstream.
    pub(super) fn add_endpoint(&self, endpoint: &Arc<Endpoint>) {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        endpoints.retain(|e| e.strong_count() > 0);
        endpoints.push(Arc::downgrade(endpoint));
    }

    /// Closes one idle connection of an endpoint other than `except`, so its slot can serve a
    /// request that waits on `except`. Returns whether one was closed.
    pub(super) fn close_idle_elsewhere(&self, except: &Endpoint) -> bool {
        let endpoints: Vec<Arc<Endpoint>> = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        endpoints
            .iter()
            .filter(|e| !std::ptr::eq(Arc::as_ptr(e), except))
            .any(|e| e.close_one_idle())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.release_idle();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(connections: usize, pending: usize) -> Arc<Breaker> {
        Breaker::new(connections, pending, Counter::noop())
    }

    #[test]
    fn connections_are_capped_and_slots_come_back() {
        let b = breaker(2, 0);
        let one = b.try_open().expect("first");
        let two = b.try_open().expect("second");
        assert!(b.try_open().is_none(), "third over the limit");
        drop(one);
        let three = b.try_open().expect("a freed slot");
        let forced = b.hold();
        assert_eq!(b.open_connections(), 3, "hold ignores the limit");
        drop((two, three, forced));
        assert_eq!(b.open_connections(), 0);
    }

    #[test]
    fn waiting_is_capped_and_the_refusal_is_an_overload() {
        let b = breaker(1, 2);
        let first = b.wait().expect("first waits");
        let _second = b.wait().expect("second waits");
        assert!(matches!(b.wait(), Err(ProxyError::Overloaded)));
        drop(first);
        assert!(b.wait().is_ok(), "a place freed");
        let none = breaker(1, 0);
        assert!(matches!(none.wait(), Err(ProxyError::Overloaded)));
    }

    #[test]
    fn new_limits_apply_to_the_next_connection() {
        let b = breaker(1, 0);
        let _one = b.try_open().expect("first");
        assert!(b.try_open().is_none());
        b.set_limits(2, 0);
        assert!(b.try_open().is_some());
    }

    #[tokio::test]
    async fn a_closing_connection_wakes_a_waiter() {
        let b = breaker(1, 1);
        let slot = b.try_open().expect("first");
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let _waiting = b.wait().expect("a place to wait");
                loop {
                    let freed = b.freed();
                    tokio::pin!(freed);
                    freed.as_mut().enable();
                    if let Some(slot) = b.try_open() {
                        return slot;
                    }
                    freed.await;
                }
            })
        };
        tokio::task::yield_now().await;
        drop(slot);
        let slot = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(b.open_connections(), 1);
        drop(slot);
    }
}
