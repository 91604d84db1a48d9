//! The request path: match a route, pick a backend by weight (or sticky key), pick an endpoint,
//! forward, stream the answer back, and record metrics once at the end.

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_config::{RequestHead, Sticky, UpstreamProtocol};
use tracing::debug;

use crate::body::{RequestBody, ResponseBody};
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::BackendMetrics;
use crate::routing::Routing;
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

    /// Handles one request. Never fails: every problem becomes a response.
    pub async fn handle(
        self: Arc<Self>,
        downstream: Arc<Downstream>,
        req: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let start = Instant::now();
        let snapshot = self.routing.snapshot();
        if let Err(error) = headers::check_framing(req.headers()) {
            return Ok(answer_error(&snapshot.unrouted, error, start));
        }
        let head = RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        };
        let Some((route_index, route)) = snapshot.table.find(&head) else {
            return Ok(answer_error(&snapshot.unrouted, ProxyError::NoRoute, start));
        };
        let split = &route.split;
        let backends = &snapshot.routes[route_index];
        let roll = match route.sticky.as_ref().and_then(|s| s.key(req.headers())) {
            Some(key) => split.roll_from(Sticky::hash(key)),
            None => split.roll_from(random()),
        };
        let mut chosen = split.pick(roll);
        let endpoint = match backends[chosen].upstream.pick(random(), start) {
            Some(endpoint) => endpoint.clone(),
            None => {
                // No healthy endpoint: the backend's share goes to the route's other backends.
                let failover = split.pick_among(random(), |i| {
                    i != chosen && backends[i].upstream.pick(0, start).is_some()
                });
                let picked = failover
                    .and_then(|i| Some((i, backends[i].upstream.pick(random(), start)?.clone())));
                match picked {
                    Some((i, endpoint)) => {
                        backends[chosen].metrics.failover();
                        chosen = i;
                        endpoint
                    }
                    None => {
                        return Ok(answer_error(
                            &backends[chosen].metrics,
                            ProxyError::NoHealthyEndpoint,
                            start,
                        ))
                    }
                }
            }
        };
        let metrics = &backends[chosen].metrics;
        let deadline = route.timeout.map(|t| start + t);
        Ok(self
            .forward(&downstream, &endpoint, req, deadline, metrics, start)
            .await)
    }

    async fn forward(
        &self,
        downstream: &Downstream,
        endpoint: &Arc<Endpoint>,
        req: Request<Incoming>,
        deadline: Option<Instant>,
        metrics: &BackendMetrics,
        start: Instant,
    ) -> Response<ResponseBody> {
        let (mut parts, body) = req.into_parts();
        let upgrade = parts.version == Version::HTTP_11 && headers::wants_upgrade(&parts.headers);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        headers::add_forwarded(&mut parts.headers, &downstream.client_ip, downstream.https);
        headers::ensure_request_id(
            &mut parts.headers,
            u128::from(random()) << 64 | u128::from(random()),
        );
        if let Err(error) = retarget(&mut parts, endpoint.protocol(), endpoint.is_tls()) {
            return answer_error(metrics, error, start);
        }
        let req = Request::from_parts(parts, RequestBody::new(body, self.body_idle_timeout));

        let sent = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), endpoint.send(req)).await {
                    Ok(result) => result,
                    Err(_) => Err(ProxyError::Timeout),
                }
            }
            None => endpoint.send(req).await,
        };
        match sent {
            Ok((mut response, lease)) => {
                let status = response.status();
                endpoint.record_outcome(!status.is_server_error(), start);
                metrics.record(status.as_u16(), start.elapsed().as_secs_f64());
                debug!(
                    route = metrics.route(),
                    backend = metrics.backend(),
                    endpoint = endpoint.label(),
                    status = status.as_u16(),
                    "proxied"
                );
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_upgrade) = client_upgrade {
                        let upstream_upgrade = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client_upgrade, upstream_upgrade, lease));
                        headers::remove_hop_by_hop(response.headers_mut(), true);
                        let (parts, _) = response.into_parts();
                        return Response::from_parts(parts, ResponseBody::empty());
                    }
                }
                headers::remove_hop_by_hop(response.headers_mut(), false);
                let (parts, body) = response.into_parts();
                Response::from_parts(parts, ResponseBody::upstream(body, lease))
            }
            Err(error) => {
                if let Some(kind) = error.upstream_kind() {
                    endpoint.count_error(kind);
                    endpoint.record_outcome(false, start);
                }
                debug!(route = metrics.route(), backend = metrics.backend(), endpoint = endpoint.label(), %error, "upstream failed");
                answer_error(metrics, error, start)
            }
        }
    }
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

/// A proxy-generated answer: status, `x-sluice-error`, a one-line body; recorded in metrics.
fn answer_error(
    metrics: &BackendMetrics,
    error: ProxyError,
    start: Instant,
) -> Response<ResponseBody> {
    let status = error.status();
    metrics.record(status.as_u16(), start.elapsed().as_secs_f64());
    if !matches!(error, ProxyError::NoRoute) {
        debug!(route = metrics.route(), backend = metrics.backend(), kind = error.kind(), %error, "proxy error");
    }
    let mut response = Response::new(ResponseBody::full(format!("sluice: {error}\n")));
    *response.status_mut() = status;
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
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Copies bytes both ways between an upgraded client and upstream connection until either
/// side closes. The lease keeps the endpoint's in-flight count honest meanwhile.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut lease: Lease,
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
    drop(lease);
}
