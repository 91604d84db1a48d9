//! `soak`: a bounded hostile soak of the real `sluice-proxy` on loopback. For `--duration`
//! (default 10 minutes) it drives good traffic (HTTP/1.1 keep-alive, h2c, TLS handshakes)
//! next to request-smuggling payloads, slowloris connections, HTTP/2 rapid-reset and
//! CONTINUATION floods, and a reload every second (weights, config, listener certificate);
//! it reports the proxy's RSS, open file descriptors and failed good requests at the start
//! and at the end, and exits 1 unless no good request failed, nothing was smuggled, and memory
//! and descriptors stayed flat.
//!
//! `cargo run --release -p sluice-tests --bin soak -- [--duration 10m] [--report-every 30s]`

// A report for the terminal is this binary's purpose.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::ServerName;
use sluice_tests::raw::h2;
use sluice_tests::tls::Pki;
use sluice_tests::{client, Backend, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keep-alive HTTP/1.1 and h2c clients sending good requests in a loop.
const GOOD_WORKERS: usize = 6;
/// Connections that trickle a header byte at a time and never finish.
const SLOWLORIS: usize = 150;
/// How long a good request may take before it counts as failed.
const GOOD_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS may end this much above its start value, fds this many above theirs.
const RSS_SLACK: f64 = 1.25;
const FD_SLACK: i64 = 64;

/// Requests a client could use to desynchronise the proxy and its upstream; every one ends in
/// `/smuggled`, which the route sends to a trap upstream. The real upstreams must never see it.
const SMUGGLING: &[&[u8]] = &[
    // CL.TE and TE.CL.
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
    // Obfuscated transfer codings.
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    // Lengths.
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;x=\"\r\nGET /smuggled\"\r\nA\r\n0\r\n\r\n",
    // Host.
    b"GET /smuggled HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    b"GET http://internal.example/smuggled HTTP/1.1\r\nHost: public.example\r\n\r\n",
    b"GET /smuggled HTTP/1.1\r\nHost: x@evil\r\n\r\n",
    b"GET /smuggled HTTP/1.1\r\n\r\n",
    // h2c, and a preface that would follow the switch.
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    // Line endings and folding.
    b"GET / HTTP/1.1\nHost: x\n\nGET /smuggled HTTP/1.1\nHost: x\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\rHost: x\r\n\r\n",
];

#[derive(Debug, Default)]
struct Counters {
    good_ok: AtomicU64,
    good_failed: AtomicU64,
    smuggling_sent: AtomicU64,
    slowloris_closed: AtomicU64,
    rapid_reset_goaway: AtomicU64,
    continuation_closed: AtomicU64,
    reloads: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: i64,
    good_ok: u64,
    good_failed: u64,
}

fn main() -> ExitCode {
    let mut duration = Duration::from_secs(600);
    let mut report_every = Duration::from_secs(30);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        let parsed = sluice_config::parse_duration(&value);
        match (arg.as_str(), parsed) {
            ("--duration", Ok(d)) => duration = d,
            ("--report-every", Ok(d)) => report_every = d,
            _ => {
                eprintln!("usage: soak [--duration 10m] [--report-every 30s]");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if runtime.block_on(soak(duration, report_every)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn config(stable: &Backend, canary: &Backend, trap: &Backend, timeout: u32) -> String {
    format!(
        "listeners:
  - name: http
    address: 127.0.0.1:0
    max_connections: 2000
  - name: https
    address: 127.0.0.1:0
    protocol: http1
    tls: {{ cert: live.pem, key: live.key }}
admin:
  address: 127.0.0.1:0
upstreams:
  stable: {{ endpoints: [{stable}] }}
  canary: {{ endpoints: [{canary}] }}
  trap: {{ endpoints: [{trap}] }}
routes:
  - name: trap
    match: {{ path_prefix: /smuggled }}
    backends: [{{ upstream: trap, weight: 1 }}]
  - name: default
    timeout: {timeout}s
    backends:
      - {{ upstream: stable, weight: 90 }}
      - {{ upstream: canary, weight: 10 }}
weights_file: weights.yaml
",
        stable = stable.endpoint(),
        canary = canary.endpoint(),
        trap = trap.endpoint(),
    )
}

async fn soak(duration: Duration, report_every: Duration) -> bool {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a temp dir: {e}");
            return false;
        }
    };
    let stable = Backend::spawn("stable").await;
    let canary = Backend::spawn("canary").await;
    let trap = Backend::spawn("trap").await;
    let pki = Pki::new(dir.path());
    let identities = [
        pki.issue("cert-a", &["proxy.test"]),
        pki.issue("cert-b", &["proxy.test"]),
    ];
    install(&identities[0].key, &identities[0].cert, dir.path());
    let write = |name: &str, text: &str| {
        let temp = dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&temp, text)
            .and_then(|()| std::fs::rename(&temp, dir.path().join(name)))
            .unwrap_or_else(|e| eprintln!("cannot write {name}: {e}"));
    };
    write("sluice.yaml", &config(&stable, &canary, &trap, 5));
    write(
        "weights.yaml",
        "routes: { default: { stable: 90, canary: 10 } }\n",
    );
    let proxy = Proxy::start_in(dir.path(), &["--header-read-timeout", "5s"]);
    let https = https_address(&proxy);
    println!(
        "soak: proxy pid {} on {} (https {https}), admin {}, for {duration:?}",
        proxy.process.pid(),
        proxy.http,
        proxy.admin
    );

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..GOOD_WORKERS {
        let (counters, stop, url) = (counters.clone(), stop.clone(), proxy.url("/good"));
        let h2 = worker % 2 == 1;
        tasks.push(tokio::spawn(good_traffic(url, h2, counters, stop)));
    }
    tasks.push(tokio::spawn(tls_probes(
        https,
        pki.client_config(&["http/1.1"], None),
        counters.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(smuggling(
        proxy.http,
        counters.clone(),
        stop.clone(),
    )));
    for _ in 0..SLOWLORIS {
        tasks.push(tokio::spawn(slowloris(
            proxy.http,
            counters.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(rapid_reset(
        proxy.http,
        counters.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(continuation_flood(
        proxy.http,
        counters.clone(),
        stop.clone(),
    )));

    // Reloads every second: weights, then the config every 5th, a certificate every 10th.
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_report = started + Duration::from_secs(30).min(duration / 4);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut second = 0u64;
    let pid = proxy.process.pid();
    while started.elapsed() < duration {
        tick.tick().await;
        second += 1;
        let canary_weight = if second.is_multiple_of(2) { 10 } else { 50 };
        write(
            "weights.yaml",
            &format!(
                "routes: {{ default: {{ stable: {}, canary: {canary_weight} }} }}\n",
                100 - canary_weight
            ),
        );
        if second.is_multiple_of(5) {
            let timeout = 5 + (second / 5 % 2) as u32;
            write("sluice.yaml", &config(&stable, &canary, &trap, timeout));
        }
        if second.is_multiple_of(10) {
            let identity = &identities[(second / 10 % 2) as usize];
            install(&identity.key, &identity.cert, dir.path());
        }
        counters.reloads.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= next_report {
            let sample = sample(pid, started, &counters);
            print_sample(&sample, &counters, &proxy).await;
            samples.push(sample);
            next_report += report_every;
        }
    }
    let end = sample(pid, started, &counters);
    print_sample(&end, &counters, &proxy).await;
    samples.push(end);
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    // Quiet: the attackers are gone; what is left is the proxy's own footprint.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = sample(pid, started, &counters);

    let start = samples[0];
    let smuggled = stable.hits_on("/smuggled") + canary.hits_on("/smuggled");
    let rejected_reloads = proxy
        .metric("sluice_config_reloads_total", &[("result", "error")])
        .await;
    let applied_reloads = proxy
        .metric("sluice_config_reloads_total", &[("result", "ok")])
        .await;
    println!("--- soak summary ({duration:?})");
    println!(
        "start (t={:>4}s): RSS {:>7} KiB, fds {:>5}, good ok {:>8}, good failed {}",
        start.at.as_secs(),
        start.rss_kib,
        start.fds,
        start.good_ok,
        start.good_failed
    );
    println!(
        "end   (t={:>4}s): RSS {:>7} KiB, fds {:>5}, good ok {:>8}, good failed {}",
        end.at.as_secs(),
        end.rss_kib,
        end.fds,
        end.good_ok,
        end.good_failed
    );
    println!(
        "idle  (+10s)   : RSS {:>7} KiB, fds {:>5}",
        idle.rss_kib, idle.fds
    );
    println!(
        "smuggling payloads sent {}, seen by the real upstreams {smuggled}, by the trap route {}",
        counters.smuggling_sent.load(Ordering::Relaxed),
        trap.hits_on("/smuggled")
    );
    println!(
        "slowloris connections closed by the proxy {}, rapid-reset GOAWAYs {}, CONTINUATION floods cut {}",
        counters.slowloris_closed.load(Ordering::Relaxed),
        counters.rapid_reset_goaway.load(Ordering::Relaxed),
        counters.continuation_closed.load(Ordering::Relaxed)
    );
    println!(
        "reload writes {}, reloads applied {applied_reloads}, refused {rejected_reloads}",
        counters.reloads.load(Ordering::Relaxed)
    );
    let rss_flat = (end.rss_kib as f64) <= (start.rss_kib as f64) * RSS_SLACK;
    let fds_flat = end.fds <= start.fds + FD_SLACK && idle.fds <= start.fds;
    let ok =
        end.good_failed == 0 && smuggled == 0 && rss_flat && fds_flat && rejected_reloads == 0.0;
    println!(
        "verdict: {} (good failed {}, smuggled {smuggled}, RSS flat {rss_flat}, fds flat {fds_flat}, refused reloads {rejected_reloads})",
        if ok { "PASS" } else { "FAIL" },
        end.good_failed
    );
    ok
}

fn install(key: &Path, cert: &Path, dir: &Path) {
    for (from, to) in [(key, "live.key"), (cert, "live.pem")] {
        let temp = dir.join(format!(".{to}.tmp"));
        if let Err(e) =
            std::fs::copy(from, &temp).and_then(|_| std::fs::rename(&temp, dir.join(to)))
        {
            eprintln!("cannot install {to}: {e}");
        }
    }
}

fn https_address(proxy: &Proxy) -> std::net::SocketAddr {
    proxy
        .process
        .logs_with_message("listening")
        .iter()
        .find(|l| l["listener"] == "https")
        .map(sluice_tests::process::logged_address)
        .unwrap_or(proxy.http)
}

fn sample(pid: u32, started: Instant, counters: &Counters) -> Sample {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as i64)
        .unwrap_or(-1);
    Sample {
        at: started.elapsed(),
        rss_kib,
        fds,
        good_ok: counters.good_ok.load(Ordering::Relaxed),
        good_failed: counters.good_failed.load(Ordering::Relaxed),
    }
}

async fn print_sample(sample: &Sample, counters: &Counters, proxy: &Proxy) {
    let active = proxy.metric("sluice_active_connections", &[]).await;
    println!(
        "t={:>4}s RSS {:>7} KiB fds {:>5} open connections {:>5} good ok {:>8} failed {} smuggling sent {} slowloris closed {} goaways {} continuation cut {}",
        sample.at.as_secs(),
        sample.rss_kib,
        sample.fds,
        active,
        sample.good_ok,
        sample.good_failed,
        counters.smuggling_sent.load(Ordering::Relaxed),
        counters.slowloris_closed.load(Ordering::Relaxed),
        counters.rapid_reset_goaway.load(Ordering::Relaxed),
        counters.continuation_closed.load(Ordering::Relaxed),
    );
}

/// Good requests in a loop on one keep-alive client: a GET, then a POST with a body the
/// upstream echoes. Anything but the right answer in time is a failure.
async fn good_traffic(url: String, h2: bool, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let client = if h2 { client::h2c() } else { client::http1() };
    let echo_url = url.replace("/good", "/echo");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (req, want_body) = if n.is_multiple_of(2) {
            let body = format!("payload {n}");
            (
                Request::post(echo_url.as_str()).body(Full::new(Bytes::from(body.clone()))),
                Some(body),
            )
        } else {
            (
                Request::get(url.as_str()).body(Full::new(Bytes::new())),
                None,
            )
        };
        let Ok(req) = req else { continue };
        let answer = tokio::time::timeout(GOOD_TIMEOUT, async {
            let response = client.request(req).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await;
        let good = match (&answer, &want_body) {
            (Ok(Ok((status, body))), Some(want)) => status.is_success() && body == want.as_bytes(),
            (Ok(Ok((status, body))), None) => {
                status.is_success() && (body == "stable\n" || body == "canary\n")
            }
            _ => false,
        };
        if good {
            counters.good_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.good_failed.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "good request failed ({}): {answer:?}",
                if h2 { "h2c" } else { "http/1.1" }
            );
        }
    }
}

/// A fresh TLS handshake and request every 200 ms (the certificate rotates every 10 s).
async fn tls_probes(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let result = tokio::time::timeout(GOOD_TIMEOUT, async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let name = ServerName::try_from("proxy.test").map_err(|e| e.to_string())?;
            let mut tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"GET /good HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            Ok::<_, String>(out)
        })
        .await;
        match result {
            Ok(Ok(out)) if out.starts_with(b"HTTP/1.1 200") => {
                counters.good_ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                counters.good_failed.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "TLS probe failed: {:?}",
                    other.map(|r| r.map(|o| String::from_utf8_lossy(&o).into_owned()))
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every payload in turn on a fresh connection, read until the proxy closes it (or 2 s).
async fn smuggling(addr: std::net::SocketAddr, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let payload = SMUGGLING[i % SMUGGLING.len()];
        i += 1;
        if let Ok(mut tcp) = TcpStream::connect(addr).await {
            let _ = tcp.write_all(payload).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut sink)).await;
            counters.smuggling_sent.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection that sends a head one byte every second and never ends it; reconnects when
/// the proxy closes it (`--header-read-timeout`).
async fn slowloris(addr: std::net::SocketAddr, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut sent = 0usize;
        loop {
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if tcp.write_all(&[byte]).await.is_err() || stop.load(Ordering::Relaxed) {
                break;
            }
            sent += 1;
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        counters.slowloris_closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// HTTP/2 rapid reset (CVE-2023-44487): streams opened and cancelled in bursts until the proxy
/// sends GOAWAY; then again on a new connection.
async fn rapid_reset(addr: std::net::SocketAddr, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = h2::Conn::open(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let block = h2::get("x", "/good", &[]);
        let mut stream = 1u32;
        let mut burst = Vec::new();
        'connection: for _ in 0..50 {
            burst.clear();
            for _ in 0..100 {
                burst.extend(h2::frame(
                    h2::HEADERS,
                    h2::END_HEADERS | h2::END_STREAM,
                    stream,
                    &block,
                ));
                burst.extend(h2::frame(
                    h2::RST_STREAM,
                    0,
                    stream,
                    &h2::CANCEL.to_be_bytes(),
                ));
                stream += 2;
            }
            if conn.send(&burst).await.is_err() {
                break 'connection;
            }
            if let Some(goaway) = conn
                .read_until(Duration::from_millis(20), |f| f.kind == h2::GOAWAY)
                .await
            {
                let _ = goaway;
                counters.rapid_reset_goaway.fetch_add(1, Ordering::Relaxed);
                break 'connection;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// HTTP/2 CONTINUATION flood: a header block that never ends, 1 KiB per frame, until the
/// proxy closes the connection.
async fn continuation_flood(
    addr: std::net::SocketAddr,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let filler = "a".repeat(1000);
    let fragment = h2::block(&[("x-flood", filler.as_str())]);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = h2::Conn::open(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if conn
            .send(&h2::frame(
                h2::HEADERS,
                h2::END_STREAM,
                1,
                &h2::get("x", "/good", &[]),
            ))
            .await
            .is_err()
        {
            continue;
        }
        let mut frames = 0u64;
        while frames < 100_000 {
            if conn
                .send(&h2::frame(h2::CONTINUATION, 0, 1, &fragment))
                .await
                .is_err()
            {
                break;
            }
            frames += 1;
            if frames.is_multiple_of(64)
                && conn
                    .read_until(Duration::from_millis(5), |f| f.kind == h2::GOAWAY)
                    .await
                    .is_some()
            {
                break;
            }
        }
        counters.continuation_closed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
