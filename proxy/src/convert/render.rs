//! Prints a [`Plan`] as `sluice.yaml`: block style, one comment per upstream, route and
//! rollout saying where it came from.

use std::fmt::Write as _;

use super::plan::{
    Action, BackendPlan, HeadersPlan, MatchPlan, PathPlan, Plan, PolicyPlan, ValueKind, ValuePlan,
};
use super::{Input, Options};

/// Notes are wrapped to this many characters (after their `# Note: ` lead).
const NOTE_WIDTH: usize = 90;

/// How often a generated rollout is analysed.
const ROLLOUT_INTERVAL: &str = "1m";

/// The whole output file.
pub(crate) fn render(
    plan: &Plan,
    options: &Options,
    inputs: &[Input],
    sources: &[String],
    notes: &[String],
) -> String {
    let mut out = String::new();
    let mut command: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    for (name, endpoints) in &options.upstreams {
        command.push(format!("--upstream {name}={}", endpoints.join(",")));
    }
    for field in &options.ignore {
        command.push(format!("--ignore {field}"));
    }
    line(
        &mut out,
        0,
        &format!(
            "# Converted by `sluice-proxy convert {}`.",
            command.join(" ")
        ),
    );
    line(&mut out, 0, "# Sources:");
    for source in sources {
        line(&mut out, 0, &format!("#   {}", comment(source)));
    }
    for note in notes {
        for (i, part) in wrap(&comment(note), NOTE_WIDTH).iter().enumerate() {
            let lead = if i == 0 { "# Note: " } else { "#       " };
            line(&mut out, 0, &format!("{lead}{part}"));
        }
    }
    line(
        &mut out,
        0,
        "# Check it with `sluice-proxy --check --config sluice.yaml`.",
    );
    out.push('\n');
    line(&mut out, 0, "listeners:");
    line(&mut out, 2, "- name: http");
    line(
        &mut out,
        4,
        &format!("address: {}", scalar(&options.listen)),
    );
    out.push('\n');
    line(&mut out, 0, "admin:");
    line(&mut out, 2, &format!("address: {}", scalar(&options.admin)));
    out.push('\n');
    upstreams(&mut out, plan);
    out.push('\n');
    routes(&mut out, plan);
    if !plan.rollouts.is_empty() {
        out.push('\n');
        rollouts(&mut out, plan);
    }
    out
}

fn upstreams(out: &mut String, plan: &Plan) {
    if plan.upstreams.list().is_empty() {
        line(out, 0, "# No upstreams: every route answers itself.");
        return;
    }
    line(out, 0, "upstreams:");
    for upstream in plan.upstreams.list() {
        line(out, 2, &format!("# {}", comment(&upstream.origin)));
        line(out, 2, &format!("{}:", scalar(&upstream.name)));
        if let Some(version) = &upstream.version {
            line(out, 4, &format!("version: {}", scalar(version)));
        }
        let endpoints: Vec<String> = upstream.endpoints.iter().map(|e| scalar(e)).collect();
        let mut text = format!("endpoints: [{}]", endpoints.join(", "));
        if upstream.placeholder {
            text.push_str(&format!(
                "  # the whole service: give --upstream {}=HOST:PORT[,HOST:PORT]",
                upstream.name
            ));
        }
        line(out, 4, &text);
    }
}

fn routes(out: &mut String, plan: &Plan) {
    for part in wrap(plan.order, NOTE_WIDTH + 6) {
        line(out, 0, &format!("# {part}"));
    }
    line(out, 0, "routes:");
    for (i, route) in plan.routes.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        line(out, 2, &format!("# {}", comment(&route.origin)));
        line(out, 2, &format!("- name: {}", scalar(&route.name)));
        matches(out, &route.matches);
        if let Some(timeout) = &route.timeout {
            let why = route
                .timeout_why
                .map(|w| format!("  # {w}"))
                .unwrap_or_default();
            line(out, 4, &format!("timeout: {timeout}{why}"));
        }
        policy(out, &route.policy);
        match &route.action {
            Action::Forward(backends) => {
                line(out, 4, "backends:");
                for backend in backends {
                    self::backend(out, backend);
                }
            }
            Action::Respond { status, body, why } => {
                let body = body
                    .as_ref()
                    .map(|b| format!(", body: {}", quoted(b)))
                    .unwrap_or_default();
                line(
                    out,
                    4,
                    &format!("respond: {{ status: {status}{body} }}  # {}", comment(why)),
                );
            }
        }
    }
}

/// `mirror`, `retries`, `fault` and the header changes of a route.
fn policy(out: &mut String, policy: &PolicyPlan) {
    if let Some(mirror) = &policy.mirror {
        line(
            out,
            4,
            &format!(
                "mirror: {{ upstream: {}, percent: {} }}",
                scalar(&mirror.upstream),
                mirror.percent
            ),
        );
    }
    if let Some(retries) = &policy.retries {
        let on: Vec<String> = retries
            .on
            .tokens()
            .iter()
            .map(|t| {
                if t.starts_with(|c: char| c.is_ascii_digit()) {
                    quoted(t)
                } else {
                    t.clone()
                }
            })
            .collect();
        let why = retries
            .attempts_why
            .map(|w| format!("  # attempts {w}"))
            .unwrap_or_default();
        line(
            out,
            4,
            &format!(
                "retries: {{ attempts: {}, on: [{}] }}{why}",
                retries.attempts,
                on.join(", ")
            ),
        );
    }
    if let Some(fault) = &policy.fault {
        line(out, 4, "fault:");
        if let Some((status, percent)) = &fault.abort {
            line(
                out,
                6,
                &format!("abort: {{ status: {status}, percent: {percent} }}"),
            );
        }
        if let Some((duration, percent)) = &fault.delay {
            line(
                out,
                6,
                &format!("delay: {{ duration: {duration}, percent: {percent} }}"),
            );
        }
    }
    headers(out, 4, "request_headers", &policy.request_headers);
    headers(out, 4, "response_headers", &policy.response_headers);
}

/// One backend: on one line, or as a block when it changes headers.
fn backend(out: &mut String, backend: &BackendPlan) {
    if backend.request_headers.is_empty() && backend.response_headers.is_empty() {
        line(
            out,
            6,
            &format!(
                "- {{ upstream: {}, weight: {} }}",
                scalar(&backend.upstream),
                backend.weight
            ),
        );
        return;
    }
    line(
        out,
        6,
        &format!("- upstream: {}", scalar(&backend.upstream)),
    );
    line(out, 8, &format!("weight: {}", backend.weight));
    headers(out, 8, "request_headers", &backend.request_headers);
    headers(out, 8, "response_headers", &backend.response_headers);
}

/// `request_headers:` or `response_headers:` at `indent`, unless it changes nothing.
fn headers(out: &mut String, indent: usize, key: &str, plan: &HeadersPlan) {
    if plan.is_empty() {
        return;
    }
    line(out, indent, &format!("{key}:"));
    for (field, list) in [("set", &plan.set), ("add", &plan.add)] {
        if list.is_empty() {
            continue;
        }
        line(out, indent + 2, &format!("{field}:"));
        for (name, value) in list {
            line(
                out,
                indent + 4,
                &format!("{}: {}", scalar(name), quoted(value)),
            );
        }
    }
    if !plan.remove.is_empty() {
        let names: Vec<String> = plan.remove.iter().map(|n| scalar(n)).collect();
        line(out, indent + 2, &format!("remove: [{}]", names.join(", ")));
    }
}

fn matches(out: &mut String, m: &MatchPlan) {
    let empty = m.host.is_none()
        && m.path.is_none()
        && m.method.is_none()
        && m.headers.is_empty()
        && m.query.is_empty();
    if empty {
        return;
    }
    line(out, 4, "match:");
    if let Some(host) = &m.host {
        line(out, 6, &format!("host: {}", scalar(host)));
    }
    match &m.path {
        Some(PathPlan::Exact(p)) => line(out, 6, &format!("path_exact: {}", scalar(p))),
        Some(PathPlan::Prefix(p)) => line(out, 6, &format!("path_prefix: {}", scalar(p))),
        Some(PathPlan::SegmentPrefix(p)) => {
            line(out, 6, &format!("path_segment_prefix: {}", scalar(p)));
        }
        Some(PathPlan::Regex(p)) => line(out, 6, &format!("path_regex: {}", quoted(p))),
        None => {}
    }
    if let Some(method) = &m.method {
        line(out, 6, &format!("method: {}", scalar(method)));
    }
    for (key, list) in [("headers", &m.headers), ("query", &m.query)] {
        if list.is_empty() {
            continue;
        }
        line(out, 6, &format!("{key}:"));
        for (name, value) in list {
            line(out, 8, &format!("{}: {}", scalar(name), value_match(value)));
        }
    }
}

/// `{ exact: "true" }`, `{ present: true, invert: true }`.
fn value_match(value: &ValuePlan) -> String {
    let kind = match &value.kind {
        ValueKind::Exact(v) => format!("exact: {}", quoted(v)),
        ValueKind::Prefix(v) => format!("prefix: {}", quoted(v)),
        ValueKind::Regex(v) => format!("regex: {}", quoted(v)),
        ValueKind::Present(p) => format!("present: {p}"),
    };
    if value.invert {
        format!("{{ {kind}, invert: true }}")
    } else {
        format!("{{ {kind} }}")
    }
}

fn rollouts(out: &mut String, plan: &Plan) {
    line(
        out,
        0,
        "weights_file: weights.yaml  # written by sluice-control as the rollouts advance",
    );
    out.push('\n');
    line(out, 0, "rollouts:");
    for (i, rollout) in plan.rollouts.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let why = if rollout.stable_weight == rollout.canary_weight {
            "the first of equal weights"
        } else {
            "the larger weight"
        };
        let shadow = if rollout.shadow {
            "; it mirrors to the canary, so a shadow step judges the copies first"
        } else {
            ""
        };
        line(
            out,
            2,
            &format!(
                "# {} splits {}/{}: stable = {} ({why}), canary = {}{shadow}",
                rollout.route,
                rollout.stable_weight,
                rollout.canary_weight,
                rollout.stable,
                rollout.canary
            ),
        );
        line(out, 2, &format!("- name: {}", scalar(&rollout.route)));
        line(out, 4, &format!("route: {}", scalar(&rollout.route)));
        line(out, 4, &format!("stable: {}", scalar(&rollout.stable)));
        line(out, 4, &format!("canary: {}", scalar(&rollout.canary)));
        let steps: Vec<String> = rollout
            .shadow
            .then(|| "shadow".to_string())
            .into_iter()
            .chain(rollout.steps.iter().map(u64::to_string))
            .collect();
        line(out, 4, &format!("steps: [{}]", steps.join(", ")));
        line(out, 4, &format!("interval: {ROLLOUT_INTERVAL}"));
        line(out, 4, "analysis:");
        line(out, 6, "min_requests: 100");
        line(out, 6, "max_error_rate: 0.01");
        line(out, 6, "failure_limit: 2");
    }
}

fn line(out: &mut String, indent: usize, text: &str) {
    let _ = writeln!(out, "{:indent$}{text}", "");
}

/// `text` cut into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        match lines.last_mut() {
            Some(last) if last.len() + 1 + word.len() <= width => {
                last.push(' ');
                last.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// A comment's text on one line.
fn comment(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// A YAML scalar: plain when it is unmistakably a string, double-quoted otherwise.
pub(crate) fn scalar(text: &str) -> String {
    // An address like 127.0.0.1:8080 cannot be read as a number, whatever the schema.
    let address_like = text.matches('.').count() >= 2;
    let plain = text.chars().next().is_some_and(|c| {
        c.is_ascii_alphabetic() || c == '/' || (address_like && c.is_ascii_digit())
    }) && text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
        && !text.ends_with(':')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
        );
    if plain {
        text.to_string()
    } else {
        quoted(text)
    }
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
pub(crate) fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}
