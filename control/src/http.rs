//! A small HTTP/1.1 client for scraping proxies, querying Prometheus and talking to the
//! control's admin API.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connection refused, reset, or similar.
    #[error("{0}")]
    Transport(String),
    /// The URL is not valid.
    #[error("invalid URL {0:?}")]
    Url(String),
}

impl Default for HttpClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl HttpClient {
    /// `GET url`, the whole body.
    pub async fn get(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        self.send(Method::GET, url, timeout).await
    }

    /// `POST url` with an empty body.
    pub async fn post(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        self.send(Method::POST, url, timeout).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let req = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(Bytes::new()))
            .map_err(|_| HttpError::Url(url.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(req)
                .await
                .map_err(|e| HttpError::Transport(describe(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| HttpError::Transport(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }
}

/// The innermost cause of a client error ("Connection refused (os error 111)").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
}
