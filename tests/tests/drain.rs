//! Graceful shutdown: SIGTERM turns `/ready` to 503, stops accepting, lets in-flight
//! requests (long streams included) finish, closes idle connections, and exits 0.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use sluice_tests::{client, config, eventually, Backend, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_three_second_stream_lets_it_finish_then_exits_0() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let mut proxy = Proxy::start(&config::split(&stable, &canary, "1", "0"));
    let len: usize = 3 * 1024 * 1024;
    let client = client::http1();
    let response = client
        .request(
            Request::get(proxy.url(&format!("/stream?bytes={len}&ms=3000")))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response headers");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The stream is under way.
    let first = body.frame().await.expect("a first frame").expect("frame");
    let mut received = first.into_data().map_or(0, |d| d.len());

    let signalled = Instant::now();
    proxy.process.signal(libc::SIGTERM);
    let admin = format!("http://{}/ready", proxy.admin);
    eventually!(
        client::get(&client::http1(), &admin, &[]).await.status == 503,
        "/ready turns 503 at once"
    );
    assert!(signalled.elapsed() < Duration::from_secs(1));
    // New connections are refused once the listener is closed.
    eventually!(
        tokio::net::TcpStream::connect(proxy.http).await.is_err(),
        "listener closed"
    );

    while let Some(frame) = body.frame().await {
        received += frame
            .expect("stream completes without error")
            .into_data()
            .map_or(0, |d| d.len());
    }
    assert_eq!(received, len, "the in-flight stream finished intact");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exited after draining");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "waited for the stream: {:?}",
        signalled.elapsed()
    );
    assert_eq!(
        proxy.process.logs_with_message("drained").len(),
        1,
        "{}",
        proxy.process.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_and_exit_is_prompt() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let mut proxy = Proxy::start(&config::split(&stable, &canary, "1", "0"));
    let mut idle = tokio::net::TcpStream::connect(proxy.http)
        .await
        .expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let signalled = Instant::now();
    proxy.process.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed by the proxy.
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection closed: {closed:?}"
    );
    let status = proxy.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success());
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "took {:?}",
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_wait() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let mut proxy = Proxy::start_with(
        &config::split(&stable, &canary, "1", "0"),
        &["--drain-timeout", "500ms"],
    );
    let client = client::http1();
    let response = client
        .request(
            Request::get(proxy.url("/stream?bytes=1048576&ms=20000"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response headers");
    let mut body = response.into_body();
    body.frame().await.expect("first frame").expect("frame");
    let signalled = Instant::now();
    proxy.process.signal(libc::SIGINT);
    let status = proxy.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success());
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(
        proxy
            .process
            .logs_with_message("drain timeout reached; closing the remaining connections")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_keeps_accepting_while_ready_is_503() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let mut proxy = Proxy::start_with(
        &config::split(&stable, &canary, "1", "0"),
        &["--shutdown-delay", "1500ms"],
    );
    proxy.process.signal(libc::SIGTERM);
    let admin = format!("http://{}/ready", proxy.admin);
    eventually!(
        client::get(&client::http1(), &admin, &[]).await.status == 503,
        "/ready 503"
    );
    // Still served on new connections during the delay.
    assert_eq!(
        client::get(&client::http1(), &proxy.url("/"), &[])
            .await
            .status,
        200
    );
    let status = proxy.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success());
}
