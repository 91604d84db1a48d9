//! Reads a YAML or TOML document into its serde mirror, reporting every unknown key and the
//! first type error with its field path and location.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{FieldPath, Invalid, Location, Problem};
use crate::source_map::{LineIndex, SourceMap};

/// Files larger than this are refused: no sane config is this big, and a runaway file must not
/// eat the proxy's memory.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The two accepted file formats, chosen by extension (`.toml` is TOML, everything else YAML).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML, the default.
    Yaml,
    /// TOML, for files ending in `.toml`.
    Toml,
}

/// The outcome of reading one document: the value when it deserialized, every problem seen,
/// and the source map used to locate later validation errors.
#[derive(Debug)]
pub(crate) struct Document<T> {
    pub(crate) value: Option<T>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) map: SourceMap,
}

impl Format {
    /// The format of a file, by its extension.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Self::Toml,
            _ => Self::Yaml,
        }
    }
}

impl<T: DeserializeOwned> Document<T> {
    /// Parses `text` as `format`. Unknown keys are collected (all of them) rather than failing
    /// deserialization at the first, so one run of `--check` shows every typo.
    pub(crate) fn parse(text: &str, format: Format) -> Self {
        if text.trim().is_empty() {
            return Self {
                value: None,
                problems: vec![Problem {
                    path: FieldPath::root(),
                    location: None,
                    kind: Invalid::Value("the file is empty".into()),
                }],
                map: SourceMap::default(),
            };
        }
        let map = match format {
            Format::Yaml => SourceMap::from_yaml(text),
            Format::Toml => SourceMap::from_toml(text),
        };
        let mut unknown: Vec<FieldPath> = Vec::new();
        let mut error_path = FieldPath::root();
        let result = match format {
            Format::Yaml => parse_yaml(text, &mut unknown, &mut error_path),
            Format::Toml => parse_toml(text, &mut unknown, &mut error_path),
        };
        let mut problems: Vec<Problem> = unknown
            .into_iter()
            .map(|path| {
                let key = match path.segments().last() {
                    Some(crate::error::Segment::Key(key)) => key.clone(),
                    Some(crate::error::Segment::Index(i)) => i.to_string(),
                    None => String::new(),
                };
                let location = map.key(&path);
                Problem {
                    path: path.parent().unwrap_or_default(),
                    location,
                    kind: Invalid::UnknownKey {
                        hint: crate::raw::hint_for_unknown_key(&key),
                        key,
                    },
                }
            })
            .collect();
        let value = match result {
            Ok(value) => Some(value),
            Err(SyntaxError { message, location }) => {
                let location = location.or_else(|| map.value(&error_path));
                problems.push(Problem {
                    path: error_path,
                    location,
                    kind: Invalid::Syntax(message),
                });
                None
            }
        };
        Self {
            value,
            problems,
            map,
        }
    }
}

struct SyntaxError {
    message: String,
    location: Option<Location>,
}

fn parse_yaml<T: DeserializeOwned>(
    text: &str,
    unknown: &mut Vec<FieldPath>,
    error_path: &mut FieldPath,
) -> Result<T, SyntaxError> {
    let options = serde_saphyr::options! {
        with_snippet: false,
    };
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(de, &mut on_unknown);
        serde_path_to_error::deserialize(de).map_err(|e| {
            *error_path = serde_error_path(e.path());
            e.into_inner()
        })
    })
    .map_err(|e| SyntaxError {
        location: e.location().and_then(|l| {
            (l.line() > 0).then(|| Location {
                line: usize::try_from(l.line()).unwrap_or(usize::MAX),
                column: usize::try_from(l.column()).unwrap_or(usize::MAX),
            })
        }),
        message: yaml_message(&e),
    })
}

fn parse_toml<T: DeserializeOwned>(
    text: &str,
    unknown: &mut Vec<FieldPath>,
    error_path: &mut FieldPath,
) -> Result<T, SyntaxError> {
    let lines = LineIndex::new(text);
    let toml_error = |e: toml::de::Error| SyntaxError {
        location: e.span().map(|span| lines.locate(span.start)),
        message: e.message().trim().to_string(),
    };
    let de = toml::Deserializer::parse(text).map_err(toml_error)?;
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let de = serde_ignored::Deserializer::new(de, &mut on_unknown);
    serde_path_to_error::deserialize(de).map_err(|e| {
        *error_path = serde_error_path(e.path());
        toml_error(e.into_inner())
    })
}

/// The YAML error's message without the location (which we print in our own format).
fn yaml_message(error: &serde_saphyr::Error) -> String {
    let rendered = error.to_string();
    let first = rendered.lines().next().unwrap_or_default().trim();
    // serde-saphyr appends " at line L, column C"; we print the location ourselves.
    match first.rfind(" at line ") {
        Some(cut) => first[..cut].to_string(),
        None => first.to_string(),
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path as P;
    match path {
        P::Root => FieldPath::root(),
        P::Seq { parent, index } => ignored_path(parent).index(*index),
        P::Map { parent, key } => ignored_path(parent).key(key.as_str()),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

fn serde_error_path(path: &serde_path_to_error::Path) -> FieldPath {
    use serde_path_to_error::Segment as S;
    path.iter()
        .fold(FieldPath::root(), |acc, segment| match segment {
            S::Seq { index } => acc.index(*index),
            S::Map { key } => acc.key(key.as_str()),
            S::Enum { .. } | S::Unknown => acc,
        })
}
