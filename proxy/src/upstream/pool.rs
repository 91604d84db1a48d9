//! Idle upstream connections of one endpoint: a LIFO stack of HTTP/1.1 connections (the most
//! recently used is the warmest) and one shared, multiplexed HTTP/2 connection.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::client::conn::http2;

use super::connection::Http1Connection;
use crate::body::RequestBody;

/// The most idle HTTP/1.1 connections kept per endpoint; more are closed when returned.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// Idle connections older than this are closed instead of reused. Servers close idle
/// keep-alive connections after a while (Node.js after 5 s); reusing one just as the server
/// closes it fails the request, so sluice gives them up first.
const MAX_IDLE_TIME: Duration = Duration::from_secs(4);

/// How many of the most recently idle connections [`Pool::take_idle`] looks through for one
/// of the kind the request prefers.
const KIND_SCAN: usize = 8;

/// The connections of one endpoint. Locks are held only to push or pop.
#[derive(Debug, Default)]
pub(super) struct Pool {
    idle: Mutex<Vec<(Http1Connection, Instant)>>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// Held while an HTTP/2 connection is being opened, so concurrent requests share one
    /// connection instead of each opening their own.
    h2_connecting: tokio::sync::Mutex<()>,
}

impl Pool {
    /// An idle HTTP/1.1 connection ready for a request, if there is one (see
    /// [`Http1Connection::is_reusable`]); candidates too old or no longer open are dropped.
    ///
    /// `own`: the request can go out on sluice's own client. The most recent connection of
    /// the matching kind among the last [`KIND_SCAN`] is preferred, so that a request with a
    /// body reuses a connection hyper's client already has, and requests without one keep
    /// the connections of the own client: mixed traffic does not hand every connection over
    /// to hyper's client in turn.
    pub(super) fn take_idle(&self, now: Instant, own: bool) -> Option<Http1Connection> {
        loop {
            let (mut conn, since) = {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                let matching = idle
                    .iter()
                    .rev()
                    .take(KIND_SCAN)
                    .position(|(c, _)| c.is_own() == own);
                match matching {
                    Some(0) | None => idle.pop()?,
                    Some(back) => {
                        let at = idle.len() - 1 - back;
                        idle.remove(at)
                    }
                }
            };
            if now.saturating_duration_since(since) <= MAX_IDLE_TIME && conn.is_reusable() {
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose last exchange (request and response) is complete.
    pub(super) fn put_idle(&self, conn: Http1Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push((conn, Instant::now()));
        }
    }

    /// Closes idle connections older than the idle limit or closed by the server (each is
    /// polled once to find out), so a burst of connections does not keep its sockets and
    /// buffers once traffic is back to normal.
    pub(super) fn reap(&self, now: Instant) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain_mut(|(conn, since)| {
                now.saturating_duration_since(*since) <= MAX_IDLE_TIME && conn.is_open()
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use metrics::Counter;
    use tokio::net::{TcpListener, TcpStream};

    use super::super::breaker::Breaker;
    use super::*;
    use crate::io::Stream;

    #[tokio::test]
    async fn requests_prefer_idle_connections_of_their_own_kind() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let breaker = Breaker::new(16, 16, Counter::noop());
        let mut accepted = Vec::new();
        let mut connections = Vec::new();
        for _ in 0..3 {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            accepted.push(listener.accept().await.expect("accept"));
            let slot = breaker.try_open().expect("a free slot");
            connections.push(Http1Connection::new(
                Stream::Plain(tcp),
                slot,
                "test".into(),
            ));
        }
        // The middle one has served a request with a body: hyper's client has it.
        connections[1].switch_to_hyper();
        let pool = Pool::default();
        for conn in connections {
            pool.put_idle(conn);
        }
        let now = Instant::now();
        let with_body = pool.take_idle(now, false).expect("an idle connection");
        assert!(!with_body.is_own(), "hyper's, though not the most recent");
        let without = pool.take_idle(now, true).expect("an idle connection");
        assert!(without.is_own());
        // Only one of the own client left: a request with a body takes it.
        let with_body = pool.take_idle(now, false).expect("an idle connection");
        assert!(with_body.is_own());
        assert!(pool.take_idle(now, true).is_none());
    }
}
