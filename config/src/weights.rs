//! The weights file (`weights.yaml`): per-route overrides of backend weights, written by
//! `sluice-control` and by operators.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::config::{invalid, read_text};
use crate::document::{Document, Format};
use crate::error::{known_list, ConfigError, FieldPath, Invalid, Problem};
use crate::raw::RawWeights;
use crate::route::RouteTable;
use crate::split::{Split, Weight};

/// A valid weights file, resolved against the routes it was checked with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    entries: Vec<WeightEntry>,
}

/// The overrides for one route.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightEntry {
    /// The route's name.
    pub route: String,
    /// The route's index in the table the file was checked against.
    pub route_index: usize,
    /// `(backend name, backend index, weight)` for each overridden backend.
    pub backends: Vec<(String, usize, Weight)>,
}

impl Weights {
    /// No overrides: every route keeps the weights of `sluice.yaml`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads `path` and checks it against `routes`.
    pub fn load(path: &Path, routes: &RouteTable) -> Result<Self, ConfigError> {
        let text = read_text(path)?;
        Self::parse(&text, path, routes)
    }

    /// Checks `text` (read from `path`) against `routes`. Any unknown route or backend, bad
    /// weight, or all-zero result makes the whole file invalid.
    pub fn parse(text: &str, path: &Path, routes: &RouteTable) -> Result<Self, ConfigError> {
        let document = Document::<RawWeights>::parse(text, Format::of(path));
        let mut problems = document.problems;
        let mut entries = Vec::new();
        if let Some(raw) = document.value {
            let root = FieldPath::root();
            match &raw.routes {
                None => problems.push(Problem::new(
                    root,
                    Invalid::Missing("routes (write `routes: {}` for no overrides)"),
                )),
                Some(map) => {
                    let known: Vec<&str> = routes.routes().iter().map(|r| &*r.name).collect();
                    for (route_name, backends) in &map.0 {
                        let at = root.key("routes").key(route_name.as_str());
                        let Some(route_index) = routes.position(route_name) else {
                            problems.push(Problem::new(
                                at,
                                Invalid::UnknownRoute {
                                    name: route_name.clone(),
                                    known: known_list(known.iter().copied()),
                                },
                            ));
                            continue;
                        };
                        let split = &routes.routes()[route_index].split;
                        let mut entry = WeightEntry {
                            route: route_name.clone(),
                            route_index,
                            backends: Vec::new(),
                        };
                        let before = problems.len();
                        for (backend, value) in &backends.0 {
                            let Some(index) = split.position(backend) else {
                                let names: Vec<&str> =
                                    split.backends().iter().map(|b| &*b.name).collect();
                                problems.push(Problem::new(
                                    at.key(backend.as_str()),
                                    Invalid::UnknownBackend {
                                        route: route_name.clone(),
                                        name: backend.clone(),
                                        known: known_list(names.iter().copied()),
                                    },
                                ));
                                continue;
                            };
                            match Weight::parse(value) {
                                Ok(weight) => entry.backends.push((backend.clone(), index, weight)),
                                Err(kind) => {
                                    problems.push(Problem::new(at.key(backend.as_str()), kind))
                                }
                            }
                        }
                        if problems.len() == before {
                            if let Err(kind) = entry.split(split) {
                                problems.push(Problem::new(at, kind));
                                continue;
                            }
                            entries.push(entry);
                        }
                    }
                }
            }
        }
        // Unknown names point at the key that names them, not at its value.
        for problem in &mut problems {
            if matches!(
                problem.kind,
                Invalid::UnknownRoute { .. } | Invalid::UnknownBackend { .. }
            ) {
                problem.location = document.map.key(&problem.path);
            }
        }
        if problems.is_empty() {
            Ok(Self { entries })
        } else {
            Err(invalid(path, problems, &document.map))
        }
    }

    /// The overrides, in file order.
    pub fn entries(&self) -> &[WeightEntry] {
        &self.entries
    }

    /// The override for `route`, if any.
    pub fn entry(&self, route: &str) -> Option<&WeightEntry> {
        self.entries.iter().find(|e| e.route == route)
    }

    /// `routes` with these overrides applied. `routes` must be the table this file was
    /// checked against (or one with the same routes and backends).
    pub fn apply(&self, routes: &RouteTable) -> RouteTable {
        routes.with_splits(self.entries.iter().filter_map(|entry| {
            let split = &routes.routes().get(entry.route_index)?.split;
            Some((entry.route_index, entry.split(split).ok()?))
        }))
    }

    /// Renders a weights file; route and backend names are quoted when YAML needs it.
    pub fn render(routes: &[(&str, Vec<(&str, Weight)>)], comment: &str) -> String {
        let mut out = String::new();
        for line in comment.lines() {
            let _ = writeln!(out, "# {line}");
        }
        if routes.is_empty() {
            out.push_str("routes: {}\n");
            return out;
        }
        out.push_str("routes:\n");
        for (route, backends) in routes {
            let pairs: Vec<String> = backends
                .iter()
                .map(|(name, weight)| format!("{}: {weight}", yaml_key(name)))
                .collect();
            let _ = writeln!(out, "  {}: {{ {} }}", yaml_key(route), pairs.join(", "));
        }
        out
    }
}

impl WeightEntry {
    /// `split` with this entry's weights in place of the named backends' weights.
    pub fn split(&self, split: &Split) -> Result<Split, Invalid> {
        let overrides: HashMap<usize, Weight> =
            self.backends.iter().map(|(_, i, w)| (*i, *w)).collect();
        let backends = split
            .backends()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut b = b.clone();
                if let Some(w) = overrides.get(&i) {
                    b.weight = *w;
                }
                b
            })
            .collect();
        Split::new(backends)
    }
}

fn yaml_key(name: &str) -> String {
    const RESERVED: &[&str] = &["true", "false", "yes", "no", "on", "off", "null", "y", "n"];
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str());
    if plain {
        name.to_string()
    } else {
        serde_json::to_string(name).unwrap_or_else(|_| format!("{name:?}"))
    }
}
