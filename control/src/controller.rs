//! The control loop: an actor that receives events — operator commands, timer ticks, and
//! measurements finished by each rollout's own task — turns each into a decision with the
//! pure [`decide`], and carries the decision out (write weights, persist, log, publish).
//! Nothing slow is awaited here, so a command is answered at once whatever the targets do.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice_config::{
    known_list, unix_now, Config, HookKind, MetricsSource as SourceConfig, Rollout, Strategy,
    Webhook,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::analysis::{conclude, judge, judge_gate, unmeasurable, Check};
use crate::auth::Caller;
use crate::measure::{Measured, Measurer, Plan};
use crate::metrics::ControlMetrics;
use crate::rollout::{
    decide, next_is_last, refused, shadowing, Action, Context, Decision, Event, Phase, Refusal,
    RolloutState,
};
use crate::source::{MetricSource, PromQl, PrometheusSource, ScrapeSource};
use crate::status::{RolloutStatus, Status};
use crate::store::{FileStore, Store, StoreError, WriteError};
use crate::webhook::{deliver, Payload};
use crate::weights_file::Entry;
use crate::window::Subject;

/// How often the config file and the weights are looked at between checks.
const POLL: Duration = Duration::from_secs(1);

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
    /// `approve`.
    Approve,
}

impl Command {
    /// The command as typed on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Promote => "promote",
            Self::PromoteFull => "promote --full",
            Self::Abort => "abort",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Retry => "retry",
            Self::Approve => "approve",
        }
    }
}

/// A command for one rollout, with where to send the answer.
#[derive(Debug)]
pub struct Request {
    /// The rollout's name.
    pub rollout: String,
    /// What to do.
    pub command: Command,
    /// Who asked (for the audit trail).
    pub caller: Caller,
    /// For `start`: the canary version being deployed (`start --version V`).
    pub version: Option<String>,
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
    /// The weights could not be written; nothing changed.
    #[error("cannot write the weights, nothing changed: {0}")]
    Write(String),
    /// This control is a standby (or just lost the leadership): send it to the leader.
    #[error(
        "this control is not the leader (any more); send the command again, it goes to the leader"
    )]
    NotLeader,
    /// A decision of the schedule found the weights edited by someone else; nothing written.
    #[error("weights edited by hand: {0}")]
    Edited(String),
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] sluice_config::ConfigError),
    /// The persisted state is unreadable.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The controller. Build with [`Controller::new`], drive with [`Controller::run`].
pub struct Controller {
    config_path: PathBuf,
    config: Arc<Config>,
    config_bytes: Option<Vec<u8>>,
    store: Arc<dyn Store>,
    managed: Vec<Managed>,
    metrics: Arc<ControlMetrics>,
    status: watch::Sender<Status>,
    factory: SourceFactory,
    /// Where measuring tasks send their results, and where they arrive.
    measured: (
        mpsc::UnboundedSender<Measured>,
        mpsc::UnboundedReceiver<Measured>,
    ),
    /// The last interval number given out (see `Managed::epoch`).
    epochs: u64,
    /// Rollouts whose canary version changed while the control was down, to start once
    /// running.
    pending_starts: Vec<(usize, String)>,
    /// State of rollouts that are not in the config (removed, or a half-written config was
    /// read): kept in the store, restored if they come back.
    dormant: BTreeMap<String, RolloutState>,
}

/// One rollout of the config with its state and schedule.
struct Managed {
    rollout: Rollout,
    state: RolloutState,
    measurer: Measurer,
    /// The interval being measured, numbered by the controller across all rollouts and
    /// measurers: a late result of an interval that was started over is recognised and
    /// dropped.
    epoch: u64,
    /// The epoch of a measurement asked for and not yet back.
    in_flight: Option<u64>,
    /// When the interval under way ends (while progressing).
    next_check: Option<Instant>,
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

fn canary_version(config: &Config, rollout: &Rollout) -> Option<String> {
    config
        .upstream(&rollout.canary)
        .and_then(|(_, u)| u.version.clone())
}

/// `query` with its placeholders filled in: `{{canary_version}}`, `{{stable_version}}`,
/// `{{route}}`, `{{interval}}` (a PromQL duration).
fn render_query(
    query: &str,
    rollout: &Rollout,
    (canary, stable): &(Option<String>, Option<String>),
) -> String {
    let millis = rollout.interval.as_millis();
    let interval = if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    };
    query
        .replace("{{canary_version}}", canary.as_deref().unwrap_or(""))
        .replace("{{stable_version}}", stable.as_deref().unwrap_or(""))
        .replace("{{route}}", &rollout.route)
        .replace("{{interval}}", &interval)
}

/// How long one measurement may take: the interval, between 1 s and 15 s.
fn budget(rollout: &Rollout) -> Duration {
    rollout
        .interval
        .clamp(Duration::from_secs(1), Duration::from_secs(15))
}

impl Controller {
    /// Loads the config and the persisted state from the files the config names. Nothing
    /// is written yet.
    pub async fn new(
        config_path: &Path,
        factory: SourceFactory,
    ) -> Result<(Self, watch::Receiver<Status>), ControlError> {
        let config = Config::load(config_path)?;
        let store = Arc::new(FileStore::for_config(&config, config_path));
        Self::with_store(config_path, store, factory).await
    }

    /// Like [`new`](Self::new), with the weights and state kept in `store`.
    pub async fn with_store(
        config_path: &Path,
        store: Arc<dyn Store>,
        factory: SourceFactory,
    ) -> Result<(Self, watch::Receiver<Status>), ControlError> {
        let status = watch::Sender::new(Status::default());
        let receiver = status.subscribe();
        let metrics = Arc::new(ControlMetrics::new());
        let controller = Self::with_parts(config_path, store, factory, metrics, status).await?;
        Ok((controller, receiver))
    }

    /// Like [`with_store`](Self::with_store), recording into `metrics` and publishing into
    /// `status`, which outlive it (a fleet's leader runs one controller per term).
    pub async fn with_parts(
        config_path: &Path,
        store: Arc<dyn Store>,
        factory: SourceFactory,
        metrics: Arc<ControlMetrics>,
        status: watch::Sender<Status>,
    ) -> Result<Self, ControlError> {
        let config_bytes = std::fs::read(config_path).ok();
        let config = Arc::new(Config::load(config_path)?);
        let mut states = store.load_states().await?;
        let measured = mpsc::unbounded_channel();
        let mut managed = Vec::new();
        let mut pending_starts = Vec::new();
        for rollout in &config.rollouts {
            let mut state = states.remove(&rollout.name).unwrap_or_default();
            let version = canary_version(&config, rollout);
            if let (Some(seen), Some(now)) = (&state.canary_version, &version) {
                if seen != now {
                    pending_starts.push((managed.len(), format!("canary version {seen} -> {now}")));
                }
            }
            state.canary_version = version.or(state.canary_version);
            metrics.register(&rollout.name);
            metrics.state(&rollout.name, &state);
            managed.push(Managed::new(rollout, state, &factory, &measured.0));
        }
        for name in states.keys() {
            warn!(rollout = %name, "state kept for a rollout that is not in the config");
        }
        let controller = Self {
            config_path: config_path.to_path_buf(),
            config,
            config_bytes,
            store,
            managed,
            metrics,
            status,
            factory,
            measured,
            epochs: 0,
            pending_starts,
            dormant: states,
        };
        controller.publish();
        Ok(controller)
    }

    /// The metrics, for the admin endpoint.
    pub fn metrics(&self) -> Arc<ControlMetrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes, serving `requests` meanwhile.
    pub async fn run(
        mut self,
        requests: &mut mpsc::Receiver<Request>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // A restarted control resumes where it was: no weight is written, the schedule
        // starts over from now with a fresh baseline.
        for index in 0..self.managed.len() {
            let m = &self.managed[index];
            if m.state.phase == Phase::Progressing {
                info!(rollout = %m.rollout.name, phase = m.state.phase.as_str(), canary_weight = %m.state.canary_weight, step = m.state.step + 1, "resuming rollout");
                self.begin(index);
            }
        }
        let starts = std::mem::take(&mut self.pending_starts);
        self.auto_start(starts).await;
        self.publish();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = self
                .managed
                .iter()
                .filter(|m| m.in_flight.is_none())
                .filter_map(|m| m.next_check)
                .min();
            tokio::select! {
                () = sleep_until(due), if due.is_some() => self.ask_due_measurements(),
                Some(measured) = self.measured.1.recv() => self.measured(measured).await,
                Some(request) = requests.recv() => {
                    let result = self.command(&request).await;
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
    }

    /// Carries out an operator's command. Every command leaves one log line (the decision's,
    /// or the refusal's) naming the caller; a refused one is also kept in the history.
    async fn command(&mut self, request: &Request) -> Result<String, CommandError> {
        let result = self.try_command(request).await;
        if let Err(e) = &result {
            warn!(
                rollout = %request.rollout,
                command = request.command.as_str(),
                caller = %request.caller,
                error = %e,
                "command refused"
            );
        }
        result
    }

    async fn try_command(&mut self, request: &Request) -> Result<String, CommandError> {
        let name = request.rollout.as_str();
        let Some(index) = self.index(name) else {
            return Err(CommandError::Unknown {
                name: name.to_string(),
                known: known_list(self.managed.iter().map(|m| m.rollout.name.as_str())),
            });
        };
        if let (Command::Start, Some(version)) = (request.command, &request.version) {
            let m = &self.managed[index];
            // The pipeline's start and the automatic start on the new version race: whichever
            // comes second finds the rollout of that version running, and that is success.
            if matches!(m.state.phase, Phase::Progressing | Phase::Paused)
                && m.state.canary_version.as_deref() == Some(version.as_str())
            {
                let message = format!(
                    "already rolling out {version} (phase {}, canary {}%); nothing changed",
                    m.state.phase.as_str(),
                    m.state.canary_weight
                );
                info!(rollout = %name, caller = %request.caller, "{message}");
                return Ok(message);
            }
        }
        let event = match request.command {
            Command::Start => Event::Start {
                automatic: false,
                reason: String::new(),
                version: request.version.clone(),
            },
            Command::Promote => Event::Promote,
            Command::PromoteFull => Event::PromoteFull,
            Command::Abort => Event::Abort,
            Command::Pause => Event::Pause,
            Command::Resume => Event::Resume,
            Command::Retry => Event::Retry,
            Command::Approve => Event::Approve,
        };
        let context = Context {
            at: unix_now(),
            by: Some(request.caller.to_string()),
        };
        let m = &self.managed[index];
        match decide(&m.rollout, &m.state, event, &context) {
            Ok((decision, next)) => self
                .carry_out(index, decision, next)
                .await
                .map(|d| d.message),
            Err(refusal) => {
                let next = refused(&m.state, request.command.as_str(), &refusal, &context);
                self.commit(index, next);
                self.save(index).await;
                self.publish();
                Err(CommandError::Refused(refusal))
            }
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.managed.iter().position(|m| m.rollout.name == name)
    }

    /// Starts a new interval for rollout `index` now.
    fn begin(&mut self, index: usize) {
        self.epochs += 1;
        let m = &mut self.managed[index];
        m.epoch = self.epochs;
        m.measurer.begin();
        m.next_check = Some(Instant::now() + m.rollout.interval);
    }

    /// Asks every rollout whose interval is over for its measurement (answered later, as
    /// [`Measured`]).
    fn ask_due_measurements(&mut self) {
        let now = Instant::now();
        for index in 0..self.managed.len() {
            let m = &self.managed[index];
            if m.in_flight.is_some() || m.next_check.is_none_or(|t| t > now) {
                continue;
            }
            let plan = (m.state.phase == Phase::Progressing).then(|| self.plan(index));
            let m = &mut self.managed[index];
            m.next_check = None;
            if let Some(plan) = plan {
                m.in_flight = Some(m.epoch);
                m.measurer.finish(m.epoch, plan);
            }
        }
        self.publish();
    }

    /// What rollout `index`'s check of the interval that ends now needs: before the first
    /// step its gates (confirm-rollout and pre-rollout hooks, green health); afterwards the
    /// traffic (at a shadow step: the canary's mirrored copies), the `rollout` hooks,
    /// confirm-promotion hooks before the last step, and the custom queries.
    fn plan(&self, index: usize) -> Plan {
        let m = &self.managed[index];
        let r = &m.rollout;
        let payload = self.payload(index, None);
        let prometheus = r
            .prometheus
            .as_ref()
            .filter(|_| !r.analysis.checks.is_empty())
            .map(|url| PromQl::new(url, budget(r)));
        if m.state.gated {
            return Plan {
                traffic: None,
                hooks: r
                    .webhooks
                    .iter()
                    .filter(|h| matches!(h.kind, HookKind::ConfirmRollout | HookKind::PreRollout))
                    .cloned()
                    .collect(),
                payload,
                health: (r.strategy == Strategy::BlueGreen).then(|| r.canary.clone()),
                queries: Vec::new(),
                prometheus: None,
            };
        }
        let confirm = next_is_last(r, &m.state);
        let versions = self.versions(index);
        // A shadow step judges the route's copies to the canary, which has no users yet.
        let canary = if shadowing(r, &m.state) {
            Subject::Mirror
        } else {
            Subject::Backend
        };
        Plan {
            traffic: Some(canary),
            hooks: r
                .webhooks
                .iter()
                .filter(|h| {
                    h.kind == HookKind::Rollout || (confirm && h.kind == HookKind::ConfirmPromotion)
                })
                .cloned()
                .collect(),
            payload,
            health: None,
            queries: r
                .analysis
                .checks
                .iter()
                .map(|c| (c.clone(), render_query(&c.query, r, &versions)))
                .collect(),
            prometheus,
        }
    }

    /// Rollout `index`'s `(canary, stable)` versions: the canary's as the rollout saw it,
    /// stable's from the config.
    fn versions(&self, index: usize) -> (Option<String>, Option<String>) {
        let m = &self.managed[index];
        let stable = self
            .config
            .upstream(&m.rollout.stable)
            .and_then(|(_, u)| u.version.clone());
        let canary = m
            .state
            .canary_version
            .clone()
            .or_else(|| canary_version(&self.config, &m.rollout));
        (canary, stable)
    }

    /// The event of rollout `index` as hooks receive it, after `decision` when there is one.
    fn payload(&self, index: usize, decision: Option<&Decision>) -> Payload {
        let m = &self.managed[index];
        let r = &m.rollout;
        let (canary_version, stable_version) = self.versions(index);
        let record = decision.and_then(|_| m.state.history.last());
        let step = if m.state.phase == Phase::Idle || m.state.gated {
            0
        } else {
            m.state.step + 1
        };
        let text = match decision {
            Some(d) => format!(
                "sluice: rollout {} {} (canary {}%): {}",
                r.name,
                d.action.as_str(),
                m.state.canary_weight,
                d.message
            ),
            None => format!(
                "sluice: rollout {} is {} at canary {}% (step {step}/{})",
                r.name,
                m.state.phase.as_str(),
                m.state.canary_weight,
                r.steps.len()
            ),
        };
        Payload {
            rollout: r.name.clone(),
            kind: HookKind::Event.as_str(),
            phase: m.state.phase,
            step,
            steps: r.steps.len(),
            weight: m.state.canary_weight,
            canary_version,
            stable_version,
            action: decision.map(|d| d.action),
            message: decision.map(|d| d.message.clone()),
            check: m.state.last_check.as_ref().map(|c| c.check.clone()),
            by: record.and_then(|r| r.by.clone()),
            at: record.map_or_else(unix_now, |r| r.at),
            text,
        }
    }

    /// Sends `event` hooks for a decision of rollout `index`, and `post-rollout` hooks when it
    /// just ended. Delivery runs on its own tasks: nothing here waits for it.
    fn notify(&self, index: usize, decision: &Decision, was: Phase) {
        let m = &self.managed[index];
        let ended =
            matches!(m.state.phase, Phase::Succeeded | Phase::RolledBack) && was != m.state.phase;
        let hooks: Vec<Webhook> = m
            .rollout
            .webhooks
            .iter()
            .filter(|h| h.kind == HookKind::Event || (ended && h.kind == HookKind::PostRollout))
            .cloned()
            .collect();
        if hooks.is_empty() {
            return;
        }
        let payload = self.payload(index, Some(decision));
        let rollout = m.rollout.name.clone();
        for hook in hooks {
            let payload = payload.clone();
            let rollout = rollout.clone();
            tokio::spawn(async move {
                let outcome = deliver(&hook, &payload).await;
                if outcome.passed {
                    debug!(rollout = %rollout, hook = %hook.name, kind = hook.kind.as_str(), outcome = %outcome.detail, "webhook delivered");
                } else {
                    warn!(rollout = %rollout, hook = %hook.name, kind = hook.kind.as_str(), outcome = %outcome.detail, "webhook not delivered");
                }
            });
        }
    }

    /// A measurement came back: judge it and decide, unless it is stale or a hand edit
    /// happened meanwhile.
    async fn measured(&mut self, measured: Measured) {
        let Some(index) = self.index(&measured.rollout) else {
            return;
        };
        let m = &mut self.managed[index];
        if m.in_flight == Some(measured.epoch) {
            m.in_flight = None;
        }
        if measured.epoch != m.epoch || m.state.phase != Phase::Progressing {
            // The interval was started over (new weight) or the rollout left progressing.
            self.publish();
            return;
        }
        // The measurement took time: a hand edit made meanwhile wins over this check.
        if self.detect_hand_edit(index).await {
            return;
        }
        let m = &mut self.managed[index];
        let check = if m.state.gated {
            judge_gate(measured.gates)
        } else {
            let traffic = match measured.result {
                Ok(measurement) => judge(&m.rollout.analysis, &measurement),
                Err(reason) => unmeasurable(reason),
            };
            conclude(traffic, measured.gates, measured.custom)
        };
        // The finished measurement started the next interval.
        m.next_check = Some(Instant::now() + m.rollout.interval);
        let name = m.rollout.name.clone();
        match self.apply(index, Event::Check(check.clone())).await {
            Ok(_) => {}
            Err(CommandError::Edited(what)) => {
                let _ = self.apply(index, Event::HandEdited(what)).await;
            }
            Err(e) => error!(rollout = %name, error = %e, "check could not be applied"),
        }
        // Counted once the status shows the check, so whoever sees the count sees the check.
        self.metrics.check(&name, &check);
    }

    /// Decides `event` for rollout `index`, then carries the decision out.
    async fn apply(&mut self, index: usize, event: Event) -> Result<Decision, CommandError> {
        let m = &self.managed[index];
        let context = Context {
            at: unix_now(),
            by: None,
        };
        let (decision, next) = decide(&m.rollout, &m.state, event, &context)?;
        self.carry_out(index, decision, next).await
    }

    /// The effects of a decision, in order: write the weights (if that fails, nothing
    /// changes), commit and persist the state, log, update metrics and status, and start a
    /// new measuring interval when the weight changed.
    async fn carry_out(
        &mut self,
        index: usize,
        decision: Decision,
        next: RolloutState,
    ) -> Result<Decision, CommandError> {
        let m = &self.managed[index];
        if let Some(write) = decision.write {
            let expected = if write.if_unchanged {
                m.state.written
            } else {
                None
            };
            let written = self
                .store
                .write_weights(
                    &self.config.routes,
                    &m.rollout,
                    (write.stable, write.canary),
                    expected,
                    &next,
                )
                .await;
            match written {
                Ok(()) => {}
                Err(WriteError::Edited(entry)) => {
                    let r = &m.rollout;
                    return Err(CommandError::Edited(
                        entry.describe(&r.route, &r.stable, &r.canary),
                    ));
                }
                Err(WriteError::Failed(e)) => {
                    error!(rollout = %m.rollout.name, error = %e, "cannot write the weights; decision not applied");
                    return Err(CommandError::Write(e));
                }
            }
        }
        let was = m.state.phase;
        self.commit(index, next);
        self.save(index).await;
        let m = &mut self.managed[index];
        log_decision(&m.rollout.name, &decision, &m.state);
        self.metrics.state(&m.rollout.name, &m.state);
        self.notify(index, &decision, was);
        let m = &mut self.managed[index];
        let progressing = m.state.phase == Phase::Progressing;
        if progressing && (decision.write.is_some() || was != Phase::Progressing) {
            // A new weight (or a fresh start): measure only traffic from now on.
            self.begin(index);
        } else if !progressing {
            self.managed[index].next_check = None;
        }
        self.publish();
        Ok(decision)
    }

    fn commit(&mut self, index: usize, next: RolloutState) {
        self.managed[index].state = next;
    }

    /// Persists rollout `index`'s state; a failure is logged (the state in memory goes on).
    fn save(&self, index: usize) -> impl Future<Output = ()> + Send + 'static {
        let store = self.store.clone();
        let name = self.managed[index].rollout.name.clone();
        let state = self.managed[index].state.clone();
        async move {
            if let Err(e) = store.save_state(&name, &state).await {
                error!(rollout = %name, error = %e, "cannot persist rollout state");
            }
        }
    }

    async fn detect_hand_edits(&mut self) {
        for index in 0..self.managed.len() {
            self.detect_hand_edit(index).await;
        }
    }

    /// Pauses a progressing rollout whose weights are not what the control wrote; true when
    /// it did.
    async fn detect_hand_edit(&mut self, index: usize) -> bool {
        let m = &self.managed[index];
        let Some(written) = m.state.written else {
            return false;
        };
        if m.state.phase != Phase::Progressing {
            return false;
        }
        let entry = self
            .store
            .read_weights(&self.config.routes, &m.rollout)
            .await;
        if entry.says(written) {
            return false;
        }
        if let Entry::Unreadable(e) = &entry {
            // Not an edit: the store could not be asked (etcd away). Look again next time.
            debug!(rollout = %m.rollout.name, error = %e, "weights not readable; hand-edit check skipped");
            return false;
        }
        let r = &m.rollout;
        let what = entry.describe(&r.route, &r.stable, &r.canary);
        self.apply(index, Event::HandEdited(what)).await.is_ok()
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
        let mut fresh = Vec::new();
        for rollout in &config.rollouts {
            let m = match previous.remove(&rollout.name) {
                Some(mut m) => {
                    // The metric source is built from these: a change needs a new one.
                    let measures_differently = m.rollout.metrics != rollout.metrics
                        || m.rollout.route != rollout.route
                        || m.rollout.stable != rollout.stable
                        || m.rollout.canary != rollout.canary
                        || m.rollout.analysis.grpc_error_codes != rollout.analysis.grpc_error_codes;
                    m.rollout = rollout.clone();
                    if measures_differently {
                        let state = std::mem::take(&mut m.state);
                        m = Managed::new(rollout, state, &self.factory, &self.measured.0);
                        fresh.push(self.managed.len());
                    }
                    m
                }
                None => {
                    self.metrics.register(&rollout.name);
                    let state = self.dormant.remove(&rollout.name).unwrap_or_default();
                    self.metrics.state(&rollout.name, &state);
                    fresh.push(self.managed.len());
                    Managed::new(rollout, state, &self.factory, &self.measured.0)
                }
            };
            self.managed.push(m);
        }
        for (index, m) in self.managed.iter_mut().enumerate() {
            let version = canary_version(&config, &m.rollout);
            if let (Some(seen), Some(now)) = (&m.state.canary_version, &version) {
                if seen != now {
                    starts.push((index, format!("canary version {seen} -> {now}")));
                }
            }
            if version.is_some() {
                m.state.canary_version = version;
            }
        }
        for index in fresh {
            if self.managed[index].state.phase == Phase::Progressing {
                self.begin(index);
            }
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
    }

    /// Starts the rollouts whose canary version changed (`(index, why)`).
    async fn auto_start(&mut self, starts: Vec<(usize, String)>) {
        for (index, reason) in starts {
            let event = Event::Start {
                automatic: true,
                reason,
                version: None,
            };
            if let Err(e) = self.apply(index, event).await {
                error!(rollout = %self.managed[index].rollout.name, error = %e, "automatic start failed");
            }
        }
    }

    fn publish(&self) {
        let now = Instant::now();
        let rollouts = self
            .managed
            .iter()
            .map(|m| {
                let next = m
                    .next_check
                    .map(|t| t.saturating_duration_since(now).as_secs_f64());
                RolloutStatus::new(&m.rollout, &m.state, next, m.in_flight.is_some())
            })
            .collect();
        self.status.send_modify(|status| status.rollouts = rollouts);
    }
}

impl Managed {
    fn new(
        rollout: &Rollout,
        state: RolloutState,
        factory: &SourceFactory,
        results: &mpsc::UnboundedSender<Measured>,
    ) -> Self {
        let measurer = Measurer::spawn(
            rollout.name.clone(),
            factory(rollout),
            budget(rollout),
            results.clone(),
        );
        Self {
            rollout: rollout.clone(),
            state,
            measurer,
            epoch: 0,
            in_flight: None,
            next_check: None,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One log line per decision, with the numbers of the check that made it.
fn log_decision(rollout: &str, decision: &Decision, state: &RolloutState) {
    let record = state.history.last();
    let check: Option<&Check> = record.and_then(|r| r.check.as_ref());
    let by = record.and_then(|r| r.by.as_deref());
    let (requests, error_rate, p95) = check.map_or((None, None, None), |c| {
        (Some(c.requests), c.error_rate, c.p95)
    });
    // `tracing` needs a constant level per call site, hence two arms.
    match decision.action {
        Action::Failed | Action::RolledBack | Action::Aborted | Action::Paused => warn!(
            rollout,
            action = decision.action.as_str(),
            phase = state.phase.as_str(),
            canary_weight = %state.canary_weight,
            requests, error_rate, p95_seconds = p95, by,
            "{}", decision.message
        ),
        _ => info!(
            rollout,
            action = decision.action.as_str(),
            phase = state.phase.as_str(),
            canary_weight = %state.canary_weight,
            requests, error_rate, p95_seconds = p95, by,
            "{}", decision.message
        ),
    }
}

#[cfg(test)]
mod tests;
