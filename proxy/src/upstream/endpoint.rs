//! One upstream endpoint: its connection pool, in-flight count and health, shared by every
//! config generation that keeps the endpoint (so weight changes never touch a connection).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::Frame;
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics::Gauge;
use pin_project_lite::pin_project;
use sluice_config::{Address, UpstreamProtocol};
use tracing::{debug, warn};

use super::breaker::{Breaker, ConnectionSlot};
use super::connect::Connector;
use super::connection::{classify, Answer, Http1Connection, HyperAnswer, Sending};
use super::h1::{self, BodyDecoder};
use super::health::{Health, Verdict};
use super::pool::Pool;
use super::probe::{Probe, ProbeStatus};
use super::response::UpstreamBody;
use crate::body::{BodyDone, RequestBody};
use crate::error::ProxyError;
use crate::metrics::{UpstreamErrorCounters, UpstreamErrorKind};

/// What sending a request to an endpoint gives: the response head and the lease on the
/// endpoint (and on the HTTP/1.1 connection), or what went wrong.
pub type Exchanged = Result<(Response<UpstreamBody>, Lease), ProxyError>;

/// The boxed, less usual ways of sending a request.
type BoxedSend<'a> = Pin<Box<dyn Future<Output = Exchanged> + Send + 'a>>;

pin_project! {
    /// [`Endpoint::send`]'s future.
    #[project = EndpointSendProjection]
    pub enum EndpointSend<'a, F> {
        /// On an idle pooled HTTP/1.1 connection, driven in place.
        Pooled {
            #[pin]
            sending: Sending<F>,
            lease: Option<Lease>,
            endpoint: &'a Arc<Endpoint>,
        },
        /// Any other way, boxed.
        Boxed { future: BoxedSend<'a> },
    }
}

impl<F> fmt::Debug for EndpointSend<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointSend::Pooled { .. } => "EndpointSend::Pooled",
            EndpointSend::Boxed { .. } => "EndpointSend::Boxed",
        })
    }
}

impl<F: Future<Output = HyperAnswer>> Future for EndpointSend<'_, F> {
    type Output = Exchanged;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let resend = match self.as_mut().project() {
            EndpointSendProjection::Boxed { future } => return future.as_mut().poll(cx),
            EndpointSendProjection::Pooled {
                sending,
                lease,
                endpoint,
            } => {
                let (conn, answer) = std::task::ready!(sending.poll(cx));
                let lease = lease
                    .take()
                    .expect("EndpointSend polled after it completed");
                match Pooled::of(conn, answer, lease) {
                    Pooled::Answered(answered) => return Poll::Ready(answered),
                    // Try another connection, or a new one.
                    Pooled::Unsent(unsent, lease) => {
                        Box::pin(endpoint.send_http1(unsent, lease, Instant::now()))
                    }
                }
            }
        };
        self.set(EndpointSend::Boxed { future: resend });
        self.poll(cx)
    }
}

/// What a request sent on a pooled HTTP/1.1 connection came to.
enum Pooled {
    /// The response (the lease now holds the connection), or a failure.
    Answered(Exchanged),
    /// Never written: the connection was closing, and is dropped. The request and lease
    /// are given back to try another connection.
    Unsent(Request<RequestBody>, Lease),
}

impl Pooled {
    fn of(conn: Http1Connection, answer: Answer, mut lease: Lease) -> Self {
        match answer {
            Answer::Response(response) => {
                lease.conn = Some(conn);
                Self::Answered(Ok((response, lease)))
            }
            Answer::Unsent(unsent) => Self::Unsent(unsent, lease),
            Answer::Failed(error) => Self::Answered(Err(error)),
        }
    }
}

/// An endpoint of an upstream.
#[derive(Debug)]
pub struct Endpoint {
    address: Address,
    label: Arc<str>,
    backend: Arc<str>,
    protocol: UpstreamProtocol,
    /// Replaced by every config reload, so rotated certificates take effect for new
    /// connections while pooled ones stay.
    connector: Mutex<Arc<Connector>>,
    pool: Pool,
    in_flight: AtomicUsize,
    connections_opened: AtomicU64,
    health: Health,
    /// Active health checks; shared with the endpoints of other generations at this address.
    probe: Arc<Probe>,
    healthy_gauge: Gauge,
    errors: Arc<UpstreamErrorCounters>,
    /// The upstream's connection and waiting-request limits, shared with its other endpoints.
    breaker: Arc<Breaker>,
}

/// A request's hold on an endpoint: counts as in flight until dropped, and owns the HTTP/1.1
/// connection of the exchange: whoever holds the lease drives the connection (the response
/// body as it streams, a tunnel until its upgrade completes), and it goes back to the pool
/// once the exchange is complete.
#[derive(Debug)]
pub struct Lease {
    endpoint: Arc<Endpoint>,
    conn: Option<Http1Connection>,
    /// Cleared when the connection must not serve another request.
    reuse: bool,
    body: Option<BodyDone>,
}

/// Everything needed to build an [`Endpoint`].
#[derive(Debug)]
pub struct EndpointSettings {
    /// Where it is.
    pub address: Address,
    /// The upstream (backend) it belongs to.
    pub backend: Arc<str>,
    /// HTTP version to speak.
    pub protocol: UpstreamProtocol,
    /// How to connect.
    pub connector: Arc<Connector>,
    /// Outlier detection settings.
    pub outlier: sluice_config::OutlierDetection,
    /// Active health checks of this address of the upstream.
    pub probe: Arc<Probe>,
    /// `sluice_endpoint_healthy` for this endpoint.
    pub healthy_gauge: Gauge,
    /// `sluice_upstream_errors_total` of the backend.
    pub errors: Arc<UpstreamErrorCounters>,
    /// The upstream's circuit breaker.
    pub breaker: Arc<Breaker>,
}

impl Endpoint {
    /// A new endpoint with an empty pool.
    pub fn new(settings: EndpointSettings) -> Arc<Self> {
        // 0 for an endpoint whose health check has not passed yet.
        let in_service = settings.probe.in_service();
        settings
            .healthy_gauge
            .set(if in_service { 1.0 } else { 0.0 });
        let breaker = settings.breaker.clone();
        let endpoint = Arc::new(Self {
            label: settings.address.to_string().into(),
            address: settings.address,
            backend: settings.backend,
            protocol: settings.protocol,
            connector: Mutex::new(settings.connector),
            pool: Pool::default(),
            in_flight: AtomicUsize::new(0),
            connections_opened: AtomicU64::new(0),
            health: Health::new(settings.outlier),
            probe: settings.probe,
            healthy_gauge: settings.healthy_gauge,
            errors: settings.errors,
            breaker: settings.breaker,
        });
        breaker.add_endpoint(&endpoint);
        endpoint
    }

    /// The endpoint's address as written (`127.0.0.1:18081`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The HTTP version spoken to it.
    #[inline]
    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// Whether connections to it use TLS.
    #[inline]
    pub fn is_tls(&self) -> bool {
        self.connector().is_tls()
    }

    /// Uses `connector` for connections opened from now on.
    pub fn set_connector(&self, connector: Arc<Connector>) {
        *self
            .connector
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = connector;
    }

    fn connector(&self) -> Arc<Connector> {
        self.connector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests currently holding a lease.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether it takes traffic at `now`: not ejected by outlier detection, and passing its
    /// active health checks when the upstream has them.
    #[inline]
    pub fn is_healthy(&self, now: Instant) -> bool {
        self.probe.in_service() && self.health.is_healthy(now)
    }

    /// Where its active health checks stand.
    pub fn probe_status(&self) -> ProbeStatus {
        self.probe.status()
    }

    /// Upstream connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections in the pool.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// The upstream's circuit breaker.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Closes one idle connection (to free its slot for another endpoint of the upstream).
    pub(super) fn close_one_idle(&self) -> bool {
        self.pool.close_one_idle()
    }

    /// Feeds outlier detection with a request's outcome (`ok`: not a connect error, reset,
    /// timeout or 5xx).
    pub fn record_outcome(&self, ok: bool) {
        if ok {
            self.health.record_success();
            return;
        }
        if let Verdict::Ejected(duration) = self.health.record_failure(Instant::now()) {
            warn!(backend = %self.backend, endpoint = %self.label, ?duration, "endpoint ejected after consecutive failures");
            self.healthy_gauge.set(0.0);
        }
    }

    /// Periodic upkeep: brings `sluice_endpoint_healthy` up to date once an ejection has
    /// expired or a health check changed its verdict, and closes idle connections past their
    /// idle limit.
    pub fn housekeeping(&self, now: Instant) {
        self.healthy_gauge
            .set(if self.is_healthy(now) { 1.0 } else { 0.0 });
        self.pool.reap(now);
    }

    /// Counts an upstream error of `kind`.
    pub fn count_error(&self, kind: UpstreamErrorKind) {
        self.errors.count(kind);
    }

    /// Sends `req` (URI and headers already prepared for this upstream) and waits for the
    /// response headers. Reuses an idle connection when there is one; a request that a closing
    /// pooled connection could not even send is retried on a fresh connection. `body` is the
    /// request body's completion flag (none for empty bodies). When the upstream has
    /// `max_connections` open, the request waits for one to come free, or fails at once with
    /// [`ProxyError::Overloaded`] when `max_pending_requests` already wait.
    ///
    /// The usual case, an idle pooled HTTP/1.1 connection, is driven in place by the returned
    /// future; everything else (opening or waiting for a connection, HTTP/2, a resend) is
    /// boxed, so that its state does not weigh on every request's future, which hyper moves
    /// per request and spawns per HTTP/2 stream.
    pub fn send(
        self: &Arc<Self>,
        req: Request<RequestBody>,
        body: Option<BodyDone>,
        now: Instant,
    ) -> EndpointSend<'_, impl Future<Output = HyperAnswer>> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let lease = Lease {
            endpoint: self.clone(),
            conn: None,
            reuse: true,
            body,
        };
        if self.protocol == UpstreamProtocol::Http1 {
            let own = h1::can_send(&req);
            if let Some(conn) = self.pool.take_idle(now, own) {
                return EndpointSend::Pooled {
                    sending: conn.send(req, own),
                    lease: Some(lease),
                    endpoint: self,
                };
            }
        }
        EndpointSend::Boxed {
            future: match self.protocol {
                UpstreamProtocol::Http1 => Box::pin(self.send_http1(req, lease, now)),
                UpstreamProtocol::Http2 => Box::pin(self.send_http2(req, lease)),
            },
        }
    }

    /// [`Endpoint::send`] over HTTP/1.1 without a connection in hand: an idle pooled one, else
    /// a new one within `max_connections`, else a wait for one to come free.
    async fn send_http1(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        mut lease: Lease,
        mut now: Instant,
    ) -> Exchanged {
        let own = h1::can_send(&req);
        let mut waiting = None;
        loop {
            while let Some(conn) = self.pool.take_idle(now, own) {
                let (conn, answer) = conn.send(req, own).await;
                match Pooled::of(conn, answer, lease) {
                    Pooled::Answered(answered) => return answered,
                    // Try another.
                    Pooled::Unsent(unsent, rest) => (req, lease) = (unsent, rest),
                }
            }
            if let Some(slot) = self.breaker.try_open() {
                drop(waiting);
                let conn = self.connect_http1(slot).await?;
                let (conn, answer) = conn.send(req, own).await;
                return match Pooled::of(conn, answer, lease) {
                    Pooled::Answered(answered) => answered,
                    // A new connection closed before the request could be written.
                    Pooled::Unsent(..) => Err(ProxyError::Reset(Box::new(h1::Error::Incomplete))),
                };
            }
            // At the limit: wait (counted) for a connection to come back or close.
            if waiting.is_none() {
                waiting = Some(self.breaker.wait()?);
            }
            // Armed, then one more look, so a connection freed meanwhile is not missed.
            let freed = self.breaker.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.pool.idle_count() == 0 && !self.breaker.has_room() {
                // An idle connection to another endpoint holds a slot this one can use.
                self.breaker.close_idle_elsewhere(self);
                freed.await;
            }
            now = Instant::now();
        }
    }

    /// [`Endpoint::send`] over HTTP/2: the shared connection, opened (or replaced after a
    /// GOAWAY) as needed.
    async fn send_http2(&self, req: Request<RequestBody>, lease: Lease) -> Exchanged {
        let mut conn = match self.pool.h2() {
            Some(conn) => conn,
            None => self.shared_http2(None).await?,
        };
        match conn.try_send_request(req).await {
            Ok(response) => Ok((response.map(UpstreamBody::Hyper), lease)),
            Err(mut e) => match e.take_message() {
                // The connection is going away (GOAWAY): replace it, send there.
                Some(unsent) => {
                    let mut fresh = self.shared_http2(Some(&conn)).await?;
                    let response = fresh.send_request(unsent).await.map_err(classify)?;
                    Ok((response.map(UpstreamBody::Hyper), lease))
                }
                None => Err(classify(e.into_error())),
            },
        }
    }

    /// A new HTTP/1.1 connection, driven by the caller's task (no task of its own).
    async fn connect_http1(&self, slot: ConnectionSlot) -> Result<Http1Connection, ProxyError> {
        let stream = self.connector().connect(&self.address).await?;
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        Ok(Http1Connection::new(stream, slot, self.label.clone()))
    }

    /// The shared HTTP/2 connection, opened by one request while the others wait. `broken` is
    /// a connection known to be going away: it is replaced even if not yet closed.
    async fn shared_http2(
        &self,
        broken: Option<&http2::SendRequest<RequestBody>>,
    ) -> Result<http2::SendRequest<RequestBody>, ProxyError> {
        // The request that opens the connection is not waiting; those queued behind it are.
        let _turn = match self.pool.try_h2_connect_turn() {
            Some(turn) => turn,
            None => {
                let _waiting = self.breaker.wait()?;
                self.pool.h2_connect_turn().await
            }
        };
        if let Some(current) = self.pool.h2() {
            // Someone else opened a new one while we waited.
            let replaced = broken.is_some_and(|b| !b.is_ready() && current.is_ready());
            if broken.is_none() || replaced {
                return Ok(current);
            }
        }
        let stream = self.connector().connect(&self.address).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(std::time::Duration::from_secs(30))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ProxyError::Reset(Box::new(e)))?;
        self.run_http2(conn, self.breaker.hold());
        self.pool.set_h2(&sender);
        Ok(sender)
    }

    /// Counts a newly opened HTTP/2 connection and drives it in its own task (it serves many
    /// requests at once) until it ends, holding its `slot` of the upstream's `max_connections`
    /// until then.
    fn run_http2(
        &self,
        conn: impl Future<Output = hyper::Result<()>> + Send + 'static,
        slot: ConnectionSlot,
    ) {
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        let label = self.label.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(endpoint = %label, error = %e, "upstream connection ended with an error");
            }
            drop(slot);
        });
    }
}

impl Lease {
    /// The response was read to its end: if the request body was sent completely too, the
    /// connection may serve the next request. Otherwise it finishes sending the request body
    /// on its own, and closes.
    pub fn finish(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let body_done = self.body.as_ref().is_none_or(BodyDone::is_done);
        if self.reuse && body_done && conn.can_pool() {
            self.endpoint.pool.put_idle(conn);
            self.endpoint.breaker.release_idle();
        } else if !body_done {
            conn.finish_in_background();
        }
    }

    /// Never pool the connection: its framing is suspect. It is still driven until the
    /// exchange in progress ends, then closed.
    pub fn never_reuse(&mut self) {
        self.reuse = false;
    }

    /// Whether the lease drives an HTTP/1.1 connection (HTTP/2 connections have a task of their
    /// own).
    pub fn has_connection(&self) -> bool {
        self.conn.is_some()
    }

    /// Moves the HTTP/1.1 connection on with `cx` (the response body's reader calls this when
    /// the body has nothing to give). Returns whether the connection is still open.
    pub fn poll_connection(&mut self, cx: &mut Context<'_>) -> bool {
        self.conn.as_mut().is_some_and(|c| c.poll_drive(cx))
    }

    /// The next frame of a body sluice's own HTTP/1.1 client decodes from the connection.
    pub fn poll_own_body(
        &mut self,
        decoder: &mut BodyDecoder,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h1::Error>>> {
        match &mut self.conn {
            Some(conn) => conn.poll_own_body(decoder, cx),
            None => Poll::Ready(Some(Err(h1::Error::Incomplete))),
        }
    }

    /// Drives the HTTP/1.1 connection while `future` runs, until `future` completes: a tunnel
    /// waits for its upstream upgrade this way (the connection completes it).
    pub async fn drive_until<F: Future>(&mut self, future: F) -> F::Output {
        match &mut self.conn {
            Some(conn) => conn.drive_until(future).await,
            None => future.await,
        }
    }

    /// The upstream failed while streaming the body: count it; the connection is dropped.
    pub fn failed_mid_body(self) {
        self.endpoint.errors.count(UpstreamErrorKind::Reset);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
