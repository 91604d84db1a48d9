//! The request path: match a route, pick a backend by weight (or sticky key), pick an endpoint,
//! forward, stream the answer back, and record metrics once at the end.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_config::{
    BackendPolicy, Fault, RequestHead, Respond, Route, Sticky, StickyCookie, UpstreamProtocol,
};
use tracing::debug;

use crate::body::{count_grpc_status, BodyDone, RequestBody, ResponseBody};
use crate::drain::{DrainWatch, OpenConnection};
use crate::error::ProxyError;
use crate::exchange::{Answered, Attempts, Exchange};
use crate::future::within;
use crate::headers;
use crate::listener::{ConnectionLimit, OpenClient};
use crate::metrics::{BackendMetrics, FaultKind};
use crate::mirror::{MirrorHead, MIRROR_MAX_BODY};
use crate::retry::RETRY_MAX_BODY;
use crate::routing::Routing;
use crate::snapshot::{BackendRuntime, RouteRuntime, Snapshot};
use crate::upstream::{Endpoint, Exchanged, Lease, UpstreamBody};

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

/// A fast per-thread random number: the split roll, the P2C pair, request ids, fault and
/// mirror shares.
#[inline]
pub(crate) fn random() -> u64 {
    RNG.with(|rng| rng.borrow_mut().next_u64())
}

/// What a request ended up with, filled in as the route and backend are chosen: the metrics
/// it is recorded under, and what the response still needs (header changes, a sticky cookie).
struct Chosen<'s> {
    metrics: &'s Arc<BackendMetrics>,
    route: Option<&'s Route>,
    backend: Option<usize>,
    set_cookie: Option<HeaderValue>,
}

impl Chosen<'_> {
    /// The response's header changes (the backend's, then the route's) and sticky cookie.
    fn finish(self, response: &mut Response<ResponseBody>) {
        if let Some(route) = self.route {
            let backend = self.backend.and_then(|b| route.backend_policies.get(b));
            if let Some(modifier) = backend.and_then(|p| p.response_headers.as_deref()) {
                modifier.apply(response.headers_mut());
            }
            if let Some(modifier) = route.response_headers.as_deref() {
                modifier.apply(response.headers_mut());
            }
        }
        if let Some(cookie) = self.set_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
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
    ///
    /// The choice of route, backend and endpoint is synchronous; the request's future holds
    /// only the one exchange with the upstream (hyper moves this future per request, and its
    /// HTTP/2 server spawns it as a task per stream: every byte of it is copied several times).
    /// Rare, large states (a fault's delay, a retried request's attempts) are boxed. One
    /// `async` block rather than nested `async fn`s: an `async fn` keeps each argument twice in
    /// its future (the argument, and the local it is moved into), and the request is 264 bytes.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold the request twice (above)
    pub fn handle(
        self: Arc<Self>,
        downstream: Arc<Downstream>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static {
        async move {
            let start = Instant::now();
            let snapshot = self.routing.snapshot();
            let mut chosen = Chosen {
                metrics: &snapshot.unrouted,
                route: None,
                backend: None,
                set_cookie: None,
            };
            let outcome = match route(&snapshot, &req, start, &mut chosen) {
                Ok(Routed::Forward(target)) => 'forward: {
                    // The fault, if any, then the exchange with the upstream, and its answer
                    // turned into the client's.
                    let labels = &*target.backend.metrics;
                    let deadline = target
                        .route
                        .timeout
                        .map(|t| tokio::time::Instant::from(start + t));
                    if let Some(fault) = fault_of(&target) {
                        if let Err(error) = Box::pin(inject(fault, labels, deadline)).await {
                            break 'forward Err(error);
                        }
                    }
                    let mut client_upgrade = None;
                    let exchange = match self.prepare(
                        &downstream,
                        &target,
                        req,
                        start,
                        deadline,
                        &mut client_upgrade,
                    ) {
                        Ok(exchange) => exchange,
                        Err(error) => break 'forward Err(error),
                    };
                    match exchange.await {
                        Ok(((response, lease), endpoint)) => answer(
                            &downstream,
                            response,
                            lease,
                            endpoint,
                            client_upgrade,
                            labels,
                        ),
                        Err(error) => Err(error),
                    }
                }
                Ok(Routed::Answered(response)) => Ok(*response),
                Err(error) => Err(error),
            };
            let mut response = match outcome {
                Ok(response) => response,
                Err(error) => error_response(chosen.metrics, &error),
            };
            chosen
                .metrics
                .record(response.status().as_u16(), start.elapsed().as_secs_f64());
            count_grpc_status(&mut response, chosen.metrics);
            chosen.finish(&mut response);
            Ok(response)
        }
    }

    /// Prepares the request for the upstream (hop-by-hop headers out, forwarding headers and
    /// the route's and backend's header changes in, the mirror's copy on its way) and returns
    /// its exchange with the upstream, not yet started. Synchronous, so that nothing it works
    /// with stays in the request's future. `client_upgrade` receives the client's side of an
    /// allowed upgrade.
    fn prepare<'s>(
        &self,
        downstream: &Downstream,
        target: &Target<'s>,
        req: Request<Incoming>,
        start: Instant,
        deadline: Option<tokio::time::Instant>,
        client_upgrade: &mut Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<
        Exchange<'s, impl Future<Output = Exchanged> + 's, impl Future<Output = Answered<'s>> + 's>,
        ProxyError,
    > {
        let route = target.route;
        let endpoint = target.endpoint;
        let labels = &*target.backend.metrics;
        let (mut parts, body) = req.into_parts();
        // Only an upgrade the route allows, over HTTP/1.1 both ways, becomes a tunnel; any other
        // `Upgrade` offer (h2c above all) is removed and the request forwarded as a plain one.
        let upgrade = parts.version == Version::HTTP_11
            && endpoint.protocol() == UpstreamProtocol::Http1
            && headers::keep_allowed_upgrades(&mut parts.headers, |p| route.allows_upgrade(p));
        if upgrade {
            *client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        }
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        headers::add_forwarded(&mut parts.headers, &downstream.client_ip, downstream.https);
        headers::ensure_request_id(&mut parts.headers, random);
        if let Some(modifier) = route.request_headers.as_deref() {
            modifier.apply(&mut parts.headers);
        }
        // The copy looks like the request the route forwards, before any backend's changes.
        let mirror = match &target.runtime.mirror {
            Some(mirror) if !upgrade => mirror
                .admit(target.upstream_index)
                .map(|permit| (permit, MirrorHead::of(&parts))),
            _ => None,
        };
        if let Some(modifier) = target.policy.and_then(|p| p.request_headers.as_deref()) {
            modifier.apply(&mut parts.headers);
        }
        let retries = match (&route.retries, &target.runtime.budget) {
            (Some(retries), Some(budget)) => {
                budget.deposit(start);
                let replayable = http_body::Body::size_hint(&body)
                    .exact()
                    .is_some_and(|n| n <= RETRY_MAX_BODY);
                (!upgrade && replayable && retries.allows_method(&parts.method))
                    .then_some((&**retries, &**budget))
            }
            _ => None,
        };
        if let Some((retries, budget)) = retries {
            let body = RequestBody::new(body, self.body_idle_timeout, None);
            let attempts = Attempts {
                retries,
                budget,
                labels,
                upstream: &target.backend.upstream,
                deadline,
                start,
            };
            return Ok(Exchange::Retried {
                attempts: Box::pin(attempts.run(endpoint, parts, body, mirror)),
            });
        }
        let body_done = (!http_body::Body::is_end_stream(&body)).then(BodyDone::default);
        let mut body = RequestBody::new(body, self.body_idle_timeout, body_done.clone());
        if let Some((permit, head)) = mirror {
            permit.spawn(head, body.tee(MIRROR_MAX_BODY));
        }
        retarget(&mut parts, endpoint)?;
        let req = Request::from_parts(parts, body);
        Ok(Exchange::Once {
            sent: within(deadline, endpoint.send(req, body_done.clone(), start)),
            endpoint,
            body_done,
            labels,
        })
    }
}

/// What the synchronous part of the request path decided.
enum Routed<'s> {
    /// Forward the request there.
    Forward(Target<'s>),
    /// The route answers by itself (`respond`; rare, so boxed).
    Answered(Box<Response<ResponseBody>>),
}

/// Matches the route, picks the backend (by weight or sticky key) and one of its endpoints
/// (another backend's when it has none healthy), recording each choice in `chosen`.
fn route<'s>(
    snapshot: &'s Snapshot,
    req: &Request<Incoming>,
    start: Instant,
    chosen: &mut Chosen<'s>,
) -> Result<Routed<'s>, ProxyError> {
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
    chosen.route = Some(route);
    if let Some(respond) = &route.respond {
        if let Some(Some(answered)) = snapshot.respond_metrics.get(route_index) {
            chosen.metrics = answered;
        }
        debug!(
            route = chosen.metrics.route(),
            status = respond.status.as_u16(),
            "fixed response"
        );
        return Ok(Routed::Answered(Box::new(fixed_response(respond))));
    }
    let backends = &snapshot.routes[route_index];
    let split = &route.split;
    let roll = match &route.sticky {
        None => split.roll_from(random()),
        Some(sticky) => match sticky.key(req.headers()) {
            Some(key) => split.roll_from(Sticky::hash(key)),
            None => match sticky {
                Sticky::Cookie(cookie) if cookie.set_cookie => {
                    let key = sticky_key();
                    chosen.set_cookie = Some(set_cookie(cookie, &key));
                    split.roll_from(Sticky::hash(key.as_bytes()))
                }
                _ => split.roll_from(random()),
            },
        },
    };
    let mut picked = split.pick(roll);
    chosen.backend = Some(picked);
    chosen.metrics = &backends[picked].metrics;
    let endpoint = match backends[picked].upstream.pick(random(), start) {
        Some(endpoint) => endpoint,
        None => {
            let (other, endpoint) = failover(split, backends, picked, start)?;
            backends[picked].metrics.failover();
            picked = other;
            chosen.backend = Some(other);
            chosen.metrics = &backends[other].metrics;
            endpoint
        }
    };
    Ok(Routed::Forward(Target {
        route,
        policy: route.backend_policies.get(picked),
        backend: &backends[picked],
        endpoint,
        upstream_index: split.backends()[picked].upstream,
        runtime: &snapshot.route_runtime[route_index],
    }))
}

/// The fault the request is subject to: its backend's, else its route's.
fn fault_of<'s>(target: &Target<'s>) -> Option<&'s Fault> {
    target
        .policy
        .and_then(|p| p.fault.as_deref())
        .or(target.route.fault.as_deref())
}

/// Turns the upstream's response head into the client's: a tunnel when both sides switched
/// protocols, otherwise the response with its hop-by-hop headers removed and its body streamed
/// through the lease.
fn answer(
    downstream: &Downstream,
    mut response: Response<UpstreamBody>,
    mut lease: Lease,
    endpoint: &Endpoint,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    labels: &BackendMetrics,
) -> Result<Response<ResponseBody>, ProxyError> {
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
        lease.never_reuse();
    }
    headers::remove_hop_by_hop(response.headers_mut(), false);
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, lease),
    ))
}

/// Where a request goes once its route, backend and endpoint are chosen.
struct Target<'s> {
    route: &'s Route,
    policy: Option<&'s BackendPolicy>,
    backend: &'s BackendRuntime,
    endpoint: &'s Arc<Endpoint>,
    /// The backend's upstream index in the config.
    upstream_index: usize,
    runtime: &'s RouteRuntime,
}

/// Applies a route's or backend's fault to one request: a delay first, then maybe an abort
/// (answered with the fault's status, counted under the backend like any answer). The route
/// timeout counts from arrival, delay included: a delay past it ends the request there, with a
/// 504 the upstream, which never saw the request, is not blamed for.
async fn inject(
    fault: &Fault,
    labels: &BackendMetrics,
    deadline: Option<tokio::time::Instant>,
) -> Result<(), ProxyError> {
    if let Some(delay) = fault.delay.filter(|d| d.percent.hits(random())) {
        labels.fault(FaultKind::Delay);
        within(deadline, tokio::time::sleep(delay.duration))
            .await
            .map_err(|_| ProxyError::Timeout)?;
    }
    if let Some(abort) = fault.abort.filter(|a| a.percent.hits(random())) {
        labels.fault(FaultKind::Abort);
        return Err(ProxyError::FaultAbort(abort.status));
    }
    Ok(())
}

/// A new random sticky key: 128 bits, in hex.
fn sticky_key() -> String {
    format!("{:016x}{:016x}", random(), random())
}

/// The `Set-Cookie` that gives a client its sticky key.
fn set_cookie(cookie: &StickyCookie, key: &str) -> HeaderValue {
    let value = format!(
        "{}={key}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        cookie.name,
        cookie.max_age.as_secs()
    );
    // The name is a validated token and the key hex digits: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
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
pub(crate) fn retarget(
    parts: &mut http::request::Parts,
    endpoint: &Endpoint,
) -> Result<(), ProxyError> {
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
/// side closes. The lease drives the upstream connection until its upgrade completes, keeps
/// the endpoint's in-flight count honest meanwhile and holds the connection's slot of the
/// upstream's `max_connections` (it is never finished, so never pooled); `open` makes a
/// graceful drain wait for the tunnel and counts it against the listener's `max_connections`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut lease: Lease,
    open: (OpenConnection, OpenClient),
) {
    let upstream = lease.drive_until(upstream);
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
