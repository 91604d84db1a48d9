//! Mirroring: a copy of a share of a route's requests goes to another upstream, on a pool of
//! its own, and its answer is recorded (`sluice_mirror_*`) and discarded. The real request is
//! never delayed or failed by its copy: copies are bounded in flight (beyond the bound they
//! are dropped and counted), and a copy's body is collected while the real body streams, up to
//! [`MIRROR_MAX_BODY`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};
use http_body_util::BodyExt;
use sluice_config::{Mirror, Percent};
use tokio::sync::oneshot;
use tracing::debug;

use crate::body::{count_grpc_status, RequestBody, ResponseBody};
use crate::forward::{random, retarget};
use crate::metrics::{BackendMetrics, MirrorDrop};
use crate::upstream::Upstream;

/// Request bodies up to this size are mirrored; a copy of a larger body is not sent (counted
/// as dropped, `body_too_large`; a body that never ends, `body_incomplete`). The real request
/// streams as always.
pub const MIRROR_MAX_BODY: usize = 64 * 1024;

/// Copies in flight per route at most; more are dropped (counted, `overloaded`), so a slow or
/// dead mirror holds a bounded amount of memory and connections.
pub const MIRROR_MAX_IN_FLIGHT: usize = 128;

/// How long a copy may take, to its response headers and then to the end of its body, when
/// the route has no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// The pool name suffix of a mirror's own endpoints (never shown in metrics).
pub const MIRROR_POOL_SUFFIX: &str = " (mirror)";

/// A route's mirror at run time.
#[derive(Debug)]
pub struct MirrorRuntime {
    /// The mirror upstream's endpoints: a pool of their own, apart from real traffic's.
    upstream: Arc<Upstream>,
    /// The upstream's index in the config (to skip requests already going there).
    upstream_index: usize,
    percent: Percent,
    metrics: Arc<BackendMetrics>,
    in_flight: Arc<AtomicUsize>,
    timeout: Duration,
}

/// A copy allowed to go: holds one of the route's in-flight places until it is done.
#[derive(Debug)]
pub struct MirrorPermit {
    upstream: Arc<Upstream>,
    metrics: Arc<BackendMetrics>,
    in_flight: Arc<AtomicUsize>,
    timeout: Duration,
}

/// The head of the request as forwarded, copied for the mirror.
#[derive(Debug)]
pub struct MirrorHead {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// `x-sluice-mirror: 1` on every copy, so the mirror can tell copies from real requests.
static X_SLUICE_MIRROR: http::HeaderName = http::HeaderName::from_static("x-sluice-mirror");

impl MirrorRuntime {
    /// The run-time side of `mirror`, sending over `upstream` (the mirror's own pool).
    pub fn new(
        mirror: &Mirror,
        upstream: Arc<Upstream>,
        metrics: Arc<BackendMetrics>,
        route_timeout: Option<Duration>,
    ) -> Self {
        Self {
            upstream,
            upstream_index: mirror.upstream,
            percent: mirror.percent,
            metrics,
            in_flight: Arc::default(),
            timeout: route_timeout.unwrap_or(MIRROR_TIMEOUT),
        }
    }

    /// Whether a request sent to the upstream at `chosen` gets a copy: when it falls in the
    /// mirrored share, is not already going to the mirror's upstream, and the mirror has room.
    #[inline]
    pub fn admit(&self, chosen: usize) -> Option<MirrorPermit> {
        if chosen == self.upstream_index || !self.percent.hits(random()) {
            return None;
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MIRROR_MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.metrics.mirror_dropped(MirrorDrop::Overloaded);
            return None;
        }
        Some(MirrorPermit {
            upstream: self.upstream.clone(),
            metrics: self.metrics.clone(),
            in_flight: self.in_flight.clone(),
            timeout: self.timeout,
        })
    }
}

impl MirrorHead {
    /// A copy of the forwarded request's head.
    pub fn of(parts: &http::request::Parts) -> Self {
        let mut headers = parts.headers.clone();
        headers.insert(X_SLUICE_MIRROR.clone(), HeaderValue::from_static("1"));
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers,
        }
    }
}

impl MirrorPermit {
    /// Sends the copy in a task of its own once `body` (the copy of the request body) is
    /// complete. The caller's request goes on at once.
    pub fn spawn(self, head: MirrorHead, body: oneshot::Receiver<Option<Bytes>>) {
        tokio::spawn(self.run(head, body));
    }

    async fn run(self, head: MirrorHead, body: oneshot::Receiver<Option<Bytes>>) {
        let body = match body.await {
            Ok(Some(body)) => body,
            Ok(None) => return self.metrics.mirror_dropped(MirrorDrop::BodyTooLarge),
            // The body failed, or the client or the real upstream gave up before its end.
            Err(_) => return self.metrics.mirror_dropped(MirrorDrop::BodyIncomplete),
        };
        let start = Instant::now();
        let deadline = tokio::time::Instant::from(start + self.timeout);
        let status = match self.send(head, body, start, deadline).await {
            Ok(status) => status,
            Err(error) => {
                debug!(route = self.metrics.route(), upstream = self.metrics.backend(), %error, "mirrored copy failed");
                self.metrics
                    .record(error.status().as_u16(), start.elapsed().as_secs_f64());
                return;
            }
        };
        debug!(
            route = self.metrics.route(),
            upstream = self.metrics.backend(),
            status,
            "mirrored copy answered"
        );
    }

    /// Sends the copy, records its answer, and reads the answer's body to its end (for a gRPC
    /// status in trailers, and so the connection can be reused).
    async fn send(
        &self,
        head: MirrorHead,
        body: Bytes,
        start: Instant,
        deadline: tokio::time::Instant,
    ) -> Result<u16, crate::ProxyError> {
        let endpoint = self
            .upstream
            .pick(random(), start)
            .ok_or(crate::ProxyError::NoHealthyEndpoint)?;
        let mut request = Request::new(RequestBody::buffered(body));
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        let (mut parts, body) = request.into_parts();
        retarget(&mut parts, endpoint)?;
        let sent = endpoint.send(Request::from_parts(parts, body), None, start);
        let (response, lease) = match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                if let Some(kind) = error.upstream_kind() {
                    endpoint.count_error(kind);
                    endpoint.record_outcome(false);
                }
                return Err(error);
            }
            Err(_) => {
                endpoint.record_outcome(false);
                return Err(crate::ProxyError::Timeout);
            }
        };
        let status = response.status();
        endpoint.record_outcome(!status.is_server_error());
        self.metrics
            .record(status.as_u16(), start.elapsed().as_secs_f64());
        let (parts, body) = response.into_parts();
        let mut response = http::Response::from_parts(parts, ResponseBody::upstream(body, lease));
        count_grpc_status(&mut response, &self.metrics);
        let mut body = response.into_body();
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        });
        if drained.await.is_err() {
            debug!(
                route = self.metrics.route(),
                upstream = self.metrics.backend(),
                "mirrored answer's body not read to its end in time"
            );
        }
        Ok(status.as_u16())
    }
}

impl Drop for MirrorPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
