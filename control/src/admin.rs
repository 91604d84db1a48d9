//! The control's admin endpoint: `GET /status` (JSON), `GET /metrics`, `GET /health`, and the
//! commands `POST /rollouts/NAME/{start,promote,abort,pause,resume,retry,approve}` (`?full=true` on
//! promote), each checked against the caller's role when authentication is on, optionally
//! over TLS with client certificates.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use sluice_config::Role;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::admin_client::exchange;
use crate::auth::{Access, Denied, Identity};
use crate::controller::{Command, CommandError, Request as ControlRequest};
use crate::leader::Candidate;
use crate::metrics::ControlMetrics;
use crate::status::Status;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoint serves.
#[derive(Clone)]
pub struct Admin {
    /// The controller's status.
    pub status: watch::Receiver<Status>,
    /// The controller's metrics.
    pub metrics: Arc<ControlMetrics>,
    /// Where commands go.
    pub commands: mpsc::Sender<ControlRequest>,
    /// Who may do what.
    pub access: Arc<Access>,
    /// TLS termination (with client certificates when the config names a `client_ca`).
    pub tls: Option<TlsAcceptor>,
    /// In fleet mode: where commands go when this control is a standby.
    pub forward: Option<Forward>,
}

/// A standby's way to the leader.
#[derive(Clone, Debug)]
pub struct Forward {
    /// This control's id.
    pub me: String,
    /// Who leads.
    pub leader: watch::Receiver<Option<Candidate>>,
    /// TLS towards the leader's admin endpoint (when the admin endpoints use TLS): trusts
    /// `control.tls.client_ca` and presents this control's certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// How long a forwarded command may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("access", &self.access)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// What the endpoint knows about a connection's peer.
#[derive(Clone, Debug)]
struct Peer {
    address: IpAddr,
    /// The verified client certificate's subject common name.
    certificate: Option<String>,
}

impl Admin {
    /// Serves until the task is dropped.
    pub async fn serve(self, socket: TcpListener) {
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let Ok((tcp, peer)) = socket.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let admin = self.clone();
            let builder = builder.clone();
            tokio::spawn(async move { admin.connection(tcp, peer, &builder).await });
        }
    }

    async fn connection(
        self,
        tcp: TcpStream,
        address: SocketAddr,
        builder: &auto::Builder<TokioExecutor>,
    ) {
        let Some(acceptor) = self.tls.clone() else {
            let peer = Peer {
                address: address.ip(),
                certificate: None,
            };
            self.serve_http(TokioIo::new(tcp), peer, builder).await;
            return;
        };
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                // Without a client certificate from the right CA, this is where it ends.
                debug!(client.addr = %address, error = %e, "admin TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(client.addr = %address, "admin TLS handshake timed out");
                return;
            }
        };
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| subject_name(cert.as_ref()));
        let peer = Peer {
            address: address.ip(),
            certificate,
        };
        self.serve_http(TokioIo::new(tls), peer, builder).await;
    }

    async fn serve_http<I>(self, io: I, peer: Peer, builder: &auto::Builder<TokioExecutor>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = service_fn(move |req| {
            let admin = self.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(admin.answer(req, &peer).await) }
        });
        if let Err(e) = builder.serve_connection(io, service).await {
            debug!(error = %e, "admin connection ended with an error");
        }
    }

    async fn answer(&self, req: Request<Incoming>, peer: &Peer) -> Response<Full<Bytes>> {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let route = match route(req.method(), &path, &query) {
            Ok(route) => route,
            Err(response) => return response,
        };
        if matches!(route, Route::Health) {
            return json_response(StatusCode::OK, &json!({"ok": true}));
        }
        let authorization = req.headers().get(header::AUTHORIZATION);
        let identity = self
            .access
            .identify(
                authorization.map(HeaderValue::as_bytes),
                peer.certificate.as_deref(),
                peer.address,
            )
            .and_then(|identity| identity.may(route.needs()).map(|()| identity));
        let identity = match identity {
            Ok(identity) => identity,
            Err(denied) => return self.denied(&denied, &route, peer),
        };
        match route {
            Route::Health => json_response(StatusCode::OK, &json!({"ok": true})),
            Route::Status => {
                let status = self.status.borrow().clone();
                match serde_json::to_value(&status) {
                    Ok(body) => json_response(StatusCode::OK, &body),
                    Err(e) => json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({"error": format!("cannot encode the status: {e}")}),
                    ),
                }
            }
            Route::Metrics => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            Route::Command(name, command) => {
                if let Some(forward) = &self.forward {
                    let leader = forward.leader.borrow().clone();
                    match leader {
                        Some(leader) if leader.id == forward.me => {}
                        Some(leader) => {
                            return forward_to(
                                &leader,
                                forward,
                                &path,
                                &query,
                                authorization.cloned(),
                            )
                            .await
                        }
                        None => {
                            return json_response(
                                StatusCode::SERVICE_UNAVAILABLE,
                                &json!({"error": "no control leads right now (an election is under way, or etcd is unreachable); send the command again shortly"}),
                            )
                        }
                    }
                }
                let version = version_of(&query);
                self.command(name, command, version, identity).await
            }
        }
    }

    /// A refused request: counted, logged (never with the token), answered 401 or 403.
    fn denied(&self, denied: &Denied, route: &Route, peer: &Peer) -> Response<Full<Bytes>> {
        self.metrics.auth_failure(denied.reason());
        warn!(
            client.addr = %peer.address,
            request = route.describe(),
            reason = denied.reason(),
            "admin request refused: {denied}"
        );
        let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN);
        let mut response = json_response(status, &json!({"error": denied.to_string()}));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice-control\""),
            );
        }
        response
    }

    async fn command(
        &self,
        rollout: String,
        command: Command,
        version: Option<String>,
        identity: Identity,
    ) -> Response<Full<Bytes>> {
        let (reply, answer) = oneshot::channel();
        let request = ControlRequest {
            rollout,
            command,
            caller: identity.caller,
            version,
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
                    CommandError::NotLeader => StatusCode::SERVICE_UNAVAILABLE,
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

/// Sends a command this standby accepted to the leader, with the caller's credentials, and
/// answers with the leader's answer. The leader checks the caller again and records it.
async fn forward_to(
    leader: &Candidate,
    forward: &Forward,
    path: &str,
    query: &str,
    authorization: Option<HeaderValue>,
) -> Response<Full<Bytes>> {
    let unavailable = |why: String| {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": format!("this control is a standby and cannot reach the leader {} at {}: {why}", leader.id, leader.admin)}),
        )
    };
    let target = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let mut request = match Request::post(target)
        .header(header::HOST, &leader.admin)
        .body(Full::new(Bytes::new()))
    {
        Ok(request) => request,
        Err(e) => return unavailable(e.to_string()),
    };
    if let Some(value) = authorization {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let tls = match &forward.tls {
        None => None,
        Some(config) => match server_name(&leader.admin) {
            Some(name) => Some((config.clone(), name)),
            None => return unavailable("its address has no valid TLS name".into()),
        },
    };
    debug!(leader = %leader.id, address = %leader.admin, "forwarding a command to the leader");
    match tokio::time::timeout(
        FORWARD_TIMEOUT,
        exchange(&leader.admin, tls.as_ref(), request),
    )
    .await
    {
        Ok(Ok((status, body))) => {
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(_) => unavailable(format!("no answer within {FORWARD_TIMEOUT:?}")),
    }
}

/// The TLS name of `address` (`host:port`).
fn server_name(address: &str) -> Option<rustls::pki_types::ServerName<'static>> {
    let address = sluice_config::Address::parse(address).ok()?;
    sluice_proxy::tls::server_name_of(address.host()).ok()
}

/// What a request asks for.
#[derive(Debug)]
enum Route {
    Health,
    Status,
    Metrics,
    Command(String, Command),
}

impl Route {
    /// The role a request needs: `read` to look, `operate` to pause and resume, `release`
    /// to move traffic (start, promote, abort, retry).
    fn needs(&self) -> Role {
        match self {
            Self::Health | Self::Status | Self::Metrics => Role::Read,
            Self::Command(_, Command::Pause | Command::Resume | Command::Approve) => Role::Operate,
            Self::Command(..) => Role::Release,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Health => "GET /health".into(),
            Self::Status => "GET /status".into(),
            Self::Metrics => "GET /metrics".into(),
            Self::Command(name, command) => format!("{} {name}", command.as_str()),
        }
    }
}

#[allow(clippy::result_large_err)]
fn route(method: &Method, path: &str, query: &str) -> Result<Route, Response<Full<Bytes>>> {
    match (method, path) {
        (&Method::GET, "/health") => Ok(Route::Health),
        (&Method::GET, "/status") => Ok(Route::Status),
        (&Method::GET, "/metrics") => Ok(Route::Metrics),
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
                [_, "approve"] => Command::Approve,
                _ => {
                    return Err(json_response(
                        StatusCode::NOT_FOUND,
                        &json!({"error": "use POST /rollouts/NAME/{start,promote,abort,pause,resume,retry,approve}"}),
                    ))
                }
            };
            // A path segment is percent-encoded (`+` is a plus sign, not a space).
            let Ok(name) = percent_encoding::percent_decode_str(parts[0]).decode_utf8() else {
                return Err(json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "the rollout name in the path is not UTF-8"}),
                ));
            };
            Ok(Route::Command(name.into_owned(), command))
        }
        _ => Err(json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not found: GET /status, /metrics, /health; POST /rollouts/NAME/ACTION"}),
        )),
    }
}

/// `start?version=V`: the canary version being deployed.
fn version_of(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.trim().is_empty())
}

/// The subject common name of a DER certificate (else its first DNS name).
fn subject_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_string());
    }
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_string()),
        _ => None,
    })
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
