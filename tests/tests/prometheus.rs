//! The `prometheus` metric source against a real Prometheus server scraping the proxy every
//! second: a bad canary is rolled back through PromQL. Prometheus is Debian's package, which
//! `.ci/run` installs; without it the test says "skipped" (see `servers`).

use sluice_tests::servers::{self, Prometheus};
use sluice_tests::{client, eventually, Behavior, Control, Load, Rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_through_promql() {
    let Some(binary) = servers::find("prometheus", "prometheus") else {
        return;
    };
    let rig = Rig::new(1).await;
    let prometheus = Prometheus::start(&binary, &format!("['{}']", rig.proxies[0].admin));
    let ready = format!("{}/-/ready", prometheus.url);
    eventually!(
        client::try_get(&ready)
            .await
            .is_some_and(|r| r.status == 200),
        "prometheus ready"
    );
    let up = format!("{}/api/v1/query?query=up", prometheus.url);
    eventually!(
        client::try_get(&up)
            .await
            .is_some_and(|r| r.text().contains("\"1\"]")),
        "prometheus scrapes the proxy"
    );
    let rollout = format!(
        "  - name: myapp\n    route: default\n    stable: stable\n    canary: canary\n    steps: [10, 50, 100]\n    interval: 3s\n    analysis:\n      min_requests: 5\n      max_error_rate: 0.05\n      max_p95: 1s\n      failure_limit: 2\n    metrics:\n      source: prometheus\n      prometheus: {{ url: \"{}\" }}\n",
        prometheus.url
    );
    rig.write_config(&rollout, "v2");
    eventually!(
        rig.proxies[0].config_json().await["rollouts"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "proxy reloaded"
    );
    let control = Control::start(rig.dir());
    rig.canary.set_behavior(Behavior::ErrorRate(0.2));
    let load = Load::start(&rig.proxies[0].url("/"), 4);
    control.command("myapp", "start").await;
    eventually!(
        control.phase("myapp").await == "rolled_back",
        "rolled back through PromQL"
    );
    let message = control.last_message("myapp").await;
    assert!(
        message.contains("> max_error_rate 5.00%") && message.contains("rolled back"),
        "{message}"
    );
    assert_eq!(control.checks("myapp", "fail").await, 2.0);
    eventually!(
        rig.proxies[0].weight("default", "canary").await == 0.0,
        "canary out"
    );
    load.stop().await;
}
