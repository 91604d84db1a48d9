//! Proxy-generated errors: 404 no route, 502 connect failure, 504 timeout, 503 no healthy
//! endpoint; each counted under its route, backend and code.

use std::time::{Duration, Instant};

use sluice_tests::{client, Backend, Behavior, Proxy};

fn config(routes_and_upstreams: &str) -> String {
    format!("listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n{routes_and_upstreams}")
}

/// An address nothing listens on.
fn dead_address() -> String {
    format!("127.0.0.1:{}", sluice_tests::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_counted() {
    let backend = Backend::spawn("api").await;
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  api:\n    endpoints: [{}]\nroutes:\n  - name: api\n    match: {{ path_prefix: /api }}\n    backends: [{{ upstream: api, weight: 1 }}]\n",
        backend.endpoint()
    )));
    let reply = client::get(&client::http1(), &proxy.url("/other"), &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.headers["x-sluice-error"], "no_route");
    assert_eq!(reply.text(), "sluice: no route matches this request\n");
    assert_eq!(
        proxy
            .metric("sluice_requests_total", &[("route", ""), ("code", "404")])
            .await,
        1.0
    );
    assert_eq!(backend.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_within_the_connect_timeout() {
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  gone:\n    endpoints: [{}]\n    connect_timeout: 2s\nroutes:\n  - name: r\n    backends: [{{ upstream: gone, weight: 1 }}]\n",
        dead_address()
    )));
    let started = Instant::now();
    let reply = client::get(&client::http1(), &proxy.url("/"), &[]).await;
    assert_eq!(reply.status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(reply.headers["x-sluice-error"], "connect");
    assert_eq!(
        proxy
            .metric(
                "sluice_requests_total",
                &[("route", "r"), ("backend", "gone"), ("code", "502")]
            )
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric(
                "sluice_upstream_errors_total",
                &[("backend", "gone"), ("kind", "connect")]
            )
            .await,
        1.0
    );
}

/// A loopback address whose TCP handshake never completes: a listener that never accepts,
/// with its accept queue already full, so the kernel drops further SYNs.
fn blackhole() -> (socket2::Socket, Vec<std::net::TcpStream>, String) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("literal");
    socket.bind(&any.into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("inet");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (socket, fillers, addr.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_that_never_answers_the_handshake_is_502_at_the_connect_timeout() {
    let (_socket, _fillers, address) = blackhole();
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  far:\n    endpoints: [{address}]\n    connect_timeout: 300ms\nroutes:\n  - name: r\n    backends: [{{ upstream: far, weight: 1 }}]\n",
    )));
    let started = Instant::now();
    let reply = client::get(&client::http1(), &proxy.url("/"), &[]).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.text(), "sluice: upstream connect timed out\n");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_is_504_at_the_route_timeout() {
    let backend = Backend::spawn("slow").await;
    backend.set_behavior(Behavior::Hang);
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  slow:\n    endpoints: [{}]\nroutes:\n  - name: r\n    timeout: 500ms\n    backends: [{{ upstream: slow, weight: 1 }}]\n",
        backend.endpoint()
    )));
    let started = Instant::now();
    let reply = client::get(&client::http1(), &proxy.url("/"), &[]).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 504);
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(reply.headers["x-sluice-error"], "timeout");
    assert_eq!(
        proxy
            .metric(
                "sluice_requests_total",
                &[("route", "r"), ("backend", "slow"), ("code", "504")]
            )
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric(
                "sluice_upstream_errors_total",
                &[("backend", "slow"), ("kind", "timeout")]
            )
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_5xx_is_passed_through_and_counted() {
    let backend = Backend::spawn("bad").await;
    backend.set_behavior(Behavior::Status(503));
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  bad:\n    endpoints: [{}]\n    outlier_detection: {{ consecutive_failures: 0 }}\nroutes:\n  - name: r\n    backends: [{{ upstream: bad, weight: 1 }}]\n",
        backend.endpoint()
    )));
    let client = client::http1();
    for _ in 0..10 {
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        assert_eq!(reply.status, 503);
        assert!(
            !reply.headers.contains_key("x-sluice-error"),
            "upstream's own answer"
        );
    }
    assert_eq!(
        proxy
            .metric(
                "sluice_requests_total",
                &[("backend", "bad"), ("code", "503")]
            )
            .await,
        10.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejected_backend_fails_over_to_the_other_backend() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    canary.set_behavior(Behavior::Status(500));
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  stable:\n    endpoints: [{}]\n  canary:\n    endpoints: [{}]\n    outlier_detection: {{ consecutive_failures: 3, base_ejection_time: 30s }}\nroutes:\n  - name: r\n    backends:\n      - {{ upstream: stable, weight: 50 }}\n      - {{ upstream: canary, weight: 50 }}\n",
        stable.endpoint(),
        canary.endpoint()
    )));
    let client = client::http1();
    let mut canary_500s = 0;
    for _ in 0..200 {
        let reply = client::get(&client, &proxy.url("/"), &[]).await;
        if reply.status == 500 {
            canary_500s += 1;
        } else {
            assert_eq!(reply.status, 200);
        }
    }
    assert_eq!(canary_500s, 3, "ejected after 3 failures in a row");
    assert_eq!(canary.hits(), 3);
    assert_eq!(
        proxy
            .metric("sluice_endpoint_healthy", &[("backend", "canary")])
            .await,
        0.0
    );
    let failovers = proxy
        .metric(
            "sluice_backend_failovers_total",
            &[("route", "r"), ("backend", "canary")],
        )
        .await;
    assert!(
        failovers > 50.0,
        "canary's share went to stable and was counted: {failovers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_endpoint_anywhere_is_503() {
    let only = Backend::spawn("only").await;
    only.set_behavior(Behavior::Status(500));
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  only:\n    endpoints: [{}]\n    outlier_detection: {{ consecutive_failures: 2, base_ejection_time: 30s }}\nroutes:\n  - name: r\n    backends: [{{ upstream: only, weight: 1 }}]\n",
        only.endpoint()
    )));
    let client = client::http1();
    for _ in 0..2 {
        assert_eq!(client::get(&client, &proxy.url("/"), &[]).await.status, 500);
    }
    let reply = client::get(&client, &proxy.url("/"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers["x-sluice-error"], "no_healthy_endpoint");
    assert_eq!(
        proxy
            .metric(
                "sluice_requests_total",
                &[("backend", "only"), ("code", "503")]
            )
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_past_the_route_timeout_is_408_and_not_blamed_on_the_upstream() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  app:\n    endpoints: [{}]\n    outlier_detection: {{ consecutive_failures: 1 }}\nroutes:\n  - name: r\n    timeout: 400ms\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        backend.endpoint()
    )));
    // Trickle a body: a chunk every 100 ms (never idle long enough for the body timeout).
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >(1);
    tokio::spawn(async move {
        for _ in 0..30 {
            if tx
                .send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
                    b"x",
                ))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client
        .request(
            http::Request::post(proxy.url("/upload"))
                .body(sluice_tests::backend::channel_body(rx))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), 408);
    assert_eq!(
        proxy
            .metric(
                "sluice_upstream_errors_total",
                &[("backend", "app"), ("kind", "timeout")]
            )
            .await,
        0.0
    );
    assert_eq!(
        proxy
            .metric("sluice_endpoint_healthy", &[("backend", "app")])
            .await,
        1.0,
        "not ejected"
    );
    assert_eq!(
        client::get(&client::http1(), &proxy.url("/"), &[])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_with_405() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  app:\n    endpoints: [{}]\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        backend.endpoint()
    )));
    let mut tcp = tokio::net::TcpStream::connect(proxy.http)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.expect("read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(backend.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_weight_backend_still_takes_traffic_when_the_only_weighted_one_is_ejected() {
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    canary.set_behavior(Behavior::Status(500));
    // After `promote --full`: stable at 0, canary at 100. The canary breaks.
    let proxy = Proxy::start(&config(&format!(
        "upstreams:\n  stable:\n    endpoints: [{}]\n  canary:\n    endpoints: [{}]\n    outlier_detection: {{ consecutive_failures: 2, base_ejection_time: 30s }}\nroutes:\n  - name: r\n    backends:\n      - {{ upstream: stable, weight: 0 }}\n      - {{ upstream: canary, weight: 100 }}\n",
        stable.endpoint(),
        canary.endpoint()
    )));
    let client = client::http1();
    for _ in 0..2 {
        assert_eq!(client::get(&client, &proxy.url("/"), &[]).await.status, 500);
    }
    let reply = client::get(&client, &proxy.url("/"), &[]).await;
    assert_eq!(
        (reply.status.as_u16(), reply.text().as_str()),
        (200, "stable\n")
    );
}
