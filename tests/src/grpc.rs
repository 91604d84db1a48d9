//! gRPC over h2c for tests: an in-process `Echo` server (tonic's generated service on hyper)
//! that can be told to fail or be slow, a tonic client speaking h2c prior knowledge that
//! records every HTTP status it receives, and a load of unary calls counting their outcomes.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};
use tower_service::Service;

use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};
use echo::{CountReply, CountRequest, SayReply, SayRequest};

/// The messages and service stubs generated from `tests/proto/echo.proto` by `build.rs`.
pub mod echo {
    tonic::include_proto!("sluice.echo");
}

/// A running gRPC upstream serving h2c (prior knowledge) on `127.0.0.1:0`. Stops when dropped.
#[derive(Debug)]
pub struct GrpcBackend {
    /// Its name, in every reply and in the `x-backend` response metadata.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// The h2c transport under a tonic client: hyper's client with HTTP/2 prior knowledge (one
/// multiplexed connection, shared by clones), counting the HTTP status of every response.
#[derive(Clone, Debug)]
pub struct Channel {
    client: Client<HttpConnector, tonic::body::Body>,
    origin: http::Uri,
    http_statuses: Arc<Mutex<BTreeMap<u16, u64>>>,
}

/// Unary `Say` calls sent in a loop over several h2c connections until stopped.
#[derive(Debug)]
pub struct GrpcLoad {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<Channel>>,
}

/// What a [`GrpcLoad`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcLoadReport {
    /// Calls by the gRPC status the client saw (`Code as i32`).
    pub codes: BTreeMap<i32, u64>,
    /// Responses by HTTP status, as they arrived on the wire (a transport error has none).
    pub http_statuses: BTreeMap<u16, u64>,
    /// The first few calls that did not end `OK`, for assertion messages.
    pub failures: Vec<String>,
}

#[derive(Debug)]
struct State {
    name: String,
    /// Unary calls received.
    calls: AtomicU64,
    /// Unary calls answered `UNAVAILABLE`.
    failed: AtomicU64,
    /// Server-streaming calls received.
    streams: AtomicU64,
    /// Every n-th unary call is answered `UNAVAILABLE`; 0 never.
    unavailable_every: AtomicU64,
    /// Added before every unary answer, in milliseconds.
    latency_ms: AtomicU64,
}

/// The `Echo` implementation over the backend's shared state.
#[derive(Debug, Clone)]
struct EchoService {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct Counters {
    ok: AtomicU64,
    codes: Mutex<BTreeMap<i32, u64>>,
    failures: Mutex<Vec<String>>,
}

type CountStream = Pin<Box<dyn futures_util::Stream<Item = Result<CountReply, Status>> + Send>>;

impl GrpcBackend {
    /// Starts a gRPC backend named `name` on an ephemeral port, answering every call.
    pub async fn spawn(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC backend");
        let addr = listener.local_addr().expect("gRPC backend address");
        let state = Arc::new(State {
            name: name.to_string(),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            unavailable_every: AtomicU64::new(0),
            latency_ms: AtomicU64::new(0),
        });
        let server = EchoServer::new(EchoService {
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                // Small messages each way: without it Nagle and delayed ACKs cost 40 ms a call.
                let _ = tcp.set_nodelay(true);
                let server = server.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let mut server = server.clone();
                        async move { server.call(req).await }
                    });
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
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

    /// `127.0.0.1:PORT`, for an upstream's `endpoints`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Answers every `n`-th unary call (the 5th, 10th, ... for 5: 20%) with `UNAVAILABLE`:
    /// HTTP 200 with `grpc-status: 14`. 0 answers every call `OK`.
    pub fn fail_every(&self, n: u64) {
        self.state.unavailable_every.store(n, Ordering::SeqCst);
    }

    /// Waits `latency` before every unary answer.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.state.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// Unary calls received so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Unary calls answered `UNAVAILABLE` so far.
    pub fn failed(&self) -> u64 {
        self.state.failed.load(Ordering::SeqCst)
    }

    /// Server-streaming calls received so far.
    pub fn streams(&self) -> u64 {
        self.state.streams.load(Ordering::SeqCst)
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        let state = &self.state;
        let call = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let latency = state.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let every = state.unavailable_every.load(Ordering::SeqCst);
        if every > 0 && call.is_multiple_of(every) {
            state.failed.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable(format!(
                "{} fails every {every}th call",
                state.name
            )));
        }
        let tag = request.metadata().get("x-request-tag").cloned();
        let mut response = Response::new(SayReply {
            text: request.into_inner().text,
            backend: state.name.clone(),
        });
        self.tag(response.metadata_mut(), tag);
        Ok(response)
    }

    type CountStream = CountStream;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let state = &self.state;
        state.streams.fetch_add(1, Ordering::SeqCst);
        let tag = request.metadata().get("x-request-tag").cloned();
        let CountRequest {
            count,
            padding,
            end_with,
        } = request.into_inner();
        let backend = state.name.clone();
        let replies = (1..=count).map(move |number| {
            Ok(CountReply {
                number,
                backend: backend.clone(),
                padding: vec![(number % 251) as u8; padding as usize],
            })
        });
        // tonic sends a stream's trailers from the status that ends it: a status with code
        // `OK` carries custom trailing metadata on a successful stream.
        let mut trailers = MetadataMap::new();
        trailers.insert("x-count", MetadataValue::from(count));
        trailers.insert_bin(
            "x-backend-bin",
            MetadataValue::from_bytes(state.name.as_bytes()),
        );
        let end = Status::with_metadata(Code::from_i32(end_with as i32), "", trailers);
        let stream = futures_util::stream::iter(replies.chain(std::iter::once(Err(end))));
        let mut response = Response::new(Box::pin(stream) as CountStream);
        self.tag(response.metadata_mut(), tag);
        Ok(response)
    }
}

impl EchoService {
    /// Response metadata: `x-backend` and the request's `x-request-tag`, if it had one.
    fn tag(&self, metadata: &mut MetadataMap, request_tag: Option<MetadataValue<Ascii>>) {
        if let Ok(name) = self.state.name.parse() {
            metadata.insert("x-backend", name);
        }
        if let Some(tag) = request_tag {
            metadata.insert("x-request-tag", tag);
        }
    }
}

impl Channel {
    /// A channel to `addr` (a proxy listener or a backend) over h2c prior knowledge.
    pub fn h2c(addr: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        let origin = format!("http://{addr}")
            .parse()
            .expect("a socket address makes a URI");
        Self {
            client,
            origin,
            http_statuses: Arc::default(),
        }
    }

    /// A tonic `Echo` client on this channel.
    pub fn echo(&self) -> EchoClient<Channel> {
        EchoClient::with_origin(self.clone(), self.origin.clone())
    }

    /// Responses received so far on this channel and its clones, by HTTP status.
    pub fn http_statuses(&self) -> BTreeMap<u16, u64> {
        self.http_statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // hyper's client queues requests itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let response = self.client.request(request);
        let statuses = self.http_statuses.clone();
        Box::pin(async move {
            let response = response.await?;
            *statuses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(response.status().as_u16())
                .or_default() += 1;
            Ok(response)
        })
    }
}

impl GrpcLoad {
    /// Starts `connections` clients, each on its own h2c connection to `addr`, calling `Say`
    /// one call after another.
    pub fn start(addr: SocketAddr, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let tasks = (0..connections)
            .map(|worker| {
                let (stop, counters) = (stop.clone(), counters.clone());
                tokio::spawn(async move {
                    let channel = Channel::h2c(addr);
                    let mut client = channel.echo();
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        sent += 1;
                        let text = format!("{worker}-{sent}");
                        let code = match client.say(SayRequest { text: text.clone() }).await {
                            Ok(reply) if reply.get_ref().text == text => Code::Ok,
                            Ok(reply) => {
                                counters.fail(format!("wrong reply to {text}: {reply:?}"));
                                Code::Internal
                            }
                            Err(status) => {
                                counters.fail(format!("{status:?}"));
                                status.code()
                            }
                        };
                        counters.count(code);
                    }
                    channel
                })
            })
            .collect();
        Self {
            stop,
            counters,
            tasks,
        }
    }

    /// Calls answered `OK` so far.
    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients (after their current call) and reports.
    pub async fn stop(self) -> GrpcLoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut http_statuses = BTreeMap::new();
        for task in self.tasks {
            if let Ok(channel) = task.await {
                for (status, n) in channel.http_statuses() {
                    *http_statuses.entry(status).or_default() += n;
                }
            }
        }
        GrpcLoadReport {
            codes: self
                .counters
                .codes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            http_statuses,
            failures: self
                .counters
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

impl GrpcLoadReport {
    /// Calls that ended with `code`.
    pub fn count(&self, code: Code) -> u64 {
        self.codes.get(&(code as i32)).copied().unwrap_or(0)
    }

    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.codes.values().sum()
    }
}

impl Counters {
    fn count(&self, code: Code) {
        if code == Code::Ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        }
        *self
            .codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(code as i32)
            .or_default() += 1;
    }

    fn fail(&self, why: String) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() < 10 {
            failures.push(why);
        }
    }
}
