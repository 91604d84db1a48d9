//! `sluice-proxy convert`: Istio `VirtualService` + `DestinationRule` and Gateway API
//! `HTTPRoute` documents in, a commented `sluice.yaml` out.
//!
//! The conversion is exact or it fails: a field sluice cannot honour is an error naming the
//! field and its document (unless `--ignore FIELD` drops it, which is noted), never silently
//! lost. `document` reads the YAML and walks each object field by field, so any field the
//! converter did not read is reported; `istio` and `gateway` turn objects into a
//! `plan::Plan` (routes in the order sluice must try them, with their header changes,
//! mirrors, retries and faults; upstreams; rollouts), asking `policy` which header names,
//! values, percentages and statuses sluice accepts; `render` prints it; the result is
//! validated with `sluice_config::Config::parse` before it is returned, so what is printed
//! passes `--check`.

use std::fmt;
use std::path::Path;

use sluice_config::{Address, Config, ConfigError};

use self::document::Source;
use self::plan::{Action, Plan, RolloutPlan, RoutePlan, Upstreams};

mod document;
mod gateway;
mod istio;
mod plan;
mod policy;
mod render;

/// Canary percentages a generated rollout may walk through (those at or above the canary's
/// share today are kept).
const ROLLOUT_STEPS: [u64; 6] = [5, 10, 25, 50, 75, 100];

/// One input file: its name (for messages and comments) and its text.
#[derive(Clone, Debug)]
pub struct Input {
    /// The file name as given on the command line.
    pub name: String,
    /// Its contents: one or more YAML documents.
    pub text: String,
}

/// How to convert.
#[derive(Clone, Debug)]
pub struct Options {
    /// Endpoints for upstreams (`--upstream NAME=HOST:PORT[,HOST:PORT]`), by upstream name.
    pub upstreams: Vec<(String, Vec<String>)>,
    /// Fields to drop instead of refusing them (`--ignore FIELD`): a key (`corsPolicy`), a
    /// path without indices (`spec.http.corsPolicy`), a filter type (`URLRewrite`) or a header
    /// name (`host`).
    pub ignore: Vec<String>,
    /// The listener address written in the output.
    pub listen: String,
    /// The admin address written in the output.
    pub admin: String,
}

/// A successful conversion.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The `sluice.yaml` text; it passes `sluice-proxy --check`.
    pub yaml: String,
    /// What the operator should know (placeholders, dropped fields, skipped documents).
    pub notes: Vec<String>,
}

/// Why a conversion failed: one problem of the input or the options.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file is not valid YAML.
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// A field sluice cannot honour.
    #[error("{document}: {field}: {reason} (--ignore {key} drops it)")]
    Unsupported {
        /// `VirtualService default/reviews (vs.yaml, document 1)`.
        document: String,
        /// `spec.http[0].corsPolicy`.
        field: String,
        /// What sluice lacks.
        reason: String,
        /// The name `--ignore` takes for it.
        key: String,
    },
    /// A field whose value is wrong (or missing) in its own format.
    #[error("{document}: {field}: {reason}")]
    Invalid {
        /// The document.
        document: String,
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `--upstream` names an upstream the conversion does not produce.
    #[error(
        "--upstream {name}: no route sends to a subset or backend of that name (known: {known})"
    )]
    UnknownUpstream {
        /// The name given.
        name: String,
        /// The upstreams the conversion produced.
        known: String,
    },
    /// A malformed `--upstream` argument.
    #[error("--upstream {text}: {reason} (expected NAME=HOST:PORT[,HOST:PORT])")]
    UpstreamArgument {
        /// The argument.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// Documents that cannot be converted together (Istio with Gateway API, mesh
    /// `VirtualService`s of different services).
    #[error("{0}")]
    Conflict(String),
    /// Nothing in the input to convert.
    #[error("no route to convert: the input has no VirtualService or HTTPRoute rule left")]
    Nothing,
    /// The generated config does not validate (e.g. a regex sluice's engine refuses).
    #[error("the converted config does not validate:\n{0}")]
    Output(ConfigError),
}

/// Every problem of a failed conversion, in input order.
#[derive(Debug, thiserror::Error)]
pub struct ConvertErrors(pub Vec<ConvertError>);

/// Problems and notes collected while converting.
#[derive(Debug)]
pub(crate) struct Report {
    errors: Vec<ConvertError>,
    notes: Vec<String>,
    ignore: Vec<String>,
}

impl fmt::Display for ConvertErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl Options {
    /// Reads one `--upstream NAME=HOST:PORT[,HOST:PORT]` argument.
    pub fn parse_upstream(text: &str) -> Result<(String, Vec<String>), ConvertError> {
        let bad = |reason: String| ConvertError::UpstreamArgument {
            text: text.to_string(),
            reason,
        };
        let (name, list) = text.split_once('=').ok_or_else(|| bad("no '='".into()))?;
        if name.trim().is_empty() {
            return Err(bad("empty name".into()));
        }
        let mut endpoints = Vec::new();
        for endpoint in list.split(',').map(str::trim) {
            match Address::parse(endpoint) {
                Ok(address) if address.port() != 0 => endpoints.push(endpoint.to_string()),
                Ok(_) => return Err(bad(format!("{endpoint}: port 0"))),
                Err(reason) => return Err(bad(format!("{endpoint}: {reason}"))),
            }
        }
        Ok((name.trim().to_string(), endpoints))
    }
}

impl Report {
    fn new(ignore: Vec<String>) -> Self {
        Self {
            errors: Vec::new(),
            notes: Vec::new(),
            ignore,
        }
    }

    /// A value wrong in its own format.
    pub(crate) fn invalid(&mut self, source: &Source, field: &str, reason: impl Into<String>) {
        self.errors.push(ConvertError::Invalid {
            document: source.label.clone(),
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    /// A field sluice cannot honour: an error, or a note when `--ignore` names it (by its
    /// key, its path without indices, or `alias`, e.g. a filter type). Returns whether it was
    /// ignored.
    pub(crate) fn unsupported(
        &mut self,
        source: &Source,
        field: &str,
        alias: Option<&str>,
        reason: &str,
    ) -> bool {
        let generic = strip_indices(field);
        let last = generic.rsplit('.').next().unwrap_or(&generic).to_string();
        let key = alias.map_or_else(|| last.clone(), str::to_string);
        let ignored = self
            .ignore
            .iter()
            .find(|i| [&key, &last, &generic].contains(i) || i.as_str() == field)
            .cloned();
        match ignored {
            Some(by) => {
                self.notes.push(format!(
                    "{}: dropped {field} (--ignore {by}): {reason}",
                    source.label
                ));
                true
            }
            None => {
                self.errors.push(ConvertError::Unsupported {
                    document: source.label.clone(),
                    field: field.to_string(),
                    reason: reason.to_string(),
                    key,
                });
                false
            }
        }
    }

    /// Something the operator should know; printed once.
    pub(crate) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn error(&mut self, error: ConvertError) {
        self.errors.push(error);
    }
}

/// Converts `inputs` into one `sluice.yaml`. Fails with every problem found.
pub fn convert(inputs: &[Input], options: &Options) -> Result<Conversion, ConvertErrors> {
    let mut report = Report::new(options.ignore.clone());
    let mut sources = Vec::new();
    for input in inputs {
        sources.extend(document::read(&input.name, &input.text, &mut report));
    }
    let mut virtual_services = Vec::new();
    let mut destination_rules = Vec::new();
    let mut http_routes = Vec::new();
    for source in &sources {
        match (source.api_group(), source.kind.as_str()) {
            ("networking.istio.io", "VirtualService") => virtual_services.push(source),
            ("networking.istio.io", "DestinationRule") => destination_rules.push(source),
            ("gateway.networking.k8s.io", "HTTPRoute") => http_routes.push(source),
            _ => report.note(format!(
                "skipped {}: sluice converts VirtualService, DestinationRule and HTTPRoute",
                source.label
            )),
        }
    }
    let mut upstreams = Upstreams::default();
    let mut routes = Vec::new();
    if !virtual_services.is_empty() && !http_routes.is_empty() {
        report.error(ConvertError::Conflict(
            "the input mixes Istio VirtualServices and Gateway API HTTPRoutes, whose orders of \
             precedence differ: convert them separately"
                .into(),
        ));
    } else if !virtual_services.is_empty() {
        let subsets = istio::destination_rules(&destination_rules, &mut report);
        routes = istio::virtual_services(&virtual_services, &subsets, &mut upstreams, &mut report);
    } else if !http_routes.is_empty() {
        if !destination_rules.is_empty() {
            report.note("DestinationRules have no effect on HTTPRoutes; skipped".into());
        }
        routes = gateway::http_routes(&http_routes, &mut upstreams, &mut report);
    }
    if routes.is_empty() && report.errors.is_empty() {
        report.error(ConvertError::Nothing);
    }
    for (name, endpoints) in &options.upstreams {
        if !upstreams.set_endpoints(name, endpoints.clone()) {
            report.error(ConvertError::UnknownUpstream {
                name: name.clone(),
                known: sluice_config::known_list(upstreams.names().iter().map(String::as_str)),
            });
        }
    }
    if !report.errors.is_empty() {
        return Err(ConvertErrors(report.errors));
    }
    for upstream in upstreams.list().iter().filter(|u| u.placeholder) {
        report.note(format!(
            "upstream {} points at {}, the whole service (every version's pods): give the \
             subset's own endpoints with --upstream {}=HOST:PORT[,HOST:PORT]",
            upstream.name,
            upstream.endpoints.join(", "),
            upstream.name
        ));
    }
    upstreams.sort();
    let order = if http_routes.is_empty() {
        "In the VirtualServices' order: sluice takes the first route that matches."
    } else {
        "In the Gateway API's order of precedence (hostname, exact path, longest prefix, \
         method, most headers, most query parameters, oldest route, rule order): sluice takes \
         the first route that matches."
    };
    for route in &routes {
        mirror_note(route, &mut report);
    }
    if routes.iter().any(|r| r.policy.retries.is_some()) {
        report.note(policy::retries_note());
    }
    let mut plan = Plan {
        upstreams,
        routes,
        rollouts: Vec::new(),
        order,
    };
    plan.make_names_unique();
    plan.rollouts = rollouts(&plan, options, &mut report);
    let labels: Vec<String> = sources.iter().map(|s| s.label.clone()).collect();
    let yaml = render::render(&plan, options, inputs, &labels, &report.notes);
    if let Err(e) = Config::parse(&yaml, Path::new("sluice.yaml")) {
        return Err(ConvertErrors(vec![ConvertError::Output(e)]));
    }
    Ok(Conversion {
        yaml,
        notes: report.notes,
    })
}

/// Istio and the Gateway API mirror every request of a route; sluice does not copy a request
/// to the upstream that serves it.
fn mirror_note(route: &RoutePlan, report: &mut Report) {
    let (Some(mirror), Action::Forward(backends)) = (&route.policy.mirror, &route.action) else {
        return;
    };
    if backends.iter().any(|b| b.upstream == mirror.upstream) {
        report.note(format!(
            "{}: mirrors to {}, one of its own backends: sluice does not mirror the requests \
             that {} serves itself (the source sends those twice)",
            route.origin, mirror.upstream, mirror.upstream
        ));
    }
}

/// A rollout for every route split between exactly two backends: stable is the one with the
/// larger weight (the first on a tie), steps start at the canary's share today, after a
/// `shadow` step when the route mirrors to the canary.
fn rollouts(plan: &Plan, options: &Options, report: &mut Report) -> Vec<RolloutPlan> {
    let mut rollouts = Vec::new();
    for route in &plan.routes {
        let Action::Forward(backends) = &route.action else {
            continue;
        };
        let [first, second] = backends.as_slice() else {
            continue;
        };
        let (stable, canary) = if second.weight > first.weight {
            (second, first)
        } else {
            (first, second)
        };
        let total = (stable.weight + canary.weight).max(1);
        let steps: Vec<u64> = ROLLOUT_STEPS
            .into_iter()
            .filter(|step| step * total >= canary.weight * 100)
            .collect();
        let shadow = route
            .policy
            .mirror
            .as_ref()
            .is_some_and(|m| m.upstream == canary.upstream);
        rollouts.push(RolloutPlan {
            route: route.name.clone(),
            stable: stable.upstream.clone(),
            canary: canary.upstream.clone(),
            stable_weight: stable.weight,
            canary_weight: canary.weight,
            shadow,
            steps,
        });
    }
    let admin_port_zero = Address::parse(&options.admin).is_ok_and(|a| a.port() == 0);
    if !rollouts.is_empty() && admin_port_zero {
        report.note(format!(
            "no rollouts written: the admin address {} has port 0, and a rollout scrapes the \
             proxy at a known address",
            options.admin
        ));
        return Vec::new();
    }
    rollouts
}

/// `spec.http[0].match[1].uri` → `spec.http.match.uri`.
fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
