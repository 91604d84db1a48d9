//! Limits with clear answers, each met by a raw client: connections per listener (closed at
//! once, unread), HTTP/2 streams per connection (`REFUSED_STREAM`), and an upstream's
//! connections and waiting requests (503 `overloaded`).

use std::time::Duration;

use sluice_tests::raw::{exchange, h2};
use sluice_tests::{client, eventually, Backend, Behavior, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(endpoint: &str, listener_extra: &str, upstream_extra: &str) -> String {
    format!(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\n{listener_extra}admin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{endpoint}]\n    outlier_detection: {{ consecutive_failures: 0 }}\n{upstream_extra}routes:\n  - name: r\n    timeout: 3s\n    backends: [{{ upstream: app, weight: 1 }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_listener_limit_are_closed_unread() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(&backend.endpoint(), "    max_connections: 2\n", ""));
    let first = TcpStream::connect(proxy.http).await.expect("connect");
    let second = TcpStream::connect(proxy.http).await.expect("connect");
    eventually!(
        proxy
            .metric("sluice_active_connections", &[("listener", "http")])
            .await
            == 2.0,
        "two connections open"
    );
    let answer = exchange(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(answer, "", "closed without an answer");
    assert_eq!(
        proxy
            .metric("sluice_connections_rejected_total", &[("listener", "http")])
            .await,
        1.0
    );
    assert_eq!(backend.hits(), 0);
    drop(first);
    eventually!(
        proxy
            .metric("sluice_active_connections", &[("listener", "http")])
            .await
            == 1.0,
        "a slot freed"
    );
    let answer = exchange(
        proxy.http,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_past_the_limit_are_refused() {
    let backend = Backend::spawn("app").await;
    backend.set_behavior(Behavior::Hang);
    let proxy = Proxy::start(&config(
        &backend.endpoint(),
        "    http2_max_concurrent_streams: 2\n",
        "",
    ));
    let mut conn = h2::Conn::open(proxy.http).await.expect("h2 connection");
    for stream in [1, 3, 5] {
        conn.send(&h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            stream,
            &h2::get("x", "/", &[]),
        ))
        .await
        .expect("send HEADERS");
    }
    let refused = conn
        .read_until(Duration::from_secs(10), |f| f.kind == h2::RST_STREAM)
        .await
        .expect("a stream is refused");
    assert_eq!(refused.stream, 5, "{refused:?}");
    assert_eq!(refused.error_code(), Some(h2::REFUSED_STREAM));
    eventually!(
        backend.hits() == 2,
        "the two allowed streams reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_past_its_connections_and_waiting_requests_is_503_overloaded() {
    let backend = Backend::spawn("app").await;
    backend.set_behavior(Behavior::Hang);
    // The waiting request goes by a route with a later deadline than the first one's, so the
    // slot the first frees at its 3 s timeout is handed over well before the waiter gives up.
    let later = "routes:\n  - name: later\n    match: { path_prefix: /later }\n    timeout: 6s\n    backends: [{ upstream: app, weight: 1 }]\n";
    let proxy = Proxy::start(
        &config(
            &backend.endpoint(),
            "",
            "    max_connections: 1\n    max_pending_requests: 1\n",
        )
        .replacen("routes:\n", later, 1),
    );
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let addr = proxy.http;
    // The only connection: the backend never answers.
    let holding =
        tokio::spawn(async move { exchange(addr, request, Duration::from_secs(10)).await });
    eventually!(
        backend.hits() == 1,
        "the first request holds the connection"
    );
    // The only waiting place.
    let waiting = tokio::spawn(async move {
        let request = b"GET /later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        exchange(addr, request, Duration::from_secs(15)).await
    });
    eventually!(
        proxy.config_json().await["upstreams"][0]["waiting_requests"] == 1,
        "the second request waits for a connection"
    );
    let answer = exchange(proxy.http, request, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("x-sluice-error: overloaded"), "{answer}");
    assert_eq!(
        proxy
            .metric("sluice_upstream_overloaded_total", &[("backend", "app")])
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric(
                "sluice_requests_total",
                &[("route", "r"), ("backend", "app"), ("code", "503")]
            )
            .await,
        1.0
    );
    // The waiting request gets the connection once the first one gives it up (its route's 3 s
    // timeout), and times out in turn at its own route's 6 s.
    let first = holding.await.expect("first");
    assert!(first.starts_with("HTTP/1.1 504"), "{first}");
    let second = waiting.await.expect("second");
    assert!(second.starts_with("HTTP/1.1 504"), "{second}");
    assert_eq!(
        backend.hits(),
        2,
        "the waiting request was sent once a slot freed"
    );
    backend.set_behavior(Behavior::Ok);
    let reply = client::get(&client::http1(), &proxy.url("/"), &[]).await;
    assert_eq!(reply.status, 200);
    eventually!(
        proxy.config_json().await["upstreams"][0]["open_connections"] == 1,
        "one connection open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_limit_of_one_is_shared_by_keep_alive_requests() {
    let backend = Backend::spawn("app").await;
    let proxy = Proxy::start(&config(
        &backend.endpoint(),
        "",
        "    max_connections: 1\n    max_pending_requests: 64\n",
    ));
    let client = client::http1();
    let requests = (0..32).map(|_| {
        let client = client.clone();
        let url = proxy.url("/");
        async move { client::get(&client, &url, &[]).await.status }
    });
    let statuses = futures_join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        backend.connections(),
        1,
        "every request took its turn on one connection"
    );
    let mut tcp = TcpStream::connect(proxy.admin).await.expect("admin");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut text = String::new();
    let _ = tcp.read_to_string(&mut text).await;
    assert!(
        text.contains("sluice_upstream_overloaded_total{backend=\"app\"} 0"),
        "{text}"
    );
}

async fn futures_join_all<
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
>(
    futures: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}
