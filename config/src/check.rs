//! The validation context: collects every problem of a file while compiling it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::address::Address;
use crate::duration::parse_duration;
use crate::error::{FieldPath, Invalid, Problem};
use crate::raw::Scalar;

/// Accumulates problems; each `check_*` returns the good value or records why there is none.
#[derive(Debug)]
pub(crate) struct Checker<'a> {
    problems: Vec<Problem>,
    base_dir: &'a Path,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(base_dir: &'a Path) -> Self {
        Self {
            problems: Vec::new(),
            base_dir,
        }
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    pub(crate) fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    pub(crate) fn report(&mut self, path: FieldPath, kind: Invalid) {
        self.problems.push(Problem::new(path, kind));
    }

    /// The value of a required field, or a `Missing` problem at its parent.
    pub(crate) fn required<'v, T>(
        &mut self,
        value: &'v Option<T>,
        parent: &FieldPath,
        field: &'static str,
    ) -> Option<&'v T> {
        if value.is_none() {
            self.report(parent.clone(), Invalid::Missing(field));
        }
        value.as_ref()
    }

    /// A required, non-empty name.
    pub(crate) fn name(
        &mut self,
        value: &Option<String>,
        parent: &FieldPath,
        field: &'static str,
    ) -> Option<String> {
        let name = self.required(value, parent, field)?;
        if name.trim().is_empty() {
            self.report(parent.key(field), Invalid::Empty(field));
            return None;
        }
        Some(name.clone())
    }

    /// Records `name` as seen at `path`; reports a duplicate when it was seen before.
    pub(crate) fn unique(
        &mut self,
        seen: &mut HashMap<String, FieldPath>,
        name: &str,
        path: FieldPath,
        what: &'static str,
    ) -> bool {
        if let Some(first) = seen.get(name) {
            self.report(
                path,
                Invalid::Duplicate {
                    what,
                    name: name.to_string(),
                    first: first.to_string(),
                },
            );
            return false;
        }
        seen.insert(name.to_string(), path);
        true
    }

    /// An optional duration field; `default` when absent.
    pub(crate) fn duration(
        &mut self,
        value: &Option<Scalar>,
        path: FieldPath,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let Some(value) = value else { return default };
        let text = match value {
            Scalar::Str(s) => s.clone(),
            other => {
                let reason = match other {
                    Scalar::Int(_) | Scalar::Float(_) => "missing unit",
                    _ => "not a duration",
                };
                self.report(
                    path,
                    Invalid::Duration {
                        value: other.to_string(),
                        reason: reason.into(),
                    },
                );
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(reason) => {
                self.report(
                    path,
                    Invalid::Duration {
                        value: text,
                        reason,
                    },
                );
                None
            }
        }
    }

    /// A positive duration (intervals, connect timeouts).
    pub(crate) fn positive_duration(
        &mut self,
        value: &Option<Scalar>,
        path: FieldPath,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let duration = self.duration(value, path.clone(), default)?;
        if duration.is_zero() {
            self.report(path, Invalid::Value("must be greater than 0".into()));
            return None;
        }
        Some(duration)
    }

    /// An address; `allow_port_zero` for listeners (ephemeral ports).
    pub(crate) fn address(
        &mut self,
        text: &str,
        path: FieldPath,
        allow_port_zero: bool,
    ) -> Option<Address> {
        match Address::parse(text) {
            Ok(a) if a.port() == 0 && !allow_port_zero => {
                self.report(
                    path,
                    Invalid::Address {
                        value: text.to_string(),
                        reason: "port 0 is only valid for listening".into(),
                    },
                );
                None
            }
            Ok(a) => Some(a),
            Err(reason) => {
                self.report(
                    path,
                    Invalid::Address {
                        value: text.to_string(),
                        reason,
                    },
                );
                None
            }
        }
    }

    /// An address to listen on: IP literal or `localhost`.
    pub(crate) fn bind_address(&mut self, text: &str, path: FieldPath) -> Option<Address> {
        let address = self.address(text, path.clone(), true)?;
        if address.bind_addr().is_none() {
            self.report(
                path,
                Invalid::Address {
                    value: text.to_string(),
                    reason: "a listening address must be an IP address or localhost".into(),
                },
            );
            return None;
        }
        Some(address)
    }

    /// One of `choices`; `default` (the first choice) when absent.
    pub(crate) fn choice<'c>(
        &mut self,
        value: &Option<String>,
        path: FieldPath,
        choices: &[&'c str],
    ) -> Option<&'c str> {
        let Some(value) = value else {
            return choices.first().copied();
        };
        match choices.iter().find(|c| **c == value.as_str()) {
            Some(c) => Some(*c),
            None => {
                self.report(
                    path,
                    Invalid::Value(format!(
                        "unknown value \"{value}\" (expected one of: {})",
                        choices.join(", ")
                    )),
                );
                None
            }
        }
    }

    /// A non-negative number.
    pub(crate) fn number(&mut self, value: &Scalar, path: FieldPath) -> Option<f64> {
        let number = match value {
            Scalar::Int(i) => *i as f64,
            Scalar::Float(x) if x.is_finite() => *x,
            other => {
                self.report(
                    path,
                    Invalid::Value(format!("must be a number, got {other}")),
                );
                return None;
            }
        };
        if number < 0.0 {
            self.report(
                path,
                Invalid::Value(format!("must not be negative, got {value}")),
            );
            return None;
        }
        Some(number)
    }

    /// A whole number `>= min`.
    pub(crate) fn count(
        &mut self,
        value: &Option<Scalar>,
        path: FieldPath,
        default: u64,
        min: u64,
    ) -> Option<u64> {
        let Some(value) = value else {
            return Some(default);
        };
        match value {
            Scalar::Int(i) if *i >= i128::from(min) => u64::try_from(*i).ok(),
            other => {
                self.report(
                    path,
                    Invalid::Value(format!(
                        "must be a whole number of at least {min}, got {other}"
                    )),
                );
                None
            }
        }
    }

    /// A file the config refers to, resolved against the config's directory; must be readable.
    pub(crate) fn file(&mut self, text: &str, path: FieldPath) -> Option<PathBuf> {
        let resolved = self.resolve(text);
        match std::fs::File::open(&resolved) {
            Ok(_) => Some(resolved),
            Err(e) => {
                self.report(
                    path,
                    Invalid::File {
                        path: resolved.display().to_string(),
                        reason: e.to_string(),
                    },
                );
                None
            }
        }
    }

    /// A path relative to the config file's directory (absolute paths are kept).
    pub(crate) fn resolve(&self, text: &str) -> PathBuf {
        self.base_dir.join(text)
    }
}
