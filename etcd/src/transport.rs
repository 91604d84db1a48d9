//! One HTTP/1.1 exchange with one etcd member: connect (TCP, then TLS when configured), send a
//! JSON `POST`, and hand back the response head with its body still streaming.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Error;

/// TLS towards the members: the client config (roots, optional client certificate) and the
/// name to verify (default: each endpoint's host).
#[derive(Clone, Debug)]
pub struct Tls {
    /// Roots and the client certificate.
    pub config: Arc<ClientConfig>,
    /// The name every member's certificate must carry; `None`: the endpoint's host.
    pub server_name: Option<ServerName<'static>>,
}

/// Sends `body` to `path` on `endpoint` (`host:port`) and returns the response with its body
/// unread. `timeout` bounds the connect, the handshakes and the response head.
pub(crate) async fn post(
    endpoint: &str,
    tls: Option<&Tls>,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response<Incoming>, Error> {
    let attempt = async {
        let tcp = TcpStream::connect(endpoint)
            .await
            .map_err(|e| Error::Connect(format!("{endpoint}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let request = request(endpoint, path, token, body, tls.is_some())?;
        match tls {
            None => exchange(TokioIo::new(tcp), request, endpoint).await,
            Some(tls) => {
                let name = match &tls.server_name {
                    Some(name) => name.clone(),
                    None => host_name(endpoint)?,
                };
                let stream = TlsConnector::from(tls.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::Connect(format!("{endpoint}: TLS: {e}")))?;
                exchange(TokioIo::new(stream), request, endpoint).await
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| Error::Connect(format!("{endpoint}: no answer within {timeout:?}")))?
}

/// Reads a whole (small) response body, within `timeout`.
pub(crate) async fn read_body(
    response: Response<Incoming>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), Error> {
    let status = response.status();
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| Error::Connect(format!("response body not read within {timeout:?}")))?
        .map_err(|e| Error::Connect(format!("reading the response: {e}")))?
        .to_bytes();
    Ok((status, body))
}

fn request(
    endpoint: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    tls: bool,
) -> Result<Request<Full<Bytes>>, Error> {
    let scheme = if tls { "https" } else { "http" };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("{scheme}://{endpoint}{path}"))
        .header(header::HOST, endpoint)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, token);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Connect(format!("{endpoint}: cannot build the request: {e}")))
}

async fn exchange<I>(
    io: I,
    request: Request<Full<Bytes>>,
    endpoint: &str,
) -> Result<Response<Incoming>, Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Error::Connect(format!("{endpoint}: {e}")))?;
    // The connection lives as long as the response body is read (a watch: for good).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| Error::Connect(format!("{endpoint}: {e}")))
}

fn host_name(endpoint: &str) -> Result<ServerName<'static>, Error> {
    let host = endpoint
        .rsplit_once(':')
        .map_or(endpoint, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| Error::Connect(format!("{endpoint}: {host} is not a valid TLS server name")))
}
