//! What both source formats share when they change headers, mirror, retry or inject faults:
//! the header names and values, percentages and retried statuses sluice accepts.

use http::{HeaderName, HeaderValue};
use sluice_config::{DEFAULT_RETRY_BUDGET_PERCENT, UNMODIFIABLE_HEADERS};

use super::document::{Node, Source};
use super::plan::{HeadersPlan, PercentError, PercentPlan};
use super::Report;

/// `name` lowercased, when sluice may modify that header; reported otherwise (`--ignore`
/// takes the lowercased name).
pub(crate) fn header_name(
    source: &Source,
    field: &str,
    name: &str,
    report: &mut Report,
) -> Option<String> {
    let lower = name.trim().to_ascii_lowercase();
    let reason = if HeaderName::from_bytes(lower.as_bytes()).is_err() {
        format!(
            "\"{name}\" is not a header name sluice can modify (pseudo-headers such as \
             :authority are not headers to it)"
        )
    } else if UNMODIFIABLE_HEADERS.contains(&lower.as_str()) {
        format!(
            "header {lower} cannot be modified by sluice: it frames the message or the \
             connection"
        )
    } else {
        return Some(lower);
    };
    report.unsupported(source, field, Some(&lower), &reason);
    None
}

/// `value`, when sluice can write it as a header value; reported otherwise.
pub(crate) fn header_value(
    source: &Source,
    field: &str,
    name: &str,
    value: &str,
    report: &mut Report,
) -> Option<String> {
    if HeaderValue::from_str(value).is_ok() {
        return Some(value.to_string());
    }
    report.unsupported(
        source,
        field,
        Some(name),
        &format!(
            "the value of header {name} is not one sluice can write (it has control \
             characters)"
        ),
    );
    None
}

/// Adds `name: value` to `set` or `add` unless the header is already there: the first entry
/// counts (true when added).
pub(crate) fn push_once(list: &mut Vec<(String, String)>, name: String, value: String) -> bool {
    if list.iter().any(|(n, _)| *n == name) {
        return false;
    }
    list.push((name, value));
    true
}

/// Adds a header to `remove`, once.
pub(crate) fn remove_once(plan: &mut HeadersPlan, name: String) {
    if !plan.remove.contains(&name) {
        plan.remove.push(name);
    }
}

/// The percentage `value` written at `node`: reported when out of range or finer than
/// sluice's hundredths.
pub(crate) fn percent(
    source: &Source,
    node: &Node<'_>,
    value: f64,
    report: &mut Report,
) -> Option<PercentPlan> {
    checked_percent(
        source,
        &node.path,
        PercentPlan::from_f64(value),
        &format!("{value}%"),
        report,
    )
}

/// A computed percentage, `shown` as the source wrote it (`12.345%`, `1/3`): an error is
/// reported at `field`.
pub(crate) fn checked_percent(
    source: &Source,
    field: &str,
    percent: Result<PercentPlan, PercentError>,
    shown: &str,
    report: &mut Report,
) -> Option<PercentPlan> {
    match percent {
        Ok(p) => Some(p),
        Err(PercentError::OutOfRange) => {
            report.invalid(
                source,
                field,
                format!("{shown} is not a share from 0 to 100%"),
            );
            None
        }
        Err(PercentError::TooFine) => {
            report.unsupported(
                source,
                field,
                None,
                &format!("{shown}: sluice's percentages have at most 2 decimals"),
            );
            None
        }
    }
}

/// Whether sluice retries on `status` (408, 429 and 5xx).
pub(crate) fn retriable_status(status: u64) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// What sluice's retries do that the source's may not, said once per conversion.
pub(crate) fn retries_note() -> String {
    format!(
        "converted retries: sluice retries only idempotent methods unless retries.methods \
         lists others (Istio and Envoy-based gateways retry any method), and adds at most \
         {DEFAULT_RETRY_BUDGET_PERCENT}% to a route's requests (retries.budget_percent)"
    )
}
