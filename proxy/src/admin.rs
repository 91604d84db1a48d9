//! The admin endpoint: `/metrics`, `/ready`, `/health`, `/config`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::metrics::Metrics;
use crate::reload::{Reloader, StoreStatus};
use crate::routing::Routing;
use crate::snapshot::Snapshot;

/// What the admin endpoint reports on.
#[derive(Debug)]
pub struct Admin {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// The routing in force.
    pub routing: Arc<Routing>,
    /// The reloader (last reload outcome, startup config).
    pub reloader: Arc<Reloader>,
    /// False once draining: `/ready` answers 503.
    pub ready: AtomicBool,
    /// The addresses the listeners are bound to, by name.
    pub bound: Vec<(String, std::net::SocketAddr)>,
    /// Fleet mode: the state of the etcd the weights come from (`None`: files).
    pub store: Option<Arc<StoreStatus>>,
}

impl Admin {
    /// Serves admin requests on `socket` until `stop` fires.
    pub async fn serve(self: Arc<Self>, socket: TcpListener, mut stop: watch::Receiver<bool>) {
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let (tcp, _) = tokio::select! {
                accepted = socket.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        debug!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => break,
            };
            let admin = self.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.answer(&req)) }
                });
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match req.uri().path() {
            "/metrics" => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/ready" if self.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ready\n"),
            "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            "/health" => text(StatusCode::OK, "ok\n"),
            "/config" => {
                let body = serde_json::to_vec_pretty(&self.config_json()).unwrap_or_default();
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /ready, /health, /config\n",
            ),
        }
    }

    /// The `/config` document: generation, files, effective routes and weights, endpoints.
    pub fn config_json(&self) -> Value {
        let snapshot = self.routing.snapshot();
        let config = &snapshot.config;
        let now = std::time::Instant::now();
        json!({
            "generation": snapshot.generation,
            "loaded_at": sluice_config::unix_seconds(snapshot.built_at),
            "config_file": self.reloader.config_path().display().to_string(),
            "weights_file": config.weights_file.as_ref().map(|p| p.display().to_string()),
            "weights_overrides": snapshot.weights.entries().iter().map(|e| {
                let backends = e.backends.iter().map(|(b, _, w)| (b.clone(), json!(w))).collect();
                (e.route.clone(), Value::Object(backends))
            }).collect::<serde_json::Map<_, _>>(),
            "store": self.store_json(),
            "last_reload": self.reloader.last_report(),
            "ready": self.ready.load(Ordering::Relaxed),
            "listeners": self.bound.iter().map(|(name, addr)| json!({"name": name, "address": addr.to_string()})).collect::<Vec<_>>(),
            "routes": routes_json(&snapshot),
            "upstreams": snapshot.config.upstreams.iter().zip(&snapshot.upstreams).map(|(config, runtime)| json!({
                "name": &*config.name,
                "version": config.version,
                "protocol": config.protocol,
                "tls": config.tls.is_some(),
                "max_connections": config.max_connections,
                "max_pending_requests": config.max_pending_requests,
                "open_connections": runtime.breaker().map(|b| b.open_connections()),
                "waiting_requests": runtime.breaker().map(|b| b.waiting()),
                "health_check": config.health_check,
                "endpoints": runtime.endpoints().iter().map(|e| json!({
                    "address": e.label(),
                    "healthy": e.is_healthy(now),
                    "health_check": e.probe_status().as_str(),
                    "in_flight": e.in_flight(),
                    "idle_connections": e.idle_connections(),
                    "connections_opened": e.connections_opened(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "rollouts": config.rollouts,
        })
    }

    /// Where the weights come from: `{"kind": "file"}`, or etcd with the watch state and the
    /// `mod_revision` of the document in force (0: none from etcd yet).
    fn store_json(&self) -> Value {
        match &self.store {
            None => json!({"kind": "file"}),
            Some(store) => json!({
                "kind": "etcd",
                "connected": store.connected(),
                "revision": store.revision(),
                "key": store.key(),
                "endpoints": store.endpoints(),
            }),
        }
    }
}

fn routes_json(snapshot: &Snapshot) -> Vec<Value> {
    snapshot
        .table
        .routes()
        .iter()
        .zip(snapshot.config.routes.routes())
        .map(|(route, configured)| {
            json!({
                "name": &*route.name,
                "timeout": route.timeout.map(sluice_config::format_duration),
                "sticky": route.sticky.as_ref().map(|s| match s {
                    sluice_config::Sticky::Header(h) => json!({"header": h.as_str()}),
                    sluice_config::Sticky::Cookie(c) => json!({
                        "cookie": c.name,
                        "set_cookie": c.set_cookie,
                        "max_age": sluice_config::format_duration(c.max_age),
                    }),
                }),
                "mirror": route.mirror.as_ref().map(|m| json!({
                    "upstream": &*m.name,
                    "percent": m.percent.as_f64(),
                })),
                "retries": route.retries.as_ref().map(|r| json!({
                    "attempts": r.attempts,
                    "budget_percent": r.budget_percent,
                    "min_per_second": r.min_per_second,
                })),
                "fault": route.fault.as_deref().map(fault_json),
                "backends": route.split.backends().iter().zip(configured.split.backends()).enumerate().map(|(i, (b, c))| json!({
                    "upstream": &*b.name,
                    "weight": b.weight,
                    "configured_weight": c.weight,
                    "share": b.weight.hundredths() as f64 / route.split.total().max(1) as f64,
                    "fault": route.backend_policies.get(i).and_then(|p| p.fault.as_deref()).map(fault_json),
                })).collect::<Vec<_>>(),
                "respond": route.respond.as_ref().map(|r| json!({
                    "status": r.status.as_u16(),
                    "body": &*r.body,
                })),
            })
        })
        .collect()
}

/// A fault as `/config` shows it: what is injected into how many requests.
fn fault_json(fault: &sluice_config::Fault) -> Value {
    json!({
        "abort": fault.abort.map(|a| json!({"status": a.status.as_u16(), "percent": a.percent.as_f64()})),
        "delay": fault.delay.map(|d| json!({
            "duration": sluice_config::format_duration(d.duration),
            "percent": d.percent.as_f64(),
        })),
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
