//! gRPC through the proxy over h2c, with tonic's server and client: the control judges a
//! canary by its `grpc-status`, not only by HTTP status, and streams pass intact.

// Tests print what they measure (the gRPC rollback time) for the record.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use sluice_tests::grpc::echo::CountRequest;
use sluice_tests::grpc::{Channel, GrpcBackend, GrpcLoad};
use sluice_tests::rig::rollout;
use sluice_tests::{eventually, Control, Proxy};
use tonic::metadata::MetadataValue;
use tonic::Code;

const ANALYSIS: &str =
    "      min_requests: 10\n      max_error_rate: 0.05\n      max_p95: 1s\n      failure_limit: 2\n";

/// Stable and canary gRPC backends behind one proxy (an `auto` listener, `http2` upstreams)
/// and the directory of its config, for a control.
#[derive(Debug)]
struct GrpcRig {
    stable: GrpcBackend,
    canary: GrpcBackend,
    proxy: Proxy,
    dir: tempfile::TempDir,
}

impl GrpcRig {
    async fn new() -> Self {
        let stable = GrpcBackend::spawn("stable").await;
        let canary = GrpcBackend::spawn("canary").await;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("sluice.yaml"), config(&stable, &canary))
            .expect("write config");
        let proxy = Proxy::start_in(dir.path(), &[]);
        Self {
            stable,
            canary,
            proxy,
            dir,
        }
    }

    /// Adds `rollouts` (see [`rollout`]) scraping the proxy, waits until the proxy loaded
    /// them, and starts a control.
    async fn with_control(&self, rollouts: &str) -> Control {
        let text = format!(
            "{}control:\n  admin: 127.0.0.1:0\n  state: control-state.json\nrollouts:\n{}",
            config(&self.stable, &self.canary),
            rollouts.replace("{targets}", &format!("[{}]", self.proxy.admin))
        );
        std::fs::write(self.dir.path().join("sluice.yaml"), text).expect("write config");
        eventually!(
            self.proxy.config_json().await["rollouts"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "the proxy reloaded the rollout config"
        );
        Control::start(self.dir.path())
    }

    /// The gRPC responses the proxy counted for `backend` with `grpc_status`.
    async fn grpc_responses(&self, backend: &str, grpc_status: &str) -> f64 {
        self.proxy
            .metric(
                "sluice_grpc_responses_total",
                &[("backend", backend), ("grpc_status", grpc_status)],
            )
            .await
    }
}

/// Stable 100 / canary 0 (the rollout moves it), both `protocol: http2` (h2c prior knowledge).
fn config(stable: &GrpcBackend, canary: &GrpcBackend) -> String {
    format!(
        r#"listeners:
  - name: grpc
    address: 127.0.0.1:0
    protocol: auto
admin:
  address: 127.0.0.1:0
upstreams:
  stable:
    protocol: http2
    version: v1
    endpoints: [{stable}]
  canary:
    protocol: http2
    version: v2
    endpoints: [{canary}]
    outlier_detection: {{ consecutive_failures: 0 }}
routes:
  - name: default
    timeout: 5s
    backends:
      - {{ upstream: stable, weight: 100 }}
      - {{ upstream: canary, weight: 0 }}
weights_file: weights.yaml
"#,
        stable = stable.endpoint(),
        canary = canary.endpoint(),
    )
}

/// Waits up to `limit` for rollout `myapp` to reach `phase`; the time it took.
async fn wait_phase(control: &Control, phase: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = control.phase("myapp").await;
        if now == phase {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not {phase} within {limit:?}: {now}, {}",
            control.last_message("myapp").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_a_fifth_of_grpc_calls_with_http_200_is_rolled_back() {
    let rig = GrpcRig::new().await;
    rig.canary.fail_every(5);
    let control = rig
        .with_control(&rollout("[10, 50, 100]", "1s", ANALYSIS))
        .await;
    let load = GrpcLoad::start(rig.proxy.http, 4);
    eventually!(load.ok() > 0, "gRPC calls go through the proxy");
    let (code, answer) = control.command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    let took = wait_phase(&control, "rolled_back", Duration::from_secs(60)).await;
    let message = control.last_message("myapp").await;
    let fails = control.checks("myapp", "fail").await;
    println!(
        "gRPC rollback time: {took:?} from start to rolled_back (interval 1s, failure_limit 2, {fails} failed checks): {message}"
    );
    eventually!(
        rig.proxy.weight("default", "canary").await == 0.0,
        "the proxy takes the canary out"
    );
    let report = load.stop().await;

    // Every failure was a gRPC one: HTTP said 200 each time.
    assert_eq!(
        report.http_statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "{report:?}"
    );
    assert_eq!(
        report.http_statuses.values().sum::<u64>(),
        report.calls(),
        "every call got a response: {report:?}"
    );
    assert_eq!(
        report.count(Code::Ok) + report.count(Code::Unavailable),
        report.calls(),
        "only OK and UNAVAILABLE: {report:?}"
    );
    assert!(rig.canary.failed() > 0, "the canary failed calls");
    assert_eq!(
        report.count(Code::Unavailable),
        rig.canary.failed(),
        "each UNAVAILABLE is one the canary sent: {report:?}"
    );
    let requests = rig
        .proxy
        .metric("sluice_requests_total", &[("route", "default")])
        .await;
    let ok = rig
        .proxy
        .metric(
            "sluice_requests_total",
            &[("route", "default"), ("code", "200")],
        )
        .await;
    assert_eq!(requests, ok, "the proxy answered only HTTP 200");
    assert!(message.contains("max_error_rate"), "{message}");
    assert_eq!(fails, 2.0, "exactly failure_limit failing intervals");

    // The proxy counted the canary's failures by grpc-status, one for one.
    let failed = rig.canary.failed() as f64;
    eventually!(
        rig.grpc_responses("canary", "UNAVAILABLE").await == failed,
        "the proxy counted {failed} canary UNAVAILABLE responses, it has {}",
        rig.grpc_responses("canary", "UNAVAILABLE").await
    );
    assert!(rig.grpc_responses("canary", "OK").await > 0.0);
    assert_eq!(rig.grpc_responses("stable", "UNAVAILABLE").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_grpc_canary_succeeds() {
    let rig = GrpcRig::new().await;
    let control = rig
        .with_control(&rollout("[10, 50, 100]", "1s", ANALYSIS))
        .await;
    let load = GrpcLoad::start(rig.proxy.http, 4);
    eventually!(load.ok() > 0, "gRPC calls go through the proxy");
    let (code, answer) = control.command("myapp", "start").await;
    assert_eq!(code, 200, "{answer}");
    let took = wait_phase(&control, "succeeded", Duration::from_secs(60)).await;
    println!("healthy gRPC canary succeeded after {took:?}");
    eventually!(
        rig.proxy.weight("default", "canary").await == 100.0,
        "the proxy sends everything to the canary"
    );
    let report = load.stop().await;
    assert_eq!(report.count(Code::Ok), report.calls(), "{report:?}");
    assert_eq!(
        report.http_statuses.get(&200).copied(),
        Some(report.calls()),
        "{report:?}"
    );
    assert_eq!(control.checks("myapp", "fail").await, 0.0);
    assert_eq!(control.checks("myapp", "pass").await, 3.0);
    assert!(rig.canary.calls() > 0 && rig.stable.calls() > 0);
    assert!(rig.grpc_responses("canary", "OK").await > 0.0);
    assert_eq!(rig.grpc_responses("canary", "UNAVAILABLE").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_calls_pass_intact_with_their_metadata_and_trailers() {
    let rig = GrpcRig::new().await;
    let channel = Channel::h2c(rig.proxy.http);
    let mut client = channel.echo();
    const N: u32 = 200;
    const PADDING: u32 = 2000;

    let mut request = tonic::Request::new(CountRequest {
        count: N,
        padding: PADDING,
        end_with: 0,
    });
    request
        .metadata_mut()
        .insert("x-request-tag", MetadataValue::from_static("stream-1"));
    let response = client.count(request).await.expect("the stream starts");
    let headers = response.metadata().clone();
    assert_eq!(
        headers.get("x-backend").map(|v| v.as_bytes()),
        Some(&b"stable"[..])
    );
    assert_eq!(
        headers.get("x-request-tag").map(|v| v.as_bytes()),
        Some(&b"stream-1"[..]),
        "request metadata reached the server"
    );
    let mut stream = response.into_inner();
    let mut numbers = Vec::new();
    while let Some(reply) = stream.message().await.expect("every message, then OK") {
        assert_eq!(reply.backend, "stable");
        assert_eq!(reply.padding.len(), PADDING as usize);
        assert!(reply
            .padding
            .iter()
            .all(|b| *b == (reply.number % 251) as u8));
        numbers.push(reply.number);
    }
    assert_eq!(numbers, (1..=N).collect::<Vec<_>>(), "all, in order");
    let trailers = stream
        .trailers()
        .await
        .expect("the stream ended OK")
        .expect("trailers");
    assert_eq!(
        trailers.get("x-count").map(|v| v.as_bytes()),
        Some(&b"200"[..])
    );
    assert_eq!(
        trailers
            .get_bin("x-backend-bin")
            .and_then(|v| v.to_bytes().ok()),
        Some(bytes::Bytes::from_static(b"stable"))
    );

    // A stream that fails after its messages: the status arrives in the trailers.
    let response = client
        .count(CountRequest {
            count: 3,
            padding: 0,
            end_with: Code::Unavailable as u32,
        })
        .await
        .expect("the stream starts");
    let mut stream = response.into_inner();
    let mut got = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("the stream ended OK"),
            Err(status) => break status,
        }
    };
    assert_eq!((got, status.code()), (3, Code::Unavailable));
    assert_eq!(
        status.metadata().get("x-count").map(|v| v.as_bytes()),
        Some(&b"3"[..])
    );
    assert_eq!(rig.stable.streams(), 2);
    assert_eq!(channel.http_statuses().get(&200), Some(&2));

    // The proxy read grpc-status from the trailers after each body.
    eventually!(
        rig.grpc_responses("stable", "OK").await == 1.0,
        "the OK stream counted"
    );
    eventually!(
        rig.grpc_responses("stable", "UNAVAILABLE").await == 1.0,
        "the failed stream counted"
    );
}
