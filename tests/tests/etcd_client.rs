//! The etcd client against a real etcd: reads, conditional transactions, leases, and a watch
//! that reports compaction.

use sluice_etcd::{Compare, Event, Op, WatchMessage};
use sluice_tests::etcd::{self, Etcd};

#[tokio::test]
async fn reads_writes_transactions_leases_and_watches() {
    let Some(binaries) = etcd::find() else { return };
    let etcd = Etcd::start(&binaries, 1).await;
    let client = etcd.client();
    assert_eq!(client.get("/t/a").await.expect("read").kv, None);
    let first = client.put("/t/a", b"one").await.expect("put");
    let read = client.get("/t/a").await.expect("read");
    let kv = read.kv.expect("exists");
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"one"[..], first));

    // A transaction conditional on the last change: the first wins, the second sees why not.
    let won = client
        .txn(
            vec![Compare::mod_revision("/t/a", first)],
            vec![Op::put("/t/a", b"two", 0)],
            vec![Op::get("/t/a")],
        )
        .await
        .expect("txn");
    assert!(won.succeeded);
    let lost = client
        .txn(
            vec![Compare::mod_revision("/t/a", first)],
            vec![Op::put("/t/a", b"three", 0)],
            vec![Op::get("/t/a")],
        )
        .await
        .expect("txn");
    assert!(!lost.succeeded);
    assert_eq!(lost.reads[0][0].value, b"two");

    // Leases: a key on a lease goes with it.
    let lease = client.grant(5).await.expect("grant");
    assert!(client.keep_alive(lease).await.expect("keepalive") > 0);
    let created = client
        .txn(
            vec![Compare::create_revision("/t/leader", 0)],
            vec![Op::put("/t/leader", b"me", lease)],
            vec![],
        )
        .await
        .expect("txn");
    assert!(created.succeeded);
    client.revoke(lease).await.expect("revoke");
    assert_eq!(client.get("/t/leader").await.expect("read").kv, None);
    assert_eq!(client.keep_alive(lease).await.expect("keepalive"), 0);

    // A watch from a revision sees every later change in order.
    let start = client.get("/t/w").await.expect("read").revision + 1;
    let mut watch = client.watch("/t/w", start).await.expect("watch");
    for value in ["1", "2", "3"] {
        client.put("/t/w", value.as_bytes()).await.expect("put");
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match watch.next().await.expect("message") {
            Some(WatchMessage::Events(events, _)) => {
                for event in events {
                    if let Event::Put(kv) = event {
                        seen.push(String::from_utf8_lossy(&kv.value).into_owned());
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["1", "2", "3"]);

    // Watching from a compacted revision says so.
    let now = client.put("/t/w", b"4").await.expect("put");
    etcd.etcdctl(&["compaction", &now.to_string()]);
    let mut stale = client.watch("/t/w", start).await.expect("watch");
    assert!(matches!(
        stale.next().await.expect("message"),
        Some(WatchMessage::Compacted(_))
    ));
}
