//! How the command line talks to a running control's admin API: plain HTTP or TLS (verifying
//! the control's certificate, presenting a client certificate for mTLS), with a bearer token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A client for one control's admin address.
#[derive(Clone)]
pub struct AdminClient {
    address: String,
    token: Option<String>,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, the TLS handshake, or the exchange failed.
    #[error("{0}")]
    Transport(String),
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("AdminClient")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl AdminClient {
    /// A client of the control at `address` (`HOST:PORT`), sending `token` when given, over
    /// TLS when `tls` gives the client config and the name to verify.
    pub fn new(
        address: &str,
        token: Option<String>,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    ) -> Self {
        Self {
            address: address.to_string(),
            token,
            tls,
        }
    }

    /// The address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `GET path`.
    pub async fn get(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), AdminError> {
        self.send(Method::GET, path, timeout).await
    }

    /// `POST path` with an empty body.
    pub async fn post(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), AdminError> {
        self.send(Method::POST, path, timeout).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), AdminError> {
        tokio::time::timeout(timeout, self.exchange(method, path))
            .await
            .map_err(|_| AdminError::Timeout(timeout))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
    ) -> Result<(StatusCode, Bytes), AdminError> {
        let transport = |e: &dyn std::fmt::Display| AdminError::Transport(e.to_string());
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.address)
            .body(Full::new(Bytes::new()))
            .map_err(|e| transport(&e))?;
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                AdminError::Transport("the token is not a valid header value".into())
            })?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        exchange(&self.address, self.tls.as_ref(), request).await
    }
}

/// Sends `request` (origin-form URI, `Host` set) on a new connection to `address`, over TLS
/// when `tls` is given, and reads the whole answer.
pub async fn exchange(
    address: &str,
    tls: Option<&(Arc<ClientConfig>, ServerName<'static>)>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), AdminError> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| AdminError::Transport(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => over(TokioIo::new(tcp), request).await,
        Some((config, name)) => {
            let tls = TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| AdminError::Transport(format!("TLS: {e}")))?;
            over(TokioIo::new(tls), request).await
        }
    }
}

async fn over<I>(io: I, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), AdminError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let transport = |e: &dyn std::fmt::Display| AdminError::Transport(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| transport(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transport(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| transport(&e))?
        .to_bytes();
    Ok((status, body))
}
