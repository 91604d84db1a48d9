//! TLS termination (with ALPN and mTLS) and TLS origination (with client certificates).

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use sluice_tests::tls::Pki;
use sluice_tests::{Backend, Proxy};
use tokio::net::TcpStream;

/// One request over a fresh TLS connection; returns (negotiated ALPN, status, body).
async fn tls_get(
    proxy: &Proxy,
    config: Arc<rustls::ClientConfig>,
) -> Result<(Option<Vec<u8>>, u16, String), String> {
    let tcp = TcpStream::connect(proxy.http)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("proxy.test").map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let req = Request::get("/")
        .header("host", "proxy.test")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = if alpn.as_deref() == Some(b"h2") {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = "https://proxy.test/"
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((alpn, status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_with_alpn_h2_and_http11() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    pki.issue("server", &["proxy.test"]);
    let backend = Backend::spawn("app").await;
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "listeners:\n  - name: https\n    address: 127.0.0.1:0\n    tls: {{ cert: server.pem, key: server.key }}\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{}]\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
            backend.endpoint()
        ),
    )
    .expect("write config");
    let proxy = Proxy::start_in(dir.path(), &[]);
    let (alpn, status, body) = tls_get(&proxy, pki.client_config(&["h2", "http/1.1"], None))
        .await
        .expect("h2 over TLS");
    assert_eq!(
        (alpn.as_deref(), status, body.as_str()),
        (Some(&b"h2"[..]), 200, "app\n")
    );
    let (alpn, status, _) = tls_get(&proxy, pki.client_config(&["http/1.1"], None))
        .await
        .expect("http/1.1 over TLS");
    assert_eq!((alpn.as_deref(), status), (Some(&b"http/1.1"[..]), 200));
    assert_eq!(
        backend.last_headers().expect("request")["x-forwarded-proto"],
        "https"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_listener_requires_a_client_certificate_from_its_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    pki.issue("server", &["proxy.test"]);
    let client_id = pki.issue("client", &["client.test"]);
    let backend = Backend::spawn("app").await;
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "listeners:\n  - name: mtls\n    address: 127.0.0.1:0\n    tls: {{ cert: server.pem, key: server.key, client_ca: ca.pem }}\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{}]\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
            backend.endpoint()
        ),
    )
    .expect("write config");
    let proxy = Proxy::start_in(dir.path(), &[]);
    let anonymous = tls_get(&proxy, pki.client_config(&["http/1.1"], None)).await;
    assert!(
        anonymous.is_err(),
        "no client certificate must be refused: {anonymous:?}"
    );
    assert_eq!(backend.hits(), 0);
    let (_, status, _) = tls_get(&proxy, pki.client_config(&["http/1.1"], Some(&client_id)))
        .await
        .expect("mTLS request");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originates_mtls_to_an_upstream_over_h2_and_http1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let upstream_id = pki.issue("upstream", &["app.svc.local"]);
    pki.issue("proxy-client", &["proxy.svc.local"]);
    for (protocol, alpn) in [("http2", "h2"), ("http1", "http/1.1")] {
        let backend =
            Backend::spawn_with_tls("app", Some(pki.server_config(&upstream_id, &[alpn], true)))
                .await;
        std::fs::write(
            dir.path().join("sluice.yaml"),
            format!(
                "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    protocol: {protocol}\n    endpoints: [{}]\n    tls: {{ ca: ca.pem, server_name: app.svc.local, cert: proxy-client.pem, key: proxy-client.key }}\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
                backend.endpoint()
            ),
        )
        .expect("write config");
        let proxy = Proxy::start_in(dir.path(), &[]);
        let reply =
            sluice_tests::client::get(&sluice_tests::client::http1(), &proxy.url("/"), &[]).await;
        assert_eq!(reply.status, 200, "{protocol}: {}", reply.text());
        assert_eq!(reply.text(), "app\n");
        let want = if protocol == "http2" {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(backend.last_version(), Some(want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_upstream_name_fails_the_handshake_with_502_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let upstream_id = pki.issue("upstream", &["other.svc.local"]);
    let backend = Backend::spawn_with_tls(
        "app",
        Some(pki.server_config(&upstream_id, &["http/1.1"], false)),
    )
    .await;
    std::fs::write(
        dir.path().join("sluice.yaml"),
        format!(
            "listeners:\n  - name: http\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{}]\n    tls: {{ ca: ca.pem, server_name: app.svc.local }}\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
            backend.endpoint()
        ),
    )
    .expect("write config");
    let proxy = Proxy::start_in(dir.path(), &[]);
    let reply =
        sluice_tests::client::get(&sluice_tests::client::http1(), &proxy.url("/"), &[]).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.headers["x-sluice-error"], "tls");
    assert_eq!(
        proxy
            .metric(
                "sluice_upstream_errors_total",
                &[("backend", "app"), ("kind", "tls")]
            )
            .await,
        1.0
    );
}
