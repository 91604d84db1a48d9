//! Opening connections to an upstream endpoint: DNS when needed, TCP with a timeout and
//! `TCP_NODELAY`, then TLS when configured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sluice_config::{Address, Host};
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::io::Stream;
use crate::tls::server_name_of;

/// How to reach the endpoints of one upstream.
#[derive(Clone, Debug)]
pub struct Connector {
    timeout: Duration,
    tls: Option<TlsConnect>,
}

#[derive(Clone)]
struct TlsConnect {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnect")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Connector {
    /// A cleartext connector.
    pub fn plain(timeout: Duration) -> Self {
        Self { timeout, tls: None }
    }

    /// A TLS connector; `server_name` overrides the name taken from the endpoint address.
    pub fn tls(
        timeout: Duration,
        config: Arc<rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        Self {
            timeout,
            tls: Some(TlsConnect {
                connector: tokio_rustls::TlsConnector::from(config),
                server_name,
            }),
        }
    }

    /// Whether it originates TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects to `address` (TCP connect and TLS handshake together within the timeout).
    pub async fn connect(&self, address: &Address) -> Result<Stream, ProxyError> {
        match tokio::time::timeout(self.timeout, self.connect_inner(address)).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::ConnectTimeout),
        }
    }

    async fn connect_inner(&self, address: &Address) -> Result<Stream, ProxyError> {
        let tcp = match address.socket_addr() {
            Some(addr) => TcpStream::connect(addr).await,
            None => connect_by_name(address).await,
        }
        .map_err(ProxyError::Connect)?;
        // Requests and responses are small and latency-bound: never wait for Nagle.
        tcp.set_nodelay(true).map_err(ProxyError::Connect)?;
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = match &tls.server_name {
            Some(name) => name.clone(),
            None => server_name_of(address.host()).map_err(|name| {
                ProxyError::Tls(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("\"{name}\" is not a valid TLS server name"),
                ))
            })?,
        };
        let stream = tls
            .connector
            .connect(name, tcp)
            .await
            .map_err(ProxyError::Tls)?;
        Ok(Stream::ClientTls(Box::new(stream)))
    }
}

async fn connect_by_name(address: &Address) -> std::io::Result<TcpStream> {
    let Host::Name(name) = address.host() else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), address.port()))
        .await?
        .collect();
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{name}: no addresses"),
    );
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(last)
}
