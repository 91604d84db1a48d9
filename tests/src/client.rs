//! HTTP clients for tests: pooled HTTP/1.1, h2c prior knowledge, and one-shot helpers.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled client (keep-alive), HTTP/1.1 or h2c.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An answer read to its end.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// A keep-alive HTTP/1.1 client.
pub fn http1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2c() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` and reads the whole answer. Panics on transport errors.
pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Reply {
    let uri = req.uri().clone();
    let response = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("request to {uri} failed: {e:?}"));
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GET `url` with `headers`.
pub async fn get(client: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        client,
        req.body(Full::new(Bytes::new())).expect("valid request"),
    )
    .await
}

/// GET `url`; `None` on a transport error (for probing servers that are still starting).
pub async fn try_get(url: &str) -> Option<Reply> {
    try_send(Request::get(url).body(Full::new(Bytes::new())).ok()?).await
}

/// POST `json` to `url`; `None` on a transport error.
pub async fn try_post_json(url: &str, json: &str) -> Option<Reply> {
    let req = Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .ok()?;
    try_send(req).await
}

/// Sends `req` on a fresh connection; `None` on a transport error.
async fn try_send(req: Request<Full<Bytes>>) -> Option<Reply> {
    let response = http1().request(req).await.ok()?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// GET `url` on a fresh connection and return the body as text.
pub async fn get_text(url: &str) -> String {
    get(&http1(), url, &[]).await.text()
}

/// The body of each of `n` GETs of `url` with `headers`, sent over `concurrency` keep-alive
/// connections; every answer must be a 200.
pub async fn bodies(
    url: &str,
    headers: &'static [(&'static str, &'static str)],
    n: usize,
    concurrency: usize,
) -> Vec<String> {
    let url = std::sync::Arc::new(url.to_string());
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let url = url.clone();
        let share = n / concurrency + usize::from(worker < n % concurrency);
        tasks.push(tokio::spawn(async move {
            let client = http1();
            let mut seen = Vec::with_capacity(share);
            for _ in 0..share {
                let reply = get(&client, &url, headers).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                seen.push(reply.text());
            }
            seen
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    all
}

/// GET `url` offering trailers (`te: trailers`) and read the answer to its end: the status,
/// the body and the trailers, if any. Panics on transport errors.
pub async fn get_with_trailers(
    client: &HttpClient,
    url: &str,
) -> (StatusCode, Bytes, Option<HeaderMap>) {
    let response = client
        .request(
            Request::get(url)
                .header("te", "trailers")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
    let status = response.status();
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    (status, collected.to_bytes(), trailers)
}
