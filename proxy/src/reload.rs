//! Hot reload: watches the directories of the config, weights and listener certificate files,
//! debounces bursts of events, re-reads what changed, validates it off the request path, and
//! publishes a new snapshot (or server certificate) only when it is valid. A bad file never
//! takes effect. In fleet mode the weights come from etcd instead ([`etcd`]), through the same
//! check and the same publish step.

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

pub mod etcd;
mod watcher;

pub use etcd::{EtcdWeights, StoreError, StoreStatus};

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
    /// Fleet mode: the weights come from etcd, named by this origin (`etcd:KEY`) in errors.
    /// The weights file is then etcd's cache, written by [`etcd`], neither read nor watched
    /// here.
    store: Option<PathBuf>,
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
    /// Bytes of the weights file as last read (file mode).
    weights_seen: Option<Vec<u8>>,
    /// The text of the weights document in force, the weights file's or, in fleet mode,
    /// etcd's (re-checked when the config changes).
    weights_text: Option<String>,
}

/// The config file as read at start, before the weights are chosen (in fleet mode they come
/// from the etcd the config names).
#[derive(Debug)]
pub struct StartConfig {
    path: PathBuf,
    bytes: Option<Vec<u8>>,
    config: Config,
}

/// Where the weights at start come from.
#[derive(Debug)]
pub enum StartWeights {
    /// File mode: the config's `weights_file` (missing: no overrides), watched from then on.
    File,
    /// Fleet mode: the weights come from etcd (named `origin` in errors), and the proxy starts
    /// on `document` (`None`: the config's own weights).
    Store {
        /// `etcd:KEY`.
        origin: PathBuf,
        /// The document to start on, chosen and checked by the store.
        document: Option<WeightsDocument>,
        /// Why etcd's own document was not used, if it was invalid: counted and reported
        /// like a refused reload.
        refused: Option<ReloadError>,
    },
}

/// A weights document checked against a config: its weights and its text.
#[derive(Clone, Debug)]
pub struct WeightsDocument {
    /// The overrides, resolved against the config's routes.
    pub weights: Weights,
    /// The document as read.
    pub text: String,
}

/// What became of a weights document offered by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// A new generation with it is in force.
    Published,
    /// It was already in force, or there was nothing to do (a deletion while no document was
    /// in force): nothing published.
    InForce,
    /// Refused: invalid, or a deletion; the weights in force stay.
    Refused,
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
    /// Fleet mode: the weights in force, from etcd, do not fit the new config.
    #[error("the weights in force (from etcd) do not fit the new config (put weights that fit in etcd, or fix the config first):\n{0}")]
    StoreMismatch(ConfigError),
    /// Fleet mode: the etcd key of the weights was deleted.
    #[error("{}: key deleted; keeping the weights in force (put `routes: {{}}` to drop all overrides)", .0.display())]
    KeyDeleted(PathBuf),
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

impl StartConfig {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ReloadError> {
        let bytes = std::fs::read(path).ok();
        let config = Config::load(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl WeightsDocument {
    /// Checks `text`, read from `origin` (a file, or `etcd:KEY`), against `config`'s routes.
    pub fn check(text: String, origin: &Path, config: &Config) -> Result<Self, ReloadError> {
        let weights =
            Weights::parse(&text, origin, &config.routes).map_err(ReloadError::Weights)?;
        Ok(Self { weights, text })
    }
}

impl Reloader {
    /// Starts on the config read at start and the weights `weights` says. Errors here stop the
    /// process: an invalid config, or (file mode) an invalid weights file. In fleet mode the
    /// store has already chosen a valid document or none.
    pub fn start(
        start: StartConfig,
        weights: StartWeights,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, Arc<Routing>), ReloadError> {
        let StartConfig {
            path: config_path,
            bytes: config_bytes,
            config,
        } = start;
        let config = Arc::new(config);
        let (store, document, weights_seen, refused) = match weights {
            // Missing at start: no overrides yet (the control creates it).
            StartWeights::File => match &config.weights_file {
                Some(path) => match read_weights(path, &config)? {
                    Some((document, bytes)) => (None, Some(document), Some(bytes), None),
                    None => (None, None, None, None),
                },
                None => (None, None, None, None),
            },
            StartWeights::Store {
                origin,
                document,
                refused,
            } => (Some(origin), document, None, refused),
        };
        let (weights, weights_text) = match document {
            Some(document) => (document.weights, Some(document.text)),
            None => (Weights::none(), None),
        };
        let registry = EndpointRegistry::default();
        let snapshot = Snapshot::build(1, config.clone(), weights, &registry, &metrics)?;
        metrics.set_generation(1);
        let routing = Arc::new(Routing::new(snapshot));
        publish_weights(&metrics, &routing.snapshot(), None);
        let reloader = Self {
            config_path,
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
            store,
        };
        if let Some(e) = refused {
            reloader.refuse("weights", e.to_string(), sluice_config::unix_now());
        }
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

    /// The `weights_file` of the config in force: in fleet mode, where etcd's documents are
    /// cached.
    pub fn weights_file(&self) -> Option<PathBuf> {
        self.routing.snapshot().config.weights_file.clone()
    }

    /// The weights file this reloader reads and watches in `config`: none in fleet mode.
    fn own_weights_file<'a>(&self, config: &'a Config) -> Option<&'a Path> {
        match self.store {
            Some(_) => None,
            None => config.weights_file.as_deref(),
        }
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
        let weights_path = self
            .own_weights_file(&current.config)
            .map(Path::to_path_buf);
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
                let text = bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
                outcomes.push((
                    "weights",
                    self.next_weights(&mut state, &current, text, path),
                ));
            }
        }
        let at = sluice_config::unix_now();
        let mut published = false;
        for (what, result) in outcomes {
            published |= self.publish(what, result, at, None);
        }
        for certificate in &self.certificates {
            self.reload_certificate(certificate, forced, at);
        }
        published
    }

    /// Applies a weights document offered by the store (fleet mode): `text` is the document
    /// of etcd `revision`, `None` when the key was deleted. It is checked against the config
    /// in force and published exactly like a weights file: an invalid document or a deletion
    /// is refused (counted, logged, reported in `/config`) and the weights in force stay. A
    /// config refused because the weights in force did not fit it is retried with the new
    /// document first. Parses and builds: call it on a blocking thread.
    pub fn apply_weights_document(&self, text: Option<&str>, revision: i64) -> Offered {
        let mut state = self.lock();
        // Already in force (read again after a reconnect, or the start's cached copy).
        if text.is_some() && text == state.weights_text.as_deref() {
            return Offered::InForce;
        }
        // Only the store calls this; in file mode the weights file's next change replaces it.
        let origin = match &self.store {
            Some(origin) => origin.clone(),
            None => PathBuf::from("weights"),
        };
        let at = sluice_config::unix_now();
        let revision = Some(revision);
        if let (true, Some(text)) = (state.config_pending, text) {
            let kept = state.weights_text.replace(text.to_string());
            let result = self.reload_config(&mut state);
            if result.is_ok() {
                state.config_pending = false;
                self.publish("config", result, at, revision);
                return Offered::Published;
            }
            state.weights_text = kept;
            self.publish("config", result, at, revision);
        }
        let current = self.routing.snapshot();
        let result = self.next_weights(&mut state, &current, text.map(str::to_string), &origin);
        let offered = match &result {
            Ok(Some(_)) => Offered::Published,
            Ok(None) => Offered::InForce,
            Err(_) => Offered::Refused,
        };
        self.publish("weights", result, at, revision);
        offered
    }

    /// Puts `result`, a reload of `what`, into effect: a new snapshot is published (with its
    /// generation, weight gauges and report), a refusal is logged, counted and reported.
    /// Returns whether a snapshot was published. Call it holding the state lock, so
    /// publishes happen in generation order.
    fn publish(
        &self,
        what: &'static str,
        result: Result<Option<Snapshot>, ReloadError>,
        at: u64,
        revision: Option<i64>,
    ) -> bool {
        match result {
            Ok(None) => false,
            Ok(Some(snapshot)) => {
                let generation = snapshot.generation;
                let previous = self.routing.replace(Arc::new(snapshot));
                self.metrics.set_generation(generation);
                publish_weights(&self.metrics, &self.routing.snapshot(), Some(&previous));
                match revision {
                    Some(revision) => info!(what, generation, revision, "reloaded"),
                    None => info!(what, generation, "reloaded"),
                }
                self.succeed(what, at);
                true
            }
            Err(e) => {
                match revision {
                    Some(revision) => {
                        error!(what, revision, error = %e, "reload rejected; the previous config stays in force")
                    }
                    None => {
                        error!(what, error = %e, "reload rejected; the previous config stays in force")
                    }
                }
                self.refuse(what, e.to_string(), at);
                false
            }
        }
    }

    /// Counts and reports an applied reload of `what`.
    fn succeed(&self, what: &'static str, at: u64) {
        self.metrics.reload(true);
        self.last.send_replace(Some(ReloadReport {
            result: "ok",
            what,
            error: None,
            at,
        }));
    }

    /// Counts and reports a refused reload of `what` (logging is the caller's).
    fn refuse(&self, what: &'static str, error: String, at: u64) {
        self.metrics.reload(false);
        self.last.send_replace(Some(ReloadReport {
            result: "error",
            what,
            error: Some(error),
            at,
        }));
    }

    /// Installs `certificate`'s listener's files if they changed; a bad pair keeps the one in
    /// force.
    fn reload_certificate(&self, certificate: &ListenerTls, forced: bool, at: u64) {
        let listener = certificate.listener();
        match certificate.reload(forced) {
            Ok(None) => {}
            Ok(Some(expires)) => {
                info!(
                    listener,
                    expires_at = expires.unwrap_or_default(),
                    "listener certificate reloaded; new handshakes use it"
                );
                self.succeed("certificate", at);
            }
            Err(e) => {
                error!(listener, error = %e, "listener certificate rejected; the previous certificate stays in force");
                self.refuse(
                    "certificate",
                    format!("listener \"{listener}\": tls: {e}"),
                    at,
                );
            }
        }
    }

    fn reload_config(&self, state: &mut ReloadState) -> Result<Option<Snapshot>, ReloadError> {
        let config = Config::load(&self.config_path)?;
        warn_about_startup_only_changes(&self.startup, &config);
        let (weights, weights_text, weights_seen) = match (&self.store, &config.weights_file) {
            // Fleet mode: etcd's document in force, checked against the new config.
            (Some(origin), _) => match &state.weights_text {
                Some(text) => {
                    let weights = Weights::parse(text, origin, &config.routes)
                        .map_err(ReloadError::StoreMismatch)?;
                    (weights, state.weights_text.clone(), None)
                }
                None => (Weights::none(), None, None),
            },
            (None, None) => (Weights::none(), None, None),
            // The weights file as it is now; if it is gone, the weights in force stay.
            (None, Some(path)) => match read_weights(path, &config)? {
                Some((document, bytes)) => (document.weights, Some(document.text), Some(bytes)),
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

    /// The next generation with the weights document `text` from `origin` on top of
    /// `current`. `None` (the file or key is gone) keeps the weights in force: refused when
    /// there were some, nothing to do otherwise.
    fn next_weights(
        &self,
        state: &mut ReloadState,
        current: &Snapshot,
        text: Option<String>,
        origin: &Path,
    ) -> Result<Option<Snapshot>, ReloadError> {
        let Some(text) = text else {
            if state.weights_text.is_none() {
                return Ok(None);
            }
            return Err(match self.store {
                Some(_) => ReloadError::KeyDeleted(origin.to_path_buf()),
                None => ReloadError::WeightsDeleted(origin.to_path_buf()),
            });
        };
        let document = WeightsDocument::check(text, origin, &current.config)?;
        state.generation += 1;
        state.weights_text = Some(document.text);
        Ok(Some(
            current.with_weights(state.generation, document.weights),
        ))
    }

    /// Starts watching the files' directories (and SIGHUP) now, so no change made after this
    /// returns can be missed; [`Watching::run`] then reloads on each change and keeps watching
    /// the files of the config in force.
    pub fn watch(self: Arc<Self>) -> Watching {
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let mut files = FileWatch::start(tx.clone());
        let config = self.routing.snapshot().config.clone();
        files.follow(
            &self.config_path,
            self.own_weights_file(&config),
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
                let weights = this.own_weights_file(&config);
                if files.follow(&this.config_path, weights, &this.certificate_files()) {
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

/// The weights file at `path` checked against `config`, with its bytes, or `None` when the
/// file does not exist (or cannot be read).
fn read_weights(
    path: &Path,
    config: &Config,
) -> Result<Option<(WeightsDocument, Vec<u8>)>, ReloadError> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let document = WeightsDocument::check(text, path, config)?;
    Ok(Some((document, bytes)))
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
    if running.store != new.store {
        warn!("store changed in the config file; it applies only after a restart (the rest of the change is applied)");
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
mod tests;
