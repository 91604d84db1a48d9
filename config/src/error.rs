//! Errors of the config and weights files: what is wrong, in which file, where, at which field.

use std::fmt;
use std::path::{Path, PathBuf};

/// A path to a field inside a config document, printed the way operators read it:
/// `routes[1].backends[0].upstream`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

/// One step of a [`FieldPath`]: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping key (`upstreams.stable`, `routes`).
    Key(String),
    /// A sequence index (`[3]`).
    Index(usize),
}

/// A position in a source file; both are 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line, counting from 1.
    pub line: usize,
    /// Column, counting from 1.
    pub column: usize,
}

/// What is wrong with one field. The message never repeats the field path; [`Problem`] adds it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The file is not valid YAML/TOML, or a value has the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A key the schema does not know (typos must not silently do nothing).
    #[error("unknown key \"{key}\"{hint}")]
    UnknownKey { key: String, hint: String },
    /// A required field is absent.
    #[error("missing required field \"{0}\"")]
    Missing(&'static str),
    /// A list or name that must not be empty is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Two entries share a name that must be unique.
    #[error("duplicate {what} \"{name}\" (first defined at {first})")]
    Duplicate {
        what: &'static str,
        name: String,
        first: String,
    },
    /// A route backend names an upstream that is not defined.
    #[error("unknown upstream \"{name}\" (known: {known})")]
    UnknownUpstream { name: String, known: String },
    /// A rollout or weights entry names a route that is not defined.
    #[error("unknown route \"{name}\" (known: {known})")]
    UnknownRoute { name: String, known: String },
    /// A rollout or weights entry names a backend that the route does not have.
    #[error("route \"{route}\" has no backend \"{name}\" (its backends: {known})")]
    UnknownBackend {
        route: String,
        name: String,
        known: String,
    },
    /// A weight that is not a number.
    #[error("weight must be a number, got {0}")]
    WeightNotANumber(String),
    /// A negative weight.
    #[error("weight must not be negative, got {0}")]
    WeightNegative(String),
    /// A weight with more precision than sluice keeps.
    #[error("weight {0} has more than 2 decimals (the finest weight is 0.01)")]
    WeightTooPrecise(String),
    /// A weight beyond the largest supported one.
    #[error("weight {0} is too large (at most {max})", max = crate::split::MAX_WEIGHT_TEXT)]
    WeightTooLarge(String),
    /// Every backend of a split has weight 0, so no request could be routed.
    #[error("all backend weights are 0; at least one must be positive (weights are relative: 90/10, 9/1 and 99.5/0.5 are all valid)")]
    AllWeightsZero,
    /// An address that is not `host:port`.
    #[error("invalid address \"{value}\": {reason} (expected host:port, e.g. 127.0.0.1:8080)")]
    Address { value: String, reason: String },
    /// A duration that cannot be parsed.
    #[error("invalid duration \"{value}\": {reason} (expected e.g. 250ms, 30s, 5m, 1h30m)")]
    Duration { value: String, reason: String },
    /// A regular expression that does not compile.
    #[error("invalid regex {value:?}: {reason}")]
    Regex { value: String, reason: String },
    /// Any other value outside what the field accepts.
    #[error("{0}")]
    Value(String),
    /// A file referenced by the config cannot be read.
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
}

/// One error of a file: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field the problem is about; empty for the whole document.
    pub path: FieldPath,
    /// Where in the file, when the parser knows it.
    pub location: Option<Location>,
    /// What is wrong.
    pub kind: Invalid,
}

/// Why a config or weights file was rejected. Lists every problem found, not only the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read file: {source}", file.display())]
    Read {
        /// The file that could not be read.
        file: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file was read but is invalid.
    #[error("{}", Problems { file, problems })]
    Invalid {
        /// The file the problems are in.
        file: PathBuf,
        /// Every problem found, in document order where known.
        problems: Vec<Problem>,
    },
}

struct Problems<'a> {
    file: &'a Path,
    problems: &'a [Problem],
}

/// The list of valid names shown after an unknown one: `stable, canary`, or `none`.
pub fn known_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl FieldPath {
    /// The root of the document.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.segments.push(Segment::Key(key.into()));
        next
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.segments.push(Segment::Index(index));
        next
    }

    /// The steps of this path, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The path one step up, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        let mut parent = self.clone();
        parent.segments.pop().map(|_| parent)
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    let plain = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    match (i, plain) {
                        (0, true) => f.write_str(key)?,
                        (_, true) => write!(f, ".{key}")?,
                        (_, false) => write!(f, "[{key:?}]")?,
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Problem {
    /// A problem at `path` whose location is filled in later from the source map.
    pub fn new(path: FieldPath, kind: Invalid) -> Self {
        Self {
            path,
            location: None,
            kind,
        }
    }
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(location) = problem.location {
                write!(f, ":{location}")?;
            }
            f.write_str(": ")?;
            if !problem.path.is_root() {
                write!(f, "{}: ", problem.path)?;
            }
            write!(f, "{}", problem.kind)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The problems of an invalid file (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Read { .. } => &[],
            Self::Invalid { problems, .. } => problems,
        }
    }

    /// How many problems this error reports (a read error counts as one).
    pub fn count(&self) -> usize {
        match self {
            Self::Read { .. } => 1,
            Self::Invalid { problems, .. } => problems.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_operators_write_them() {
        let path = FieldPath::root()
            .key("routes")
            .index(1)
            .key("backends")
            .index(0)
            .key("upstream");
        assert_eq!(path.to_string(), "routes[1].backends[0].upstream");
        let odd = FieldPath::root().key("routes").key("a b");
        assert_eq!(odd.to_string(), "routes[\"a b\"]");
        assert_eq!(
            path.parent().map(|p| p.to_string()).as_deref(),
            Some("routes[1].backends[0]")
        );
    }

    #[test]
    fn problems_print_file_location_path_and_message() {
        let err = ConfigError::Invalid {
            file: PathBuf::from("sluice.yaml"),
            problems: vec![
                Problem {
                    path: FieldPath::root().key("routes").index(1),
                    location: Some(Location { line: 3, column: 5 }),
                    kind: Invalid::Empty("backends"),
                },
                Problem::new(FieldPath::root(), Invalid::Missing("routes")),
            ],
        };
        assert_eq!(
            err.to_string(),
            "sluice.yaml:3:5: routes[1]: backends must not be empty\n\
             sluice.yaml: missing required field \"routes\""
        );
        assert_eq!(err.count(), 2);
    }
}
