//! Idle upstream connections of one endpoint: a LIFO stack of HTTP/1.1 connections (the most
//! recently used is the warmest) and one shared, multiplexed HTTP/2 connection.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};

use crate::body::RequestBody;

/// The most idle HTTP/1.1 connections kept per endpoint; more are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// Idle connections older than this are closed instead of reused. Servers close idle
/// keep-alive connections after a while (Node.js after 5 s); reusing one just as the server
/// closes it fails the request, so sluice gives them up first.
const MAX_IDLE_TIME: Duration = Duration::from_secs(4);

/// How long to wait for a just-returned connection to become ready for its next request
/// before giving up on it (it is then dropped and another one used).
const READY_WAIT: Duration = Duration::from_millis(100);

/// The connections of one endpoint. Locks are held only to push or pop.
#[derive(Debug, Default)]
pub(super) struct Pool {
    idle: Mutex<Vec<(http1::SendRequest<RequestBody>, Instant)>>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// Held while an HTTP/2 connection is being opened, so concurrent requests share one
    /// connection instead of each opening their own.
    h2_connecting: tokio::sync::Mutex<()>,
}

impl Pool {
    /// An idle HTTP/1.1 connection ready for a request, if there is one.
    pub(super) async fn take_idle(&self, now: Instant) -> Option<http1::SendRequest<RequestBody>> {
        loop {
            let (mut conn, since) = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()?;
            if conn.is_closed() || now.saturating_duration_since(since) > MAX_IDLE_TIME {
                continue;
            }
            if conn.is_ready() {
                return Some(conn);
            }
            // Returned at the end of its last response; its connection task has not yet
            // moved on to waiting for the next request. It will in a moment.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, conn.ready()).await {
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose last exchange (request and response) is complete.
    pub(super) fn put_idle(&self, conn: http1::SendRequest<RequestBody>) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push((conn, Instant::now()));
        }
    }

    /// Closes idle connections older than the idle limit (or closed by the server), so a burst
    /// of connections does not keep its sockets and buffers once traffic is back to normal.
    pub(super) fn reap(&self, now: Instant) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(conn, since)| {
                !conn.is_closed() && now.saturating_duration_since(*since) <= MAX_IDLE_TIME
            });
    }

    /// How many HTTP/1.1 connections are idle.
    pub(super) fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The shared HTTP/2 connection, if open.
    pub(super) fn h2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let slot = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// Waits while another request opens the HTTP/2 connection; the guard is held by the one
    /// that opens it.
    pub(super) async fn h2_connect_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.h2_connecting.lock().await
    }

    /// The turn to open the HTTP/2 connection, if nobody is opening it now.
    pub(super) fn try_h2_connect_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.h2_connecting.try_lock().ok()
    }

    /// Closes the oldest idle HTTP/1.1 connection, if there is one.
    pub(super) fn close_one_idle(&self) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.is_empty() {
            return false;
        }
        idle.remove(0);
        true
    }

    /// Makes `conn` the shared HTTP/2 connection (replacing one that is going away).
    pub(super) fn set_h2(&self, conn: &http2::SendRequest<RequestBody>) {
        *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
    }
}
