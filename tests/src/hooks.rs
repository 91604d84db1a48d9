//! A test webhook receiver on `127.0.0.1:0`: records every request (path, JSON body, headers)
//! in order, and answers per path with a status chosen by the test, a fixed body, or never.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;

/// How the receiver answers one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// 200 with this body (e.g. Prometheus exposition text).
    Body(String),
    /// Never answer.
    Hang,
}

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The path.
    pub path: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The headers.
    pub headers: HeaderMap,
}

/// A running receiver. Stops when dropped.
#[derive(Debug)]
pub struct HookServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    received: Mutex<Vec<Received>>,
    replies: Mutex<HashMap<String, Reply>>,
}

impl HookServer {
    /// Starts a receiver answering 200 to every path until told otherwise.
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hooks");
        let addr = listener.local_addr().expect("hooks address");
        let state = Arc::new(State::default());
        let served = state.clone();
        let task = tokio::spawn(async move {
            let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = served.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers `path` with `reply` from now on.
    pub fn reply(&self, path: &str, reply: Reply) {
        self.state
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_string(), reply);
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The bodies received on `path`, in order.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .map(|r| r.body)
            .collect()
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let headers = req.headers().clone();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Received {
                path: path.clone(),
                body,
                headers,
            });
        let reply = self
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&path)
            .cloned()
            .unwrap_or(Reply::Status(200));
        match reply {
            Reply::Status(code) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                response
            }
            Reply::Body(text) => Response::new(Full::new(Bytes::from(text))),
            Reply::Hang => std::future::pending().await,
        }
    }
}
