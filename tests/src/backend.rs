//! A test upstream on `127.0.0.1:0`: counts requests and accepted connections, answers with
//! its name, and can be told to fail, be slow, stream, echo, upgrade, or drop connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How a backend answers plain requests.
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    /// 200 with the backend's name.
    Ok,
    /// Always this status.
    Status(u16),
    /// 200 after this delay.
    Slow(Duration),
    /// A 500 for this fraction of requests (deterministic: every n-th), 200 otherwise.
    ErrorRate(f64),
    /// Never answer (the connection stays open).
    Hang,
    /// Close the connection without answering for this fraction of requests, any path
    /// (pseudo-random but reproducible: drawn from the request's arrival number), as a crashing
    /// upstream does; answer the others as usual.
    Reset(f64),
    /// Close the connection without answering the 1st, (n+1)th, (2n+1)th... request, any path:
    /// `ResetEvery(1)` drops them all, `ResetEvery(2)` every other one, starting with the first.
    ResetEvery(u64),
}

/// A running test upstream. Stops when dropped.
#[derive(Debug)]
pub struct Backend {
    /// Its name, the body of its 200 answers.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    name: String,
    /// Requests answered; counted while `header_hits` is locked, after the request's other
    /// records.
    hits: AtomicU64,
    /// Requests received, answered or dropped.
    received: AtomicU64,
    /// Requests whose connection was closed without an answer.
    resets: AtomicU64,
    connections: AtomicU64,
    behavior: Mutex<Behavior>,
    last_headers: Mutex<Option<HeaderMap>>,
    last_version: Mutex<Option<http::Version>>,
    /// Per path: requests answered and the headers of the last one.
    paths: Mutex<HashMap<String, (u64, HeaderMap)>>,
    /// Paths answered with a fixed status whatever the behavior (a failing `/health`).
    path_status: Mutex<HashMap<String, u16>>,
    /// Per header name: requests that carried it (names are few, so this stays small).
    header_hits: Mutex<HashMap<http::HeaderName, u64>>,
    /// Every request to `/upload`, as received.
    uploads: Mutex<Vec<Upload>>,
}

/// A request body received on `/upload`, with the request's headers.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Backend {
    /// Starts a backend named `name` on an ephemeral port (HTTP/1.1 and h2c).
    pub async fn spawn(name: &str) -> Self {
        Self::spawn_with_tls(name, None).await
    }

    /// Starts a backend that terminates TLS with `tls` (ALPN decides h2 or HTTP/1.1).
    pub async fn spawn_with_tls(name: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let state = Arc::new(State {
            name: name.to_string(),
            hits: AtomicU64::new(0),
            received: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            behavior: Mutex::new(Behavior::Ok),
            last_headers: Mutex::new(None),
            last_version: Mutex::new(None),
            paths: Mutex::new(HashMap::new()),
            path_status: Mutex::new(HashMap::new()),
            header_hits: Mutex::new(HashMap::new()),
            uploads: Mutex::new(Vec::new()),
        });
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let served = state.clone();
        let task = tokio::spawn(async move {
            let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                served.connections.fetch_add(1, Ordering::SeqCst);
                let state = served.clone();
                let builder = builder.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            if state.drops_next() {
                                return Err(Dropped);
                            }
                            Ok(state.answer(req).await)
                        }
                    });
                    match acceptor {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            name: name.to_string(),
            addr,
            state,
            task,
        }
    }

    /// Requests answered so far (all paths).
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests whose connection was closed without an answer ([`Behavior::Reset`]); not in
    /// [`Backend::hits`].
    pub fn resets(&self) -> u64 {
        self.state.resets.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Changes how plain requests are answered.
    pub fn set_behavior(&self, behavior: Behavior) {
        *self
            .state
            .behavior
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behavior;
    }

    /// Answers requests for `path` with `status` whatever the behavior (`None`: as usual).
    pub fn set_path_status(&self, path: &str, status: Option<u16>) {
        let mut statuses = self
            .state
            .path_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match status {
            Some(status) => statuses.insert(path.to_string(), status),
            None => statuses.remove(path),
        };
    }

    /// Requests for `path` (query excluded) answered so far.
    pub fn hits_on(&self, path: &str) -> u64 {
        self.state
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .map_or(0, |(hits, _)| *hits)
    }

    /// Requests answered so far that carried header `name` (any value, all paths).
    pub fn hits_with_header(&self, name: &str) -> u64 {
        self.hits_and_hits_with_header(name).1
    }

    /// Requests answered so far that did not carry header `name`.
    pub fn hits_without_header(&self, name: &str) -> u64 {
        let (hits, with) = self.hits_and_hits_with_header(name);
        hits - with
    }

    /// All requests answered so far, and those that carried header `name`, read together:
    /// requests arriving meanwhile are in both counts or in neither.
    fn hits_and_hits_with_header(&self, name: &str) -> (u64, u64) {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok();
        let seen = self
            .state
            .header_hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let with = name.and_then(|name| seen.get(&name).copied()).unwrap_or(0);
        (self.state.hits.load(Ordering::SeqCst), with)
    }

    /// The requests received on `/upload` so far, in arrival order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.state
            .uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The headers of the most recent request for `path`.
    pub fn last_headers_on(&self, path: &str) -> Option<HeaderMap> {
        self.state
            .paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .map(|(_, headers)| headers.clone())
    }

    /// The headers of the most recent request.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.state
            .last_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The HTTP version of the most recent request.
    pub fn last_version(&self) -> Option<http::Version> {
        *self
            .state
            .last_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `host:port`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    /// Whether the request just received is dropped (its connection closed, no answer).
    fn drops_next(&self) -> bool {
        let n = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        let behavior = self
            .behavior
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let dropped = match behavior {
            Behavior::Reset(rate) => {
                let draw = xxhash_rust::xxh3::xxh3_64_with_seed(
                    &n.to_le_bytes(),
                    xxhash_rust::xxh3::xxh3_64(self.name.as_bytes()),
                );
                (draw as f64) < rate * u64::MAX as f64
            }
            Behavior::ResetEvery(every) => (n - 1).is_multiple_of(every.max(1)),
            _ => false,
        };
        if dropped {
            self.resets.fetch_add(1, Ordering::SeqCst);
        }
        dropped
    }

    async fn answer(&self, mut req: Request<Incoming>) -> Response<BoxBody> {
        *self
            .last_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(req.headers().clone());
        *self
            .last_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(req.version());
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        {
            let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = paths.entry(path.clone()).or_default();
            entry.0 += 1;
            entry.1 = req.headers().clone();
        }
        // Counted last, and in one critical section with the header names, so a reader sees
        // every record of a request it counts, and `hits_without_header` a consistent pair.
        let n = {
            let mut seen = self
                .header_hits
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for name in req.headers().keys() {
                *seen.entry(name.clone()).or_default() += 1;
            }
            self.hits.fetch_add(1, Ordering::SeqCst) + 1
        };
        let fixed = self
            .path_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&path)
            .copied();
        if let Some(code) = fixed {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return self.respond(status, full(format!("{} {code}\n", self.name)));
        }
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<u64>().ok())
        };
        match path.as_str() {
            // Streams `bytes` bytes of a deterministic pattern, in 64 KiB chunks, chunked;
            // `ms` spreads them over that many milliseconds.
            "/stream" => {
                let total = param("bytes").unwrap_or(1024);
                let spread = Duration::from_millis(param("ms").unwrap_or(0));
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                tokio::spawn(async move {
                    let chunks = total.div_ceil(65536).max(1);
                    let pause = spread / u32::try_from(chunks).unwrap_or(u32::MAX);
                    let mut sent = 0u64;
                    while sent < total {
                        let len = (total - sent).min(65536);
                        let chunk: Vec<u8> = (sent..sent + len).map(|i| (i % 251) as u8).collect();
                        sent += len;
                        if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                            return;
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                });
                self.respond(StatusCode::OK, BodyExt::boxed(channel_body(rx)))
            }
            // Streams the request body straight back.
            "/echo" => {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                let mut body = req.into_body();
                tokio::spawn(async move {
                    while let Some(Ok(frame)) = body.frame().await {
                        if let Ok(data) = frame.into_data() {
                            if tx.send(Ok(Frame::data(data))).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                self.respond(StatusCode::OK, BodyExt::boxed(channel_body(rx)))
            }
            // Reads the whole body (kept, see `uploads`); answers with its length and xxh3
            // checksum.
            "/upload" => {
                let headers = req.headers().clone();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let text = format!(
                    "{} {:016x}\n",
                    body.len(),
                    xxhash_rust::xxh3::xxh3_64(&body)
                );
                self.uploads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Upload { headers, body });
                self.respond(StatusCode::OK, full(text))
            }
            // A body followed by trailers (gRPC-style).
            "/trailers" => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                let frames = vec![
                    Ok(Frame::data(Bytes::from_static(b"payload"))),
                    Ok(Frame::trailers(trailers)),
                ];
                self.respond(StatusCode::OK, BodyExt::boxed(futures_iter(frames)))
            }
            // WebSocket-style upgrade; then echoes bytes.
            "/ws" => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(upgraded) = on_upgrade.await {
                        let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                    }
                });
                let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::new())));
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                response
                    .headers_mut()
                    .insert("upgrade", HeaderValue::from_static("websocket"));
                response
                    .headers_mut()
                    .insert("connection", HeaderValue::from_static("upgrade"));
                response
            }
            _ => {
                let behavior = self
                    .behavior
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                match behavior {
                    Behavior::Ok => self.respond(StatusCode::OK, full(format!("{}\n", self.name))),
                    Behavior::Status(code) => {
                        let status =
                            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        self.respond(status, full(format!("{} {code}\n", self.name)))
                    }
                    Behavior::Slow(delay) => {
                        tokio::time::sleep(delay).await;
                        self.respond(StatusCode::OK, full(format!("{}\n", self.name)))
                    }
                    Behavior::ErrorRate(rate) => {
                        let every = (1.0 / rate.max(1e-9)).round().max(1.0) as u64;
                        if n.is_multiple_of(every) {
                            self.respond(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                full(format!("{} 500\n", self.name)),
                            )
                        } else {
                            self.respond(StatusCode::OK, full(format!("{}\n", self.name)))
                        }
                    }
                    Behavior::Hang => {
                        std::future::pending::<()>().await;
                        unreachable!("pending never resolves")
                    }
                    Behavior::Reset(_) | Behavior::ResetEvery(_) => {
                        self.respond(StatusCode::OK, full(format!("{}\n", self.name)))
                    }
                }
            }
        }
    }

    fn respond(&self, status: StatusCode, body: BoxBody) -> Response<BoxBody> {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        if let Ok(name) = HeaderValue::from_str(&self.name) {
            response.headers_mut().insert("x-backend", name);
        }
        response
    }
}

/// The service error that makes hyper close the connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

fn full(text: String) -> BoxBody {
    BodyExt::boxed(Full::new(Bytes::from(text)))
}

/// A body fed by an mpsc receiver.
pub fn channel_body<T>(rx: mpsc::Receiver<T>) -> ReceiverStream<T> {
    ReceiverStream { rx }
}

/// A body over a fixed list of frames.
fn futures_iter<T: Unpin>(items: Vec<T>) -> IterStream<T> {
    IterStream {
        items: items.into_iter(),
    }
}

/// A body whose frames come from a channel.
pub struct ReceiverStream<T> {
    rx: mpsc::Receiver<T>,
}

/// A body whose frames come from a vector.
pub struct IterStream<T> {
    items: std::vec::IntoIter<T>,
}

impl<T> hyper::body::Body for ReceiverStream<Result<Frame<T>, Infallible>>
where
    T: hyper::body::Buf,
{
    type Data = T;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<T>, Infallible>>> {
        self.rx.poll_recv(cx)
    }
}

impl<T: hyper::body::Buf + Unpin> hyper::body::Body for IterStream<Result<Frame<T>, Infallible>> {
    type Data = T;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<T>, Infallible>>> {
        Poll::Ready(self.items.next())
    }
}

impl<T> std::fmt::Debug for ReceiverStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiverStream")
    }
}

impl<T> std::fmt::Debug for IterStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IterStream")
    }
}
