//! The control's side of the weights file: read what is in force for a route, and replace one
//! route's entry atomically while keeping every other entry as it is.

use std::path::{Path, PathBuf};

use sluice_config::{write_atomic, ConfigError, RouteTable, Weight, Weights};

/// The weights file named by sluice.yaml.
#[derive(Clone, Debug)]
pub struct WeightsFile {
    path: PathBuf,
}

/// What the file says for one route.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// The file (or etcd key) does not exist.
    NoFile,
    /// The file exists but is not valid (the proxies keep their last good weights).
    Invalid(String),
    /// The file has no entry for the route.
    Missing,
    /// The store could not be read (etcd unreachable): nothing is known, nothing changed.
    Unreadable(String),
    /// `(stable, canary)` as written (`None` for a backend the entry does not name).
    Weights(Option<Weight>, Option<Weight>),
}

impl Entry {
    /// Whether the entry names exactly `(stable, canary)`.
    pub fn says(&self, (stable, canary): (Weight, Weight)) -> bool {
        matches!(self, Self::Weights(Some(s), Some(c)) if *s == stable && *c == canary)
    }

    /// What the entry says, as a clause for a log line: `it says stable=50 canary=50`.
    pub fn describe(&self, route: &str, stable: &str, canary: &str) -> String {
        let weight = |w: &Option<Weight>| w.map_or("unset".into(), |w| w.to_string());
        match self {
            Self::Weights(s, c) => {
                format!("it says {stable}={} {canary}={}", weight(s), weight(c))
            }
            Self::Missing => format!("its entry for route {route} was removed"),
            Self::NoFile => "the weights were deleted".into(),
            Self::Unreadable(e) => format!("it could not be read: {e}"),
            Self::Invalid(e) => {
                format!("it is invalid: {}", e.lines().next().unwrap_or_default())
            }
        }
    }
}

/// Why the file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The current file is invalid; writing would discard whatever else it says.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The atomic write failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl WeightsFile {
    /// The file at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file says for `route`'s `stable` and `canary` backends.
    pub fn entry(&self, routes: &RouteTable, route: &str, stable: &str, canary: &str) -> Entry {
        if !self.path.exists() {
            return Entry::NoFile;
        }
        match Weights::load(&self.path, routes) {
            Err(e) => Entry::Invalid(e.to_string()),
            Ok(weights) => entry_of(&weights, route, stable, canary),
        }
    }

    /// Sets `route`'s entry to `stable`/`canary` weights, keeping every other route's entry.
    pub fn set(
        &self,
        routes: &RouteTable,
        route: &str,
        (stable_name, stable): (&str, Weight),
        (canary_name, canary): (&str, Weight),
    ) -> Result<(), WriteError> {
        let current = if self.path.exists() {
            Weights::load(&self.path, routes)?
        } else {
            Weights::none()
        };
        let text = with_entry(
            &current,
            route,
            (stable_name, stable),
            (canary_name, canary),
        );
        write_atomic(&self.path, text.as_bytes()).map_err(|source| WriteError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}

/// What `weights` says for `route`'s `stable` and `canary` backends.
pub fn entry_of(weights: &Weights, route: &str, stable: &str, canary: &str) -> Entry {
    match weights.entry(route) {
        None => Entry::Missing,
        Some(entry) => {
            let find = |name: &str| {
                entry
                    .backends
                    .iter()
                    .find(|(b, _, _)| b == name)
                    .map(|(_, _, w)| *w)
            };
            Entry::Weights(find(stable), find(canary))
        }
    }
}

/// The weights document `current` with `route`'s entry set to `stable`/`canary`, every other
/// route's entry kept: what the control writes.
pub fn with_entry(
    current: &Weights,
    route: &str,
    (stable_name, stable): (&str, Weight),
    (canary_name, canary): (&str, Weight),
) -> String {
    let mut entries: Vec<(&str, Vec<(&str, Weight)>)> = current
        .entries()
        .iter()
        .filter(|e| e.route != route)
        .map(|e| {
            (
                e.route.as_str(),
                e.backends
                    .iter()
                    .map(|(b, _, w)| (b.as_str(), *w))
                    .collect(),
            )
        })
        .collect();
    entries.push((route, vec![(stable_name, stable), (canary_name, canary)]));
    Weights::render(
        &entries,
        "Written by sluice-control. Edit by hand to take over: the rollout pauses and your\nweights stay until `sluice-control resume`.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(dir: &Path) -> RouteTable {
        let yaml = "listeners: [{ name: h, address: 127.0.0.1:0 }]\nupstreams:\n  stable: { endpoints: [127.0.0.1:1] }\n  canary: { endpoints: [127.0.0.1:2] }\nroutes:\n  - name: a\n    backends: [{ upstream: stable, weight: 1 }, { upstream: canary, weight: 1 }]\n  - name: b\n    backends: [{ upstream: stable, weight: 1 }, { upstream: canary, weight: 1 }]\n";
        sluice_config::Config::parse(yaml, &dir.join("sluice.yaml"))
            .expect("valid")
            .routes
    }

    #[test]
    fn sets_one_route_and_keeps_the_others() {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes = routes(dir.path());
        let file = WeightsFile::new(&dir.path().join("weights.yaml"));
        assert_eq!(file.entry(&routes, "a", "stable", "canary"), Entry::NoFile);
        let w = Weight::from_hundredths;
        file.set(&routes, "b", ("stable", w(5000)), ("canary", w(5000)))
            .expect("write b");
        file.set(&routes, "a", ("stable", w(9500)), ("canary", w(500)))
            .expect("write a");
        assert_eq!(
            file.entry(&routes, "a", "stable", "canary"),
            Entry::Weights(Some(w(9500)), Some(w(500)))
        );
        assert_eq!(
            file.entry(&routes, "b", "stable", "canary"),
            Entry::Weights(Some(w(5000)), Some(w(5000)))
        );
        let text = std::fs::read_to_string(file.path()).expect("read");
        assert!(text.starts_with("# Written by sluice-control."), "{text}");
        assert!(text.contains("  a: { stable: 95, canary: 5 }"), "{text}");
        std::fs::write(file.path(), "routes: [").expect("break it");
        assert!(matches!(
            file.entry(&routes, "a", "stable", "canary"),
            Entry::Invalid(_)
        ));
        assert!(
            file.set(&routes, "a", ("stable", w(0)), ("canary", w(10000)))
                .is_err(),
            "an invalid file is not overwritten"
        );
    }
}
