//! HTTP/2 on both sides: h2c clients, HTTP/2 upstreams, trailers.

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use sluice_tests::{client, Backend, Proxy};

fn config(upstream_protocol: &str, backend: &Backend) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    protocol: {upstream_protocol}\n    endpoints: [{}]\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        backend.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_to_http1_upstream() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config("http1", &backend));
    let h2 = client::h2c();
    for _ in 0..20 {
        let reply = client::send(
            &h2,
            Request::get(proxy.url("/x"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "app\n");
    }
    assert_eq!(backend.last_version(), Some(Version::HTTP_11));
    let seen = backend.last_headers().expect("request");
    assert_eq!(
        seen["host"],
        proxy.http.to_string(),
        "HTTP/2 authority became the Host header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_multiplexes_one_connection() {
    let backend = Backend::spawn("app").await;
    let proxy = std::sync::Arc::new(Proxy::start(&config("http2", &backend)));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            let h1 = client::http1();
            for _ in 0..50 {
                let reply = client::get(&h1, &proxy.url("/"), &[("host", "app.example.com")]).await;
                assert_eq!(reply.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    assert_eq!(backend.last_version(), Some(Version::HTTP_2));
    assert_eq!(backend.hits(), 200);
    assert_eq!(
        backend.connections(),
        1,
        "one multiplexed upstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_through_h2_end_to_end() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config("http2", &backend));
    let (status, body, trailers) =
        client::get_with_trailers(&client::h2c(), &proxy.url("/trailers")).await;
    assert_eq!(status, 200);
    assert_eq!(trailers.expect("trailers arrived")["grpc-status"], "0");
    assert_eq!(body, Bytes::from_static(b"payload"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_request_body_streams_to_an_http1_upstream() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config("http1", &backend));
    let body = vec![7u8; 512 * 1024];
    let reply = client::send(
        &client::h2c(),
        Request::post(proxy.url("/upload"))
            .body(Full::new(Bytes::from(body.clone())))
            .expect("request"),
    )
    .await;
    assert_eq!(
        reply.text(),
        format!(
            "{} {:016x}\n",
            body.len(),
            xxhash_rust::xxh3::xxh3_64(&body)
        )
    );
}
