//! The `sluice-control status` table, rendered from the JSON of `GET /status`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::analysis::{millis, percent};

/// Renders a `/status` document as a table, one rollout per line, then notes per rollout.
pub fn render(status: &Value, now: u64) -> String {
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
    let rollouts = status["rollouts"].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &rollouts {
        let check = &r["last_check"];
        let analysis = &r["analysis"];
        let max_rate = analysis["max_error_rate"]
            .as_f64()
            .map_or("-".into(), percent);
        let max_p95 = analysis["max_p95"].as_str().unwrap_or("-").to_string();
        let has_check = check.is_object();
        rows.push(vec![
            text(&r["name"]),
            text(&r["phase"]),
            format!(
                "{}/{}",
                r["step"].as_u64().unwrap_or(0),
                r["steps"].as_array().map_or(0, Vec::len)
            ),
            // Idle: the rollout sets no weight; sluice.yaml's is in force.
            if r["phase"] == "idle" {
                "-".into()
            } else {
                format!("{}%", number(&r["canary_weight"]))
            },
            if has_check {
                format!(
                    "{} (min {})",
                    number(&check["requests"]),
                    number(&analysis["min_requests"])
                )
            } else {
                "-".into()
            },
            format!(
                "{} (max {max_rate})",
                check["error_rate"].as_f64().map_or("-".into(), percent)
            ),
            format!(
                "{} (max {max_p95})",
                check["p95"].as_f64().map_or("-".into(), millis)
            ),
            if has_check {
                format!(
                    "{} {}",
                    text(&check["verdict"]),
                    ago(now, check["at"].as_u64().unwrap_or(now))
                )
            } else {
                "-".into()
            },
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
    for r in &rollouts {
        let name = text(&r["name"]);
        if let Some(reason) = r["paused_reason"].as_str() {
            let _ = writeln!(out, "\n{name}: paused: {reason}");
        }
        if let Some(message) = r["last_decision"]["message"].as_str() {
            let at = r["last_decision"]["at"].as_u64().unwrap_or(now);
            let _ = writeln!(out, "\n{name}: last decision {}: {message}", ago(now, at));
        }
        if let Some(next) = r["next_check_in_seconds"].as_f64() {
            let _ = writeln!(out, "{name}: next check in {next:.0}s");
        }
    }
    out
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_string()
}

fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x}"),
        None => "-".into(),
    }
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
    use super::*;

    #[test]
    fn renders_rollouts_with_numbers_and_thresholds() {
        let status = serde_json::json!({"rollouts": [{
            "name": "myapp", "phase": "progressing", "step": 3, "steps": [5, 10, 25, 50, 75, 100],
            "canary_weight": 25, "analysis": {"min_requests": 100, "max_error_rate": 0.01, "max_p95": "500ms"},
            "last_check": {"verdict": "pass", "requests": 412.0, "error_rate": 0.0024, "p95": 0.041, "at": 990},
            "last_decision": {"action": "advanced", "message": "check passed: canary 10% -> 25%", "at": 990},
            "next_check_in_seconds": 18.2
        }]});
        let table = render(&status, 1000);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ROLLOUT  PHASE        STEP  WEIGHT  REQUESTS       ERROR RATE         P95                 LAST CHECK");
        assert_eq!(lines[1], "myapp    progressing  3/6   25%     412 (min 100)  0.24% (max 1.00%)  41.0ms (max 500ms)  pass 10s ago");
        assert!(
            table.contains("myapp: last decision 10s ago: check passed: canary 10% -> 25%"),
            "{table}"
        );
        assert!(table.contains("myapp: next check in 18s"), "{table}");
    }
}
