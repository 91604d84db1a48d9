//! The request path: match a route, pick a backend by weight (or sticky key), pick an endpoint,
//! forward, stream the answer back, and record metrics once at the end.

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_config::{RequestHead, Sticky, UpstreamProtocol};
use tracing::debug;

use crate::body::{BodyDone, RequestBody, ResponseBody};
use crate::drain::{DrainWatch, OpenConnection};
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::BackendMetrics;
use crate::routing::Routing;
use crate::snapshot::{BackendRuntime, Snapshot};
use crate::upstream::{Endpoint, Lease};

/// Everything the request path needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    routing: Arc<Routing>,
    body_idle_timeout: Duration,
}

/// What the proxy knows about the client connection a request arrived on.
#[derive(Debug)]
pub struct Downstream {
    /// The client's IP, ready to append to `x-forwarded-for`.
    pub client_ip: HeaderValue,
    /// Whether the client connection is TLS (`x-forwarded-proto: https`).
    pub https: bool,
    /// Lets upgraded (tunnelled) connections count as open while the proxy drains.
    pub drain: DrainWatch,
}

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// A fast per-thread random number: the split roll, the P2C pair, request ids.
#[inline]
fn random() -> u64 {
    RNG.with(|rng| rng.borrow_mut().next_u64())
}

impl Proxy {
    /// A proxy serving whatever `routing` holds.
    pub fn new(routing: Arc<Routing>, body_idle_timeout: Duration) -> Self {
        Self {
            routing,
            body_idle_timeout,
        }
    }

    /// Handles one request. Never fails: every problem becomes a response. Metrics are
    /// recorded here, once, under the route and backend the request ended up on.
    pub async fn handle(
        self: Arc<Self>,
        downstream: Arc<Downstream>,
        req: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let start = Instant::now();
        let snapshot = self.routing.snapshot();
        let mut labels = &*snapshot.unrouted;
        let outcome = self
            .route_and_forward(&snapshot, &downstream, req, start, &mut labels)
            .await;
        let response = match outcome {
            Ok(response) => response,
            Err(error) => error_response(labels, &error),
        };
        labels.record(response.status().as_u16(), start.elapsed().as_secs_f64());
        Ok(response)
    }

    async fn route_and_forward<'s>(
        &self,
        snapshot: &'s Snapshot,
        downstream: &Downstream,
        req: Request<Incoming>,
        start: Instant,
        labels: &mut &'s BackendMetrics,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        headers::check_framing(req.headers())?;
        if req.method() == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed);
        }
        let head = RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        };
        let (route_index, route) = snapshot.table.find(&head).ok_or(ProxyError::NoRoute)?;
        let backends = &snapshot.routes[route_index];
        let split = &route.split;
        let roll = match route.sticky.as_ref().and_then(|s| s.key(req.headers())) {
            Some(key) => split.roll_from(Sticky::hash(key)),
            None => split.roll_from(random()),
        };
        let chosen = split.pick(roll);
        *labels = &backends[chosen].metrics;
        let endpoint = match backends[chosen].upstream.pick(random(), start) {
            Some(endpoint) => endpoint,
            None => {
                let (other, endpoint) = failover(split, backends, chosen, start)?;
                backends[chosen].metrics.failover();
                *labels = &backends[other].metrics;
                endpoint
            }
        };
        self.forward(downstream, endpoint, req, start, route.timeout, labels)
            .await
    }

    async fn forward(
        &self,
        downstream: &Downstream,
        endpoint: &Arc<Endpoint>,
        req: Request<Incoming>,
        start: Instant,
        timeout: Option<Duration>,
        labels: &BackendMetrics,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let upgrade = parts.version == Version::HTTP_11 && headers::wants_upgrade(&parts.headers);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        headers::add_forwarded(&mut parts.headers, &downstream.client_ip, downstream.https);
        headers::ensure_request_id(&mut parts.headers, random);
        retarget(&mut parts, endpoint.protocol(), endpoint.is_tls())?;
        let body_done = (!http_body::Body::is_end_stream(&body)).then(BodyDone::default);
        let req = Request::from_parts(
            parts,
            RequestBody::new(body, self.body_idle_timeout, body_done.clone()),
        );

        let sent = endpoint.send(req, body_done.clone(), start);
        let sent = match timeout {
            Some(timeout) => match tokio::time::timeout_at((start + timeout).into(), sent).await {
                Ok(result) => result,
                // Still uploading when time ran out: the client is slow, not the upstream.
                Err(_) if body_done.is_some_and(|d| !d.is_done()) => {
                    Err(ProxyError::RequestBodyTimeout)
                }
                Err(_) => Err(ProxyError::Timeout),
            },
            None => sent.await,
        };
        let (mut response, lease) = match sent {
            Ok(answer) => answer,
            Err(error) => {
                if let Some(kind) = error.upstream_kind() {
                    endpoint.count_error(kind);
                    endpoint.record_outcome(false);
                }
                debug!(route = labels.route(), backend = labels.backend(), endpoint = endpoint.label(), %error, "upstream failed");
                return Err(error);
            }
        };
        let status = response.status();
        endpoint.record_outcome(!status.is_server_error());
        debug!(
            route = labels.route(),
            backend = labels.backend(),
            endpoint = endpoint.label(),
            status = status.as_u16(),
            "proxied"
        );
        if let (StatusCode::SWITCHING_PROTOCOLS, Some(client_upgrade)) = (status, client_upgrade) {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let open = downstream.drain.open_connection();
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, lease, open));
            headers::remove_hop_by_hop(response.headers_mut(), true);
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(parts, ResponseBody::empty()));
        }
        headers::remove_hop_by_hop(response.headers_mut(), false);
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            ResponseBody::upstream(body, lease),
        ))
    }
}

/// The chosen backend has no healthy endpoint: its share goes to the route's other backends
/// by weight, or, when they all weigh 0 (e.g. stable after `promote --full`), to any of them
/// that is healthy, rather than failing the request.
fn failover<'s>(
    split: &sluice_config::Split,
    backends: &'s [BackendRuntime],
    chosen: usize,
    now: Instant,
) -> Result<(usize, &'s Arc<Endpoint>), ProxyError> {
    let healthy = |i: usize| i != chosen && backends[i].upstream.pick(0, now).is_some();
    let other = split
        .pick_among(random(), healthy)
        .or_else(|| (0..backends.len()).find(|&i| healthy(i)))
        .ok_or(ProxyError::NoHealthyEndpoint)?;
    let endpoint = backends[other]
        .upstream
        .pick(random(), now)
        .ok_or(ProxyError::NoHealthyEndpoint)?;
    Ok((other, endpoint))
}

/// Points the request at the upstream: origin-form target and a `Host` header for HTTP/1.1,
/// absolute target (which carries `:authority`) for HTTP/2. The client's host is kept either way.
fn retarget(
    parts: &mut http::request::Parts,
    protocol: UpstreamProtocol,
    tls: bool,
) -> Result<(), ProxyError> {
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
                if !parts.headers.contains_key(header::HOST) {
                    if let Some(authority) = parts.uri.authority() {
                        let host = HeaderValue::from_str(authority.as_str())
                            .map_err(|_| ProxyError::BadRequest("invalid authority"))?;
                        parts.headers.insert(header::HOST, host);
                    }
                }
                let path = parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                parts.uri = Uri::from(path);
            }
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            let authority = match parts.headers.remove(header::HOST) {
                Some(host) => Authority::try_from(host.as_bytes())
                    .map_err(|_| ProxyError::BadRequest("invalid Host header"))?,
                None => parts
                    .uri
                    .authority()
                    .cloned()
                    .ok_or(ProxyError::BadRequest("missing Host header"))?,
            };
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
            uri.authority = Some(authority);
            if uri.path_and_query.is_none() {
                uri.path_and_query = Some(PathAndQuery::from_static("/"));
            }
            parts.uri = Uri::from_parts(uri)
                .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
        }
    }
    Ok(())
}

/// A proxy-generated answer: status, `x-sluice-error`, a one-line body.
fn error_response(labels: &BackendMetrics, error: &ProxyError) -> Response<ResponseBody> {
    if !matches!(error, ProxyError::NoRoute) {
        debug!(route = labels.route(), backend = labels.backend(), kind = error.kind(), %error, "proxy error");
    }
    let mut response = Response::new(ResponseBody::full(format!("sluice: {error}\n")));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        headers::X_SLUICE_ERROR.clone(),
        HeaderValue::from_static(error.kind()),
    );
    if error.closes_connection() {
        // Honoured by HTTP/1.1 connections; HTTP/2 has no such header (hyper drops it).
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Copies bytes both ways between an upgraded client and upstream connection until either
/// side closes. The lease keeps the endpoint's in-flight count honest meanwhile, and `open`
/// makes a graceful drain wait for the tunnel too.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut lease: Lease,
    open: OpenConnection,
) {
    lease.detach_connection();
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        Err(e) => debug!(error = %e, "upgrade failed"),
    }
    drop((lease, open));
}
