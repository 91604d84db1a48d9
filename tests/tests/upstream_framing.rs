//! How the proxy reads HTTP/1.1 upstream responses to requests without a body (sluice's own
//! client): interim responses, bodies delimited by the close, trailers, a HEAD answer's
//! length, and bytes past a response's end, which keep its connection out of the pool.

use std::time::Duration;

use bytes::Bytes;
use sluice_tests::raw::{exchange, RawUpstream};
use sluice_tests::{client, eventually, Proxy};

const WAIT: Duration = Duration::from_secs(10);

/// Sends `n` GETs through a proxy to `upstream` on one keep-alive client connection; each must
/// answer 200 with `body`. Returns the upstream connections used.
async fn answers(upstream: &RawUpstream, n: usize, body: &str) -> u64 {
    let proxy = Proxy::start(&config(&upstream.endpoint()));
    let http1 = client::http1();
    for _ in 0..n {
        let reply = client::get(&http1, &proxy.url("/"), &[]).await;
        assert_eq!((reply.status.as_u16(), reply.text()), (200, body.into()));
        assert!(!reply.headers.contains_key("link"), "{:?}", reply.headers);
    }
    upstream.connections()
}

fn config(endpoint: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{endpoint}]\n    outlier_detection: {{ consecutive_failures: 0 }}\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_skipped_and_the_final_one_forwarded() {
    let upstream = RawUpstream::spawn(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!(
        answers(&upstream, 3, "ok").await,
        1,
        "the connection is reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_delimited_by_the_close_is_forwarded_whole_on_a_connection_of_its_own() {
    let upstream = RawUpstream::spawn_with(b"HTTP/1.1 200 OK\r\n\r\nuntil the close", 1).await;
    assert_eq!(answers(&upstream, 3, "until the close").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_response_keep_its_connection_out_of_the_pool() {
    let upstream = RawUpstream::spawn(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled",
    )
    .await;
    let connections = answers(&upstream, 3, "ok").await;
    assert_eq!(connections, 3, "never answered from leftover bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_answer_has_no_body_whatever_its_length_says() {
    let upstream =
        RawUpstream::spawn(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx-n: 1\r\n\r\n").await;
    let proxy = Proxy::start(&config(&upstream.endpoint()));
    let answer = exchange(
        proxy.http,
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert_eq!(answer.matches("content-length: 11").count(), 2, "{answer}");
    assert_eq!(upstream.connections(), 1, "the connection is reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_data_and_trailers_reach_an_h2_client() {
    let upstream = RawUpstream::spawn(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-check: 7\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start(&config(&upstream.endpoint()));
    let h2 = client::h2c();
    for _ in 0..2 {
        let (status, body, trailers) = client::get_with_trailers(&h2, &proxy.url("/")).await;
        assert_eq!(status, 200);
        assert_eq!(trailers.expect("trailers arrived")["x-check"], "7");
        assert_eq!(body, Bytes::from_static(b"abcdefg"));
    }
    assert_eq!(upstream.connections(), 1, "the connection is reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_mid_head_is_a_502() {
    let upstream = RawUpstream::spawn_with(b"HTTP/1.1 200 OK\r\ncontent-le", 1).await;
    let proxy = Proxy::start(&config(&upstream.endpoint()));
    let reply = client::get(&client::http1(), &proxy.url("/"), &[]).await;
    assert_eq!(reply.status.as_u16(), 502);
    assert_eq!(reply.headers["x-sluice-error"], "reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_copies_with_empty_bodies_end_cleanly() {
    // The mirror reads each copy's answer to its end and polls once more; a body that has
    // ended must say so again, not fail (which would count an upstream reset).
    let app = RawUpstream::spawn(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let shadow = RawUpstream::spawn(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let proxy = Proxy::start(&format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{}]\n  shadow:\n    endpoints: [{}]\nroutes:\n  - name: r\n    mirror: {{ upstream: shadow }}\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        app.endpoint(),
        shadow.endpoint()
    ));
    let http1 = client::http1();
    for _ in 0..5 {
        let reply = client::get(&http1, &proxy.url("/"), &[]).await;
        assert_eq!((reply.status.as_u16(), reply.text()), (200, "ok".into()));
    }
    eventually!(
        proxy
            .metric("sluice_mirror_requests_total", &[("route", "r")])
            .await
            == 5.0,
        "5 copies counted"
    );
    let errors = proxy.metric("sluice_upstream_errors_total", &[]).await;
    assert_eq!(errors, 0.0, "no upstream error counted");
    // Copies run concurrently with the next request: how many connections they share varies.
    assert_eq!(shadow.heads().len(), 5, "every copy reached the mirror");
}
