//! The `sluice-control status` table, rendered from the typed [`Status`].

use std::fmt::Write as _;

use crate::analysis::{millis, percent};
use crate::rollout::Phase;
use crate::status::{RolloutStatus, Status};

/// Renders the status as a table, one rollout per line, then notes per rollout.
pub fn render(status: &Status, now: u64) -> String {
    let headers = [
        "ROLLOUT",
        "PHASE",
        "STEP",
        "WEIGHT",
        "REQUESTS",
        "ERROR RATE",
        "P95",
        "LAST CHECK",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &status.rollouts {
        let analysis = &r.analysis;
        let max_rate = percent(analysis.max_error_rate);
        let max_p95 = analysis.max_p95_seconds.map_or("-".into(), |s| {
            sluice_config::format_duration(std::time::Duration::from_secs_f64(s))
        });
        let check = r.last_check.as_ref();
        rows.push(vec![
            r.name.clone(),
            r.phase.as_str().to_string(),
            r.step_label(),
            // Idle: the rollout sets no weight; sluice.yaml's is in force.
            if r.phase == Phase::Idle {
                "-".into()
            } else {
                format!("{}%", r.canary_weight)
            },
            check.map_or("-".into(), |c| {
                format!("{:.0} (min {})", c.check.requests, analysis.min_requests)
            }),
            format!(
                "{} (max {max_rate})",
                check
                    .and_then(|c| c.check.error_rate)
                    .map_or("-".into(), percent)
            ),
            format!(
                "{} (max {max_p95})",
                check.and_then(|c| c.check.p95).map_or("-".into(), millis)
            ),
            check.map_or("-".into(), |c| {
                format!("{} {}", c.check.verdict.as_str(), ago(now, c.at))
            }),
        ]);
    }
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    for r in &status.rollouts {
        let name = &r.name;
        if let Some(reason) = &r.paused_reason {
            let _ = writeln!(out, "\n{name}: paused: {reason}");
        }
        if let Some(decision) = &r.last_decision {
            let _ = writeln!(
                out,
                "\n{name}: last decision {}: {}",
                ago(now, decision.at),
                decision.message
            );
        }
        if r.measuring {
            let _ = writeln!(out, "{name}: measuring the interval that just ended");
        } else if let Some(next) = r.next_check_in_seconds {
            let _ = writeln!(out, "{name}: next check in {next:.0}s");
        }
    }
    if let Some(fleet) = &status.fleet {
        let leader = match &fleet.leader {
            Some(l) if l.id == fleet.id => "itself".to_string(),
            Some(l) => format!("{} at {}", l.id, l.admin),
            None => "none right now".to_string(),
        };
        let _ = writeln!(
            out,
            "\nfleet: this control ({}) is {}; leader: {leader}",
            fleet.id, fleet.role
        );
    }
    out
}

/// Renders a rollout's history, oldest first: one line per decision or command.
pub fn render_history(rollout: &RolloutStatus, now: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} decision(s); the last {} kept",
        rollout.name,
        rollout.decisions,
        rollout.history.len()
    );
    for record in &rollout.history {
        let by = record
            .by
            .as_deref()
            .map_or(String::new(), |by| format!("  [{by}]"));
        let _ = writeln!(
            out,
            "#{:<4} {:>9}  {:<11} {:<12} canary {:>5}%  {}{by}",
            record.seq,
            ago(now, record.at),
            record.action.as_str(),
            record.phase.as_str(),
            record.canary_weight,
            record.message
        );
    }
    out
}

fn ago(now: u64, at: u64) -> String {
    let seconds = now.saturating_sub(at);
    match seconds {
        0..=119 => format!("{seconds}s ago"),
        120..=7199 => format!("{}m ago", seconds / 60),
        _ => format!("{}h ago", seconds / 3600),
    }
}

#[cfg(test)]
mod tests {
    use sluice_config::{FailureCounting, Weight};

    use super::*;
    use crate::analysis::{Check, Verdict};
    use crate::rollout::{Action, CheckRecord, DecisionRecord, RolloutState};
    use crate::status::RolloutStatus;

    #[test]
    fn renders_rollouts_with_numbers_and_thresholds() {
        let percent = |p: u64| Weight::from_hundredths(p * 100);
        let rollout = crate::fixtures::rollout(FailureCounting::Consecutive);
        let check = Check {
            verdict: Verdict::Pass,
            requests: 412.0,
            error_rate: Some(0.0024),
            p95: Some(0.041),
            stable_requests: 4000.0,
            stable_error_rate: Some(0.0),
            stable_p95: Some(0.040),
            reasons: vec![],
            gates: vec![],
            custom: vec![],
        };
        let decision = DecisionRecord {
            seq: 3,
            action: Action::Advanced,
            message: "check passed: canary 10% -> 25%".into(),
            at: 990,
            phase: Phase::Progressing,
            canary_weight: percent(25),
            check: Some(check.clone()),
            by: None,
        };
        let state = RolloutState {
            phase: Phase::Progressing,
            step: 2,
            canary_weight: percent(25),
            last_check: Some(CheckRecord {
                check,
                at: 990,
                canary_weight: percent(10),
            }),
            decisions: 3,
            history: vec![decision],
            ..RolloutState::default()
        };
        let status = Status {
            rollouts: vec![RolloutStatus::new(&rollout, &state, Some(18.2), false)],
            ..Status::default()
        };
        let table = render(&status, 1000);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ROLLOUT  PHASE        STEP  WEIGHT  REQUESTS       ERROR RATE         P95                 LAST CHECK");
        assert_eq!(lines[1], "myapp    progressing  3/6   25%     412 (min 100)  0.24% (max 1.00%)  41.0ms (max 500ms)  pass 10s ago");
        assert!(
            table.contains("myapp: last decision 10s ago: check passed: canary 10% -> 25%"),
            "{table}"
        );
        assert!(table.contains("myapp: next check in 18s"), "{table}");
        // The status survives the trip through JSON that the CLI makes.
        let json = serde_json::to_string(&status).expect("encode");
        let back: Status = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, status);
    }

    #[test]
    fn a_shadow_step_shows_as_shadow_at_0_percent() {
        let mut rollout = crate::fixtures::rollout(FailureCounting::Consecutive);
        rollout.steps.insert(0, sluice_config::Step::Shadow);
        let state = RolloutState {
            phase: Phase::Progressing,
            ..RolloutState::default()
        };
        let shadowing = RolloutStatus::new(&rollout, &state, None, false);
        let status = Status {
            rollouts: vec![shadowing.clone()],
            ..Status::default()
        };
        let table = render(&status, 1000);
        assert_eq!(
            table.lines().nth(1),
            Some("myapp    progressing  shadow 1/7  0%      -         - (max 1.00%)  - (max 500ms)  -")
        );
        let first_weight = RolloutState { step: 1, ..state };
        let past = RolloutStatus::new(&rollout, &first_weight, None, false);
        assert_eq!((shadowing.shadow, past.shadow), (true, false));
        assert_eq!(past.step_label(), "2/7");
    }
}
