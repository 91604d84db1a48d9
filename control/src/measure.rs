//! Each rollout's metric source runs on a task of its own and reports back as an event, so
//! the controller never waits on a scrape or a query: a hanging target delays that rollout's
//! check, not an operator's command.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::source::MetricSource;
use crate::window::Measurement;

/// A rollout's measuring task. Dropping it ends the task.
#[derive(Debug)]
pub struct Measurer {
    jobs: mpsc::UnboundedSender<Job>,
}

/// The result of one interval, sent to the controller.
#[derive(Debug)]
pub struct Measured {
    /// The rollout measured.
    pub rollout: String,
    /// The interval's number, as given to [`Measurer::finish`]; a result for an interval that
    /// was started over since (a new weight) is stale and ignored.
    pub epoch: u64,
    /// The numbers, or why there are none (then the check is inconclusive, never a pass).
    pub result: Result<Measurement, String>,
}

#[derive(Debug)]
enum Job {
    Begin,
    Finish { epoch: u64 },
}

impl Measurer {
    /// Spawns the task for `rollout`'s `source`. Each begin or finish may take up to
    /// `budget`; results go to `results`.
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

    /// Measures the interval started by the last [`begin`](Self::begin) (or finish); the
    /// result arrives as a [`Measured`] with `epoch`.
    pub fn finish(&self, epoch: u64) {
        let _ = self.jobs.send(Job::Finish { epoch });
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
            Job::Finish { epoch } => {
                let finished = tokio::select! {
                    measured = tokio::time::timeout(budget, source.finish()) => Some(measured),
                    // A job while measuring can only be a begin (the controller asks for one
                    // finish at a time): it makes this interval stale, so stop measuring it.
                    job = jobs.recv() => {
                        next = job;
                        None
                    }
                };
                match finished {
                    Some(measured) => {
                        let result = match measured {
                            Ok(Ok(measurement)) => Ok(measurement),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err(format!("measurement took longer than {budget:?}")),
                        };
                        let measured = Measured {
                            rollout: rollout.clone(),
                            epoch,
                            result,
                        };
                        if results.send(measured).is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = results.send(Measured {
                            rollout: rollout.clone(),
                            epoch,
                            result: Err("measurement abandoned: a new interval began".into()),
                        });
                        continue;
                    }
                }
            }
        }
        next = jobs.recv().await;
    }
}
