//! Bodies stream through both ways, intact, without the proxy buffering them.
// Tests print what they measure (split error, reuse count, memory) for the record.
#![allow(clippy::print_stdout)]

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use sluice_tests::{client, config, Backend, Proxy};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mebibyte_request_body_arrives_intact() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "1", "0"));
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let want = format!(
        "{} {:016x}\n",
        body.len(),
        xxhash_rust::xxh3::xxh3_64(&body)
    );
    let req = Request::post(proxy.url("/upload"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let reply = client::send(&client::http1(), req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mebibyte_chunked_response_arrives_intact() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "1", "0"));
    let len = 10 * 1024 * 1024;
    let reply = client::get(
        &client::http1(),
        &proxy.url(&format!("/stream?bytes={len}")),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), len);
    assert_eq!(
        xxhash_rust::xxh3::xxh3_64(&reply.body),
        xxhash_rust::xxh3::xxh3_64(&pattern(len))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_body_of_unknown_length_is_streamed() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "1", "0"));
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
    >(2);
    let sent: Vec<u8> = pattern(3 * 1024 * 1024);
    let to_send = sent.clone();
    tokio::spawn(async move {
        for chunk in to_send.chunks(100_000) {
            if tx
                .send(Ok(hyper::body::Frame::data(Bytes::copy_from_slice(chunk))))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let body = sluice_tests::backend::channel_body(rx);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client
        .request(
            Request::post(proxy.url("/echo"))
                .body(body)
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let echoed = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "echoed body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_memory_does_not_grow_with_body_size() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let proxy = Proxy::start(&config::split(&stable, &canary, "1", "0"));
    let client = client::http1();
    // Warm up: connections, buffers, allocator arenas.
    for _ in 0..3 {
        let reply = client::get(&client, &proxy.url("/stream?bytes=4194304"), &[]).await;
        assert_eq!(reply.body.len(), 4 * 1024 * 1024);
    }
    let before = proxy.process.peak_rss_kib();
    let len: usize = 128 * 1024 * 1024;
    // Read the body frame by frame so the test itself does not hold 128 MiB.
    let response = client
        .request(
            Request::get(proxy.url(&format!("/stream?bytes={len}")))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("response");
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            received += data.len();
            hash.update(&data);
        }
    }
    let upload = pattern(64 * 1024 * 1024);
    let upload_len = upload.len();
    let reply = client::send(
        &client,
        Request::post(proxy.url("/upload"))
            .body(Full::new(Bytes::from(upload)))
            .expect("request"),
    )
    .await;
    let after = proxy.process.peak_rss_kib();
    let grown_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    println!("peak RSS before {before} KiB, after a 128 MiB download and a 64 MiB upload {after} KiB (+{grown_mib:.1} MiB)");
    assert_eq!(received, len);
    assert_eq!(hash.digest(), xxhash_rust::xxh3::xxh3_64(&pattern(len)));
    assert!(
        reply.text().starts_with(&format!("{upload_len} ")),
        "{}",
        reply.text()
    );
    assert!(grown_mib < 16.0, "peak RSS grew by {grown_mib:.1} MiB");
}
