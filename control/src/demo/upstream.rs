//! The demo's two upstreams: small HTTP servers with a latency and an error rate.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::RngExt;
use tokio::net::TcpListener;

/// How a demo upstream behaves.
#[derive(Clone, Copy, Debug)]
pub(super) struct Behavior {
    /// Typical latency.
    pub(super) latency: Duration,
    /// Fraction of requests answered with 500.
    pub(super) error_rate: f64,
}

/// Starts an upstream named `name` on `127.0.0.1:0`; it runs until the task is aborted.
pub(super) async fn spawn(
    name: &'static str,
    behavior: Behavior,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let builder = std::sync::Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    Ok::<_, Infallible>(answer(name, behavior).await)
                });
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok((address, task))
}

async fn answer(name: &'static str, behavior: Behavior) -> Response<Full<Bytes>> {
    // Latency between 0.5x and 1.5x the typical one.
    let (jitter, roll) = {
        let mut rng = rand::rng();
        (rng.random_range(0.5..1.5), rng.random_range(0.0..1.0))
    };
    tokio::time::sleep(behavior.latency.mul_f64(jitter)).await;
    let failed = roll < behavior.error_rate;
    let mut response = Response::new(Full::new(Bytes::from(if failed {
        format!("{name}: internal error\n")
    } else {
        format!("hello from {name}\n")
    })));
    if failed {
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    response
        .headers_mut()
        .insert("x-backend", HeaderValue::from_static(name));
    response
}
