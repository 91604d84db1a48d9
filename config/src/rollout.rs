//! Rollouts: which route's canary to advance, through which steps, judged by which checks.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::address::Address;
use crate::check::Checker;
use crate::error::{known_list, FieldPath, Invalid};
use crate::grpc::{GrpcCode, DEFAULT_GRPC_ERROR_CODES};
use crate::raw::{RawAnalysis, RawCheck, RawMetrics, RawRollout, RawWebhook, Scalar};
use crate::route::{Percent, RouteTable};
use crate::split::Weight;
use crate::upstream::{serialize_display_list, serialize_duration};

/// One progressive rollout, read by `sluice-control`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rollout {
    /// The rollout's name (CLI argument, metrics label).
    pub name: String,
    /// The route whose split it moves.
    pub route: String,
    /// The stable backend's name within the route.
    pub stable: String,
    /// The canary backend's name within the route.
    pub canary: String,
    /// Canary percentages, strictly increasing, each in `0..=100`, with `pause` steps
    /// between them (hold until approved).
    pub steps: Vec<Step>,
    /// Canary (step by step) or blue/green (one switch to 100%).
    pub strategy: Strategy,
    /// Intervals analysed at the last step before the rollout succeeds. Default 0.
    pub bake: u32,
    /// Calls to other systems around the rollout.
    pub webhooks: Vec<Webhook>,
    /// Prometheus for `analysis.checks` (and the `prometheus` source): base URL.
    pub prometheus: Option<String>,
    /// One analysis per interval.
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// The checks each interval must pass.
    pub analysis: Analysis,
    /// Where the numbers come from.
    pub metrics: MetricsSource,
}

/// The checks of one analysis interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// Canary requests needed in an interval for a verdict; fewer is inconclusive. Default 100.
    pub min_requests: u64,
    /// Largest acceptable fraction of canary requests that failed (5xx, failovers, gRPC
    /// statuses in `grpc_error_codes`). Default 0.01.
    pub max_error_rate: f64,
    /// Largest acceptable canary p95 latency; no latency check when absent.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub max_p95: Option<Duration>,
    /// Canary p95 may be at most this multiple of the stable p95 (same interval).
    pub max_p95_vs_stable: Option<f64>,
    /// Canary error rate may exceed the stable one by at most this much.
    pub max_error_rate_over_stable: Option<f64>,
    /// Failed checks before rollback. Default 2.
    pub failure_limit: u32,
    /// Whether a pass resets the failure count.
    pub failure_counting: FailureCounting,
    /// Extra PromQL checks, each evaluated over the interval.
    pub checks: Vec<CustomCheck>,
    /// gRPC statuses that count as errors, like a 5xx, in the error rate. Default
    /// [`DEFAULT_GRPC_ERROR_CODES`].
    pub grpc_error_codes: Vec<GrpcCode>,
}

/// One step of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Set the canary to this percentage, then analyse one interval.
    Weight(Weight),
    /// Hold (phase `paused`, reason approval) until `sluice-control approve`.
    Pause,
    /// Only as the first step: the canary stays at 0% and one interval judges the route's
    /// mirror of it (`routes[].mirror`), so no user reaches a canary that fails on copies.
    Shadow,
}

/// How a rollout moves traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Step by step through `steps`.
    #[default]
    Canary,
    /// Health-check the green (canary) endpoints and pass every pre-rollout hook, then move
    /// 100% at once; a failure moves 100% back at once.
    BlueGreen,
}

/// An extra PromQL check (`analysis.checks`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CustomCheck {
    /// Its name, in decisions and events.
    pub name: String,
    /// The PromQL query; placeholders `{{canary_version}}`, `{{stable_version}}`,
    /// `{{route}}`, `{{interval}}`.
    pub query: String,
    /// The value must be at least this.
    pub min: Option<f64>,
    /// The value must be at most this.
    pub max: Option<f64>,
}

/// When a webhook is called (Flagger's kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    /// Before the first step; the rollout holds until it answers 2xx.
    ConfirmRollout,
    /// Before the first step; a non-2xx answer is a failed check.
    PreRollout,
    /// Every interval, before the analysis; a non-2xx answer is a failed check.
    Rollout,
    /// Before the last step; the rollout holds until it answers 2xx.
    ConfirmPromotion,
    /// After the rollout succeeded or was rolled back.
    PostRollout,
    /// Every decision.
    Event,
}

/// A webhook of a rollout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Webhook {
    /// Its name, in logs and decisions.
    pub name: String,
    /// When it is called.
    pub kind: HookKind,
    /// Where the JSON event is POSTed (`http://` or `https://`).
    pub url: String,
    /// Delivery, retries included, gives up after this. Default 10s.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Headers whose values come from environment variables (`header: VARIABLE`), for
    /// tokens: read at each call, never logged.
    pub headers_env: Vec<(String, String)>,
}

impl HookKind {
    /// The kind as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfirmRollout => "confirm-rollout",
            Self::PreRollout => "pre-rollout",
            Self::Rollout => "rollout",
            Self::ConfirmPromotion => "confirm-promotion",
            Self::PostRollout => "post-rollout",
            Self::Event => "event",
        }
    }

    /// Every kind.
    pub const ALL: [HookKind; 6] = [
        Self::ConfirmRollout,
        Self::PreRollout,
        Self::Rollout,
        Self::ConfirmPromotion,
        Self::PostRollout,
        Self::Event,
    ];
}

impl Step {
    /// The weight of a weight step.
    pub fn weight(self) -> Option<Weight> {
        match self {
            Self::Weight(w) => Some(w),
            Self::Pause | Self::Shadow => None,
        }
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Weight(w) => w.serialize(serializer),
            Self::Pause => serializer.serialize_str("pause"),
            Self::Shadow => serializer.serialize_str("shadow"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Str(s) if s == "pause" => Ok(Self::Pause),
            Scalar::Str(s) if s == "shadow" => Ok(Self::Shadow),
            other => Weight::parse(&other)
                .map(Self::Weight)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Rollout {
    /// The webhooks of `kind`, in file order.
    pub fn hooks(&self, kind: HookKind) -> impl Iterator<Item = &Webhook> {
        self.webhooks.iter().filter(move |h| h.kind == kind)
    }
}

/// How failed checks add up towards `failure_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureCounting {
    /// Only failures in a row count: a pass resets the count. The default.
    Consecutive,
    /// Every failure of the rollout counts.
    Total,
}

/// Where a rollout's measurements come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "source")]
pub enum MetricsSource {
    /// Scrape `/metrics` of each proxy admin address and sum them.
    Scrape {
        /// The proxies' admin addresses.
        #[serde(serialize_with = "serialize_display_list")]
        targets: Vec<Address>,
    },
    /// Query a Prometheus server that scrapes the proxies.
    Prometheus {
        /// Base URL, e.g. `http://127.0.0.1:9090`.
        url: String,
    },
}

fn serialize_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serialize_duration(d, s),
        None => s.serialize_none(),
    }
}

pub(crate) fn compile_rollouts(
    check: &mut Checker<'_>,
    raw: &Option<Vec<RawRollout>>,
    routes: &RouteTable,
    declared_routes: &[&str],
    admin: &Option<Address>,
) -> Vec<Rollout> {
    let Some(raw) = raw else { return Vec::new() };
    let mut unique = std::collections::HashSet::new();
    let mut declared_routes = declared_routes.to_vec();
    declared_routes.retain(|r| unique.insert(*r));
    let declared_routes = declared_routes.as_slice();
    let mut names = HashMap::new();
    let mut routes_taken = HashMap::new();
    let mut rollouts = Vec::new();
    for (i, rollout) in raw.iter().enumerate() {
        let path = FieldPath::root().key("rollouts").index(i);
        // Two rollouts moving one route's weights would undo each other.
        if let Some(route) = rollout.route.as_deref().filter(|r| !r.trim().is_empty()) {
            check.unique(
                &mut routes_taken,
                route,
                path.key("route"),
                "rollout of route",
            );
        }
        if let Some(r) = compile_rollout(
            check,
            rollout,
            &path,
            routes,
            declared_routes,
            admin,
            &mut names,
        ) {
            rollouts.push(r);
        }
    }
    rollouts
}

fn compile_rollout(
    check: &mut Checker<'_>,
    raw: &RawRollout,
    path: &FieldPath,
    routes: &RouteTable,
    declared_routes: &[&str],
    admin: &Option<Address>,
    names: &mut HashMap<String, FieldPath>,
) -> Option<Rollout> {
    let name = check.name(&raw.name, path, "name");
    if let Some(name) = &name {
        check.unique(names, name, path.key("name"), "rollout name");
    }
    let route_name = check.name(&raw.route, path, "route");
    let stable = check.name(&raw.stable, path, "stable");
    let canary = check.name(&raw.canary, path, "canary");
    let route = route_name.as_deref().and_then(|r| {
        let found = routes.position(r);
        if found.is_none() && !declared_routes.contains(&r) {
            check.report(
                path.key("route"),
                Invalid::UnknownRoute {
                    name: r.to_string(),
                    known: known_list(declared_routes.iter().copied()),
                },
            );
        }
        found.map(|i| &routes.routes()[i])
    });
    let mut backends_ok = true;
    if let Some(route) = route {
        let known: Vec<&str> = route.split.backends().iter().map(|b| &*b.name).collect();
        for (field, backend) in [("stable", &stable), ("canary", &canary)] {
            if let Some(backend) = backend {
                if route.split.position(backend).is_none() {
                    check.report(
                        path.key(field),
                        Invalid::UnknownBackend {
                            route: route.name.to_string(),
                            name: backend.clone(),
                            known: known_list(known.iter().copied()),
                        },
                    );
                    backends_ok = false;
                }
            }
        }
        if stable.is_some() && stable == canary {
            check.report(
                path.key("canary"),
                Invalid::Value("canary must differ from stable".into()),
            );
            backends_ok = false;
        }
    }
    let strategy = check.choice(
        &raw.strategy,
        path.key("strategy"),
        &["canary", "blue_green"],
    );
    let strategy = strategy.map(|s| match s {
        "blue_green" => Strategy::BlueGreen,
        _ => Strategy::Canary,
    });
    let steps = compile_steps(check, &raw.steps, path);
    if let (Some(Strategy::BlueGreen), Some(steps)) = (strategy, &steps) {
        if steps.as_slice()
            != [Step::Weight(Weight::from_hundredths(
                100 * crate::split::WEIGHT_SCALE,
            ))]
        {
            check.report(
                path.key("steps"),
                Invalid::Value(
                    "strategy blue_green switches 100% at once: steps must be [100]".into(),
                ),
            );
        }
    }
    if let (Some(route), Some(canary), Some(steps)) = (route, &canary, &steps) {
        if steps.first() == Some(&Step::Shadow) {
            let route_name = &route.name;
            let fix = match &route.mirror {
                None => Some(format!(
                    "give route \"{route_name}\" mirror: {{ upstream: {canary} }}"
                )),
                Some(m) if *m.name != **canary => Some(format!(
                    "route \"{route_name}\" mirrors to \"{}\": make it mirror: {{ upstream: {canary} }}",
                    m.name
                )),
                Some(m) if m.percent == Percent::default() => Some(format!(
                    "route \"{route_name}\" mirrors 0% of its requests: give its mirror.percent above 0"
                )),
                Some(_) => None,
            };
            if let Some(fix) = fix {
                check.report(
                    path.key("steps").index(0),
                    Invalid::Value(format!(
                        "a shadow step judges the copies of the route's requests sent to the canary: {fix}, or remove the shadow step"
                    )),
                );
            }
        }
    }
    let bake = check.count(&raw.bake, path.key("bake"), 0, 0);
    let webhooks = compile_webhooks(check, &raw.webhooks, path);
    let interval = check.positive_duration(&raw.interval, path.key("interval"), None);
    if raw.interval.is_none() {
        check.report(path.clone(), Invalid::Missing("interval"));
    }
    let default_analysis = RawAnalysis::default();
    let analysis = compile_analysis(
        check,
        raw.analysis.as_ref().unwrap_or(&default_analysis),
        &path.key("analysis"),
    );
    let default_metrics = RawMetrics::default();
    let metrics_raw = raw.metrics.as_ref().unwrap_or(&default_metrics);
    let metrics = compile_metrics(check, metrics_raw, &path.key("metrics"), admin);
    let prometheus = metrics_raw
        .prometheus
        .as_ref()
        .and_then(|p| p.url.as_ref())
        .map(|u| u.trim_end_matches('/').to_string());
    let has_checks = analysis.as_ref().is_some_and(|a| !a.checks.is_empty());
    if has_checks && prometheus.is_none() {
        check.report(
            path.key("metrics"),
            Invalid::Missing("prometheus.url (analysis.checks are PromQL queries)"),
        );
    }
    route?;
    backends_ok.then_some(())?;
    Some(Rollout {
        name: name?,
        route: route_name?,
        stable: stable?,
        canary: canary?,
        steps: steps?,
        strategy: strategy?,
        bake: u32::try_from(bake?).unwrap_or(u32::MAX),
        webhooks: webhooks?,
        prometheus,
        interval: interval?,
        analysis: analysis?,
        metrics: metrics?,
    })
}

fn compile_steps(
    check: &mut Checker<'_>,
    raw: &Option<Vec<Scalar>>,
    path: &FieldPath,
) -> Option<Vec<Step>> {
    let raw = check.required(raw, path, "steps")?;
    let at = path.key("steps");
    let mut ok = true;
    let mut weights = Vec::new();
    let mut plan = Vec::new();
    let shadow = matches!(raw.first(), Some(Scalar::Str(s)) if s == "shadow");
    for (i, value) in raw.iter().enumerate() {
        if matches!(value, Scalar::Str(s) if s == "shadow") {
            if i > 0 {
                check.report(
                    at.index(i),
                    Invalid::Value(
                        "shadow can only be the first step: move it to the front, e.g. [shadow, 5, 25, 100]"
                            .into(),
                    ),
                );
                ok = false;
            } else if raw.len() == 1 {
                check.report(
                    at.index(i),
                    Invalid::Value(
                        "shadow judges the canary before users reach it: weights must follow it, e.g. [shadow, 5, 25, 100]"
                            .into(),
                    ),
                );
                ok = false;
            }
            plan.push(None);
        } else if matches!(value, Scalar::Str(s) if s == "pause") {
            let first = i == 0;
            let last = i + 1 == raw.len();
            let doubled = matches!(raw.get(i + 1), Some(Scalar::Str(s)) if s == "pause");
            if shadow && i == 1 {
                check.report(
                    at.index(i),
                    Invalid::Value(
                        "a pause step holds between two weights, not right after shadow: put it after the first weight, e.g. [shadow, 5, pause, 25, 100]"
                            .into(),
                    ),
                );
                ok = false;
            } else if first || last || doubled {
                check.report(
                    at.index(i),
                    Invalid::Value(
                        "a pause step holds between two weights: not first, last or twice in a row"
                            .into(),
                    ),
                );
                ok = false;
            }
            plan.push(None);
        } else {
            plan.push(Some(weights.len()));
            weights.push(value.clone());
        }
    }
    if weights.is_empty() && !ok {
        // Only pause or shadow steps: their own problem already says weights must follow.
        return None;
    }
    let weights = compile_weights(check, &Some(weights), path, &raw_indices(&plan))?;
    ok.then_some(())?;
    Some(
        plan.iter()
            .enumerate()
            .map(|(i, slot)| match slot {
                Some(w) => Step::Weight(weights[*w]),
                None if i == 0 && shadow => Step::Shadow,
                None => Step::Pause,
            })
            .collect(),
    )
}

/// For each weight (in order), its index among all steps (pauses included).
fn raw_indices(plan: &[Option<usize>]) -> Vec<usize> {
    plan.iter()
        .enumerate()
        .filter_map(|(i, slot)| slot.map(|_| i))
        .collect()
}

fn compile_weights(
    check: &mut Checker<'_>,
    raw: &Option<Vec<Scalar>>,
    path: &FieldPath,
    indices: &[usize],
) -> Option<Vec<Weight>> {
    let raw = check.required(raw, path, "steps")?;
    let at = path.key("steps");
    if raw.is_empty() {
        check.report(at, Invalid::Empty("steps"));
        return None;
    }
    let hundred = Weight::from_hundredths(100 * crate::split::WEIGHT_SCALE);
    let mut steps: Vec<Weight> = Vec::new();
    let mut ok = true;
    for (i, value) in raw.iter().enumerate() {
        let step = match Weight::parse(value) {
            Ok(step) if step > hundred => {
                check.report(
                    at.index(indices.get(i).copied().unwrap_or(i)),
                    Invalid::Value(format!("step {value} is outside 0..=100")),
                );
                ok = false;
                continue;
            }
            Ok(step) => step,
            Err(Invalid::WeightNegative(v)) => {
                check.report(
                    at.index(indices.get(i).copied().unwrap_or(i)),
                    Invalid::Value(format!("step {v} is outside 0..=100")),
                );
                ok = false;
                continue;
            }
            Err(Invalid::WeightTooLarge(v)) => {
                check.report(
                    at.index(indices.get(i).copied().unwrap_or(i)),
                    Invalid::Value(format!("step {v} is outside 0..=100")),
                );
                ok = false;
                continue;
            }
            Err(kind) => {
                check.report(at.index(indices.get(i).copied().unwrap_or(i)), kind);
                ok = false;
                continue;
            }
        };
        if let Some(previous) = steps.last() {
            if step <= *previous {
                check.report(
                    at.index(indices.get(i).copied().unwrap_or(i)),
                    Invalid::Value(format!("steps must increase: {step} follows {previous}")),
                );
                ok = false;
            }
        }
        steps.push(step);
    }
    ok.then_some(steps)
}

fn compile_analysis(
    check: &mut Checker<'_>,
    raw: &RawAnalysis,
    path: &FieldPath,
) -> Option<Analysis> {
    let min_requests = check.count(&raw.min_requests, path.key("min_requests"), 100, 0);
    let fraction = |check: &mut Checker<'_>,
                    value: &Option<Scalar>,
                    field: &'static str,
                    default: Option<f64>| {
        match value {
            None => Some(default),
            Some(v) => {
                let x = check.number(v, path.key(field))?;
                if x > 1.0 {
                    check.report(
                        path.key(field),
                        Invalid::Value(format!("must be a fraction from 0 to 1, got {v}")),
                    );
                    return None;
                }
                Some(Some(x))
            }
        }
    };
    let max_error_rate = fraction(check, &raw.max_error_rate, "max_error_rate", Some(0.01));
    let over_stable = fraction(
        check,
        &raw.max_error_rate_over_stable,
        "max_error_rate_over_stable",
        None,
    );
    let max_p95 = match &raw.max_p95 {
        None => Some(None),
        Some(_) => check
            .positive_duration(&raw.max_p95, path.key("max_p95"), None)
            .map(Some),
    };
    let vs_stable = match &raw.max_p95_vs_stable {
        None => Some(None),
        Some(v) => match check.number(v, path.key("max_p95_vs_stable")) {
            Some(x) if x > 0.0 => Some(Some(x)),
            Some(_) => {
                check.report(
                    path.key("max_p95_vs_stable"),
                    Invalid::Value("must be greater than 0".into()),
                );
                None
            }
            None => None,
        },
    };
    let failure_limit = check.count(&raw.failure_limit, path.key("failure_limit"), 2, 1);
    let checks = compile_checks(check, &raw.checks, &path.key("checks"));
    let grpc_error_codes = compile_grpc_codes(check, &raw.grpc_error_codes, path);
    let counting = check.choice(
        &raw.failure_counting,
        path.key("failure_counting"),
        &["consecutive", "total"],
    );
    Some(Analysis {
        min_requests: min_requests?,
        max_error_rate: max_error_rate??,
        max_p95: max_p95?,
        max_p95_vs_stable: vs_stable?,
        max_error_rate_over_stable: over_stable?,
        failure_limit: u32::try_from(failure_limit?).unwrap_or(u32::MAX),
        failure_counting: match counting? {
            "total" => FailureCounting::Total,
            _ => FailureCounting::Consecutive,
        },
        checks: checks?,
        grpc_error_codes: grpc_error_codes?,
    })
}

fn compile_grpc_codes(
    check: &mut Checker<'_>,
    raw: &Option<Vec<Scalar>>,
    path: &FieldPath,
) -> Option<Vec<GrpcCode>> {
    let Some(raw) = raw else {
        return Some(DEFAULT_GRPC_ERROR_CODES.to_vec());
    };
    let mut codes = Vec::new();
    let mut ok = true;
    for (i, value) in raw.iter().enumerate() {
        let text = match value {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
            other => other.to_string(),
        };
        match GrpcCode::parse(&text) {
            Some(code) if code.number() == 0 => {
                check.report(
                    path.key("grpc_error_codes").index(i),
                    Invalid::Value(format!(
                        "{value} is OK, the success status: it cannot count as an error; remove it"
                    )),
                );
                ok = false;
            }
            Some(code) if !codes.contains(&code) => codes.push(code),
            Some(_) => {}
            None => {
                check.report(
                    path.key("grpc_error_codes").index(i),
                    Invalid::Value(format!(
                        "{value} is not a gRPC status (a name such as UNAVAILABLE, or a number 0-16)"
                    )),
                );
                ok = false;
            }
        }
    }
    ok.then_some(codes)
}

fn compile_checks(
    check: &mut Checker<'_>,
    raw: &Option<Vec<RawCheck>>,
    path: &FieldPath,
) -> Option<Vec<CustomCheck>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let mut names = HashMap::new();
    let mut checks = Vec::new();
    let mut ok = true;
    for (i, c) in raw.iter().enumerate() {
        let at = path.index(i);
        let name = check.name(&c.name, &at, "name");
        if let Some(name) = &name {
            check.unique(&mut names, name, at.key("name"), "check name");
        }
        let query = match c.query.as_deref().map(str::trim) {
            None => {
                check.report(at.clone(), Invalid::Missing("query"));
                None
            }
            Some("") => {
                check.report(at.key("query"), Invalid::Empty("query"));
                None
            }
            Some(q) => Some(q.to_string()),
        };
        let min = c.min.as_ref().map(|v| check.number(v, at.key("min")));
        let max = c.max.as_ref().map(|v| check.number(v, at.key("max")));
        if min.is_none() && max.is_none() {
            check.report(
                at.clone(),
                Invalid::Missing("max or min (the bound the value must keep)"),
            );
            ok = false;
        }
        if let (Some(Some(lo)), Some(Some(hi))) = (min, max) {
            if lo > hi {
                check.report(
                    at.key("min"),
                    Invalid::Value(format!("min {lo} is above max {hi}")),
                );
                ok = false;
            }
        }
        let (Some(name), Some(query)) = (name, query) else {
            ok = false;
            continue;
        };
        let (Some(min), Some(max)) = (
            min.map_or(Some(None), |m| m.map(Some)),
            max.map_or(Some(None), |m| m.map(Some)),
        ) else {
            ok = false;
            continue;
        };
        checks.push(CustomCheck {
            name,
            query,
            min,
            max,
        });
    }
    ok.then_some(checks)
}

fn compile_webhooks(
    check: &mut Checker<'_>,
    raw: &Option<Vec<RawWebhook>>,
    path: &FieldPath,
) -> Option<Vec<Webhook>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let at = path.key("webhooks");
    let kinds: Vec<&str> = HookKind::ALL.iter().map(|k| k.as_str()).collect();
    let mut names = HashMap::new();
    let mut hooks = Vec::new();
    let mut ok = true;
    for (i, hook) in raw.iter().enumerate() {
        let at = at.index(i);
        let name = check.name(&hook.name, &at, "name");
        if let Some(name) = &name {
            check.unique(&mut names, name, at.key("name"), "webhook name");
        }
        let kind = check
            .required(&hook.kind, &at, "type")
            .and_then(|_| check.choice(&hook.kind, at.key("type"), &kinds))
            .and_then(|k| HookKind::ALL.into_iter().find(|h| h.as_str() == k));
        let url = check.required(&hook.url, &at, "url").and_then(|u| {
            if u.starts_with("http://") || u.starts_with("https://") {
                Some(u.clone())
            } else {
                check.report(
                    at.key("url"),
                    Invalid::Value(format!("\"{u}\" must start with http:// or https://")),
                );
                None
            }
        });
        let timeout = check.positive_duration(
            &hook.timeout,
            at.key("timeout"),
            Some(Duration::from_secs(10)),
        );
        let headers_env = hook
            .headers_env
            .as_ref()
            .map(|m| m.0.clone())
            .unwrap_or_default();
        for (header, _) in &headers_env {
            if http_token(header).is_none() {
                check.report(
                    at.key("headers_env").key(header.as_str()),
                    Invalid::Value(format!("\"{header}\" is not a valid header name")),
                );
                ok = false;
            }
        }
        match (name, kind, url, timeout) {
            (Some(name), Some(kind), Some(url), Some(timeout)) => hooks.push(Webhook {
                name,
                kind,
                url,
                timeout,
                headers_env,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(hooks)
}

/// `Some` when `name` is a valid HTTP header name (an RFC 9110 token).
fn http_token(name: &str) -> Option<&str> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    valid.then_some(name)
}

fn compile_metrics(
    check: &mut Checker<'_>,
    raw: &RawMetrics,
    path: &FieldPath,
    admin: &Option<Address>,
) -> Option<MetricsSource> {
    match check.choice(&raw.source, path.key("source"), &["scrape", "prometheus"])? {
        "prometheus" => {
            if raw.targets.is_some() {
                check.report(
                    path.key("targets"),
                    Invalid::Value(
                        "targets are for source: scrape; Prometheus finds the proxies itself"
                            .into(),
                    ),
                );
            }
            let url = raw.prometheus.as_ref().and_then(|p| p.url.clone());
            let Some(url) = url else {
                check.report(path.key("prometheus"), Invalid::Missing("url"));
                return None;
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                check.report(
                    path.key("prometheus").key("url"),
                    Invalid::Value(format!("\"{url}\" must start with http:// or https://")),
                );
                return None;
            }
            Some(MetricsSource::Prometheus {
                url: url.trim_end_matches('/').to_string(),
            })
        }
        _ => {
            // `prometheus.url` with the scrape source serves `analysis.checks` only.
            let targets = match &raw.targets {
                None => {
                    let admin = admin.clone()?;
                    if admin.port() == 0 {
                        check.report(
                            path.clone(),
                            Invalid::Missing("targets (admin.address uses port 0, so it cannot be the default target)"),
                        );
                        return None;
                    }
                    vec![admin]
                }
                Some(list) if list.is_empty() => {
                    check.report(path.key("targets"), Invalid::Empty("targets"));
                    return None;
                }
                Some(list) => {
                    let mut seen = HashMap::new();
                    let mut parsed = Vec::new();
                    for (i, text) in list.iter().enumerate() {
                        let at = path.key("targets").index(i);
                        let address = check.address(text, at.clone(), false);
                        // A target listed twice would be counted twice.
                        if let Some(a) = &address {
                            check.unique(&mut seen, &a.to_string(), at, "target");
                        }
                        parsed.push(address);
                    }
                    parsed.into_iter().collect::<Option<Vec<_>>>()?
                }
            };
            Some(MetricsSource::Scrape { targets })
        }
    }
}
