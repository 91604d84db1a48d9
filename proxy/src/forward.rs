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
use sluice_config::{RequestHead, Respond, Route, Sticky, UpstreamProtocol};
use tracing::debug;

use crate::body::{BodyDone, RequestBody, ResponseBody};
use crate::drain::{DrainWatch, OpenConnection};
use crate::error::ProxyError;
use crate::headers;
use crate::listener::{ConnectionLimit, OpenClient};
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
    /// The listener's open connections: a tunnel counts against `max_connections` while it
    /// lives.
    pub connections: Arc<ConnectionLimit>,
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
        headers::check_host(req.version(), req.uri(), req.headers())?;
        let head = RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        };
        let (route_index, route) = snapshot.table.find(&head).ok_or(ProxyError::NoRoute)?;
        if let Some(respond) = &route.respond {
            if let Some(Some(answered)) = snapshot.respond_metrics.get(route_index) {
                *labels = answered;
            }
            debug!(
                route = labels.route(),
                status = respond.status.as_u16(),
                "fixed response"
            );
            return Ok(fixed_response(respond));
        }
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
        self.forward(downstream, endpoint, req, start, route, labels)
            .await
    }

    async fn forward(
        &self,
        downstream: &Downstream,
        endpoint: &Arc<Endpoint>,
        req: Request<Incoming>,
        start: Instant,
        route: &Route,
        labels: &BackendMetrics,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        // Only an upgrade the route allows, over HTTP/1.1 both ways, becomes a tunnel; any other
        // `Upgrade` offer (h2c above all) is removed and the request forwarded as a plain one.
        let upgrade = parts.version == Version::HTTP_11
            && endpoint.protocol() == UpstreamProtocol::Http1
            && headers::keep_allowed_upgrades(&mut parts.headers, |p| route.allows_upgrade(p));
        let client_upgrade = if upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        headers::add_forwarded(&mut parts.headers, &downstream.client_ip, downstream.https);
        headers::ensure_request_id(&mut parts.headers, random);
        retarget(&mut parts, endpoint)?;
        let body_done = (!http_body::Body::is_end_stream(&body)).then(BodyDone::default);
        let req = Request::from_parts(
            parts,
            RequestBody::new(body, self.body_idle_timeout, body_done.clone()),
        );

        let sent = endpoint.send(req, body_done.clone(), start);
        let sent = match route.timeout {
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
        let (mut response, mut lease) = match sent {
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
        if status == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_none() {
            // Switching protocols on a request that offered no (allowed) upgrade: relaying it
            // would tell the client a tunnel exists that the proxy never opens.
            endpoint.record_outcome(false);
            debug!(
                route = labels.route(),
                backend = labels.backend(),
                endpoint = endpoint.label(),
                "upstream answered 101 to a request without an allowed upgrade"
            );
            return Err(ProxyError::UnexpectedUpgrade);
        }
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
            let open = (
                downstream.drain.open_connection(),
                downstream.connections.hold(),
            );
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, lease, open));
            headers::remove_hop_by_hop(response.headers_mut(), true);
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(parts, ResponseBody::empty()));
        }
        if headers::drop_length_beside_coding(response.headers_mut()) {
            // Framed both ways (RFC 9112 §6.3): the chunked body is forwarded whole, without the
            // stale length, and the upstream connection, whose framing is now suspect, is not
            // reused.
            lease.detach_connection();
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
/// absolute target (which carries `:authority`) for HTTP/2. The client's host is kept; when the
/// target carries an authority (absolute-form, HTTP/2 `:authority`) that authority is the host
/// (RFC 9112 §3.2.2; [`headers::check_host`] has refused a `Host` that differs from it). A
/// request without any host (HTTP/1.0) gets the endpoint's address, as nginx does.
fn retarget(parts: &mut http::request::Parts, endpoint: &Endpoint) -> Result<(), ProxyError> {
    // `None`: the `Host` header is the authority, as it is.
    let authority = match (parts.uri.authority(), parts.headers.get(header::HOST)) {
        (Some(authority), _) => Some(authority.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(
            Authority::try_from(endpoint.label())
                .map_err(|_| ProxyError::BadRequest("missing Host header"))?,
        ),
    };
    match endpoint.protocol() {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            if let Some(authority) = &authority {
                let host = HeaderValue::from_str(authority.as_str())
                    .map_err(|_| ProxyError::BadRequest("invalid authority"))?;
                parts.headers.insert(header::HOST, host);
            }
            if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
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
            let host = parts.headers.remove(header::HOST);
            let authority = match (authority, host) {
                (Some(authority), _) => authority,
                (None, Some(host)) => Authority::try_from(host.as_bytes())
                    .map_err(|_| ProxyError::BadRequest("invalid Host header"))?,
                (None, None) => return Err(ProxyError::BadRequest("missing Host header")),
            };
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.scheme = Some(if endpoint.is_tls() {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            });
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

/// The answer of a `respond` route: its status and body, nothing forwarded.
fn fixed_response(respond: &Respond) -> Response<ResponseBody> {
    let mut response = Response::new(if respond.body.is_empty() {
        ResponseBody::empty()
    } else {
        ResponseBody::full(respond.body.to_string())
    });
    *response.status_mut() = respond.status;
    if !respond.body.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
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
/// side closes. The lease keeps the endpoint's in-flight count honest meanwhile (and holds a
/// slot of the upstream's `max_connections`), and `open` makes a graceful drain wait for the
/// tunnel and counts it against the listener's `max_connections`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut lease: Lease,
    open: (OpenConnection, OpenClient),
) {
    lease.detach_connection();
    let _upstream_slot = lease.hold_connection_slot();
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
