//! The weights from etcd (fleet mode): `<prefix>/weights` read at start, then watched, every
//! newer document applied through the reloader like a weights file and cached in
//! `weights_file` for a start while etcd cannot be reached.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::Gauge;
use sluice_config::{Config, UpstreamProtocol};
use sluice_etcd::{Client, Credentials, Event, Read, Settings, Tls, Watch, WatchMessage};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use super::{Offered, Reloader, StartWeights, WeightsDocument};
use crate::drain::DrainWatch;
use crate::metrics::Metrics;
use crate::tls::{client_config, TlsError};

/// The weights document's key under `store.etcd.prefix`.
pub const WEIGHTS_KEY: &str = "weights";
/// Bound on one call to one member: connect, handshakes, answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on the read at start, across every member: a proxy comes up without etcd.
const START_TIMEOUT: Duration = Duration::from_secs(2);
/// A silent watch proves nothing (a stopped or partitioned member keeps the stream open), so
/// the key is also read this often...
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// ...each read bounded by this...
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// ...and this many failed reads in a row count as a lost watch.
const PROBE_FAILURES: u32 = 2;
/// The first reconnect delay; it doubles after each failed attempt...
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// ...up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A proxy's source of weights in etcd: the key read at start, then followed until the proxy
/// drains.
#[derive(Debug)]
pub struct EtcdWeights {
    client: Client,
    key: String,
    /// How errors name the document: `etcd:KEY`.
    origin: PathBuf,
    status: Arc<StoreStatus>,
    seen: Seen,
    /// The revision to watch from while the start's read is still the latest.
    resume: Option<i64>,
}

/// The store's state, shown in `/config` and as `sluice_store_connected`.
#[derive(Debug)]
pub struct StoreStatus {
    key: String,
    endpoints: Vec<String>,
    connected: AtomicBool,
    revision: AtomicI64,
    gauge: Gauge,
}

/// Why fleet mode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `store.etcd.tls` names files that are not a usable CA or client certificate.
    #[error("store.etcd.tls: {0}")]
    Tls(#[from] TlsError),
}

/// The newest state of the key acted on: nothing at or before `revision` is news.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    /// The newest revision seen: a value's `mod_revision`, or the store revision of a read
    /// that found no key.
    revision: i64,
    /// The key was found deleted at `revision`.
    absent: bool,
}

/// Why a watch ended.
#[derive(Debug)]
enum Lost {
    /// The proxy is draining.
    Stopped,
    /// etcd compacted the history the watch needed: read the key again.
    Compacted(i64),
    /// The stream ended or failed, or the member stopped answering.
    Failed(String),
}

/// Reconnect delays: doubling from [`BACKOFF_FIRST`] to [`BACKOFF_MAX`], plus up to 10% jitter
/// so a fleet does not reconnect in lockstep.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

/// A client of the members of `etcd`, with its TLS files and the credentials in the
/// environment, each call bounded by `timeout`. The control uses it too.
pub fn client(etcd: &sluice_config::Etcd, timeout: Duration) -> Result<Client, StoreError> {
    let tls = match &etcd.tls {
        Some(tls) => {
            let (config, server_name) = client_config(tls, UpstreamProtocol::Http1)?;
            Some(Tls {
                config,
                server_name,
            })
        }
        None => None,
    };
    Ok(Client::new(Settings {
        endpoints: etcd.endpoints.iter().map(ToString::to_string).collect(),
        tls,
        credentials: Credentials::from_env(),
        timeout,
    }))
}

impl EtcdWeights {
    /// Sets up the client of `etcd` (the `store.etcd` of `config`) and chooses the weights to
    /// start on, within a couple of seconds: etcd's document when it is valid; when etcd cannot
    /// be reached or its document is invalid, the cache (`weights_file`) when valid; else the
    /// config's own weights. Fails only on unusable TLS files, never for want of etcd. Reads
    /// and writes the cache file: runs at start, before serving.
    pub async fn start(
        etcd: &sluice_config::Etcd,
        config: &Config,
        metrics: &Metrics,
    ) -> Result<(Self, StartWeights), StoreError> {
        let client = client(etcd, CALL_TIMEOUT)?;
        let endpoints = client.endpoints().to_vec();
        let key = etcd.key(WEIGHTS_KEY);
        let status = Arc::new(StoreStatus {
            key: key.clone(),
            endpoints,
            connected: AtomicBool::new(false),
            revision: AtomicI64::new(0),
            gauge: metrics.store_connected(),
        });
        status.set_connected(false);
        let mut source = Self {
            client,
            origin: origin(&key),
            key,
            status,
            seen: Seen::default(),
            resume: None,
        };
        let weights = source.initial(config).await;
        Ok((source, weights))
    }

    /// The state shown in `/config`.
    pub fn status(&self) -> Arc<StoreStatus> {
        self.status.clone()
    }

    /// Follows the key until draining starts: watches it from the last read and applies every
    /// newer document. A lost watch (stream ended or failed, two liveness reads in a row
    /// failed) turns `sluice_store_connected` to 0 and reconnects with backoff, reading the
    /// key first (a change missed meanwhile, a compaction), then watching from that read.
    pub async fn run(mut self, reloader: Arc<Reloader>, mut stop: DrainWatch) {
        let mut backoff = Backoff::new();
        let mut attempts = 0u32;
        loop {
            let connected = tokio::select! {
                connected = self.connect(&reloader) => connected,
                () = stop.started() => return,
            };
            let mut watch = match connected {
                Ok(watch) => watch,
                Err(e) => {
                    attempts += 1;
                    if attempts == 1 {
                        warn!(key = %self.key, error = %e, "cannot reach etcd; retrying (the weights in force stay)");
                    } else {
                        debug!(key = %self.key, attempts, error = %e, "cannot reach etcd; retrying");
                    }
                    if !pause(backoff.next_delay(), &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            attempts = 0;
            backoff = Backoff::new();
            self.status.set_connected(true);
            info!(key = %self.key, revision = self.status.revision(), "watching etcd for weights");
            let lost = self.follow(&reloader, &mut watch, &mut stop).await;
            self.status.set_connected(false);
            match lost {
                Lost::Stopped => return,
                Lost::Compacted(revision) => {
                    info!(key = %self.key, revision, "etcd compacted the watched history; reading the key again");
                }
                Lost::Failed(why) => {
                    warn!(key = %self.key, error = %why, "etcd watch lost; reconnecting (the weights in force stay)");
                    if !pause(backoff.next_delay(), &mut stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// The weights to start on (see [`EtcdWeights::start`]).
    async fn initial(&mut self, config: &Config) -> StartWeights {
        let read = match tokio::time::timeout(START_TIMEOUT, self.client.get(&self.key)).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return self.unreachable(config, &e.to_string()),
            Err(_) => {
                return self.unreachable(config, &format!("no answer within {START_TIMEOUT:?}"))
            }
        };
        self.resume = Some(read.revision + 1);
        let origin = self.origin.clone();
        let Some(kv) = read.kv else {
            self.seen.absent_at(read.revision);
            info!(key = %self.key, "no weights in etcd yet; starting on the config's weights");
            return StartWeights::Store {
                origin,
                document: None,
                refused: None,
            };
        };
        let revision = kv.mod_revision;
        self.seen.put(revision);
        let text = String::from_utf8_lossy(&kv.value).into_owned();
        match WeightsDocument::check(text, &origin, config) {
            Ok(document) => {
                info!(key = %self.key, revision, "starting on the weights in etcd");
                self.status.revision.store(revision, Ordering::Relaxed);
                if let Some(path) = &config.weights_file {
                    write_cache(path, &document.text);
                }
                StartWeights::Store {
                    origin,
                    document: Some(document),
                    refused: None,
                }
            }
            Err(e) => {
                let (document, fallback) = cached(config);
                error!(key = %self.key, revision, error = %e, "the weights in etcd are invalid; starting on {fallback}");
                StartWeights::Store {
                    origin,
                    document,
                    refused: Some(e),
                }
            }
        }
    }

    /// Starts on the cache, etcd being unreachable (`why`).
    fn unreachable(&self, config: &Config, why: &str) -> StartWeights {
        let (document, fallback) = cached(config);
        warn!(key = %self.key, error = why, "etcd unreachable at start; starting on {fallback} until it answers");
        StartWeights::Store {
            origin: self.origin.clone(),
            document,
            refused: None,
        }
    }

    /// Reads the key again (applying it when newer) unless the last read is still the
    /// latest, then watches from just after the read.
    async fn connect(&mut self, reloader: &Arc<Reloader>) -> Result<Watch, sluice_etcd::Error> {
        let from = match self.resume.take() {
            Some(from) => from,
            None => {
                let read = self.client.get(&self.key).await?;
                let from = read.revision + 1;
                self.read(reloader, read).await;
                from
            }
        };
        self.client.watch(&self.key, from).await
    }

    /// Applies what the watch reports and probes the member, until the watch is lost.
    async fn follow(
        &mut self,
        reloader: &Arc<Reloader>,
        watch: &mut Watch,
        stop: &mut DrainWatch,
    ) -> Lost {
        let mut probe = tokio::time::interval_at(Instant::now() + PROBE_INTERVAL, PROBE_INTERVAL);
        probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failed = 0u32;
        loop {
            tokio::select! {
                message = watch.next() => match message {
                    Ok(Some(WatchMessage::Events(events, _))) => {
                        for event in events {
                            self.change(reloader, event).await;
                        }
                    }
                    Ok(Some(WatchMessage::Compacted(revision))) => return Lost::Compacted(revision),
                    Ok(None) => return Lost::Failed("the watch stream ended".into()),
                    Err(e) => return Lost::Failed(e.to_string()),
                },
                _ = probe.tick() => {
                    let why = match tokio::time::timeout(PROBE_TIMEOUT, self.client.get(&self.key)).await {
                        Ok(Ok(read)) => {
                            failed = 0;
                            // Belt and braces: a change the watch has not delivered yet.
                            self.read(reloader, read).await;
                            continue;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
                    };
                    failed += 1;
                    debug!(key = %self.key, failed, error = %why, "etcd liveness read failed");
                    if failed >= PROBE_FAILURES {
                        return Lost::Failed(format!("{failed} liveness reads in a row failed: {why}"));
                    }
                }
                () = stop.started() => return Lost::Stopped,
            }
        }
    }

    /// Applies a watched change when it is newer than anything seen.
    async fn change(&mut self, reloader: &Arc<Reloader>, event: Event) {
        match event {
            Event::Put(kv) => {
                if self.seen.put(kv.mod_revision) {
                    let text = String::from_utf8_lossy(&kv.value).into_owned();
                    self.offer(reloader, Some(text), kv.mod_revision).await;
                }
            }
            Event::Delete(kv) => {
                if self.seen.delete(kv.mod_revision) {
                    self.offer(reloader, None, kv.mod_revision).await;
                }
            }
        }
    }

    /// Applies what a read found when it is newer than anything seen.
    async fn read(&mut self, reloader: &Arc<Reloader>, read: Read) {
        match read.kv {
            Some(kv) => self.change(reloader, Event::Put(kv)).await,
            None => {
                if self.seen.absent_at(read.revision) {
                    self.offer(reloader, None, read.revision).await;
                }
            }
        }
    }

    /// Hands the key's document at `revision` (`None`: deleted) to the reloader on a blocking
    /// thread; once it is in force, caches it and shows its revision.
    async fn offer(&self, reloader: &Arc<Reloader>, text: Option<String>, revision: i64) {
        let reloader = reloader.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let offered = reloader.apply_weights_document(text.as_deref(), revision);
            let Some(text) = text.filter(|_| offered != Offered::Refused) else {
                return false;
            };
            if let Some(path) = reloader.weights_file() {
                write_cache(&path, &text);
            }
            true
        })
        .await;
        match applied {
            Ok(true) => self.status.revision.store(revision, Ordering::Relaxed),
            Ok(false) => {}
            Err(_) => {
                error!(key = %self.key, revision, "the weights task panicked; the weights in force stay");
            }
        }
    }
}

impl StoreStatus {
    /// The key of the weights document.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The etcd members (`host:port`).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Whether the watch on the key is established now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The `mod_revision` of the document in force (0: none from etcd yet).
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Relaxed)
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.gauge.set(if connected { 1.0 } else { 0.0 });
    }
}

impl Seen {
    /// A value written at `revision`: whether it is newer than anything seen (then it is the
    /// newest).
    fn put(&mut self, revision: i64) -> bool {
        if revision <= self.revision {
            return false;
        }
        *self = Self {
            revision,
            absent: false,
        };
        true
    }

    /// The key deleted at `revision`: whether that deletes something seen (a newer deletion of
    /// a key already deleted is no news).
    fn delete(&mut self, revision: i64) -> bool {
        if revision <= self.revision {
            return false;
        }
        let news = !self.absent;
        *self = Self {
            revision,
            absent: true,
        };
        news
    }

    /// A read at store revision `revision` found no key: every change up to `revision` is in
    /// that answer, so it counts as a deletion at `revision`.
    fn absent_at(&mut self, revision: i64) -> bool {
        self.delete(revision)
    }
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_FIRST,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(BACKOFF_MAX);
        let jitter_ms = rand::random_range(0..=base.as_millis() as u64 / 10);
        base + Duration::from_millis(jitter_ms)
    }
}

/// How errors name the document under `key`.
fn origin(key: &str) -> PathBuf {
    PathBuf::from(format!("etcd:{key}"))
}

/// Waits `delay`; false when draining started meanwhile.
async fn pause(delay: Duration, stop: &mut DrainWatch) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = stop.started() => false,
    }
}

/// The valid cached document in `config`'s `weights_file`, if there is one, and what the proxy
/// starts on, in words.
fn cached(config: &Config) -> (Option<WeightsDocument>, String) {
    let Some(path) = &config.weights_file else {
        return (
            None,
            "the config's weights (no weights_file to cache etcd's in)".into(),
        );
    };
    let Ok(bytes) = std::fs::read(path) else {
        return (
            None,
            format!("the config's weights (no cache at {})", path.display()),
        );
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match WeightsDocument::check(text, path, config) {
        Ok(document) => (
            Some(document),
            format!("the cached weights of {}", path.display()),
        ),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "the cached etcd weights are invalid; ignoring them");
            (
                None,
                format!(
                    "the config's weights (the cache {} is invalid)",
                    path.display()
                ),
            )
        }
    }
}

/// Caches `text` at `path` (atomically, unless it is there already). A failure is only
/// logged: etcd stays the source, the cache matters for a start without etcd.
fn write_cache(path: &Path, text: &str) {
    if std::fs::read(path).is_ok_and(|cached| cached == text.as_bytes()) {
        return;
    }
    if let Err(e) = sluice_config::write_atomic(path, text.as_bytes()) {
        warn!(path = %path.display(), error = %e, "cannot cache the etcd weights; a start while etcd is unreachable would use an older copy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_revisions_are_news() {
        let mut seen = Seen::default();
        assert!(seen.put(5));
        assert!(
            !seen.put(5),
            "the same value again (a read after the watch)"
        );
        assert!(!seen.put(4), "a stale value");
        assert!(seen.put(7));
        assert!(!seen.delete(6), "a stale deletion");
        assert!(seen.delete(8));
        assert!(!seen.delete(9), "deleting a deleted key is no news");
        assert!(!seen.put(8), "older than the deletion");
        assert!(seen.put(10));
    }

    #[test]
    fn a_read_without_the_key_is_a_deletion_at_its_revision() {
        let mut seen = Seen::default();
        assert!(seen.absent_at(3), "first seen absent");
        assert!(!seen.absent_at(3));
        assert!(!seen.absent_at(20), "still absent, other keys changed");
        assert!(
            !seen.put(19),
            "a value older than a read that found nothing is stale"
        );
        assert!(seen.put(21));
        assert!(
            seen.absent_at(25),
            "deleted meanwhile, the delete event missed"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_a_little_jitter() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        let bases = [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base && *delay <= base + base / 10,
                "{delay:?} vs {base:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_document_by_its_key() {
        assert_eq!(
            origin("/sluice/myapp/weights"),
            PathBuf::from("etcd:/sluice/myapp/weights")
        );
    }
}
