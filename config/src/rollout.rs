//! Rollouts: which route's canary to advance, through which steps, judged by which checks.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::address::Address;
use crate::check::Checker;
use crate::error::{known_list, FieldPath, Invalid};
use crate::raw::{RawAnalysis, RawMetrics, RawRollout, Scalar};
use crate::route::RouteTable;
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
    /// Canary percentages, strictly increasing, each in `0..=100`.
    pub steps: Vec<Weight>,
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
    /// Largest acceptable fraction of canary responses that are 5xx. Default 0.01.
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
    let steps = compile_steps(check, &raw.steps, path);
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
    let metrics = compile_metrics(
        check,
        raw.metrics.as_ref().unwrap_or(&default_metrics),
        &path.key("metrics"),
        admin,
    );
    route?;
    backends_ok.then_some(())?;
    Some(Rollout {
        name: name?,
        route: route_name?,
        stable: stable?,
        canary: canary?,
        steps: steps?,
        interval: interval?,
        analysis: analysis?,
        metrics: metrics?,
    })
}

fn compile_steps(
    check: &mut Checker<'_>,
    raw: &Option<Vec<Scalar>>,
    path: &FieldPath,
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
                    at.index(i),
                    Invalid::Value(format!("step {value} is outside 0..=100")),
                );
                ok = false;
                continue;
            }
            Ok(step) => step,
            Err(Invalid::WeightNegative(v)) => {
                check.report(
                    at.index(i),
                    Invalid::Value(format!("step {v} is outside 0..=100")),
                );
                ok = false;
                continue;
            }
            Err(Invalid::WeightTooLarge(v)) => {
                check.report(
                    at.index(i),
                    Invalid::Value(format!("step {v} is outside 0..=100")),
                );
                ok = false;
                continue;
            }
            Err(kind) => {
                check.report(at.index(i), kind);
                ok = false;
                continue;
            }
        };
        if let Some(previous) = steps.last() {
            if step <= *previous {
                check.report(
                    at.index(i),
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
    })
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
            if raw.prometheus.is_some() {
                check.report(
                    path.key("prometheus"),
                    Invalid::Value("prometheus settings need source: prometheus".into()),
                );
            }
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
