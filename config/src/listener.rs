//! Listeners (where the proxy accepts traffic) and the admin endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::check::Checker;
use crate::error::{FieldPath, Invalid};
use crate::raw::{RawListener, RawServerTls};

/// One listening socket of the proxy. Startup-only: changes need a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// Name (the `listener` label of `sluice_active_connections`).
    pub name: String,
    /// Where to listen; port 0 picks a free port.
    pub address: SocketAddr,
    /// Which HTTP versions to speak.
    pub protocol: ListenerProtocol,
    /// TLS termination, when configured.
    pub tls: Option<ServerTls>,
    /// Open client connections at most; one more is accepted and closed at once, unread.
    /// Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Streams one HTTP/2 client connection may have open at once; more are refused with
    /// `RST_STREAM(REFUSED_STREAM)`. Default [`DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS`].
    pub http2_max_concurrent_streams: u32,
}

/// Open client connections per listener when `max_connections` is not given.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Concurrent streams per HTTP/2 client connection when `http2_max_concurrent_streams` is not
/// given.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 1024;

/// The HTTP versions a listener accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and HTTP/2 (prior knowledge in cleartext, ALPN with TLS). The default.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// TLS termination settings (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerTls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

pub(crate) fn compile_listeners(
    check: &mut Checker<'_>,
    raw: &Option<Vec<RawListener>>,
) -> Vec<Listener> {
    let root = FieldPath::root();
    let Some(raw) = check.required(raw, &root, "listeners") else {
        return Vec::new();
    };
    if raw.is_empty() {
        check.report(root.key("listeners"), Invalid::Empty("listeners"));
    }
    let mut names = HashMap::new();
    let mut addresses: HashMap<String, FieldPath> = HashMap::new();
    let mut listeners = Vec::new();
    for (i, listener) in raw.iter().enumerate() {
        let path = root.key("listeners").index(i);
        let name = check.name(&listener.name, &path, "name");
        if let Some(name) = &name {
            check.unique(&mut names, name, path.key("name"), "listener name");
        }
        let address = check
            .required(&listener.address, &path, "address")
            .and_then(|a| check.bind_address(a, path.key("address")));
        if let Some(address) = &address {
            if address.port() != 0 {
                check.unique(
                    &mut addresses,
                    &address.to_string(),
                    path.key("address"),
                    "listener address",
                );
            }
        }
        let protocol = check.choice(
            &listener.protocol,
            path.key("protocol"),
            &["auto", "http1", "http2"],
        );
        let max_connections = check.count(
            &listener.max_connections,
            path.key("max_connections"),
            DEFAULT_MAX_CONNECTIONS as u64,
            1,
        );
        let max_streams = check.count(
            &listener.http2_max_concurrent_streams,
            path.key("http2_max_concurrent_streams"),
            u64::from(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS),
            1,
        );
        // `Err` when TLS is configured but invalid (already reported).
        let tls = match &listener.tls {
            None => Ok(None),
            Some(raw) => compile_server_tls(check, raw, &path.key("tls"), true)
                .map(Some)
                .ok_or(()),
        };
        if let (Some(name), Some(address), Some(protocol), Ok(tls), Some(max_conn), Some(streams)) = (
            name,
            address.and_then(|a| a.bind_addr()),
            protocol,
            tls,
            max_connections,
            max_streams,
        ) {
            listeners.push(Listener {
                name,
                address,
                protocol: match protocol {
                    "http1" => ListenerProtocol::Http1,
                    "http2" => ListenerProtocol::Http2,
                    _ => ListenerProtocol::Auto,
                },
                tls,
                max_connections: usize::try_from(max_conn).unwrap_or(usize::MAX),
                http2_max_concurrent_streams: u32::try_from(streams).unwrap_or(u32::MAX),
            });
        }
    }
    listeners
}

/// TLS settings; with `must_exist`, each file must be readable now (the proxy's listeners),
/// otherwise paths are only resolved (the control's, which the proxy validates but never
/// reads: its sidecars need not mount them).
pub(crate) fn compile_server_tls(
    check: &mut Checker<'_>,
    raw: &RawServerTls,
    path: &FieldPath,
    must_exist: bool,
) -> Option<ServerTls> {
    let file = |check: &mut Checker<'_>, text: &str, at: FieldPath| {
        if must_exist {
            check.file(text, at)
        } else {
            Some(check.resolve(text))
        }
    };
    let cert = check
        .required(&raw.cert, path, "cert")
        .and_then(|c| file(check, c, path.key("cert")));
    let key = check
        .required(&raw.key, path, "key")
        .and_then(|k| file(check, k, path.key("key")));
    let client_ca = raw
        .client_ca
        .as_ref()
        .map(|ca| file(check, ca, path.key("client_ca")));
    Some(ServerTls {
        cert: cert?,
        key: key?,
        client_ca: match client_ca {
            Some(ca) => Some(ca?),
            None => None,
        },
    })
}
