//! The proxy in fleet mode against a real etcd: the weights come from `<prefix>/weights`, each
//! write is applied live, a bad document or a deletion is refused, an etcd outage under load
//! fails no request, and a proxy restarted while etcd is down serves the cached weights.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use sluice_etcd::{Client, Op};
use sluice_tests::etcd::{self, Etcd};
use sluice_tests::{client, config, eventually, Backend, Load, Proxy};

const PREFIX: &str = "/sluice/fleet";
const KEY: &str = "/sluice/fleet/weights";

fn weights(stable: u32, canary: u32) -> String {
    format!("routes:\n  default: {{ stable: {stable}, canary: {canary} }}\n")
}

/// `config::split` at stable 100 / canary 0, with `store.etcd` on `etcd`.
fn fleet_config(stable: &Backend, canary: &Backend, etcd: &Etcd) -> String {
    format!(
        "{}{}",
        config::split(stable, canary, "100", "0"),
        config::store_etcd(&etcd.endpoints_yaml(), PREFIX)
    )
}

/// One etcd member with `document` at the weights key (the revision it was written at), its
/// client, and the stable and canary backends; `None` (the test skips, visibly) without etcd.
struct Setup {
    etcd: Etcd,
    client: Client,
    stable: Backend,
    canary: Backend,
    revision: i64,
}

impl Setup {
    async fn start(document: &str) -> Option<Self> {
        let binaries = etcd::find()?;
        let etcd = Etcd::start(&binaries, 1).await;
        let client = etcd.client();
        let stable = Backend::spawn("stable").await;
        let canary = Backend::spawn("canary").await;
        let revision = put(&client, document).await;
        Some(Self {
            etcd,
            client,
            stable,
            canary,
            revision,
        })
    }
}

async fn put(client: &Client, text: &str) -> i64 {
    client.put(KEY, text.as_bytes()).await.expect("etcd put")
}

/// `/config`'s `store`.
async fn store(proxy: &Proxy) -> Value {
    proxy.config_json().await["store"].clone()
}

async fn connected(proxy: &Proxy) -> bool {
    store(proxy).await["connected"] == true
        && proxy.metric("sluice_store_connected", &[]).await == 1.0
}

async fn revision(proxy: &Proxy) -> i64 {
    store(proxy).await["revision"].as_i64().unwrap_or(-1)
}

async fn reload_errors(proxy: &Proxy) -> f64 {
    proxy
        .metric("sluice_config_reloads_total", &[("result", "error")])
        .await
}

/// Whether 20 requests in a row are answered by `want`.
async fn all_answered_by(proxy: &Proxy, want: &str) -> bool {
    let probe = client::http1();
    for _ in 0..20 {
        if client::get(&probe, &proxy.url("/"), &[]).await.text() != format!("{want}\n") {
            return false;
        }
    }
    true
}

fn cache(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("weights.yaml")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_serves_etcds_weights_applies_each_write_and_caches_them() {
    let Some(Setup {
        etcd,
        client,
        stable,
        canary,
        revision: first,
    }) = Setup::start(&weights(0, 100)).await
    else {
        return;
    };

    // Read at start: the config says stable 100, etcd says canary 100.
    let proxy = Proxy::start(&fleet_config(&stable, &canary, &etcd));
    assert_eq!(proxy.weight("default", "canary").await, 100.0);
    let state = store(&proxy).await;
    assert_eq!(state["kind"], "etcd", "{state}");
    assert_eq!(state["key"], KEY, "{state}");
    assert_eq!(state["revision"], first, "{state}");
    assert!(all_answered_by(&proxy, "canary").await);
    assert_eq!(cache(proxy.dir()), weights(0, 100), "cached at start");
    eventually!(connected(&proxy).await, "the watch is established");

    // Each write applies live, and is cached.
    let second = put(&client, &weights(100, 0)).await;
    eventually!(
        revision(&proxy).await == second,
        "the proxy applied revision {second}"
    );
    assert_eq!(proxy.weight("default", "canary").await, 0.0);
    assert!(all_answered_by(&proxy, "stable").await);
    assert_eq!(cache(proxy.dir()), weights(100, 0));
    let last = proxy.config_json().await["last_reload"].clone();
    assert_eq!(
        (&last["result"], &last["what"]),
        (&Value::from("ok"), &Value::from("weights"))
    );
    assert_eq!(
        proxy
            .metric(
                "sluice_route_backend_weight",
                &[("route", "default"), ("backend", "stable")]
            )
            .await,
        100.0
    );
    assert_eq!(reload_errors(&proxy).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_and_deletions_are_refused_while_traffic_flows() {
    let Some(Setup {
        etcd,
        client,
        stable,
        canary,
        ..
    }) = Setup::start("routes:\n  default: { stable: 0, blue: 100 }\n").await
    else {
        return;
    };

    // An invalid document at start: the proxy comes up on the config's weights, and says why.
    let proxy = Proxy::start(&fleet_config(&stable, &canary, &etcd));
    assert_eq!(reload_errors(&proxy).await, 1.0);
    assert_eq!(proxy.weight("default", "canary").await, 0.0);
    assert_eq!(revision(&proxy).await, 0);
    let last = proxy.config_json().await["last_reload"].clone();
    assert_eq!(last["result"], "error", "{last}");
    let error = last["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("etcd:/sluice/fleet/weights") && error.contains("\"blue\""),
        "{error}"
    );

    let good = put(&client, &weights(0, 100)).await;
    eventually!(revision(&proxy).await == good, "the good document applied");
    assert_eq!(proxy.weight("default", "canary").await, 100.0);

    let load = Load::start(&proxy.url("/"), 4);
    put(&client, "routes:\n  default: { stable: -5, canary: 100 }\n").await;
    eventually!(
        reload_errors(&proxy).await == 2.0,
        "the bad document refused"
    );
    assert_eq!(
        proxy.weight("default", "canary").await,
        100.0,
        "weights kept"
    );
    assert_eq!(revision(&proxy).await, good);
    let error = proxy.config_json().await["last_reload"]["error"].clone();
    assert!(
        error
            .as_str()
            .unwrap_or_default()
            .contains("must not be negative"),
        "{error}"
    );

    client
        .txn(vec![], vec![Op::delete(KEY)], vec![])
        .await
        .expect("etcd delete");
    eventually!(reload_errors(&proxy).await == 3.0, "the deletion refused");
    assert_eq!(
        proxy.weight("default", "canary").await,
        100.0,
        "weights kept"
    );
    let error = proxy.config_json().await["last_reload"]["error"].clone();
    assert!(
        error.as_str().unwrap_or_default().contains("key deleted"),
        "{error}"
    );

    let back = put(&client, &weights(100, 0)).await;
    eventually!(
        revision(&proxy).await == back,
        "a good document after them applies"
    );
    assert_eq!(proxy.weight("default", "canary").await, 0.0);
    let report = load.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert!(report.ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_under_load_fails_nothing_and_the_proxy_catches_up() {
    let Some(Setup {
        mut etcd,
        client,
        stable,
        canary,
        revision: applied,
    }) = Setup::start(&weights(0, 100)).await
    else {
        return;
    };
    let proxy = Proxy::start(&fleet_config(&stable, &canary, &etcd));
    eventually!(connected(&proxy).await, "the watch is established");

    let load = Load::start(&proxy.url("/"), 4);
    etcd.kill(0);
    eventually!(
        proxy.metric("sluice_store_connected", &[]).await == 0.0,
        "the lost watch is seen"
    );
    assert_eq!(store(&proxy).await["connected"], false);
    // Ten seconds without etcd (the outage the scenario asks for; the assertions are on what
    // happened during it): traffic flows on the weights in force, and the proxy stays ready.
    let before = load.ok();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(load.ok() > before + 1000, "traffic flowed without etcd");
    let ready = client::try_get(&format!("http://{}/ready", proxy.admin)).await;
    assert_eq!(ready.map(|r| r.status.as_u16()), Some(200));
    assert_eq!(proxy.weight("default", "canary").await, 100.0);
    assert_eq!(revision(&proxy).await, applied);

    etcd.restart(0);
    etcd.wait_ready().await;
    let caught_up = put(&client, &weights(100, 0)).await;
    eventually!(
        revision(&proxy).await == caught_up,
        "the proxy applied the write made after etcd came back"
    );
    assert_eq!(proxy.weight("default", "canary").await, 0.0);
    eventually!(connected(&proxy).await, "the watch is established again");
    let report = load.stop().await;
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    assert_eq!(reload_errors(&proxy).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restarted_while_etcd_is_down_serves_the_cached_weights() {
    let Some(Setup {
        mut etcd,
        stable,
        canary,
        revision: applied,
        ..
    }) = Setup::start(&weights(0, 100)).await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("sluice.yaml"),
        fleet_config(&stable, &canary, &etcd),
    )
    .expect("write config");
    let mut proxy = Proxy::start_in(dir.path(), &[]);
    assert_eq!(cache(dir.path()), weights(0, 100));

    etcd.kill(0);
    proxy.process.kill();
    let proxy = Proxy::start_in(dir.path(), &[]);
    assert_eq!(proxy.weight("default", "canary").await, 100.0, "the cache");
    assert!(all_answered_by(&proxy, "canary").await);
    let state = store(&proxy).await;
    assert_eq!(
        (&state["connected"], &state["revision"]),
        (&Value::from(false), &Value::from(0)),
        "{state}"
    );
    let warned = proxy.process.logs().iter().any(|line| {
        line["level"] == "WARN"
            && line["message"].as_str().is_some_and(|m| {
                m.starts_with("etcd unreachable at start; starting on the cached weights")
            })
    });
    assert!(warned, "{}", proxy.process.output());

    // etcd back: the same document is found in force, its revision shown.
    etcd.restart(0);
    eventually!(
        connected(&proxy).await && revision(&proxy).await == applied,
        "the proxy reconnected and recognised the document in force"
    );
    assert_eq!(reload_errors(&proxy).await, 0.0);
}
