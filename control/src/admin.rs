//! The control's admin endpoint: `GET /status` (JSON), `GET /metrics`, `GET /health`, and the
//! commands `POST /rollouts/NAME/{start,promote,abort,pause,resume,retry}` (`?full=true` on
//! promote).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::controller::{Command, CommandError, Request as ControlRequest};
use crate::metrics::ControlMetrics;
use crate::status::Status;

/// What the admin endpoint serves.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The controller's status.
    pub status: watch::Receiver<Status>,
    /// The controller's metrics.
    pub metrics: Arc<ControlMetrics>,
    /// Where commands go.
    pub commands: mpsc::Sender<ControlRequest>,
}

impl Admin {
    /// Serves until the task is dropped.
    pub async fn serve(self, socket: TcpListener) {
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let Ok((tcp, _)) = socket.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let admin = self.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.answer(req).await) }
                });
                if let Err(e) = builder.serve_connection(TokioIo::new(tcp), service).await {
                    debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/status") => {
                let status = self.status.borrow().clone();
                match serde_json::to_value(&status) {
                    Ok(body) => json_response(StatusCode::OK, &body),
                    Err(e) => json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": format!("cannot encode the status: {e}")}),
                    ),
                }
            }
            (&Method::GET, "/metrics") => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"ok": true})),
            (&Method::POST, p) if p.starts_with("/rollouts/") => {
                let parts: Vec<&str> = p.trim_start_matches("/rollouts/").split('/').collect();
                let full = query
                    .split('&')
                    .any(|kv| kv == "full=true" || kv == "full=1");
                let command = match parts.as_slice() {
                    [_, "start"] => Command::Start,
                    [_, "promote"] if full => Command::PromoteFull,
                    [_, "promote"] => Command::Promote,
                    [_, "abort"] => Command::Abort,
                    [_, "pause"] => Command::Pause,
                    [_, "resume"] => Command::Resume,
                    [_, "retry"] => Command::Retry,
                    _ => {
                        return json_response(
                            StatusCode::NOT_FOUND,
                            &json!({"error": "use POST /rollouts/NAME/{start,promote,abort,pause,resume,retry}"}),
                        )
                    }
                };
                // A path segment is percent-encoded (`+` is a plus sign, not a space).
                let Ok(name) = percent_encoding::percent_decode_str(parts[0]).decode_utf8() else {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": "the rollout name in the path is not UTF-8"}),
                    );
                };
                self.command(name.into_owned(), command).await
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "not found: GET /status, /metrics, /health; POST /rollouts/NAME/ACTION"}),
            ),
        }
    }

    async fn command(&self, rollout: String, command: Command) -> Response<Full<Bytes>> {
        let (reply, answer) = oneshot::channel();
        let request = ControlRequest {
            rollout,
            command,
            reply,
        };
        if self.commands.send(request).await.is_err() {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "the controller is shutting down"}),
            );
        }
        match answer.await {
            Ok(Ok(message)) => {
                json_response(StatusCode::OK, &json!({"ok": true, "message": message}))
            }
            Ok(Err(e)) => {
                let status = match e {
                    CommandError::Unknown { .. } => StatusCode::NOT_FOUND,
                    CommandError::Refused(_) | CommandError::Edited(_) => StatusCode::CONFLICT,
                    CommandError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                json_response(status, &json!({"error": e.to_string()}))
            }
            Err(_) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "the controller is shutting down"}),
            ),
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(body).unwrap_or_default(),
    )));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
