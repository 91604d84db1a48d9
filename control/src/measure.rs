//! Each rollout's measuring runs on a task of its own and reports back as an event, so the
//! controller never waits on a scrape, a query or a webhook: a hanging target or hook delays
//! that rollout's check, not an operator's command or another rollout.

use std::time::Duration;

use futures_util::future::join_all;
use sluice_config::{CustomCheck, Webhook};
use tokio::sync::mpsc;

use crate::analysis::{CustomValue, GateResult};
use crate::source::{now_seconds, MetricSource, PromQl};
use crate::webhook::{deliver, Payload};
use crate::window::{Measurement, Subject};

/// A rollout's measuring task. Dropping it ends the task.
#[derive(Debug)]
pub struct Measurer {
    jobs: mpsc::UnboundedSender<Job>,
}

/// What one interval's check needs besides the traffic numbers.
#[derive(Debug)]
pub struct Plan {
    /// Measure traffic, with the canary as this subject (its split traffic, or in a shadow
    /// step the route's mirrored copies to it); `None` before the first step, when the canary
    /// has no traffic yet.
    pub traffic: Option<Subject>,
    /// Hooks whose answer the check depends on (confirm-rollout, pre-rollout, rollout,
    /// confirm-promotion), called first, concurrently.
    pub hooks: Vec<Webhook>,
    /// The event they receive.
    pub payload: Payload,
    /// The backend whose endpoints must all be healthy (the blue/green gate).
    pub health: Option<String>,
    /// `analysis.checks` with their queries rendered, and where to send them.
    pub queries: Vec<(CustomCheck, String)>,
    /// The Prometheus of the queries.
    pub prometheus: Option<PromQl>,
}

/// The result of one interval, sent to the controller.
#[derive(Debug)]
pub struct Measured {
    /// The rollout measured.
    pub rollout: String,
    /// The interval's number, as given to [`Measurer::finish`]; a result for an interval that
    /// was started over since (a new weight) is stale and ignored.
    pub epoch: u64,
    /// The traffic numbers, or why there are none (then the check is inconclusive, never a
    /// pass).
    pub result: Result<Measurement, String>,
    /// The hooks and health gate of the plan, with their outcome.
    pub gates: Vec<GateResult>,
    /// The values of the custom checks.
    pub custom: Vec<CustomValue>,
}

#[derive(Debug)]
enum Job {
    Begin,
    Finish { epoch: u64, plan: Box<Plan> },
}

impl Measurer {
    /// Spawns the task for `rollout`'s `source`. Each begin or measurement may take up to
    /// `budget` (hooks have their own timeouts); results go to `results`.
    pub fn spawn(
        rollout: String,
        source: Box<dyn MetricSource>,
        budget: Duration,
        results: mpsc::UnboundedSender<Measured>,
    ) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(work(rollout, source, budget, receiver, results));
        Self { jobs }
    }

    /// Starts a new interval now: the next measurement counts only traffic from here on.
    /// An unfinished measurement of the previous interval is abandoned.
    pub fn begin(&self) {
        let _ = self.jobs.send(Job::Begin);
    }

    /// Carries out `plan` for the interval started by the last [`begin`](Self::begin) (or
    /// finish); the result arrives as a [`Measured`] with `epoch`.
    pub fn finish(&self, epoch: u64, plan: Plan) {
        let _ = self.jobs.send(Job::Finish {
            epoch,
            plan: Box::new(plan),
        });
    }
}

async fn work(
    rollout: String,
    mut source: Box<dyn MetricSource>,
    budget: Duration,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    results: mpsc::UnboundedSender<Measured>,
) {
    let mut next = jobs.recv().await;
    while let Some(job) = next.take() {
        match job {
            Job::Begin => {
                // A baseline that cannot be taken shows up as an unmeasurable interval later.
                let _ = tokio::time::timeout(budget, source.begin()).await;
            }
            Job::Finish { epoch, plan } => {
                let finished = tokio::select! {
                    interval = carry_out(&mut *source, &plan, budget) => Some(interval),
                    // A job while measuring can only be a begin (the controller asks for one
                    // finish at a time): it makes this interval stale, so stop measuring it.
                    job = jobs.recv() => {
                        next = job;
                        None
                    }
                };
                let (result, gates, custom) = finished.unwrap_or_else(|| {
                    (
                        Err("measurement abandoned: a new interval began".into()),
                        Vec::new(),
                        Vec::new(),
                    )
                });
                let measured = Measured {
                    rollout: rollout.clone(),
                    epoch,
                    result,
                    gates,
                    custom,
                };
                if results.send(measured).is_err() {
                    return;
                }
                if next.is_some() {
                    continue;
                }
            }
        }
        next = jobs.recv().await;
    }
}

type Interval = (
    Result<Measurement, String>,
    Vec<GateResult>,
    Vec<CustomValue>,
);

/// Hooks first (concurrently), then the health gate, the traffic numbers and the custom
/// queries, all for the interval that ends now.
async fn carry_out(source: &mut dyn MetricSource, plan: &Plan, budget: Duration) -> Interval {
    let mut gates = join_all(plan.hooks.iter().map(|hook| deliver(hook, &plan.payload))).await;
    if let Some(backend) = &plan.health {
        let health = match tokio::time::timeout(budget, source.health(backend)).await {
            Ok(Ok(health)) => GateResult {
                name: "health".into(),
                kind: "health".into(),
                passed: health.all_healthy(),
                detail: format!("{backend}: {}", health.describe()),
            },
            Ok(Err(e)) => GateResult {
                name: "health".into(),
                kind: "health".into(),
                passed: false,
                detail: format!("{backend}: cannot be read: {e}"),
            },
            Err(_) => GateResult {
                name: "health".into(),
                kind: "health".into(),
                passed: false,
                detail: format!("{backend}: no answer within {budget:?}"),
            },
        };
        gates.push(health);
    }
    let result = match plan.traffic {
        Some(canary) => match tokio::time::timeout(budget, source.finish(canary)).await {
            Ok(Ok(measurement)) => Ok(measurement),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("measurement took longer than {budget:?}")),
        },
        None => Err("no traffic is measured before the first step".into()),
    };
    let time = now_seconds();
    let custom = match &plan.prometheus {
        None => Vec::new(),
        Some(promql) => {
            join_all(plan.queries.iter().map(|(check, query)| async move {
                let (value, error) = match promql.scalar(query, time).await {
                    Ok(Some(value)) => (Some(value), None),
                    Ok(None) => (None, Some("empty result or NaN".to_string())),
                    Err(e) => (None, Some(e.to_string())),
                };
                CustomValue {
                    name: check.name.clone(),
                    value,
                    min: check.min,
                    max: check.max,
                    error,
                }
            }))
            .await
        }
    };
    (result, gates, custom)
}
