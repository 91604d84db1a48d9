//! HTTP/1.1 on the wire: hop-by-hop headers, forwarding headers, request ids, Host, upgrades,
//! framing rules and limits. Raw sockets where the exact bytes matter.

use std::time::Duration;

use sluice_tests::{client, config, Backend, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `request` on a fresh connection and reads until the proxy closes it (or 10 s).
async fn exchange(proxy: &Proxy, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(proxy.http).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn proxy_with_backends() -> (Backend, Backend, Proxy) {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start_with(
        &config::split(&stable, &canary, "1", "0"),
        &[
            "--body-idle-timeout",
            "300ms",
            "--header-read-timeout",
            "500ms",
        ],
    );
    (stable, canary, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let reply = client::get(
        &client::http1(),
        &proxy.url("/"),
        &[
            ("host", "shop.example.com"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = stable.last_headers().expect("backend saw a request");
    for gone in [
        "connection",
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(!seen.contains_key(gone), "{gone} reached the upstream");
    }
    assert_eq!(seen["host"], "shop.example.com", "Host preserved");
    assert_eq!(seen["te"], "trailers");
    assert_eq!(seen["x-end-to-end"], "kept");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    let id = seen["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 36, "generated UUID: {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_x_forwarded_for_lines_are_joined_with_the_client_last() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let answer = exchange(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = stable.last_headers().expect("request");
    let all: Vec<&str> = seen
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(all, ["1.1.1.1, 2.2.2.2, 127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_request_id_is_kept() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    client::get(
        &client::http1(),
        &proxy.url("/"),
        &[("x-request-id", "trace-42")],
    )
    .await;
    assert_eq!(
        stable.last_headers().expect("request")["x-request-id"],
        "trace-42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through_both_ways() {
    let (_stable, _canary, proxy) = proxy_with_backends().await;
    let mut tcp = TcpStream::connect(proxy.http).await.expect("connect");
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("read response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"hello"[..], b"tunnelled bytes", &[0u8, 159, 146, 150]] {
        tcp.write_all(message).await.expect("write through tunnel");
        let mut echo = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echo))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(echo, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_is_400_and_the_connection_closes() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let answer = exchange(&proxy, b"GARBAGE NOT HTTP\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(stable.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_431() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let big = "a".repeat(100 * 1024);
    let answer = exchange(
        &proxy,
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(stable.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_framed_by_chunked_and_closed() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let answer = exchange(
        &proxy,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let want = format!("5 {:016x}\n", xxhash_rust::xxh3::xxh3_64(b"hello"));
    assert!(
        answer.ends_with(&want),
        "upstream got the chunked body: {answer}"
    );
    // `exchange` returned, so the proxy closed the connection after the response.
    let seen = stable.last_headers().expect("request");
    assert!(!seen.contains_key("transfer-encoding") || seen["transfer-encoding"] == "chunked");
    assert_ne!(
        seen.get("content-length").map(|v| v.as_bytes()),
        Some(&b"3"[..]),
        "stale length not forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_content_lengths_are_400() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let answer = exchange(
        &proxy,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(stable.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_non_final_transfer_coding_is_400_and_closed() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let answer = exchange(
        &proxy,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
    let answer = exchange(
        &proxy,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(stable.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_size_is_400_and_closed() {
    let (_stable, _canary, proxy) = proxy_with_backends().await;
    let answer = exchange(&proxy, b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nhello\r\n0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_body_is_408() {
    let (_stable, _canary, proxy) = proxy_with_backends().await;
    let answer = exchange(
        &proxy,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a bit",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-sluice-error: request_body_timeout"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_headers_close_the_connection() {
    let (stable, _canary, proxy) = proxy_with_backends().await;
    let started = std::time::Instant::now();
    let answer = exchange(&proxy, b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    let took = started.elapsed();
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(stable.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_does_not_disturb_other_clients() {
    let (_stable, _canary, proxy) = proxy_with_backends().await;
    let client = client::http1();
    for _ in 0..5 {
        exchange(&proxy, b"\x00\x01\x02 nonsense\r\n\r\n").await;
        assert_eq!(client::get(&client, &proxy.url("/"), &[]).await.status, 200);
    }
    assert!(proxy.process.logs_with_message("ready").len() == 1);
}
