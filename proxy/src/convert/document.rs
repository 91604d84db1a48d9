//! Source documents: multi-document YAML read into generic trees, and a walker that reads an
//! object's fields by path and reports every field it was not asked for.

use serde_json::{Map, Value};

use super::{ConvertError, Report};

/// One Kubernetes object of the input.
#[derive(Debug)]
pub(crate) struct Source {
    /// `VirtualService default/reviews (canary.yaml, document 1)`: how messages name it.
    pub(crate) label: String,
    /// `kind`.
    pub(crate) kind: String,
    /// `apiVersion`.
    pub(crate) api_version: String,
    /// `metadata.name`.
    pub(crate) name: String,
    /// `metadata.namespace`, if given.
    pub(crate) namespace: Option<String>,
    /// `metadata.creationTimestamp`, if given (the Gateway API's first tie-breaker).
    pub(crate) created: Option<String>,
    /// The whole object.
    pub(crate) value: Value,
}

/// A value inside a source, with its path (`spec.http[0].match`).
#[derive(Clone, Debug)]
pub(crate) struct Node<'v> {
    pub(crate) value: &'v Value,
    pub(crate) path: String,
}

/// The fields of one mapping; those not taken are reported by [`Fields::finish`].
#[derive(Debug)]
pub(crate) struct Fields<'v> {
    map: &'v Map<String, Value>,
    path: String,
    taken: Vec<String>,
}

/// Reads every document of `text`; documents that are not Kubernetes objects are skipped
/// with a note.
pub(crate) fn read(file: &str, text: &str, report: &mut Report) -> Vec<Source> {
    let documents: Vec<Value> = match serde_saphyr::from_multiple(text) {
        Ok(documents) => documents,
        Err(e) => {
            report.error(ConvertError::Yaml {
                file: file.to_string(),
                message: e.to_string().lines().next().unwrap_or_default().to_string(),
            });
            return Vec::new();
        }
    };
    let mut sources = Vec::new();
    for (i, value) in documents.into_iter().enumerate() {
        let text_of = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let metadata = |key: &str| {
            value
                .get("metadata")
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(kind), Some(api_version)) = (text_of("kind"), text_of("apiVersion")) else {
            report.note(format!(
                "skipped {file}, document {}: no kind and apiVersion",
                i + 1
            ));
            continue;
        };
        let name = metadata("name").unwrap_or_default();
        let namespace = metadata("namespace");
        let label = match &namespace {
            Some(ns) => format!("{kind} {ns}/{name} ({file}, document {})", i + 1),
            None => format!("{kind} {name} ({file}, document {})", i + 1),
        };
        sources.push(Source {
            label,
            kind,
            api_version,
            name,
            namespace,
            created: metadata("creationTimestamp"),
            value,
        });
    }
    sources
}

impl Source {
    /// The API group of `apiVersion` (`networking.istio.io`).
    pub(crate) fn api_group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// `spec`, as fields; `None` (reported) when it is missing or not a mapping.
    pub(crate) fn spec(&self, report: &mut Report) -> Option<Fields<'_>> {
        match self.value.get("spec") {
            Some(spec) => Node {
                value: spec,
                path: "spec".into(),
            }
            .fields(self, report),
            None => {
                report.invalid(self, "spec", "missing");
                None
            }
        }
    }

    /// `namespace/name`, or `name` without a namespace.
    pub(crate) fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl<'v> Node<'v> {
    /// The value as a mapping.
    pub(crate) fn fields(&self, source: &Source, report: &mut Report) -> Option<Fields<'v>> {
        match self.value {
            Value::Object(map) => Some(Fields {
                map,
                path: self.path.clone(),
                taken: Vec::new(),
            }),
            _ => {
                report.invalid(source, &self.path, "expected a mapping");
                None
            }
        }
    }

    /// The value as a list (null is an empty list).
    pub(crate) fn items(&self, source: &Source, report: &mut Report) -> Vec<Node<'v>> {
        match self.value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                report.invalid(source, &self.path, "expected a list");
                Vec::new()
            }
        }
    }

    /// The value as a name → value mapping (header names, query parameters, labels).
    pub(crate) fn entries(&self, source: &Source, report: &mut Report) -> Vec<(String, Node<'v>)> {
        match self.value {
            Value::Object(map) => map
                .iter()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        Node {
                            value,
                            path: format!("{}.{key}", self.path),
                        },
                    )
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                report.invalid(source, &self.path, "expected a mapping");
                Vec::new()
            }
        }
    }

    /// The value as text: a string, or a number or boolean as written.
    pub(crate) fn text(&self, source: &Source, report: &mut Report) -> Option<String> {
        match self.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                report.invalid(source, &self.path, "expected a string");
                None
            }
        }
    }

    /// The value as a non-negative whole number.
    pub(crate) fn count(&self, source: &Source, report: &mut Report) -> Option<u64> {
        match self.value.as_u64() {
            Some(n) => Some(n),
            None => {
                report.invalid(
                    source,
                    &self.path,
                    format!("expected a non-negative whole number, got {}", self.value),
                );
                None
            }
        }
    }

    /// The value as a boolean.
    pub(crate) fn flag(&self, source: &Source, report: &mut Report) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(*b),
            _ => {
                report.invalid(source, &self.path, "expected true or false");
                None
            }
        }
    }
}

impl<'v> Fields<'v> {
    /// The field `key`, marked as read; a null value counts as absent.
    pub(crate) fn take(&mut self, key: &str) -> Option<Node<'v>> {
        self.taken.push(key.to_string());
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(Node {
                value,
                path: self.path_of(key),
            }),
        }
    }

    /// The path of field `key`.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether the mapping has no fields at all (`{}`).
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Reports every field not taken: those in `unsupported` with their reason, any other as
    /// unknown to the converter. Both are refused unless `--ignore` names them.
    pub(crate) fn finish(self, source: &Source, report: &mut Report, unsupported: &[(&str, &str)]) {
        for key in self.map.keys() {
            if self.taken.iter().any(|t| t == key) {
                continue;
            }
            let reason = unsupported
                .iter()
                .find(|(k, _)| k == key)
                .map_or("a field the converter does not know", |(_, reason)| reason);
            report.unsupported(source, &self.path_of(key), None, reason);
        }
    }
}
