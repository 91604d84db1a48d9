//! Maps field paths of a YAML or TOML document to line/column, so validation errors can point
//! into the file even though validation runs on plain serde types.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

use crate::error::{FieldPath, Location};

/// Where each field of one document is: its value, and for mapping entries its key.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    values: HashMap<FieldPath, Location>,
    keys: HashMap<FieldPath, Location>,
}

enum Frame {
    Mapping {
        path: FieldPath,
        pending_key: Option<FieldPath>,
    },
    Sequence {
        path: FieldPath,
        next: usize,
    },
}

impl SourceMap {
    /// Records the locations of a YAML document. A syntax error stops the walk; what was seen
    /// before it is kept (the deserializer reports the error itself).
    pub(crate) fn from_yaml(text: &str) -> Self {
        let mut map = Self::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut root_seen = false;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let at = Location {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Mapping { path, pending_key }) = stack.last_mut() {
                        if pending_key.is_none() {
                            let key_path = path.key(value.as_ref());
                            map.keys.insert(key_path.clone(), at);
                            *pending_key = Some(key_path);
                            continue;
                        }
                    }
                    if let Some(path) = map.place_node(&mut stack, &mut root_seen) {
                        map.values.insert(path, at);
                    }
                }
                Event::Alias(_) => {
                    if let Some(path) = map.place_node(&mut stack, &mut root_seen) {
                        map.values.insert(path, at);
                    }
                }
                Event::MappingStart(..) => {
                    if let Some(path) = map.place_node(&mut stack, &mut root_seen) {
                        map.values.insert(path.clone(), at);
                        stack.push(Frame::Mapping {
                            path,
                            pending_key: None,
                        });
                    } else {
                        // A mapping used as a key: not addressable by a field path.
                        stack.push(Frame::Mapping {
                            path: FieldPath::root().key("?"),
                            pending_key: None,
                        });
                    }
                }
                Event::SequenceStart(..) => {
                    if let Some(path) = map.place_node(&mut stack, &mut root_seen) {
                        map.values.insert(path.clone(), at);
                        stack.push(Frame::Sequence { path, next: 0 });
                    } else {
                        stack.push(Frame::Sequence {
                            path: FieldPath::root().key("?"),
                            next: 0,
                        });
                    }
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        map
    }

    /// Records the locations of a TOML document (nothing when it does not parse).
    pub(crate) fn from_toml(text: &str) -> Self {
        let mut map = Self::default();
        if let Ok(root) = toml::de::DeTable::parse(text) {
            let lines = LineIndex::new(text);
            map.values
                .insert(FieldPath::root(), lines.locate(root.span().start));
            map.walk_toml_table(root.get_ref(), &FieldPath::root(), &lines);
        }
        map
    }

    /// Where the value at `path` is, or the nearest enclosing field that is known.
    pub(crate) fn value(&self, path: &FieldPath) -> Option<Location> {
        let mut current = Some(path.clone());
        while let Some(path) = current {
            if let Some(location) = self.values.get(&path).or_else(|| self.keys.get(&path)) {
                return Some(*location);
            }
            current = path.parent();
        }
        None
    }

    /// Where the key of the mapping entry at `path` is (falls back to [`SourceMap::value`]).
    pub(crate) fn key(&self, path: &FieldPath) -> Option<Location> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }

    /// The path of the node that starts now, given the enclosing frame; advances the frame.
    fn place_node(&mut self, stack: &mut [Frame], root_seen: &mut bool) -> Option<FieldPath> {
        match stack.last_mut() {
            None => {
                if *root_seen {
                    return None;
                }
                *root_seen = true;
                Some(FieldPath::root())
            }
            Some(Frame::Mapping { pending_key, .. }) => pending_key.take(),
            Some(Frame::Sequence { path, next }) => {
                let item = path.index(*next);
                *next += 1;
                Some(item)
            }
        }
    }

    fn walk_toml_table(
        &mut self,
        table: &toml::de::DeTable<'_>,
        path: &FieldPath,
        lines: &LineIndex<'_>,
    ) {
        for (key, value) in table {
            let child = path.key(key.get_ref().as_ref());
            self.keys
                .insert(child.clone(), lines.locate(key.span().start));
            self.values
                .insert(child.clone(), lines.locate(value.span().start));
            self.walk_toml_value(value.get_ref(), &child, lines);
        }
    }

    fn walk_toml_value(
        &mut self,
        value: &toml::de::DeValue<'_>,
        path: &FieldPath,
        lines: &LineIndex<'_>,
    ) {
        match value {
            toml::de::DeValue::Table(table) => self.walk_toml_table(table, path, lines),
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let child = path.index(i);
                    self.values
                        .insert(child.clone(), lines.locate(item.span().start));
                    self.walk_toml_value(item.get_ref(), &child, lines);
                }
            }
            _ => {}
        }
    }
}

/// Turns byte offsets into 1-based line/column (columns counted in characters).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    pub(crate) fn locate(&self, offset: usize) -> Location {
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let start = self.starts[line - 1];
        let end = offset.min(self.text.len()).max(start);
        let column = self
            .text
            .get(start..end)
            .map_or(end - start, |s| s.chars().count())
            + 1;
        Location { line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &[&str]) -> FieldPath {
        s.iter()
            .fold(FieldPath::root(), |p, seg| match seg.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(*seg),
            })
    }

    #[test]
    fn yaml_values_and_keys_are_located() {
        let text = "routes:\n  - name: a\n    backends:\n      - { upstream: canry, weight: 1 }\n";
        let map = SourceMap::from_yaml(text);
        assert_eq!(
            map.value(&path(&["routes", "0", "backends", "0", "upstream"])),
            Some(Location {
                line: 4,
                column: 21
            })
        );
        assert_eq!(
            map.key(&path(&["routes", "0", "name"])),
            Some(Location { line: 2, column: 5 })
        );
        // Unknown deeper paths fall back to the nearest known ancestor.
        assert_eq!(
            map.value(&path(&["routes", "0", "backends", "0", "nope"])),
            Some(Location { line: 4, column: 9 })
        );
    }

    #[test]
    fn toml_values_and_keys_are_located() {
        let text =
            "[[routes]]\nname = \"a\"\n[[routes.backends]]\nupstream = \"canry\"\nweight = 1\n";
        let map = SourceMap::from_toml(text);
        assert_eq!(
            map.value(&path(&["routes", "0", "backends", "0", "upstream"])),
            Some(Location {
                line: 4,
                column: 12
            })
        );
        assert_eq!(
            map.key(&path(&["routes", "0", "name"])),
            Some(Location { line: 2, column: 1 })
        );
    }
}
