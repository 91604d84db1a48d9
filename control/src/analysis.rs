//! Judging one interval of canary traffic against a rollout's thresholds: pass, fail, or
//! inconclusive, with the numbers and the reasons.

use serde::{Deserialize, Serialize};
use sluice_config::Analysis;

use crate::window::Measurement;

/// The verdict of one analysis interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// At least one check failed.
    Fail,
    /// Not enough data (or the data could not be read): no step, no failure.
    Inconclusive,
}

/// One interval's verdict with the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The verdict.
    pub verdict: Verdict,
    /// Canary requests in the interval (at a shadow step: copies mirrored to the canary).
    pub requests: f64,
    /// Canary failure rate (5xx, failovers and gRPC error statuses), when there were
    /// requests.
    pub error_rate: Option<f64>,
    /// Canary p95 latency, seconds.
    pub p95: Option<f64>,
    /// Stable requests in the interval.
    pub stable_requests: f64,
    /// Stable failure rate.
    pub stable_error_rate: Option<f64>,
    /// Stable p95 latency, seconds.
    pub stable_p95: Option<f64>,
    /// Why it is not a pass (or what was skipped), one sentence each.
    pub reasons: Vec<String>,
    /// Webhooks and health checks of the interval, with their outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateResult>,
    /// The values of `analysis.checks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomValue>,
}

/// The outcome of a webhook call or a health gate in one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The hook's name (or `health`).
    pub name: String,
    /// The hook's type (`pre-rollout`, `rollout`, `confirm-rollout`, `confirm-promotion`) or
    /// `health` for the green endpoints of a blue/green rollout.
    pub kind: String,
    /// 2xx (hooks) or every endpoint healthy (health).
    pub passed: bool,
    /// What happened: `HTTP 200`, `HTTP 503`, `no answer within 10s`, `2 of 3 endpoints
    /// unhealthy: ...`.
    pub detail: String,
}

/// The value of one `analysis.checks` query in one interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomValue {
    /// The check's name.
    pub name: String,
    /// The query's value; `None` for an empty result, NaN, or an error.
    pub value: Option<f64>,
    /// Its lower bound.
    pub min: Option<f64>,
    /// Its upper bound.
    pub max: Option<f64>,
    /// Why there is no value.
    pub error: Option<String>,
}

impl Verdict {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// A check that could not be made: the measurement itself failed (unreachable target, parse
/// error). Never a pass.
pub fn unmeasurable(reason: String) -> Check {
    Check {
        verdict: Verdict::Inconclusive,
        requests: 0.0,
        error_rate: None,
        p95: None,
        stable_requests: 0.0,
        stable_error_rate: None,
        stable_p95: None,
        reasons: vec![reason],
        gates: Vec::new(),
        custom: Vec::new(),
    }
}

/// The check of an interval before the first step (no traffic reaches the canary yet): a
/// confirm-rollout hook that did not answer 2xx holds (inconclusive); a pre-rollout hook that
/// failed, or an unhealthy green endpoint, fails; otherwise a pass.
pub fn judge_gate(gates: Vec<GateResult>) -> Check {
    let mut check = unmeasurable(String::new());
    check.reasons.clear();
    let waiting: Vec<String> = gates
        .iter()
        .filter(|g| g.kind == "confirm-rollout" && !g.passed)
        .map(|g| format!("waiting for confirm-rollout hook {} ({})", g.name, g.detail))
        .collect();
    let failed: Vec<String> = gates
        .iter()
        .filter(|g| g.kind != "confirm-rollout" && !g.passed)
        .map(describe_gate)
        .collect();
    check.verdict = if !failed.is_empty() {
        Verdict::Fail
    } else if !waiting.is_empty() {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    check.reasons = failed;
    check.reasons.extend(waiting);
    check.gates = gates;
    check
}

/// `check` with the interval's `rollout` hooks and custom checks taken into account: a failed
/// hook or a value outside its bounds fails it; a custom check without a value makes an
/// otherwise passing check inconclusive, never a pass.
pub fn conclude(mut check: Check, gates: Vec<GateResult>, custom: Vec<CustomValue>) -> Check {
    let mut failures: Vec<String> = gates
        .iter()
        .filter(|g| g.kind == "rollout" && !g.passed)
        .map(describe_gate)
        .collect();
    let mut unknown = Vec::new();
    for c in &custom {
        match c.value {
            None => unknown.push(format!(
                "check {}: {}",
                c.name,
                c.error.as_deref().unwrap_or("no value")
            )),
            Some(v) if c.max.is_some_and(|max| v > max) => failures.push(format!(
                "check {} {} > max {}",
                c.name,
                number(v),
                number(c.max.unwrap_or_default())
            )),
            Some(v) if c.min.is_some_and(|min| v < min) => failures.push(format!(
                "check {} {} < min {}",
                c.name,
                number(v),
                number(c.min.unwrap_or_default())
            )),
            Some(_) => {}
        }
    }
    if !failures.is_empty() {
        check.verdict = Verdict::Fail;
        failures.extend(std::mem::take(&mut check.reasons));
        check.reasons = failures;
    } else if !unknown.is_empty() {
        if check.verdict == Verdict::Pass {
            check.verdict = Verdict::Inconclusive;
        }
        check.reasons.extend(unknown);
    }
    check.gates = gates;
    check.custom = custom;
    check
}

fn describe_gate(gate: &GateResult) -> String {
    if gate.kind == "health" {
        format!("green not healthy: {}", gate.detail)
    } else {
        format!("{} hook {} failed: {}", gate.kind, gate.name, gate.detail)
    }
}

/// `, cpu 0.42 (max 0.8)` for each custom check of `check`, for decision messages.
pub fn custom_summary(check: &Check) -> String {
    check
        .custom
        .iter()
        .map(|c| {
            let value = c.value.map_or("-".to_string(), number);
            let bounds: Vec<String> = [("min", c.min), ("max", c.max)]
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k} {}", number(v))))
                .collect();
            format!(", {} {value} ({})", c.name, bounds.join(", "))
        })
        .collect()
}

/// `pre-rollout hook smoke HTTP 200, health 3/3 healthy` for decision messages.
pub fn gates_summary(check: &Check) -> String {
    check
        .gates
        .iter()
        .map(|g| format!("{} {}: {}", g.kind, g.name, g.detail))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number for messages: up to 4 significant decimals, no trailing zeros.
fn number(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// Judges `measurement` against `analysis`.
///
/// Order matters: an unusable measurement is inconclusive; too little canary traffic is
/// inconclusive; then every threshold is checked and **any failure fails the check**, even
/// when something else could not be measured (a canary whose endpoints are all ejected has
/// a 100% error rate from failovers and no latency samples: that must fail, not hide behind
/// an unknown p95). Only when nothing failed does a missing number make it inconclusive.
pub fn judge(analysis: &Analysis, measurement: &Measurement) -> Check {
    let canary = &measurement.canary;
    let stable = &measurement.stable;
    let numbers = [
        canary.requests,
        canary.failed,
        stable.requests,
        stable.failed,
    ];
    let latencies = [canary.p95, stable.p95];
    if numbers.iter().any(|n| !n.is_finite() || *n < 0.0)
        || latencies
            .iter()
            .flatten()
            .any(|p| !p.is_finite() || *p < 0.0)
    {
        // Recorded as zeros: the state file must stay valid JSON (no NaN/inf).
        return unmeasurable(
            "the measurement is not a valid number (NaN, infinite or negative)".into(),
        );
    }
    let mut check = Check {
        verdict: Verdict::Pass,
        requests: canary.requests,
        error_rate: canary.error_rate(),
        p95: canary.p95,
        stable_requests: stable.requests,
        stable_error_rate: stable.error_rate(),
        stable_p95: stable.p95,
        reasons: Vec::new(),
        gates: Vec::new(),
        custom: Vec::new(),
    };
    if canary.requests <= 0.0 || canary.requests < analysis.min_requests as f64 {
        check.verdict = Verdict::Inconclusive;
        check.reasons.push(format!(
            "{} canary requests < min_requests {}",
            canary.requests.round(),
            analysis.min_requests.max(1)
        ));
        return check;
    }
    let mut failures: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let rate = canary.error_rate().unwrap_or(0.0);
    if rate > analysis.max_error_rate {
        failures.push(format!(
            "error rate {} > max_error_rate {}",
            percent(rate),
            percent(analysis.max_error_rate)
        ));
    }
    let needs_p95 = analysis.max_p95.is_some() || analysis.max_p95_vs_stable.is_some();
    if needs_p95 && canary.p95.is_none() {
        unknown.push("canary p95 unknown: no latency histogram in the interval".into());
    }
    if let (Some(max), Some(p95)) = (analysis.max_p95, canary.p95) {
        if p95 > max.as_secs_f64() {
            failures.push(format!(
                "p95 {} > max_p95 {}",
                millis(p95),
                millis(max.as_secs_f64())
            ));
        }
    }
    // Relative checks need a stable baseline in the same interval. Without stable traffic
    // (e.g. at 100% canary) there is nothing to compare with: the check is skipped, said so.
    let stable_enough = stable.requests >= (analysis.min_requests as f64 / 10.0).max(1.0);
    if let Some(factor) = analysis.max_p95_vs_stable {
        match (canary.p95, stable.p95, stable_enough) {
            (Some(canary_p95), Some(stable_p95), true) => {
                if canary_p95 > factor * stable_p95 {
                    failures.push(format!(
                        "p95 {} > {factor} x stable p95 {}",
                        millis(canary_p95),
                        millis(stable_p95)
                    ));
                }
            }
            (_, None, true) => {
                unknown.push("stable p95 unknown: no latency histogram in the interval".into())
            }
            (None, _, _) => {}
            (_, _, false) => {
                notes.push("max_p95_vs_stable skipped: too little stable traffic to compare".into())
            }
        }
    }
    if let Some(margin) = analysis.max_error_rate_over_stable {
        match (stable.error_rate(), stable_enough) {
            (Some(stable_rate), true) => {
                if rate > stable_rate + margin {
                    failures.push(format!(
                        "error rate {} > stable {} + {}",
                        percent(rate),
                        percent(stable_rate),
                        percent(margin)
                    ));
                }
            }
            _ => notes.push(
                "max_error_rate_over_stable skipped: too little stable traffic to compare".into(),
            ),
        }
    }
    check.verdict = if !failures.is_empty() {
        Verdict::Fail
    } else if !unknown.is_empty() {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    check.reasons = failures;
    check.reasons.extend(unknown);
    check.reasons.extend(notes);
    check
}

/// `0.0123` → `1.23%`.
pub fn percent(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// `0.0123` → `12.3ms`.
pub fn millis(seconds: f64) -> String {
    format!("{:.1}ms", seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use sluice_config::FailureCounting;

    use super::*;
    use crate::window::BackendWindow;

    fn analysis() -> Analysis {
        crate::fixtures::analysis(FailureCounting::Consecutive)
    }

    fn window(requests: f64, failed: f64, p95: Option<f64>) -> BackendWindow {
        BackendWindow {
            requests,
            failed,
            p95,
        }
    }

    fn measure(canary: BackendWindow, stable: BackendWindow) -> Measurement {
        Measurement { canary, stable }
    }

    #[test]
    fn verdicts_against_thresholds() {
        let healthy = window(1000.0, 0.0, Some(0.050));
        let cases = [
            (
                measure(healthy.clone(), healthy.clone()),
                Verdict::Pass,
                vec![],
            ),
            (
                measure(window(99.0, 50.0, Some(9.0)), healthy.clone()),
                Verdict::Inconclusive,
                vec!["99 canary requests < min_requests 100"],
            ),
            (
                measure(window(1000.0, 11.0, Some(0.05)), healthy.clone()),
                Verdict::Fail,
                vec!["error rate 1.10% > max_error_rate 1.00%"],
            ),
            (
                measure(window(1000.0, 10.0, Some(0.05)), healthy.clone()),
                Verdict::Pass,
                vec![],
            ),
            (
                measure(window(1000.0, 0.0, Some(0.6)), healthy.clone()),
                Verdict::Fail,
                vec!["p95 600.0ms > max_p95 500.0ms"],
            ),
            (
                measure(window(1000.0, 0.0, None), healthy.clone()),
                Verdict::Inconclusive,
                vec!["canary p95 unknown: no latency histogram in the interval"],
            ),
            (
                measure(window(f64::NAN, 0.0, Some(0.1)), healthy.clone()),
                Verdict::Inconclusive,
                vec!["the measurement is not a valid number (NaN, infinite or negative)"],
            ),
            (
                measure(window(1000.0, 50.0, Some(0.9)), healthy),
                Verdict::Fail,
                vec![
                    "error rate 5.00% > max_error_rate 1.00%",
                    "p95 900.0ms > max_p95 500.0ms",
                ],
            ),
        ];
        for (m, verdict, reasons) in cases {
            let check = judge(&analysis(), &m);
            assert_eq!(check.verdict, verdict, "{m:?}");
            assert_eq!(check.reasons, reasons, "{m:?}");
        }
    }

    #[test]
    fn zero_traffic_never_passes_even_with_min_requests_zero() {
        let mut a = analysis();
        a.min_requests = 0;
        a.max_p95 = None;
        let check = judge(&a, &measure(window(0.0, 0.0, None), window(0.0, 0.0, None)));
        assert_eq!(check.verdict, Verdict::Inconclusive);
        assert_eq!(check.reasons, ["0 canary requests < min_requests 1"]);
    }

    #[test]
    fn unmeasurable_numbers_are_recorded_as_zeros() {
        let check = judge(
            &analysis(),
            &measure(
                window(f64::INFINITY, 0.0, Some(0.1)),
                window(1.0, 0.0, None),
            ),
        );
        assert_eq!(check.requests, 0.0, "inf must not reach the state file");
        let json = serde_json::to_string(&check).expect("serializes");
        let back: Check = serde_json::from_str(&json).expect("and reads back");
        assert_eq!(back, check);
    }

    #[test]
    fn relative_checks_compare_with_stable_in_the_same_interval() {
        let mut a = analysis();
        a.max_p95 = None;
        a.max_p95_vs_stable = Some(1.5);
        a.max_error_rate = 1.0;
        a.max_error_rate_over_stable = Some(0.005);
        let slow_both = measure(
            window(500.0, 0.0, Some(0.3)),
            window(5000.0, 0.0, Some(0.31)),
        );
        assert_eq!(judge(&a, &slow_both).verdict, Verdict::Pass);
        let slower_canary = measure(
            window(500.0, 0.0, Some(0.6)),
            window(5000.0, 0.0, Some(0.3)),
        );
        assert_eq!(
            judge(&a, &slower_canary).reasons,
            ["p95 600.0ms > 1.5 x stable p95 300.0ms"]
        );
        let worse_errors = measure(
            window(500.0, 10.0, Some(0.3)),
            window(5000.0, 10.0, Some(0.3)),
        );
        assert_eq!(
            judge(&a, &worse_errors).reasons,
            ["error rate 2.00% > stable 0.20% + 0.50%"]
        );
        let no_stable = measure(window(500.0, 0.0, Some(0.3)), window(0.0, 0.0, None));
        let check = judge(&a, &no_stable);
        assert_eq!(check.verdict, Verdict::Pass);
        assert_eq!(
            check.reasons.len(),
            2,
            "both relative checks say they were skipped"
        );
    }

    fn custom(value: Option<f64>) -> CustomValue {
        CustomValue {
            name: "cpu".into(),
            value,
            min: None,
            max: Some(0.8),
            error: value.is_none().then(|| "empty result or NaN".to_string()),
        }
    }

    #[test]
    fn custom_checks_and_rollout_hooks_decide_with_the_traffic_numbers() {
        let healthy = Measurement {
            canary: window(1000.0, 0.0, Some(0.1)),
            stable: window(9000.0, 0.0, Some(0.1)),
        };
        let pass = judge(&analysis(), &healthy);
        assert_eq!(pass.verdict, Verdict::Pass);
        let over = conclude(pass.clone(), vec![], vec![custom(Some(0.93))]);
        assert_eq!(over.verdict, Verdict::Fail);
        assert_eq!(over.reasons, ["check cpu 0.93 > max 0.8"]);
        assert_eq!(custom_summary(&over), ", cpu 0.93 (max 0.8)");
        let empty = conclude(pass.clone(), vec![], vec![custom(None)]);
        assert_eq!(
            empty.verdict,
            Verdict::Inconclusive,
            "empty is never a pass"
        );
        assert_eq!(empty.reasons, ["check cpu: empty result or NaN"]);
        let within = conclude(pass.clone(), vec![], vec![custom(Some(0.5))]);
        assert_eq!(within.verdict, Verdict::Pass);
        let hook = GateResult {
            name: "smoke".into(),
            kind: "rollout".into(),
            passed: false,
            detail: "HTTP 500".into(),
        };
        let failed = conclude(pass, vec![hook], vec![]);
        assert_eq!(failed.verdict, Verdict::Fail);
        assert_eq!(failed.reasons, ["rollout hook smoke failed: HTTP 500"]);
    }
}
