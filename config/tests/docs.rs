//! The docs are the operator contract, so they are checked against the code: every key the
//! config and weights files accept is in a key table of `docs/config.md` (and nothing else is),
//! and every metric name the binaries export is in a metrics table of `docs/*.md` (and nothing
//! else is).
//!
//! Keys are enumerated from the serde mirror itself ([`RawConfig`], [`RawWeights`]) with a small
//! tracing deserializer, so a field added to `raw.rs` fails this test until it is documented.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use sluice_config::raw::{RawConfig, RawTokens, RawWeights};

/// Deeper than any real schema nesting: a guard against a recursive type looping forever.
const MAX_DEPTH: usize = 16;

/// The docs page holding the key tables.
const CONFIG_DOC: &str = "docs/config.md";

/// The heading (after `## `) of the weights file's section in `docs/config.md`.
const WEIGHTS_SECTION: &str = "Weights file";
/// The heading (after `## `) of the control's tokens file's section in `docs/config.md`.
const TOKENS_SECTION: &str = "Tokens file";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("config/ lives inside the repository")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Key paths of the serde mirror.

/// Every dotted key path `T` accepts: struct fields are keys; list items and the keys of
/// name → value maps (upstream names, header names, route names) add nothing to the path.
fn key_paths<T: for<'de> Deserialize<'de>>() -> BTreeSet<String> {
    let keys = RefCell::new(BTreeSet::new());
    let tracer = Tracer {
        prefix: "",
        depth: 0,
        keys: &keys,
    };
    if let Err(e) = T::deserialize(tracer) {
        panic!("tracing the schema failed: {e}");
    }
    keys.into_inner()
}

/// A deserializer that walks a type's schema instead of a document, recording each struct
/// field it passes as `prefix.field`.
#[derive(Clone, Copy)]
struct Tracer<'a> {
    prefix: &'a str,
    depth: usize,
    keys: &'a RefCell<BTreeSet<String>>,
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    /// Only `Scalar` asks for "anything": give it a string.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    /// A list: one element, traced under the same prefix (items have no key of their own).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let child = self.deeper()?;
        visitor.visit_seq(OneElement(Some(child)))
    }

    /// A name → value map: one entry; the name is data, not a key, so the value keeps the prefix.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let child = self.deeper()?;
        visitor.visit_map(OneEntry {
            value: Some(child),
            key_given: false,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let child = self.deeper()?;
        let paths: Vec<String> = fields
            .iter()
            .map(|field| match self.prefix {
                "" => (*field).to_string(),
                prefix => format!("{prefix}.{field}"),
            })
            .collect();
        self.keys.borrow_mut().extend(paths.iter().cloned());
        visitor.visit_map(Fields {
            fields,
            paths,
            next: 0,
            tracer: child,
        })
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct enum
        identifier ignored_any
    }
}

impl Tracer<'_> {
    fn deeper(self) -> Result<Self, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "schema nested deeper than {MAX_DEPTH} levels at `{}` (recursive type?)",
                self.prefix
            )));
        }
        Ok(Self {
            depth: self.depth + 1,
            ..self
        })
    }
}

/// The fields of one struct, each value traced with its own path as prefix.
struct Fields<'a> {
    fields: &'static [&'static str],
    paths: Vec<String>,
    next: usize,
    tracer: Tracer<'a>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<'_, Error> = (*field).into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let path = &self.paths[self.next];
        self.next += 1;
        seed.deserialize(Tracer {
            prefix: path,
            ..self.tracer
        })
    }
}

/// A list of one element.
struct OneElement<'a>(Option<Tracer<'a>>);

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.take() {
            Some(tracer) => seed.deserialize(tracer).map(Some),
            None => Ok(None),
        }
    }
}

/// A map of one entry whose key is a name.
struct OneEntry<'a> {
    value: Option<Tracer<'a>>,
    key_given: bool,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.key_given || self.value.is_none() {
            return Ok(None);
        }
        self.key_given = true;
        let key: StrDeserializer<'_, Error> = "name".into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let tracer = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value asked for twice"))?;
        seed.deserialize(tracer)
    }
}

// ---------------------------------------------------------------------------------------------
// Key tables of docs/config.md.

/// What the key tables of `docs/config.md` document.
#[derive(Debug, Default)]
struct DocumentedKeys {
    /// Full dotted path → the line that documents it.
    config: BTreeMap<String, usize>,
    /// Keys of the files beside the config (weights, tokens), by their section heading.
    files: BTreeMap<&'static str, BTreeMap<String, usize>>,
}

/// Reads the key tables: under a `## ` heading that starts with a backticked top-level key,
/// every backticked token of a table row's first cell is a key path relative to that key (a
/// token equal to the key is the key itself); under the weights file's heading, the tokens are
/// keys of the weights file. Other sections are prose.
fn documented_keys(text: &str) -> DocumentedKeys {
    enum Section {
        Prose,
        Config(String),
        File(&'static str),
    }
    let token = Regex::new(r"`([^`]+)`").expect("valid regex");
    let mut documented = DocumentedKeys::default();
    let mut section = Section::Prose;
    let mut in_code_block = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            let heading = heading.trim();
            section = match token.captures(heading) {
                Some(c) if heading.starts_with('`') => {
                    let key = c[1].to_string();
                    documented.config.entry(key.clone()).or_insert(number);
                    Section::Config(key)
                }
                _ if heading.starts_with(WEIGHTS_SECTION) => Section::File(WEIGHTS_SECTION),
                _ if heading.starts_with(TOKENS_SECTION) => Section::File(TOKENS_SECTION),
                _ => Section::Prose,
            };
            continue;
        }
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let first_cell = row.split('|').next().unwrap_or_default();
        for c in token.captures_iter(first_cell) {
            let key = c[1].trim();
            match &section {
                Section::Prose => {}
                Section::Config(top) if key == top => {
                    documented.config.entry(top.clone()).or_insert(number);
                }
                Section::Config(top) => {
                    documented
                        .config
                        .entry(format!("{top}.{key}"))
                        .or_insert(number);
                }
                Section::File(file) => {
                    documented
                        .files
                        .entry(file)
                        .or_default()
                        .entry(key.to_string())
                        .or_insert(number);
                }
            }
        }
    }
    documented
}

/// `routes.match.headers.exact` → "under `## \`routes\``, first column `match.headers.exact`".
fn where_to_add(path: &str) -> String {
    match path.split_once('.') {
        Some((top, rest)) => format!("`{path}`: row `{rest}` under \"## `{top}`\""),
        None => format!("`{path}`: heading \"## `{path}`\" (a row `{path}` for a scalar)"),
    }
}

#[test]
fn the_tracer_sees_the_whole_schema() {
    let keys = key_paths::<RawConfig>();
    for expected in [
        "listeners",
        "listeners.tls.client_ca",
        "upstreams.outlier_detection.base_ejection_time",
        "routes.match.headers.present",
        "routes.match.query.regex",
        "routes.backends.weight",
        "rollouts.metrics.prometheus.url",
        "weights_file",
    ] {
        assert!(
            keys.contains(expected),
            "{expected} not traced; traced: {keys:?}"
        );
    }
    assert_eq!(
        key_paths::<RawWeights>(),
        BTreeSet::from(["routes".to_string()])
    );
}

#[test]
fn every_config_key_is_documented_and_nothing_else() {
    let accepted = key_paths::<RawConfig>();
    let text = read(&repo_root().join(CONFIG_DOC));
    let documented = documented_keys(&text);

    let extra: Vec<String> = documented
        .config
        .iter()
        .filter(|(key, _)| !accepted.contains(*key))
        .map(|(key, line)| format!("  `{key}` ({CONFIG_DOC}:{line})"))
        .collect();
    let missing: Vec<String> = accepted
        .iter()
        .filter(|key| !documented.config.contains_key(*key))
        .map(|key| format!("  {}", where_to_add(key)))
        .collect();
    let mut message = String::new();
    if !extra.is_empty() {
        let _ = writeln!(
            message,
            "documented in {CONFIG_DOC} but not accepted by the config (config/src/raw.rs): \
             remove them or fix their path\n{}",
            extra.join("\n")
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(
            message,
            "accepted by the config (config/src/raw.rs) but not documented in {CONFIG_DOC}: add \
             each to the key table of its section, first column = the path relative to the \
             section's key\n{}",
            missing.join("\n")
        );
    }
    assert!(message.is_empty(), "{message}");
}

/// Both directions for the keys of a file beside the config, documented under `## {section}`.
fn check_file_keys(section: &'static str, schema: &str, accepted: BTreeSet<String>) {
    let text = read(&repo_root().join(CONFIG_DOC));
    let documented: BTreeSet<String> = documented_keys(&text)
        .files
        .remove(section)
        .unwrap_or_default()
        .into_keys()
        .collect();
    let extra: Vec<&String> = documented.difference(&accepted).collect();
    let missing: Vec<&String> = accepted.difference(&documented).collect();
    assert!(
        extra.is_empty(),
        "documented in {CONFIG_DOC} (section \"## {section}...\") but not accepted by \
         {schema} in config/src/raw.rs: {extra:?}"
    );
    assert!(
        missing.is_empty(),
        "accepted by {schema} in config/src/raw.rs but not documented in {CONFIG_DOC}: add a \
         row for each to the key table under \"## {section}...\": {missing:?}"
    );
}

#[test]
fn every_weights_file_key_is_documented_and_nothing_else() {
    check_file_keys(WEIGHTS_SECTION, "RawWeights", key_paths::<RawWeights>());
}

#[test]
fn every_tokens_file_key_is_documented_and_nothing_else() {
    check_file_keys(TOKENS_SECTION, "RawTokens", key_paths::<RawTokens>());
}

// ---------------------------------------------------------------------------------------------
// Metric names.

/// Every `"sluice_..."` string literal outside test code of the crates' sources, with the file
/// it was first seen in. Series suffixes (`_bucket`, `_sum`, `_count`) are stripped: the docs
/// name the histogram.
fn metric_names_in_code(root: &Path) -> BTreeMap<String, String> {
    let literal = Regex::new(r#""(sluice_[a-z0-9_]+)""#).expect("valid regex");
    let mut files = Vec::new();
    for dir in ["proxy/src", "control/src", "config/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        !files.is_empty(),
        "no sources found under {}",
        root.display()
    );
    let mut names = BTreeMap::new();
    for file in files {
        let text = read(&file);
        for line in text.lines() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            for c in literal.captures_iter(line) {
                let name = series_family(&c[1]);
                let shown = file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                names.entry(name.to_string()).or_insert(shown);
            }
        }
    }
    names
}

/// `.rs` files under `dir`, except test modules kept in files of their own (`tests.rs`).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

fn series_family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// Every `sluice_...` name in a metrics table row (a row whose first cell is a backticked
/// `sluice_` name) of `docs/*.md`, with where it was seen.
fn metric_names_in_docs(root: &Path) -> BTreeMap<String, String> {
    let name = Regex::new(r"\bsluice_[a-z0-9_]+").expect("valid regex");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    let mut names = BTreeMap::new();
    for page in pages {
        let text = read(&page);
        let shown = page
            .strip_prefix(root)
            .unwrap_or(&page)
            .display()
            .to_string();
        for (index, line) in text.lines().enumerate() {
            let Some(row) = line.trim().strip_prefix('|') else {
                continue;
            };
            let first_cell = row.split('|').next().unwrap_or_default().trim();
            if !first_cell.starts_with("`sluice_") {
                continue;
            }
            for m in name.find_iter(row) {
                names
                    .entry(m.as_str().to_string())
                    .or_insert_with(|| format!("{shown}:{}", index + 1));
            }
        }
    }
    names
}

#[test]
fn every_metric_is_documented_and_nothing_else() {
    let root = repo_root();
    let exported = metric_names_in_code(&root);
    let documented = metric_names_in_docs(&root);
    assert!(
        exported.contains_key("sluice_requests_total"),
        "the scan of the sources found no metric names: {exported:?}"
    );
    let missing: Vec<String> = exported
        .iter()
        .filter(|(name, _)| !documented.contains_key(*name))
        .map(|(name, file)| format!("  `{name}` (named in {file})"))
        .collect();
    let extra: Vec<String> = documented
        .iter()
        .filter(|(name, _)| !exported.contains_key(*name))
        .map(|(name, at)| format!("  `{name}` ({at})"))
        .collect();
    let mut message = String::new();
    if !missing.is_empty() {
        let _ = writeln!(
            message,
            "exported by the code but not in any metrics table of docs/*.md: add a row whose \
             first cell is the backticked name, with its type and labels, to the metrics table \
             of docs/proxy.md (proxy metrics) or docs/control.md (control metrics)\n{}",
            missing.join("\n")
        );
    }
    if !extra.is_empty() {
        let _ = writeln!(
            message,
            "in a metrics table of docs/*.md but not exported by the code (no \"sluice_...\" \
             literal outside tests in proxy/src, control/src, config/src): remove or rename\n{}",
            extra.join("\n")
        );
    }
    assert!(message.is_empty(), "{message}");
}
