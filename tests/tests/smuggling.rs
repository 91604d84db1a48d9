//! What a hostile client or upstream gets: ambiguous response framing, duplicate, missing,
//! invalid or conflicting `Host`, and `Upgrade: h2c` smuggling. Raw sockets on whichever side
//! sends the bytes under test.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_tests::raw::{exchange, RawUpstream};
use sluice_tests::{client, Backend, Proxy};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// One listener, one route to `endpoint`; `route_extra` adds lines to the route.
fn config(endpoint: &str, route_extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{endpoint}]\n    outlier_detection: {{ consecutive_failures: 0 }}\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n{route_extra}"
    )
}

/// What a client gets through a proxy to an upstream that answers `response` (raw bytes) to
/// `request` (raw bytes).
async fn through_proxy_to(response: &'static [u8], request: &[u8]) -> String {
    let upstream = RawUpstream::spawn(response).await;
    let proxy = Proxy::start(&config(&upstream.endpoint(), ""));
    exchange(proxy.http, request, WAIT).await
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// The headers of an HTTP/1.1 answer, lower-cased.
fn head_of(answer: &str) -> String {
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_length_beside_chunked_is_dropped_and_the_whole_body_forwarded() {
    let upstream = RawUpstream::spawn(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start(&config(&upstream.endpoint(), ""));
    let answer = exchange(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    let head = head_of(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!head.contains("content-length"), "stale length: {answer}");
    assert!(head.contains("transfer-encoding: chunked"), "{answer}");
    let body = answer
        .split("\r\n\r\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("\r\n\r\n");
    assert_eq!(body, "5\r\nhello\r\n0\r\n\r\n", "the whole body, chunked");

    // Over HTTP/2 the client gets the whole body too (h2 refuses a length that lies).
    let reply = client::get(&client::h2c(), &proxy.url("/"), &[]).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.headers.contains_key("content-length"));
    assert_eq!(reply.text(), "hello");
    // The connection whose framing was ambiguous is never reused.
    assert_eq!(upstream.heads().len(), 2);
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_400_and_closed() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&backend.endpoint(), ""));
    for hosts in [
        "Host: a.example\r\nHost: b.example\r\n",
        "Host: a.example\r\nHost: a.example\r\n",
    ] {
        let request = format!("GET / HTTP/1.1\r\n{hosts}\r\n");
        let answer = exchange(proxy.http, request.as_bytes(), WAIT).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let head = head_of(&answer);
        assert!(head.contains("x-sluice-error: bad_request"), "{answer}");
        assert!(head.contains("connection: close"), "{answer}");
        assert!(answer.contains("more than one Host header"), "{answer}");
    }
    assert_eq!(backend.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_target_conflicting_with_host_is_400_and_an_agreeing_one_wins() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&backend.endpoint(), ""));
    let answer = exchange(
        proxy.http,
        b"GET http://internal.example/x HTTP/1.1\r\nHost: public.example\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("Host header differs from the authority of the request target"),
        "{answer}"
    );
    assert_eq!(backend.hits(), 0);

    // Same origin written differently (case, default port): forwarded with the target's
    // authority as Host, in origin form.
    let answer = exchange(
        proxy.http,
        b"GET http://Public.Example:80/x HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = backend.last_headers().expect("forwarded");
    assert_eq!(seen["host"], "Public.Example:80");
    assert_eq!(seen.get_all("host").iter().count(), 1);
}

/// One HTTP/2 request (prior knowledge) with `:authority` from `uri` plus `host`.
async fn h2_status(proxy: &Proxy, uri: &str, host: Option<&str>) -> u16 {
    let tcp = TcpStream::connect(proxy.http).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let mut req = Request::get(uri);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    let response = sender
        .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_conflicting_with_host_is_400() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&backend.endpoint(), ""));
    assert_eq!(
        h2_status(&proxy, "http://internal.example/x", Some("public.example")).await,
        400
    );
    assert_eq!(backend.hits(), 0);
    assert_eq!(
        h2_status(&proxy, "http://public.example/x", Some("PUBLIC.example:80")).await,
        200
    );
    assert_eq!(
        h2_status(&proxy, "http://public.example/x", None).await,
        200
    );
    assert_eq!(
        backend.last_headers().expect("forwarded")["host"],
        "public.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_host_is_400_and_http10_without_host_gets_the_endpoint() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&backend.endpoint(), ""));
    let cases: [(&[u8], &str); 5] = [
        (b"GET / HTTP/1.1\r\n\r\n", "missing Host header"),
        (
            b"GET http://example.com/ HTTP/1.1\r\n\r\n",
            "missing Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n",
            "invalid Host header",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x@evil\r\n\r\n",
            "invalid Host header",
        ),
        (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", "invalid Host header"),
    ];
    for (request, why) in cases {
        let answer = exchange(proxy.http, request, WAIT).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains(why),
            "{}: {answer}",
            String::from_utf8_lossy(request)
        );
        assert!(head_of(&answer).contains("connection: close"), "{answer}");
    }
    assert_eq!(backend.hits(), 0);
    assert_eq!(
        proxy
            .metric("sluice_requests_total", &[("route", ""), ("code", "400")])
            .await,
        5.0
    );

    let answer = exchange(proxy.http, b"GET / HTTP/1.0\r\n\r\n", WAIT).await;
    assert!(status_line(&answer).contains(" 200"), "{answer}");
    assert_eq!(
        backend.last_headers().expect("forwarded")["host"],
        backend.endpoint().as_str(),
        "an HTTP/1.0 request without Host gets the endpoint's address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_stripped_and_an_upstream_101_never_opens_a_tunnel() {
    // An upstream that switches to h2c whenever asked, or not asked.
    let upstream = RawUpstream::spawn(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start(&config(&upstream.endpoint(), ""));
    let mut tcp = TcpStream::connect(proxy.http).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    while !answer.ends_with(b"\n") || !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(WAIT, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        head_of(&answer).contains("x-sluice-error: unexpected_upgrade"),
        "{answer}"
    );
    // What would follow an h2c switch: the HTTP/2 preface and a request for a path no route
    // allows. It must never reach the upstream as tunnelled bytes.
    let _ = tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut [0u8; 1024])).await;
    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(!heads[0].contains("upgrade"), "{}", heads[0]);
    assert!(!heads[0].contains("http2-settings"), "{}", heads[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_upgrades_the_route_allows_pass() {
    let backend = Backend::spawn("app").await;
    // The backend's /ws always answers 101: with WebSocket not allowed, that answer is refused.
    let proxy = Proxy::start(&config(&backend.endpoint(), "    upgrades: []\n"));
    let answer = exchange(
        proxy.http,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let seen = backend
        .last_headers()
        .expect("forwarded as a plain request");
    assert!(!seen.contains_key("upgrade"), "{seen:?}");
    assert!(!seen.contains_key("connection"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_with_differing_lengths_is_a_502() {
    let answer = through_proxy_to(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(
        head_of(&answer).contains("x-sluice-error: reset"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upstream_chunk_cuts_the_response_visibly() {
    let answer = through_proxy_to(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nmore\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        head_of(&answer).contains("transfer-encoding: chunked"),
        "{answer}"
    );
    // The connection closed without the last chunk: the client knows the body is incomplete.
    assert!(!answer.ends_with("0\r\n\r\n"), "{answer:?}");
    assert!(!answer.contains("more"), "{answer:?}");
}
