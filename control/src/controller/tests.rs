//! The controller through its seams: a metric source fed with numbers by the test, a store in
//! memory, and tokio's paused clock (intervals pass as soon as everything waits; no sleeps).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sluice_config::Weight;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use super::*;
use crate::source::{BoxFuture, MeasureError};
use crate::store::MemoryStore;
use crate::window::{BackendWindow, Measurement, Subject};

const CONFIG: &str = "listeners: [{ name: h, address: 127.0.0.1:0 }]
upstreams:
  stable: { endpoints: [127.0.0.1:1] }
  canary: { endpoints: [127.0.0.1:2] }
routes:
  - name: default
    backends: [{ upstream: stable, weight: 100 }, { upstream: canary, weight: 0 }]
weights_file: weights.yaml
rollouts:
  - name: myapp
    route: default
    stable: stable
    canary: canary
    steps: [5, 10, 25, 50, 75, 100]
    interval: 10s
    analysis: { min_requests: 10, max_error_rate: 0.05, failure_limit: 2 }
";

/// [`CONFIG`] with a shadow step first: the route mirrors to the canary.
fn shadow_config() -> String {
    CONFIG
        .replace(
            "    backends: [",
            "    mirror: { upstream: canary }\n    backends: [",
        )
        .replace("steps: [5, 10, 25, 50, 75, 100]", "steps: [shadow, 5, 100]")
}

/// A metric source whose measurements the test sends; `finish` waits for the next one (and
/// hangs, like a dead target, while none is sent).
#[derive(Debug)]
struct FedSource {
    feed: Arc<Mutex<mpsc::UnboundedReceiver<Measurement>>>,
    begins: Arc<AtomicUsize>,
    /// What each `finish` was asked to measure the canary as.
    subjects: Arc<std::sync::Mutex<Vec<Subject>>>,
}

impl MetricSource for FedSource {
    fn begin(&mut self) -> BoxFuture<'_, ()> {
        self.begins.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }

    fn health<'a>(
        &'a mut self,
        _backend: &'a str,
    ) -> BoxFuture<'a, Result<crate::source::Health, MeasureError>> {
        Box::pin(async {
            Ok(crate::source::Health {
                healthy: 1,
                unhealthy: Vec::new(),
            })
        })
    }

    fn finish(&mut self, canary: Subject) -> BoxFuture<'_, Result<Measurement, MeasureError>> {
        self.subjects
            .lock()
            .expect("no test thread panicked holding it")
            .push(canary);
        let feed = self.feed.clone();
        Box::pin(async move {
            feed.lock()
                .await
                .recv()
                .await
                .ok_or_else(|| MeasureError::Query("the test ended".into()))
        })
    }
}

struct Harness {
    commands: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    store: MemoryStore,
    feed: mpsc::UnboundedSender<Measurement>,
    begins: Arc<AtomicUsize>,
    subjects: Arc<std::sync::Mutex<Vec<Subject>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn window(requests: f64, failed: f64) -> BackendWindow {
    BackendWindow {
        requests,
        failed,
        p95: Some(0.05),
    }
}

fn healthy() -> Measurement {
    Measurement {
        canary: window(100.0, 0.0),
        stable: window(900.0, 0.0),
    }
}

fn failing() -> Measurement {
    Measurement {
        canary: window(100.0, 20.0),
        stable: window(900.0, 0.0),
    }
}

fn pct(p: u64) -> Weight {
    Weight::from_hundredths(p * 100)
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(MemoryStore::default()).await
    }

    async fn start_with(store: MemoryStore) -> Self {
        Self::start_config(CONFIG, store).await
    }

    async fn start_config(config: &str, store: MemoryStore) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.yaml");
        std::fs::write(&path, config).expect("write config");
        let (feed, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let begins = Arc::new(AtomicUsize::new(0));
        let factory_begins = begins.clone();
        let subjects = Arc::new(std::sync::Mutex::new(Vec::new()));
        let factory_subjects = subjects.clone();
        let factory: SourceFactory = Box::new(move |_| {
            Box::new(FedSource {
                feed: receiver.clone(),
                begins: factory_begins.clone(),
                subjects: factory_subjects.clone(),
            })
        });
        let (controller, status) = Controller::with_store(&path, Arc::new(store.clone()), factory)
            .await
            .expect("controller");
        let (commands, requests) = mpsc::channel(4);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut requests = requests;
            let stop = async move {
                let _ = stopped.await;
            };
            controller.run(&mut requests, stop).await;
        });
        Self {
            commands,
            status,
            store,
            feed,
            begins,
            subjects,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn command(&self, command: Command) -> Result<String, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Request {
                rollout: "myapp".into(),
                command,
                caller: crate::auth::Caller {
                    name: "test".into(),
                    address: std::net::IpAddr::from([127, 0, 0, 1]),
                },
                version: None,
                reply,
            })
            .await
            .expect("controller running");
        answer.await.expect("controller answers")
    }

    /// Waits (on status changes, not on a clock) until the rollout matches.
    async fn until(&mut self, what: impl Fn(&RolloutStatus) -> bool) -> RolloutStatus {
        let status = self
            .status
            .wait_for(|s| s.rollout("myapp").is_some_and(&what))
            .await
            .expect("controller running");
        status.rollout("myapp").cloned().expect("rollout")
    }

    fn canary_writes(&self) -> Vec<Weight> {
        self.store.writes().iter().map(|(_, _, c)| *c).collect()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("controller task");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn passing_measurements_walk_every_step_and_each_write_is_stored() {
    let mut h = Harness::start().await;
    h.command(Command::Start).await.expect("start");
    for step in 1..=6 {
        h.until(|r| r.measuring).await;
        h.feed.send(healthy()).expect("feed");
        h.until(|r| r.decisions > step).await;
    }
    let done = h.until(|r| r.phase == Phase::Succeeded).await;
    assert_eq!(
        h.canary_writes(),
        [5, 10, 25, 50, 75, 100, 100].map(pct).to_vec()
    );
    assert_eq!(
        h.store.weights("default"),
        Some((pct(0), pct(100))),
        "stable gets 100 - canary"
    );
    let persisted = h.store.state("myapp").expect("persisted");
    assert_eq!(persisted.phase, Phase::Succeeded);
    assert_eq!(persisted.written, Some((pct(0), pct(100))));
    // The status is built from the state decide returned: check, decision and history.
    let last = done.last_decision.expect("last decision");
    assert_eq!((last.seq, last.action), (7, Action::Succeeded));
    assert!(last.check.is_some(), "the deciding check is in the record");
    assert_eq!(done.history.len(), 7);
    assert_eq!(
        done.last_check.map(|c| c.check.requests),
        Some(100.0),
        "last check recorded by decide"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn commands_are_answered_at_once_while_a_measurement_hangs() {
    let mut h = Harness::start().await;
    h.command(Command::Start).await.expect("start");
    // The interval ends; the source hangs (nothing is fed).
    h.until(|r| r.measuring).await;
    let before = Instant::now();
    assert!(h.status.borrow().rollout("myapp").is_some());
    let paused = h.command(Command::Pause).await.expect("pause");
    assert!(paused.contains("paused"), "{paused}");
    h.command(Command::Resume).await.expect("resume");
    let aborted = h.command(Command::Abort).await.expect("abort");
    assert!(aborted.contains("canary 0%"), "{aborted}");
    assert_eq!(
        Instant::now(),
        before,
        "no time passed: the commands did not wait for the measurement"
    );
    assert_eq!(h.store.weights("default"), Some((pct(100), pct(0))));
    let r = h.until(|r| r.phase == Phase::RolledBack).await;
    assert_eq!(r.canary_weight, pct(0));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_measurement_ends_inconclusive_and_the_weight_holds() {
    let mut h = Harness::start().await;
    h.command(Command::Start).await.expect("start");
    let r = h
        .until(|r| {
            r.last_check
                .as_ref()
                .is_some_and(|c| c.check.verdict == crate::analysis::Verdict::Inconclusive)
        })
        .await;
    let check = r.last_check.expect("check");
    assert!(
        check.check.reasons[0].contains("took longer than"),
        "{:?}",
        check.check.reasons
    );
    assert_eq!((r.phase, r.canary_weight), (Phase::Progressing, pct(5)));
    assert_eq!(h.canary_writes(), vec![pct(5)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_roll_back_at_the_limit() {
    let mut h = Harness::start().await;
    h.command(Command::Start).await.expect("start");
    for _ in 0..2 {
        h.until(|r| r.measuring).await;
        h.feed.send(failing()).expect("feed");
        h.until(|r| !r.measuring).await;
    }
    let r = h.until(|r| r.phase == Phase::RolledBack).await;
    assert_eq!(r.failures, 2);
    assert_eq!(h.canary_writes(), vec![pct(5), pct(0)]);
    let last = r.last_decision.expect("decision");
    assert_eq!(last.action, Action::RolledBack);
    assert!(
        last.message.contains("error rate 20.00%"),
        "{}",
        last.message
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hand_edit_during_a_measurement_wins_over_its_decision() {
    let mut h = Harness::start().await;
    h.command(Command::Start).await.expect("start");
    h.until(|r| r.measuring).await;
    h.store.edit_weights("default", (pct(50), pct(50)));
    h.feed.send(healthy()).expect("feed");
    let r = h.until(|r| r.phase == Phase::Paused).await;
    assert!(
        r.paused_reason
            .as_deref()
            .is_some_and(|p| p.contains("edited by hand") && p.contains("canary=50")),
        "{:?}",
        r.paused_reason
    );
    assert_eq!(h.store.weights("default"), Some((pct(50), pct(50))));
    assert_eq!(h.canary_writes(), vec![pct(5)], "the pass wrote nothing");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_changes_nothing() {
    let h = Harness::start().await;
    h.command(Command::Start).await.expect("start");
    h.store.fail_writes(true);
    let err = h.command(Command::Promote).await.expect_err("write fails");
    assert!(matches!(err, CommandError::Write(_)), "{err}");
    let r = h
        .status
        .borrow()
        .rollout("myapp")
        .cloned()
        .expect("rollout");
    assert_eq!((r.step, r.canary_weight), (1, pct(5)));
    assert_eq!(h.store.state("myapp").map(|s| s.step), Some(0));
    h.store.fail_writes(false);
    h.command(Command::Promote).await.expect("promote");
    assert_eq!(h.canary_writes(), vec![pct(5), pct(10)]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_measurement_of_an_interval_started_over_is_dropped() {
    let mut h = Harness::start().await;
    h.command(Command::Start).await.expect("start");
    h.until(|r| r.measuring).await;
    let begins = h.begins.load(Ordering::SeqCst);
    // A promote while the 5% interval is measured: its numbers must not judge the 10% step.
    h.command(Command::Promote).await.expect("promote");
    let r = h.until(|r| !r.measuring).await;
    assert_eq!((r.step, r.canary_weight), (2, pct(10)));
    assert!(
        r.last_check.is_none(),
        "the abandoned interval was not judged"
    );
    // The next interval is measured and judged normally.
    h.until(|r| r.measuring).await;
    assert!(h.begins.load(Ordering::SeqCst) > begins, "a new baseline");
    h.feed.send(healthy()).expect("feed");
    let r = h.until(|r| r.step == 3).await;
    assert_eq!(r.canary_weight, pct(25));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_controller_resumes_from_the_store_without_writing() {
    let store = MemoryStore::default();
    let mut h = Harness::start_with(store.clone()).await;
    h.command(Command::Start).await.expect("start");
    h.command(Command::Promote).await.expect("promote");
    h.until(|r| r.step == 2).await;
    h.stop().await;
    let writes = store.writes().len();
    let mut h = Harness::start_with(store.clone()).await;
    let r = h.until(|r| r.phase == Phase::Progressing).await;
    assert_eq!((r.step, r.canary_weight), (2, pct(10)));
    assert_eq!(store.writes().len(), writes, "no weight written on resume");
    h.until(|r| r.measuring).await;
    h.feed.send(healthy()).expect("feed");
    h.until(|r| r.step == 3).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn start_with_a_version_records_it_and_a_second_start_of_that_version_succeeds() {
    let mut h = Harness::start().await;
    let start = |version: &str| Request {
        rollout: "myapp".into(),
        command: Command::Start,
        caller: crate::auth::Caller {
            name: "ci".into(),
            address: std::net::IpAddr::from([127, 0, 0, 1]),
        },
        version: Some(version.into()),
        reply: oneshot::channel().0,
    };
    let (reply, answer) = oneshot::channel();
    h.commands
        .send(Request {
            reply,
            ..start("v7")
        })
        .await
        .expect("send");
    let message = answer.await.expect("answer").expect("started");
    assert!(message.contains("for version v7"), "{message}");
    let r = h.until(|r| r.phase == Phase::Progressing).await;
    assert_eq!(r.canary_version.as_deref(), Some("v7"));
    // The pipeline's start and the automatic one race: the second finds v7 running.
    let (reply, answer) = oneshot::channel();
    h.commands
        .send(Request {
            reply,
            ..start("v7")
        })
        .await
        .expect("send");
    let again = answer.await.expect("answer").expect("no conflict");
    assert!(again.contains("already rolling out v7"), "{again}");
    assert_eq!(h.canary_writes(), vec![pct(5)], "nothing written again");
    // Another version is a conflict, as before.
    let (reply, answer) = oneshot::channel();
    h.commands
        .send(Request {
            reply,
            ..start("v8")
        })
        .await
        .expect("send");
    assert!(matches!(
        answer.await.expect("answer"),
        Err(CommandError::Refused(_))
    ));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_shadow_step_measures_the_mirror_with_the_canary_at_0() {
    let mut h = Harness::start_config(&shadow_config(), MemoryStore::default()).await;
    h.command(Command::Start).await.expect("start");
    let r = h.until(|r| r.measuring).await;
    assert_eq!((r.shadow, r.step_label()), (true, "shadow 1/3".to_string()));
    assert_eq!(h.store.weights("default"), Some((pct(100), pct(0))));
    h.feed.send(healthy()).expect("feed");
    let r = h.until(|r| r.step == 2).await;
    assert_eq!((r.shadow, r.canary_weight), (false, pct(5)));
    h.until(|r| r.measuring).await;
    h.feed.send(healthy()).expect("feed");
    h.until(|r| r.step == 3).await;
    assert_eq!(
        *h.subjects
            .lock()
            .expect("no test thread panicked holding it"),
        [Subject::Mirror, Subject::Backend],
        "the shadow interval judged the mirror, the 5% one the canary itself"
    );
    assert_eq!(h.canary_writes(), [0, 5, 100].map(pct).to_vec());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_shadow_rolls_back_with_no_user_on_the_canary() {
    let mut h = Harness::start_config(&shadow_config(), MemoryStore::default()).await;
    h.command(Command::Start).await.expect("start");
    for _ in 0..2 {
        h.until(|r| r.measuring).await;
        h.feed.send(failing()).expect("feed");
        h.until(|r| !r.measuring).await;
    }
    let r = h.until(|r| r.phase == Phase::RolledBack).await;
    assert_eq!((r.failures, r.shadow), (2, false));
    assert_eq!(h.canary_writes(), vec![pct(0), pct(0)]);
    let last = r.last_decision.expect("decision");
    assert!(
        last.message
            .starts_with("shadow check failed: error rate 20.00%"),
        "{}",
        last.message
    );
    h.stop().await;
}
