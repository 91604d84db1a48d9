//! The demo's terminal view: a progress bar of the canary weight, the last check's numbers
//! against the thresholds, the traffic split as clients see it, and the decisions so far.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::load::LoadStats;
use crate::analysis::{millis, percent};
use crate::rollout::Phase;
use crate::status::RolloutStatus;

/// Static facts shown in the header.
#[derive(Debug, Clone)]
pub(super) struct Header {
    /// What kind of canary this run has.
    pub(super) flavor: &'static str,
    /// The proxy's address.
    pub(super) proxy: String,
    /// Requests per second.
    pub(super) rate: u32,
}

/// Renders one frame.
pub(super) fn frame(
    header: &Header,
    rollout: &RolloutStatus,
    stats: &LoadStats,
    elapsed: Duration,
    started_at: u64,
) -> String {
    let mut out = String::new();
    let a = &rollout.analysis;
    let _ = writeln!(
        out,
        "sluice demo: rolling out route \"{}\" from {} to {} ({})",
        rollout.route, rollout.stable, rollout.canary, header.flavor
    );
    let _ = writeln!(
        out,
        "proxy {}  load {} req/s  interval {}s  checks: error rate <= {}, p95 <= {}, >= {} canary requests",
        header.proxy,
        header.rate,
        rollout.interval_seconds,
        percent(a.max_error_rate),
        a.max_p95_seconds.map_or("-".into(), millis),
        a.min_requests
    );
    let _ = writeln!(out);
    let weight = rollout.canary_weight.as_f64();
    let width = 40usize;
    let filled = ((weight / 100.0) * width as f64).round() as usize;
    let next = rollout
        .next_check_in_seconds
        .map_or(String::new(), |s| format!("   next check in {s:.1}s"));
    let _ = writeln!(
        out,
        "  canary [{}{}] {:>5}%   step {}   {}{next}",
        "#".repeat(filled.min(width)),
        ".".repeat(width - filled.min(width)),
        rollout.canary_weight,
        rollout.step_label(),
        rollout.phase.as_str()
    );
    let _ = writeln!(out);
    match &rollout.last_check {
        Some(c) => {
            let _ = writeln!(
                out,
                "  last check   {:<12} {:>5} canary requests   error rate {:>7}   p95 {:>9}   (stable p95 {})",
                c.check.verdict.as_str(),
                c.check.requests.round(),
                c.check.error_rate.map_or("-".into(), percent),
                c.check.p95.map_or("-".into(), millis),
                c.check.stable_p95.map_or("-".into(), millis)
            );
        }
        None => {
            let _ = writeln!(out, "  last check   (first check after one interval)");
        }
    }
    let (stable, canary, errors) = (
        stats.stable.load(Ordering::Relaxed),
        stats.canary.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
    );
    let total = (stable + canary).max(1) as f64;
    let _ = writeln!(
        out,
        "  clients saw  stable {:.1}%  canary {:.1}%  of {} answers; {errors} errors   elapsed {:.1}s",
        stable as f64 / total * 100.0,
        canary as f64 / total * 100.0,
        stable + canary,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "  decisions");
    for decision in rollout.history.iter().rev().take(8).rev() {
        let _ = writeln!(
            out,
            "  +{:>3}s  {:<11} {}",
            decision.at.saturating_sub(started_at),
            decision.action.as_str(),
            decision.message
        );
    }
    out
}

/// The closing line.
pub(super) fn result(rollout: &RolloutStatus, elapsed: Duration) -> String {
    match rollout.phase {
        Phase::Succeeded => format!(
            "Result: succeeded in {:.1}s: the canary takes 100% of traffic.",
            elapsed.as_secs_f64()
        ),
        Phase::RolledBack => format!(
            "Result: rolled back in {:.1}s after {} failed check(s): the canary takes 0% of traffic.",
            elapsed.as_secs_f64(),
            rollout.failures
        ),
        other => format!("Result: stopped while {}", other.as_str()),
    }
}
