//! Hot reload: watches the directories of the config, weights and listener certificate files,
//! debounces bursts of events, re-reads what changed, validates it off the request path, and
//! publishes a new snapshot (or server certificate) only when it is valid. A bad file never
//! takes effect.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_config::{Config, ConfigError, Weights};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::routing::Routing;
use crate::snapshot::{EndpointRegistry, Snapshot, SnapshotError};
use crate::tls::ListenerTls;
use watcher::FileWatch;

mod watcher;

/// A burst of file events is one reload: wait until the directory has been quiet this long.
const DEBOUNCE_QUIET: Duration = Duration::from_millis(30);
/// ...but never delay a reload longer than this after the first event of a burst.
const DEBOUNCE_MAX: Duration = Duration::from_millis(300);

/// Reloads the routing from files. Shared by the watcher, SIGHUP and the admin API.
#[derive(Debug)]
pub struct Reloader {
    config_path: PathBuf,
    routing: Arc<Routing>,
    metrics: Arc<Metrics>,
    registry: EndpointRegistry,
    /// The listeners and admin address bound at start (not changed by reloads).
    startup: Arc<Config>,
    /// The TLS listeners' certificates, reloaded when their files change.
    certificates: Vec<Arc<ListenerTls>>,
    /// Held for a whole reload, file reads included: only ever locked on a blocking thread.
    state: Mutex<ReloadState>,
    /// The outcome of the last reload, published apart from `state` so the admin endpoint
    /// reads it on an async worker without waiting for a reload in progress.
    last: watch::Sender<Option<ReloadReport>>,
}

/// What the reloader remembers between reloads.
#[derive(Debug)]
struct ReloadState {
    generation: u64,
    /// Bytes of the config file as last read (valid or not), to skip unchanged files.
    config_seen: Option<Vec<u8>>,
    /// The config on disk was refused; retry it on the next event (a fixed weights file may
    /// make it acceptable even though the config bytes did not change).
    config_pending: bool,
    /// Bytes of the weights file as last read.
    weights_seen: Option<Vec<u8>>,
    /// The text of the weights file in force (re-checked when the config changes).
    weights_text: Option<String>,
}

/// The outcome of the most recent reload attempt, shown in `/config`.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadReport {
    /// `ok` or `error`.
    pub result: &'static str,
    /// What was reloaded (`config`, `weights`, `certificate`).
    pub what: &'static str,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The weights file is invalid (against the config that would be in force).
    #[error("{0}")]
    Weights(ConfigError),
    /// The weights file in force does not fit the new config.
    #[error("the weights file in force does not fit the new config (fix the weights file or the config first):\n{0}")]
    WeightsMismatch(ConfigError),
    /// The weights file was deleted.
    #[error("{}: weights file deleted; keeping the weights in force (write `routes: {{}}` to drop all overrides)", .0.display())]
    WeightsDeleted(PathBuf),
    /// A config file that cannot be turned into a snapshot (TLS files).
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
}

/// What to reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A file event: reload whichever file's contents changed.
    FilesChanged,
    /// SIGHUP or an explicit request: reload both files even if unchanged.
    Forced,
}

impl Reloader {
    /// Loads the config and weights at start. Errors here stop the process.
    pub fn start(
        config_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, Arc<Routing>), ReloadError> {
        let config_bytes = std::fs::read(config_path).ok();
        let config = Arc::new(Config::load(config_path)?);
        // Missing at start: no overrides yet (the control creates it).
        let (weights, weights_text, weights_seen) = match &config.weights_file {
            Some(path) => match read_weights(path, &config)? {
                Some((weights, text, bytes)) => (weights, Some(text), Some(bytes)),
                None => (Weights::none(), None, None),
            },
            None => (Weights::none(), None, None),
        };
        let registry = EndpointRegistry::default();
        let snapshot = Snapshot::build(1, config.clone(), weights, &registry, &metrics)?;
        metrics.set_generation(1);
        let routing = Arc::new(Routing::new(snapshot));
        publish_weights(&metrics, &routing.snapshot(), None);
        let reloader = Self {
            config_path: config_path.to_path_buf(),
            routing: routing.clone(),
            metrics,
            registry,
            startup: config,
            certificates: Vec::new(),
            state: Mutex::new(ReloadState {
                generation: 1,
                config_seen: config_bytes,
                config_pending: false,
                weights_seen,
                weights_text,
            }),
            last: watch::Sender::new(None),
        };
        Ok((reloader, routing))
    }

    /// The config file being served.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The outcome of the last reload attempt. Never waits for a reload in progress, so the
    /// admin endpoint can call it on an async worker.
    pub fn last_report(&self) -> Option<ReloadReport> {
        self.last.borrow().clone()
    }

    /// The config the listeners and admin endpoint were bound with.
    pub fn startup_config(&self) -> Arc<Config> {
        self.startup.clone()
    }

    /// Watches and reloads these listener certificates along with the config.
    pub fn reload_certificates_of(&mut self, certificates: Vec<Arc<ListenerTls>>) {
        self.certificates = certificates;
    }

    /// The listener certificate files (chains, keys, client CAs) watched for changes.
    fn certificate_files(&self) -> Vec<PathBuf> {
        self.certificates.iter().flat_map(|c| c.files()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the files and publishes a new snapshot if they changed (or always, when
    /// forced), then the listener certificates. Returns whether a new generation was
    /// published. Reads files and builds the snapshot: call it on a blocking thread, never on
    /// an async worker.
    pub fn reload(&self, trigger: Trigger) -> bool {
        let mut state = self.lock();
        let config_bytes = std::fs::read(&self.config_path).ok();
        let current = self.routing.snapshot();
        let weights_path = current.config.weights_file.clone();
        let forced = trigger == Trigger::Forced;
        let config_changed = forced || state.config_pending || config_bytes != state.config_seen;
        let mut outcomes = Vec::new();
        if config_changed {
            state.config_seen = config_bytes;
            let result = self.reload_config(&mut state);
            state.config_pending = result.is_err();
            outcomes.push(("config", result));
        }
        // The weights alone: when the config did not change, or changed but was refused (a
        // good weights file still applies to the config in force).
        let config_refused = matches!(outcomes.last(), Some((_, Err(_))));
        if let (Some(path), true) = (&weights_path, !config_changed || config_refused) {
            let bytes = std::fs::read(path).ok();
            if forced || bytes != state.weights_seen {
                state.weights_seen = bytes.clone();
                outcomes.push((
                    "weights",
                    self.reload_weights(&mut state, &current, path, bytes),
                ));
            }
        }
        let at = sluice_config::unix_now();
        let mut published = false;
        for (what, result) in outcomes {
            match result {
                Ok(Some(snapshot)) => {
                    let generation = snapshot.generation;
                    let previous = self.routing.replace(Arc::new(snapshot));
                    self.metrics.set_generation(generation);
                    self.metrics.reload(true);
                    publish_weights(&self.metrics, &self.routing.snapshot(), Some(&previous));
                    info!(what, generation, "reloaded");
                    self.last.send_replace(Some(ReloadReport {
                        result: "ok",
                        what,
                        error: None,
                        at,
                    }));
                    published = true;
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics.reload(false);
                    error!(what, error = %e, "reload rejected; the previous config stays in force");
                    self.last.send_replace(Some(ReloadReport {
                        result: "error",
                        what,
                        error: Some(e.to_string()),
                        at,
                    }));
                }
            }
        }
        for certificate in &self.certificates {
            self.reload_certificate(certificate, forced, at);
        }
        published
    }

    /// Installs `certificate`'s listener's files if they changed; a bad pair keeps the one in
    /// force.
    fn reload_certificate(&self, certificate: &ListenerTls, forced: bool, at: u64) {
        let listener = certificate.listener();
        match certificate.reload(forced) {
            Ok(None) => {}
            Ok(Some(expires)) => {
                self.metrics.reload(true);
                info!(
                    listener,
                    expires_at = expires.unwrap_or_default(),
                    "listener certificate reloaded; new handshakes use it"
                );
                self.last.send_replace(Some(ReloadReport {
                    result: "ok",
                    what: "certificate",
                    error: None,
                    at,
                }));
            }
            Err(e) => {
                self.metrics.reload(false);
                error!(listener, error = %e, "listener certificate rejected; the previous certificate stays in force");
                self.last.send_replace(Some(ReloadReport {
                    result: "error",
                    what: "certificate",
                    error: Some(format!("listener \"{listener}\": tls: {e}")),
                    at,
                }));
            }
        }
    }

    fn reload_config(&self, state: &mut ReloadState) -> Result<Option<Snapshot>, ReloadError> {
        let config = Config::load(&self.config_path)?;
        warn_about_startup_only_changes(&self.startup, &config);
        // The weights file as it is now; if it is gone, the weights in force stay.
        let (weights, weights_text, weights_seen) = match &config.weights_file {
            None => (Weights::none(), None, None),
            Some(path) => match read_weights(path, &config)? {
                Some((weights, text, bytes)) => (weights, Some(text), Some(bytes)),
                None => match &state.weights_text {
                    Some(text) => {
                        let weights = Weights::parse(text, path, &config.routes)
                            .map_err(ReloadError::WeightsMismatch)?;
                        (weights, state.weights_text.clone(), None)
                    }
                    None => (Weights::none(), None, None),
                },
            },
        };
        let snapshot = Snapshot::build(
            state.generation + 1,
            Arc::new(config),
            weights,
            &self.registry,
            &self.metrics,
        )?;
        state.generation += 1;
        state.weights_text = weights_text;
        state.weights_seen = weights_seen;
        Ok(Some(snapshot))
    }

    fn reload_weights(
        &self,
        state: &mut ReloadState,
        current: &Snapshot,
        path: &Path,
        bytes: Option<Vec<u8>>,
    ) -> Result<Option<Snapshot>, ReloadError> {
        let Some(bytes) = bytes else {
            if state.weights_text.is_none() {
                return Ok(None);
            }
            return Err(ReloadError::WeightsDeleted(path.to_path_buf()));
        };
        let (weights, text) = parse_weights(&bytes, path, &current.config)?;
        state.generation += 1;
        state.weights_text = Some(text);
        Ok(Some(current.with_weights(state.generation, weights)))
    }

    /// Starts watching the files' directories (and SIGHUP) now, so no change made after this
    /// returns can be missed; [`Watching::run`] then reloads on each change and keeps watching
    /// the files of the config in force.
    pub fn watch(self: Arc<Self>) -> Watching {
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let mut files = FileWatch::start(tx.clone());
        files.follow(
            &self.config_path,
            &self.routing.snapshot().config,
            &self.certificate_files(),
        );
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // Anything written between the initial load and now produced no event: look once.
        let _ = tx.send(());
        Watching {
            reloader: self,
            rx,
            tx,
            files: Arc::new(Mutex::new(files)),
            hangup,
        }
    }
}

/// An established watch on the config and weights files.
pub struct Watching {
    reloader: Arc<Reloader>,
    rx: mpsc::UnboundedReceiver<()>,
    /// Keeps the channel open (and SIGHUP working) even without a file watcher; also where
    /// a new watch asks for one look at files changed before it was added.
    tx: mpsc::UnboundedSender<()>,
    /// Locked only on the blocking thread that reloads (adding a watch waits on the watcher).
    files: Arc<Mutex<FileWatch>>,
    hangup: Option<tokio::signal::unix::Signal>,
}

impl std::fmt::Debug for Watching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Mutex`'s `Debug` does not wait: it shows `<locked>` during a reload.
        f.debug_struct("Watching")
            .field("files", &self.files)
            .field("sighup", &self.hangup.is_some())
            .finish_non_exhaustive()
    }
}

impl Watching {
    /// Reloads on every change and on SIGHUP until draining starts.
    pub async fn run(self, mut stop: crate::drain::DrainWatch) {
        let Self {
            reloader,
            mut rx,
            tx,
            files,
            mut hangup,
        } = self;
        loop {
            let trigger = tokio::select! {
                event = rx.recv() => match event {
                    Some(()) => {
                        debounce(&mut rx).await;
                        Trigger::FilesChanged
                    }
                    None => break,
                },
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    info!("SIGHUP: reloading");
                    Trigger::Forced
                }
                () = stop.started() => break,
            };
            // Parsing, building and (un)watching happen on a blocking thread: never on the
            // request path.
            let (this, files, tx) = (reloader.clone(), files.clone(), tx.clone());
            let reloaded = tokio::task::spawn_blocking(move || {
                this.reload(trigger);
                let config = this.routing.snapshot().config.clone();
                let mut files = files.lock().unwrap_or_else(PoisonError::into_inner);
                if files.follow(&this.config_path, &config, &this.certificate_files()) {
                    // A file in a newly watched place may have changed before the watch was
                    // added, and no event will tell: look once.
                    let _ = tx.send(());
                }
            })
            .await;
            if reloaded.is_err() {
                error!("reload task panicked; the previous config stays in force");
            }
        }
    }
}

/// The weights file at `path` checked against `config`: `(weights, text, bytes)`, or `None`
/// when the file does not exist (or cannot be read).
fn read_weights(
    path: &Path,
    config: &Config,
) -> Result<Option<(Weights, String, Vec<u8>)>, ReloadError> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let (weights, text) = parse_weights(&bytes, path, config)?;
    Ok(Some((weights, text, bytes)))
}

/// The weights file's `bytes` (read from `path`) checked against `config`, with its text.
fn parse_weights(
    bytes: &[u8],
    path: &Path,
    config: &Config,
) -> Result<(Weights, String), ReloadError> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let weights = Weights::parse(&text, path, &config.routes).map_err(ReloadError::Weights)?;
    Ok((weights, text))
}

/// Waits until events stop arriving for [`DEBOUNCE_QUIET`] (at most [`DEBOUNCE_MAX`]).
async fn debounce(rx: &mut mpsc::UnboundedReceiver<()>) {
    let limit = Instant::now() + DEBOUNCE_MAX;
    loop {
        let quiet_until = (Instant::now() + DEBOUNCE_QUIET).min(limit);
        match tokio::time::timeout_at(quiet_until.into(), rx.recv()).await {
            Ok(Some(())) if Instant::now() < limit => continue,
            _ => return,
        }
    }
}

fn warn_about_startup_only_changes(running: &Config, new: &Config) {
    if running.listeners != new.listeners {
        warn!("listeners changed in the config file; they apply only after a restart (the rest of the change is applied)");
    }
    if running.admin != new.admin {
        warn!("admin.address changed in the config file; it applies only after a restart (the rest of the change is applied)");
    }
}

/// Sets `sluice_route_backend_weight` for the new snapshot and zeroes pairs that disappeared.
fn publish_weights(metrics: &Metrics, current: &Snapshot, previous: Option<&Snapshot>) {
    if let Some(previous) = previous {
        for (route, backend, _) in previous.weights_in_force() {
            let still = current
                .weights_in_force()
                .any(|(r, b, _)| r == route && b == backend);
            if !still {
                metrics.weight_gauge(route, backend).set(0.0);
            }
        }
    }
    for (route, backend, weight) in current.weights_in_force() {
        metrics.weight_gauge(route, backend).set(weight);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;

    const CONFIG: &str = "listeners: [{ name: http, address: \"127.0.0.1:0\" }]\nupstreams:\n  a: { endpoints: [\"127.0.0.1:1\"] }\nroutes:\n  - { name: r, backends: [{ upstream: a, weight: 1 }] }\n";

    #[test]
    fn the_last_report_is_read_without_waiting_for_a_reload_in_progress() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice.yaml");
        std::fs::write(&path, CONFIG).expect("write config");
        let (reloader, _routing) =
            Reloader::start(&path, Arc::new(Metrics::new())).expect("valid config");
        let reloader = Arc::new(reloader);
        std::fs::write(&path, "routes: [").expect("write config");
        reloader.reload(Trigger::FilesChanged);
        // A slow reload holds the state for as long as it reads and builds.
        let reloading = reloader.lock();
        let (tx, rx) = std_mpsc::channel();
        let reader = reloader.clone();
        std::thread::spawn(move || {
            let _ = tx.send(reader.last_report().map(|r| r.result));
        });
        let report = rx.recv_timeout(Duration::from_secs(10));
        drop(reloading);
        assert_eq!(report, Ok(Some("error")), "answered during the reload");
    }
}
