//! Header modifiers: route then backend changes on the way in, backend then route changes on
//! the way out (the proxy's own error answers included), framing headers refused.

use std::process::Command;

use http::HeaderMap;
use sluice_tests::process::binary;
use sluice_tests::{client, Backend, Proxy};

/// Every value of `name`, in order.
fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Route `r` splits between `modded` (with its own modifiers) and `plain`; route `broken`
/// (`/broken`) forwards to an address nothing listens on.
fn config(modded: &Backend, plain: &Backend) -> String {
    format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  modded:
    endpoints: [{modded}]
  plain:
    endpoints: [{plain}]
  gone:
    endpoints: [127.0.0.1:{dead}]
routes:
  - name: broken
    match: {{ path_prefix: /broken }}
    response_headers: {{ set: {{ x-route: broken }}, add: {{ x-layer: route }} }}
    backends:
      - upstream: gone
        weight: 1
        response_headers: {{ add: {{ x-layer: backend }} }}
  - name: r
    request_headers:
      remove: [x-debug, x-tag]
      set: {{ x-env: prod }}
      add: {{ x-tag: route, x-keep: route }}
    response_headers:
      remove: [x-drop]
      set: {{ x-backend: proxy }}
      add: {{ x-layer: route }}
    backends:
      - upstream: modded
        weight: 50
        request_headers: {{ set: {{ x-env: canary }}, add: {{ x-tag: backend }} }}
        response_headers: {{ set: {{ x-drop: "yes" }}, add: {{ x-layer: backend }} }}
      - upstream: plain
        weight: 50
"#,
        modded = modded.endpoint(),
        plain = plain.endpoint(),
        dead = sluice_tests::free_port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_get_the_route_then_the_backend_changes_and_responses_the_reverse() {
    let modded = Backend::spawn("modded").await;
    let plain = Backend::spawn("plain").await;
    let proxy = Proxy::start(&config(&modded, &plain));
    let client = client::http1();
    let sent = [
        ("x-env", "dev"),
        ("x-debug", "1"),
        ("x-tag", "client"),
        ("x-keep", "client"),
    ];
    let mut answered = (0, 0);
    while answered.0 == 0 || answered.1 == 0 {
        let reply = client::get(&client, &proxy.url("/"), &sent).await;
        assert_eq!(reply.status, 200);
        let h = &reply.headers;
        // The upstream's `x-backend` is replaced by the route's `set`.
        assert_eq!(values(h, "x-backend"), ["proxy"]);
        match reply.text().as_str() {
            "modded\n" => {
                answered.0 += 1;
                let seen = modded.last_headers().expect("request seen");
                // remove, then set, then add; the route's changes, then the backend's.
                assert_eq!(values(&seen, "x-env"), ["canary"], "backend set last");
                assert_eq!(values(&seen, "x-tag"), ["route", "backend"]);
                assert_eq!(values(&seen, "x-keep"), ["client", "route"]);
                assert!(values(&seen, "x-debug").is_empty());
                // The backend's changes first, then the route's: the route removes what the
                // backend set, and appends after it.
                assert_eq!(values(h, "x-layer"), ["backend", "route"]);
                assert!(values(h, "x-drop").is_empty());
            }
            "plain\n" => {
                answered.1 += 1;
                let seen = plain.last_headers().expect("request seen");
                assert_eq!(values(&seen, "x-env"), ["prod"], "route set replaces");
                assert_eq!(values(&seen, "x-tag"), ["route"], "removed, then added");
                assert_eq!(values(&seen, "x-keep"), ["client", "route"], "add appends");
                assert!(values(&seen, "x-debug").is_empty(), "removed");
                assert_eq!(values(h, "x-layer"), ["route"]);
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_error_answers_get_the_response_changes_too() {
    let modded = Backend::spawn("modded").await;
    let plain = Backend::spawn("plain").await;
    let proxy = Proxy::start(&config(&modded, &plain));
    let reply = client::get(&client::http1(), &proxy.url("/broken"), &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.headers["x-sluice-error"], "connect");
    assert_eq!(values(&reply.headers, "x-route"), ["broken"]);
    assert_eq!(values(&reply.headers, "x-layer"), ["backend", "route"]);
}

#[test]
fn a_framing_header_is_refused_by_check_with_the_field_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("sluice.yaml"),
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nupstreams:\n  app:\n    endpoints: [127.0.0.1:9]\nroutes:\n  - name: r\n    request_headers: { set: { content-length: \"0\" } }\n    backends: [{ upstream: app, weight: 1 }]\n",
    )
    .expect("write");
    let out = Command::new(binary("sluice-proxy"))
        .args(["--check", "--config", "sluice.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run sluice-proxy --check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "sluice.yaml:9:47: routes[0].request_headers.set.content-length: header \"content-length\" cannot be modified: it frames the message or the connection, and sluice sets it itself (refused: connection, content-length, host, keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade); remove it\n\
         sluice.yaml: 1 problem(s); nothing was changed\n"
    );
    assert!(out.stdout.is_empty());
}
