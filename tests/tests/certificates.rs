//! Listener certificates rotate live: a rename over the files, a ConfigMap `..data` swap and
//! SIGHUP install the new certificate for new handshakes while established connections keep
//! theirs; a bad or mismatched pair keeps the one in force with a clear error; the expiry is a
//! metric.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sluice_tests::tls::{Identity, Pki};
use sluice_tests::{eventually, Backend, Proxy};
use tokio::net::TcpStream;

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

fn config(backend: &Backend, cert: &str, key: &str) -> String {
    format!(
        "listeners:\n  - name: https\n    address: 127.0.0.1:0\n    protocol: http1\n    tls: {{ cert: {cert}, key: {key} }}\nadmin:\n  address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [{}]\nroutes:\n  - name: r\n    backends: [{{ upstream: app, weight: 1 }}]\n",
        backend.endpoint()
    )
}

fn leaf(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .expect("read cert")
        .next()
        .expect("one cert")
        .expect("valid cert")
        .as_ref()
        .to_vec()
}

/// A new TLS connection: the certificate the proxy presented, and a sender on it.
async fn connect(proxy: &Proxy, client: Arc<rustls::ClientConfig>) -> (Vec<u8>, Sender) {
    let tcp = TcpStream::connect(proxy.http).await.expect("connect");
    let name = ServerName::try_from("proxy.test").expect("name");
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a certificate")
        .as_ref()
        .to_vec();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    (presented, sender)
}

async fn get(sender: &mut Sender) -> u16 {
    let req = Request::get("/")
        .header("host", "proxy.test")
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(req).await.expect("response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

async fn presented(proxy: &Proxy, client: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    connect(proxy, client.clone()).await.0
}

/// Replaces `to` with `from`'s contents by an atomic rename.
fn rename_over(from: &Path, to: &Path) {
    let temp = to.with_extension("tmp");
    std::fs::copy(from, &temp).expect("copy");
    std::fs::rename(&temp, to).expect("rename");
}

fn install(identity: &Identity, dir: &Path) {
    rename_over(&identity.key, &dir.join("live.key"));
    rename_over(&identity.cert, &dir.join("live.pem"));
}

/// 2100-01-01T00:00:00Z.
const EXPIRY_2100: f64 = 4_102_444_800.0;
/// 2200-01-01T00:00:00Z.
const EXPIRY_2200: f64 = 7_258_118_400.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_certificate_serves_new_handshakes_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let first = pki.issue_until("first", &["proxy.test"], (2100, 1, 1));
    let second = pki.issue_until("second", &["proxy.test"], (2200, 1, 1));
    let stranger = pki.issue("stranger", &["proxy.test"]);
    install(&first, dir.path());
    let backend = Backend::spawn("app").await;
    std::fs::write(
        dir.path().join("sluice.yaml"),
        config(&backend, "live.pem", "live.key"),
    )
    .expect("write config");
    let proxy = Proxy::start_in(dir.path(), &[]);
    let client = pki.client_config(&["http/1.1"], None);
    let expiry = || {
        proxy.metric(
            "sluice_tls_certificate_expiry_seconds",
            &[("listener", "https")],
        )
    };
    assert_eq!(expiry().await, EXPIRY_2100);

    let (before, mut established) = connect(&proxy, client.clone()).await;
    assert_eq!(before, leaf(&first.cert));
    assert_eq!(get(&mut established).await, 200);

    install(&second, dir.path());
    eventually!(
        presented(&proxy, &client).await == leaf(&second.cert),
        "new handshakes get the new certificate"
    );
    assert_eq!(expiry().await, EXPIRY_2200);
    assert_eq!(
        get(&mut established).await,
        200,
        "the established connection is untouched"
    );

    // Garbage, then a key that is not the certificate's: refused, the second stays.
    let errors = || proxy.metric("sluice_config_reloads_total", &[("result", "error")]);
    let errors_before = errors().await;
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").expect("write");
    rename_over(&dir.path().join("junk.pem"), &dir.path().join("live.pem"));
    eventually!(
        errors().await > errors_before,
        "the bad certificate is refused"
    );
    rename_over(&second.cert, &dir.path().join("live.pem"));
    let errors_before = errors().await;
    rename_over(&stranger.key, &dir.path().join("live.key"));
    eventually!(
        errors().await > errors_before,
        "the mismatched key is refused"
    );
    let refused = proxy.process.logs_with_message(
        "listener certificate rejected; the previous certificate stays in force",
    );
    let reasons: Vec<String> = refused
        .iter()
        .filter_map(|l| l["error"].as_str().map(str::to_string))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("is not the private key of the certificate in")),
        "{reasons:?}"
    );
    let last = proxy.config_json().await["last_reload"].clone();
    assert_eq!(last["what"], "certificate", "{last}");
    assert_eq!(last["result"], "error", "{last}");
    assert_eq!(presented(&proxy, &client).await, leaf(&second.cert));
    assert_eq!(expiry().await, EXPIRY_2200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_swap_and_sighup_reload_the_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(dir.path());
    let first = pki.issue("first", &["proxy.test"]);
    let second = pki.issue("second", &["proxy.test"]);
    // A Secret volume as kubelet lays it out: files are symlinks through `..data`.
    let tls = dir.path().join("tls");
    let version = |name: &str, identity: &Identity| {
        let at = tls.join(name);
        std::fs::create_dir_all(&at).expect("mkdir");
        std::fs::copy(&identity.cert, at.join("tls.crt")).expect("copy cert");
        std::fs::copy(&identity.key, at.join("tls.key")).expect("copy key");
    };
    version("..2024_01_01", &first);
    std::os::unix::fs::symlink("..2024_01_01", tls.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/tls.crt", tls.join("tls.crt")).expect("symlink");
    std::os::unix::fs::symlink("..data/tls.key", tls.join("tls.key")).expect("symlink");
    let backend = Backend::spawn("app").await;
    std::fs::write(
        dir.path().join("sluice.yaml"),
        config(&backend, "tls/tls.crt", "tls/tls.key"),
    )
    .expect("write config");
    let mut proxy = Proxy::start_in(dir.path(), &[]);
    let client = pki.client_config(&["http/1.1"], None);
    assert_eq!(presented(&proxy, &client).await, leaf(&first.cert));

    version("..2024_02_01", &second);
    std::os::unix::fs::symlink("..2024_02_01", tls.join("..data_tmp")).expect("symlink");
    std::fs::rename(tls.join("..data_tmp"), tls.join("..data")).expect("swap ..data");
    eventually!(
        presented(&proxy, &client).await == leaf(&second.cert),
        "the swapped certificate is served"
    );

    let reloaded = |proxy: &Proxy| {
        proxy
            .process
            .logs_with_message("listener certificate reloaded; new handshakes use it")
            .len()
    };
    let before = reloaded(&proxy);
    proxy.process.signal(libc::SIGHUP);
    eventually!(reloaded(&proxy) > before, "SIGHUP re-reads the certificate");
    assert_eq!(presented(&proxy, &client).await, leaf(&second.cert));
    assert!(proxy.process.is_running());
}
