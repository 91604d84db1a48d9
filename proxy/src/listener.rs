//! Client-facing listeners: bind, accept, terminate TLS, and serve HTTP/1.1 and HTTP/2 on
//! each connection until a graceful shutdown asks it to finish.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{Counter, Gauge};
use sluice_config::{Listener, ListenerProtocol};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::drain::DrainWatch;
use crate::forward::{Downstream, Proxy};
use crate::io::Stream;
use crate::tls::{ListenerTls, TlsError};

/// How long a client may take to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Request headers larger than this are answered with 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Connection-level limits shared by all listeners.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A client must send complete request headers within this time, or the connection closes.
    pub header_read_timeout: Duration,
}

/// A bound listener, ready to accept.
pub struct BoundListener {
    config: Listener,
    socket: TcpListener,
    tls: Option<Arc<ListenerTls>>,
}

/// The open client connections of one listener, against its `max_connections`. A tunnel
/// (upgraded connection) counts while it lives, like the connection it came from.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    /// `sluice_active_connections{listener}`.
    gauge: Gauge,
    /// `sluice_connections_rejected_total{listener}`.
    rejected: Counter,
}

/// One open client connection or tunnel, counted until dropped.
#[derive(Debug)]
pub struct OpenClient(Arc<ConnectionLimit>);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The address could not be bound.
    #[error("listener \"{name}\": cannot listen on {address}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error("listener \"{name}\": tls: {source}")]
    Tls {
        /// Listener name.
        name: String,
        /// What is wrong.
        source: TlsError,
    },
}

impl std::fmt::Debug for BoundListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundListener")
            .field("config", &self.config)
            .field("socket", &self.socket)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ConnectionLimit {
    /// A listener allowing `max` open connections.
    pub fn new(max: usize, gauge: Gauge, rejected: Counter) -> Arc<Self> {
        gauge.set(0.0);
        rejected.increment(0);
        Arc::new(Self {
            max,
            open: AtomicUsize::new(0),
            gauge,
            rejected,
        })
    }

    /// Counts a newly accepted connection, or refuses it (and counts the refusal) when
    /// `max_connections` are open.
    fn admit(self: &Arc<Self>) -> Option<OpenClient> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            self.rejected.increment(1);
            return None;
        }
        self.gauge.increment(1.0);
        Some(OpenClient(self.clone()))
    }

    /// Counts a tunnel taken over from an admitted connection, whatever the limit: the client
    /// connection goes on as the tunnel.
    pub fn hold(self: &Arc<Self>) -> OpenClient {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.gauge.increment(1.0);
        OpenClient(self.clone())
    }
}

impl Drop for OpenClient {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.decrement(1.0);
    }
}

/// The three connection builders a listener may need, made once.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl BoundListener {
    /// Binds `config.address` (with `SO_REUSEADDR`); `tls` is its loaded TLS files when it
    /// terminates TLS.
    pub fn bind(config: &Listener, tls: Option<Arc<ListenerTls>>) -> Result<Self, ListenerError> {
        let bind_error = |source| ListenerError::Bind {
            name: config.name.clone(),
            address: config.address,
            source,
        };
        let socket = bind_tcp(config.address).map_err(bind_error)?;
        Ok(Self {
            config: config.clone(),
            socket,
            tls,
        })
    }

    /// The address actually bound (resolves port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The listener's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its `max_connections`.
    pub fn max_connections(&self) -> usize {
        self.config.max_connections
    }

    /// Accepts until draining starts (then the socket closes: new connections are refused);
    /// each connection finishes its in-flight requests and closes when draining starts. Past
    /// `max_connections` open, a new connection is closed at once, unread: it costs no TLS
    /// handshake or parse, and a client that sent nothing can safely retry elsewhere.
    pub async fn serve(
        self,
        proxy: Arc<Proxy>,
        limits: Limits,
        connections: Arc<ConnectionLimit>,
        drain: DrainWatch,
    ) {
        let builders = Arc::new(Builders::new(limits, &self.config));
        let protocol = self.config.protocol;
        let mut stopping = drain.clone();
        loop {
            let accepted = tokio::select! {
                accepted = self.socket.accept() => accepted,
                () = stopping.started() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(listener = %self.config.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(open) = connections.admit() else {
                debug!(listener = %self.config.name, client.addr = %peer, "max_connections reached; connection closed");
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let connection = Connection {
                proxy: proxy.clone(),
                builders: builders.clone(),
                tls: self.tls.clone(),
                protocol,
                connections: connections.clone(),
                open,
                peer,
            };
            tokio::spawn(connection.run(tcp, drain.clone()));
        }
        debug!(listener = %self.config.name, "stopped accepting");
    }
}

/// One accepted client connection.
struct Connection {
    proxy: Arc<Proxy>,
    builders: Arc<Builders>,
    tls: Option<Arc<ListenerTls>>,
    protocol: ListenerProtocol,
    connections: Arc<ConnectionLimit>,
    /// Counts this connection against the listener's limit until it ends.
    open: OpenClient,
    peer: SocketAddr,
}

impl Connection {
    async fn run(self, tcp: TcpStream, mut drain: DrainWatch) {
        let _open = drain.open_connection();
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                // The certificate in force now: a reload affects new handshakes only.
                let acceptor = tls.acceptor();
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
                    Ok(Err(e)) => {
                        debug!(client.addr = %self.peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(client.addr = %self.peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let builder = match (stream.alpn(), self.protocol) {
            (Some(b"h2"), _) | (_, ListenerProtocol::Http2) => &self.builders.http2,
            (Some(_), _) | (None, ListenerProtocol::Http1) => &self.builders.http1,
            (None, ListenerProtocol::Auto) => &self.builders.auto,
        };
        let downstream = Arc::new(Downstream {
            client_ip: client_ip_header(self.peer),
            https: self.tls.is_some(),
            drain: drain.clone(),
            connections: self.connections.clone(),
        });
        let proxy = self.proxy.clone();
        let service = service_fn(move |req| proxy.clone().handle(downstream.clone(), req));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = drain.started() => {
                // Idle keep-alive connections close now; busy ones after their response.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            debug!(client.addr = %self.peer, error = %e, "client connection ended with an error");
        }
        drop(self.open);
    }
}

impl Builders {
    fn new(limits: Limits, listener: &Listener) -> Self {
        let make = || {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(true);
            // Streams past the limit are refused with RST_STREAM(REFUSED_STREAM), which clients
            // retry safely; rapid resets and CONTINUATION floods are bounded by h2 itself
            // (GOAWAY after 20 pending resets, header blocks capped at the header size limit).
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(listener.http2_max_concurrent_streams)
                .max_header_list_size(MAX_HEADER_BYTES as u32)
                .keep_alive_interval(Duration::from_secs(30));
            builder
        };
        Self {
            auto: make(),
            http1: make().http1_only(),
            http2: make().http2_only(),
        }
    }
}

fn client_ip_header(peer: SocketAddr) -> HeaderValue {
    // An IP address always formats to a valid header value.
    HeaderValue::from_str(&peer.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Binds a TCP listener with `SO_REUSEADDR` and a deep accept backlog.
pub fn bind_tcp(address: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}
