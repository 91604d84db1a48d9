//! The control loop: runs each rollout's analysis every interval, applies operator commands,
//! notices hand edits and canary version changes, and carries out every decision (write the
//! weights file, persist state, log one line with the numbers, update metrics).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sluice_config::{Config, MetricsSource as SourceConfig, Rollout, Weight, WEIGHT_SCALE};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::analysis::{judge, unmeasurable};
use crate::metrics::ControlMetrics;
use crate::rollout::{
    decide, Action, CheckRecord, Decision, DecisionRecord, Event, Phase, Refusal, RolloutState,
};
use crate::source::{MetricSource, PrometheusSource, ScrapeSource};
use crate::store::{Store, StoreError};
use crate::weights_file::{Entry, WeightsFile};

/// How often the config file and the weights file are looked at between checks.
const POLL: Duration = Duration::from_secs(1);
/// Decisions kept in memory per rollout for `/status` (the log has them all).
const HISTORY: usize = 50;

/// Makes the metric source of a rollout (tests and the demo can substitute their own).
pub type SourceFactory = Box<dyn Fn(&Rollout) -> Box<dyn MetricSource> + Send>;

/// An operator command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `start`.
    Start,
    /// `promote`.
    Promote,
    /// `promote --full`.
    PromoteFull,
    /// `abort`.
    Abort,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `retry`.
    Retry,
}

/// A command for one rollout, with where to send the answer.
#[derive(Debug)]
pub struct Request {
    /// The rollout's name.
    pub rollout: String,
    /// What to do.
    pub command: Command,
    /// The decision's message, or why not.
    pub reply: oneshot::Sender<Result<String, CommandError>>,
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No rollout has that name.
    #[error("unknown rollout \"{name}\" (known: {known})")]
    Unknown {
        /// The name given.
        name: String,
        /// The rollouts that exist.
        known: String,
    },
    /// The transition is not allowed from the current phase.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The weights file could not be written; nothing changed.
    #[error("{0}")]
    Write(String),
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] sluice_config::ConfigError),
    /// The state file is unreadable.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The controller's view for `/status`, the CLI and the demo.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Every rollout of the config, in file order.
    pub rollouts: Vec<RolloutStatus>,
}

/// One rollout in [`Status`].
#[derive(Clone, Debug, Serialize)]
pub struct RolloutStatus {
    /// Name.
    pub name: String,
    /// The route it moves.
    pub route: String,
    /// Stable backend.
    pub stable: String,
    /// Canary backend.
    pub canary: String,
    /// Phase, spelled as in DESIGN.md.
    pub phase: Phase,
    /// 1-based step (0 when idle).
    pub step: usize,
    /// The steps (canary percent).
    pub steps: Vec<Weight>,
    /// Canary weight in force (percent).
    pub canary_weight: Weight,
    /// Failures counted towards the limit.
    pub failures: u32,
    /// The limit.
    pub failure_limit: u32,
    /// Why paused.
    pub paused_reason: Option<String>,
    /// The canary's version in sluice.yaml.
    pub canary_version: Option<String>,
    /// Seconds between checks.
    pub interval_seconds: f64,
    /// Seconds until the next check, while progressing.
    pub next_check_in_seconds: Option<f64>,
    /// The thresholds.
    pub analysis: sluice_config::Analysis,
    /// The last check.
    pub last_check: Option<CheckRecord>,
    /// The last decision (persisted across restarts).
    pub last_decision: Option<DecisionRecord>,
    /// Recent decisions of this process, oldest first (at most 50).
    pub decisions: Vec<DecisionRecord>,
    /// Decisions made by this process so far (the list above keeps only the last ones).
    pub decision_count: u64,
}

/// The controller. Build with [`Controller::new`], drive with [`Controller::run`].
pub struct Controller {
    config_path: PathBuf,
    config: Arc<Config>,
    config_bytes: Option<Vec<u8>>,
    store: Store,
    weights: WeightsFile,
    managed: Vec<Managed>,
    metrics: Arc<ControlMetrics>,
    status: watch::Sender<Status>,
    factory: SourceFactory,
    /// Rollouts whose canary version changed at start-up, to start once running.
    pending_starts: Vec<(usize, String)>,
    /// State of rollouts that are not in the config (removed, or a half-written config was
    /// read): kept and persisted, restored if they come back.
    dormant: BTreeMap<String, RolloutState>,
}

struct Managed {
    rollout: Rollout,
    state: RolloutState,
    source: Box<dyn MetricSource>,
    next_check: Option<Instant>,
    history: VecDeque<DecisionRecord>,
    decisions: u64,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config_path", &self.config_path)
            .field("rollouts", &self.managed.len())
            .finish()
    }
}

/// The default metric source of a rollout: as its `metrics:` section says.
pub fn default_source(rollout: &Rollout) -> Box<dyn MetricSource> {
    let timeout = (rollout.interval / 2).clamp(Duration::from_millis(500), Duration::from_secs(10));
    match &rollout.metrics {
        SourceConfig::Scrape { targets } => {
            Box::new(ScrapeSource::new(rollout, targets.clone(), timeout))
        }
        SourceConfig::Prometheus { url } => Box::new(PrometheusSource::new(rollout, url, timeout)),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn canary_version(config: &Config, rollout: &Rollout) -> Option<String> {
    config
        .upstream(&rollout.canary)
        .and_then(|(_, u)| u.version.clone())
}

impl Controller {
    /// Loads the config and the persisted state. Nothing is written yet.
    pub fn new(
        config_path: &Path,
        factory: SourceFactory,
    ) -> Result<(Self, watch::Receiver<Status>), ControlError> {
        let config_bytes = std::fs::read(config_path).ok();
        let config = Arc::new(Config::load(config_path)?);
        let store = Store::new(&config.control.state);
        let mut states = store.load()?;
        let metrics = Arc::new(ControlMetrics::new());
        let weights_path = config
            .weights_file
            .clone()
            .unwrap_or_else(|| config_path.with_file_name("weights.yaml"));
        let mut managed = Vec::new();
        let mut pending_starts = Vec::new();
        for rollout in &config.rollouts {
            let mut state = states.remove(&rollout.name).unwrap_or_default();
            let version = canary_version(&config, rollout);
            match (&state.canary_version, &version) {
                (Some(seen), Some(now)) if seen != now => {
                    pending_starts.push((managed.len(), format!("canary version {seen} -> {now}")));
                }
                _ => {}
            }
            state.canary_version = version.or(state.canary_version);
            metrics.register(&rollout.name);
            metrics.state(&rollout.name, &state);
            managed.push(Managed {
                source: factory(rollout),
                rollout: rollout.clone(),
                state,
                next_check: None,
                history: VecDeque::new(),
                decisions: 0,
            });
        }
        for name in states.keys() {
            warn!(rollout = %name, "state kept for a rollout that is not in the config");
        }
        let (status, receiver) = watch::channel(Status::default());
        let controller = Self {
            config_path: config_path.to_path_buf(),
            config,
            config_bytes,
            store,
            weights: WeightsFile::new(&weights_path),
            managed,
            metrics,
            status,
            factory,
            pending_starts,
            dormant: states,
        };
        controller.publish();
        Ok((controller, receiver))
    }

    /// The metrics, for the admin endpoint.
    pub fn metrics(&self) -> Arc<ControlMetrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes, serving `requests` meanwhile.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // A restarted control resumes where it was: no weight is written, the schedule
        // starts over from now with a fresh baseline.
        let now = Instant::now();
        for m in &mut self.managed {
            if m.state.phase == Phase::Progressing {
                m.source.begin().await;
                m.next_check = Some(now + m.rollout.interval);
                info!(rollout = %m.rollout.name, phase = m.state.phase.as_str(), canary_weight = %m.state.canary_weight, step = m.state.step + 1, "resuming rollout");
            }
        }
        let starts = std::mem::take(&mut self.pending_starts);
        self.auto_start(starts).await;
        self.persist();
        self.publish();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self.managed.iter().filter_map(|m| m.next_check).min();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                () = tokio::time::sleep_until(next.unwrap_or(far)), if next.is_some() => {
                    let now = Instant::now();
                    let due: Vec<usize> = (0..self.managed.len())
                        .filter(|&i| self.managed[i].next_check.is_some_and(|t| t <= now))
                        .collect();
                    for i in due {
                        self.check(i).await;
                    }
                }
                Some(request) = requests.recv() => {
                    let result = self.command(&request.rollout, request.command).await;
                    let _ = request.reply.send(result);
                }
                _ = poll.tick() => {
                    self.reload_config().await;
                    self.detect_hand_edits().await;
                    self.publish();
                }
                () = &mut shutdown => break,
            }
        }
        self.persist();
    }

    async fn command(&mut self, name: &str, command: Command) -> Result<String, CommandError> {
        let Some(index) = self.managed.iter().position(|m| m.rollout.name == name) else {
            let known: Vec<&str> = self
                .managed
                .iter()
                .map(|m| m.rollout.name.as_str())
                .collect();
            return Err(CommandError::Unknown {
                name: name.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        };
        let event = match command {
            Command::Start => Event::Start {
                automatic: false,
                reason: "started by an operator".into(),
            },
            Command::Promote => Event::Promote,
            Command::PromoteFull => Event::PromoteFull,
            Command::Abort => Event::Abort,
            Command::Pause => Event::Pause,
            Command::Resume => Event::Resume,
            Command::Retry => Event::Retry,
        };
        self.apply(index, event).await.map(|d| d.message)
    }

    /// Ends rollout `index`'s interval: measure, judge, decide.
    async fn check(&mut self, index: usize) {
        self.detect_hand_edit(index).await;
        let m = &mut self.managed[index];
        if m.state.phase != Phase::Progressing {
            m.next_check = None;
            return;
        }
        let budget = m
            .rollout
            .interval
            .clamp(Duration::from_secs(1), Duration::from_secs(15));
        let check = match tokio::time::timeout(budget, m.source.finish()).await {
            Ok(Ok(measurement)) => judge(&m.rollout.analysis, &measurement),
            Ok(Err(e)) => unmeasurable(e.to_string()),
            Err(_) => unmeasurable(format!("measurement took longer than {budget:?}")),
        };
        // The measurement took time: a hand edit made meanwhile must not be overwritten by
        // this check's decision.
        self.detect_hand_edit(index).await;
        let m = &mut self.managed[index];
        if m.state.phase != Phase::Progressing {
            m.next_check = None;
            return;
        }
        m.state.last_check = Some(CheckRecord {
            check: check.clone(),
            at: unix_now(),
            canary_weight: m.state.canary_weight,
        });
        m.next_check = Some(Instant::now() + m.rollout.interval);
        let name = m.rollout.name.clone();
        if let Err(e) = self.apply(index, Event::Check(check.clone())).await {
            error!(rollout = %name, error = %e, "check could not be applied");
        }
        // Counted once the status shows the check, so whoever sees the count sees the check.
        self.metrics.check(&name, &check);
    }

    /// Decides, then carries the decision out: write weights first (if that fails nothing
    /// changes), then commit and persist the state, log, publish.
    async fn apply(&mut self, index: usize, event: Event) -> Result<Decision, CommandError> {
        let from_check = matches!(event, Event::Check(_));
        let m = &mut self.managed[index];
        let was = m.state.phase;
        let (decision, mut next) = decide(&m.rollout, &m.state, event)?;
        if let Some(canary) = decision.write {
            let stable = Weight::from_hundredths(
                100 * WEIGHT_SCALE - canary.hundredths().min(100 * WEIGHT_SCALE),
            );
            let written = self.weights.set(
                &self.config.routes,
                &m.rollout.route,
                (&m.rollout.stable, stable),
                (&m.rollout.canary, canary),
            );
            if let Err(e) = written {
                error!(rollout = %m.rollout.name, error = %e, "cannot write the weights file; decision not applied");
                return Err(CommandError::Write(e.to_string()));
            }
            next.written = Some((stable, canary));
        }
        let record = DecisionRecord {
            action: decision.action,
            message: decision.message.clone(),
            at: unix_now(),
        };
        next.last_decision = Some(record.clone());
        m.history.push_back(record);
        m.decisions += 1;
        while m.history.len() > HISTORY {
            m.history.pop_front();
        }
        m.state = next;
        // The numbers belong to a decision only when a check made it.
        let check = m.state.last_check.as_ref().filter(|_| from_check);
        let (requests, error_rate, p95) = check.map_or((None, None, None), |c| {
            (Some(c.check.requests), c.check.error_rate, c.check.p95)
        });
        match decision.action {
            Action::Failed | Action::RolledBack | Action::Aborted | Action::Paused => warn!(
                rollout = %m.rollout.name,
                action = decision.action.as_str(),
                phase = m.state.phase.as_str(),
                canary_weight = %m.state.canary_weight,
                requests, error_rate, p95_seconds = p95,
                "{}", decision.message
            ),
            _ => info!(
                rollout = %m.rollout.name,
                action = decision.action.as_str(),
                phase = m.state.phase.as_str(),
                canary_weight = %m.state.canary_weight,
                requests, error_rate, p95_seconds = p95,
                "{}", decision.message
            ),
        }
        if m.state.phase == Phase::Progressing {
            if decision.write.is_some() || was != Phase::Progressing {
                // A new weight (or a fresh start): measure only traffic from now on.
                m.source.begin().await;
                m.next_check = Some(Instant::now() + m.rollout.interval);
            }
        } else {
            m.next_check = None;
        }
        self.metrics.state(&m.rollout.name, &m.state);
        self.persist();
        self.publish();
        Ok(decision)
    }

    async fn detect_hand_edits(&mut self) {
        for index in 0..self.managed.len() {
            self.detect_hand_edit(index).await;
        }
    }

    /// Pauses a progressing rollout whose weights file entry is not what the control wrote.
    async fn detect_hand_edit(&mut self, index: usize) {
        let m = &self.managed[index];
        let Some((stable, canary)) = m.state.written else {
            return;
        };
        if m.state.phase != Phase::Progressing {
            return;
        }
        let entry = self.weights.entry(
            &self.config.routes,
            &m.rollout.route,
            &m.rollout.stable,
            &m.rollout.canary,
        );
        let what = match entry {
            Entry::Weights(Some(s), Some(c)) if s == stable && c == canary => return,
            Entry::Weights(s, c) => format!(
                "it says {}={} {}={}",
                m.rollout.stable,
                s.map_or("unset".into(), |w| w.to_string()),
                m.rollout.canary,
                c.map_or("unset".into(), |w| w.to_string())
            ),
            Entry::Missing => format!("its entry for route {} was removed", m.rollout.route),
            Entry::NoFile => "the file was deleted".into(),
            Entry::Invalid(e) => format!("it is invalid: {}", e.lines().next().unwrap_or_default()),
        };
        let _ = self.apply(index, Event::HandEdited(what)).await;
    }

    /// Re-reads sluice.yaml when it changed: updated rollout definitions apply, and a new
    /// canary version starts its rollout.
    async fn reload_config(&mut self) {
        let bytes = std::fs::read(&self.config_path).ok();
        if bytes == self.config_bytes {
            return;
        }
        self.config_bytes = bytes;
        let config = match Config::load(&self.config_path) {
            Ok(config) => Arc::new(config),
            Err(e) => {
                error!(error = %e, "config reload rejected; the previous config stays in force");
                return;
            }
        };
        let mut previous: BTreeMap<String, Managed> = self
            .managed
            .drain(..)
            .map(|m| (m.rollout.name.clone(), m))
            .collect();
        let mut starts = Vec::new();
        for rollout in &config.rollouts {
            let mut m = match previous.remove(&rollout.name) {
                Some(mut m) => {
                    let measures_differently = m.rollout.metrics != rollout.metrics
                        || m.rollout.route != rollout.route
                        || m.rollout.stable != rollout.stable
                        || m.rollout.canary != rollout.canary;
                    if measures_differently {
                        m.source = (self.factory)(rollout);
                        if m.state.phase == Phase::Progressing {
                            m.source.begin().await;
                        }
                    }
                    m.rollout = rollout.clone();
                    m
                }
                None => {
                    self.metrics.register(&rollout.name);
                    let state = self.dormant.remove(&rollout.name).unwrap_or_default();
                    self.metrics.state(&rollout.name, &state);
                    let mut m = Managed {
                        source: (self.factory)(rollout),
                        rollout: rollout.clone(),
                        state,
                        next_check: None,
                        history: VecDeque::new(),
                        decisions: 0,
                    };
                    if m.state.phase == Phase::Progressing {
                        m.source.begin().await;
                        m.next_check = Some(Instant::now() + m.rollout.interval);
                    }
                    m
                }
            };
            let version = canary_version(&config, rollout);
            if let (Some(seen), Some(now)) = (&m.state.canary_version, &version) {
                if seen != now {
                    starts.push((
                        self.managed.len(),
                        format!("canary version {seen} -> {now}"),
                    ));
                }
            }
            if version.is_some() {
                m.state.canary_version = version;
            }
            self.managed.push(m);
        }
        for (name, m) in previous {
            warn!(rollout = %name, phase = m.state.phase.as_str(), "rollout no longer in the config; its state is kept");
            self.dormant.insert(name, m.state);
        }
        // After success, once stable runs the version that succeeded, give it the traffic
        // back, so the next canary deploy starts from 0% instead of inheriting 100%.
        let mut handbacks = Vec::new();
        for (index, m) in self.managed.iter().enumerate() {
            let stable_version = config
                .upstream(&m.rollout.stable)
                .and_then(|(_, u)| u.version.clone());
            let canary_weight = m.state.written.map(|(_, c)| c);
            if m.state.phase == Phase::Succeeded
                && stable_version.is_some()
                && stable_version == m.state.canary_version
                && canary_weight.is_some_and(|c| !c.is_zero())
                && !starts.iter().any(|(i, _)| *i == index)
            {
                handbacks.push((index, stable_version.unwrap_or_default()));
            }
        }
        self.config = config;
        for (index, version) in handbacks {
            let _ = self.apply(index, Event::StablePromoted(version)).await;
        }
        info!(rollouts = self.managed.len(), "config reloaded");
        self.auto_start(starts).await;
        self.persist();
    }

    /// Starts the rollouts whose canary version changed (`(index, why)`).
    async fn auto_start(&mut self, starts: Vec<(usize, String)>) {
        for (index, reason) in starts {
            let event = Event::Start {
                automatic: true,
                reason,
            };
            if let Err(e) = self.apply(index, event).await {
                error!(rollout = %self.managed[index].rollout.name, error = %e, "automatic start failed");
            }
        }
    }

    fn persist(&self) {
        let mut states = self.dormant.clone();
        states.extend(
            self.managed
                .iter()
                .map(|m| (m.rollout.name.clone(), m.state.clone())),
        );
        if let Err(e) = self.store.save(&states) {
            error!(error = %e, "cannot persist rollout state");
        }
    }

    fn publish(&self) {
        let now = Instant::now();
        let rollouts = self
            .managed
            .iter()
            .map(|m| RolloutStatus {
                name: m.rollout.name.clone(),
                route: m.rollout.route.clone(),
                stable: m.rollout.stable.clone(),
                canary: m.rollout.canary.clone(),
                phase: m.state.phase,
                step: if m.state.phase == Phase::Idle {
                    0
                } else {
                    m.state.step + 1
                },
                steps: m.rollout.steps.clone(),
                canary_weight: m.state.canary_weight,
                failures: m.state.failures,
                failure_limit: m.rollout.analysis.failure_limit,
                paused_reason: m.state.paused_reason.clone(),
                canary_version: m.state.canary_version.clone(),
                interval_seconds: m.rollout.interval.as_secs_f64(),
                next_check_in_seconds: m
                    .next_check
                    .map(|t| t.saturating_duration_since(now).as_secs_f64()),
                analysis: m.rollout.analysis.clone(),
                last_check: m.state.last_check.clone(),
                last_decision: m.state.last_decision.clone(),
                decisions: m.history.iter().cloned().collect(),
                decision_count: m.decisions,
            })
            .collect();
        self.status.send_replace(Status { rollouts });
    }
}
