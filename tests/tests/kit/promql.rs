//! Just enough PromQL to see what an expression reads: its metric selectors with the labels
//! they match on, and the labels of its `by`, `without`, `on`, `ignoring` and `group_*` clauses.

/// What one expression reads.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Reads {
    /// Every selector, in order.
    pub(crate) selectors: Vec<Selector>,
    /// Labels named by grouping and vector-matching clauses.
    pub(crate) grouping: Vec<String>,
}

/// A metric selector: `name{label="value", ...}`.
#[derive(Debug, PartialEq)]
pub(crate) struct Selector {
    /// The metric name (from `__name__` for a selector without one in front).
    pub(crate) metric: String,
    /// The label names of its matchers (`__name__` excluded).
    pub(crate) labels: Vec<String>,
}

/// Keywords followed by a list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Keywords, binary operators and aggregations (which may come before their `by` clause) spelled
/// as words.
const WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Grafana's interval variables stand for durations.
const GRAFANA_DURATIONS: &[&str] = &[
    "$__rate_interval",
    "${__rate_interval}",
    "$__interval",
    "${__interval}",
    "$__range",
    "${__range}",
];

/// What `expr` reads; an error for text this reader cannot follow (an unclosed string or
/// brace, a template variable outside a string).
pub(crate) fn reads(expr: &str) -> Result<Reads, String> {
    let mut text = expr.to_string();
    for variable in GRAFANA_DURATIONS {
        text = text.replace(variable, "5m");
    }
    let chars: Vec<char> = text.chars().collect();
    let mut lexer = Lexer { chars, at: 0 };
    let mut reads = Reads::default();
    while let Some(c) = lexer.peek() {
        match c {
            c if c.is_whitespace() => lexer.at += 1,
            '#' => lexer.skip_while(|c| c != '\n'),
            '"' | '\'' | '`' => {
                lexer.string()?;
            }
            '[' => {
                let start = lexer.at;
                lexer.skip_past(']')?;
                if lexer.chars[start..lexer.at].contains(&'$') {
                    return Err(format!("a template variable in a range in {expr:?}"));
                }
            }
            '{' => {
                let (name, labels) = lexer.matchers()?;
                let metric =
                    name.ok_or_else(|| format!("a selector without a metric name in {expr:?}"))?;
                reads.selectors.push(Selector { metric, labels });
            }
            '$' => return Err(format!("a template variable outside a string in {expr:?}")),
            c if c.is_ascii_digit() || c == '.' => {
                lexer.skip_while(|c| c.is_ascii_alphanumeric() || c == '.');
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let word = lexer.word();
                let lower = word.to_ascii_lowercase();
                let next = lexer.next_visible();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if next == Some('(') {
                        reads.grouping.extend(lexer.label_list()?);
                    }
                } else if WORDS.contains(&lower.as_str()) || next == Some('(') {
                    // An operator, or a function or aggregation called here.
                } else if next == Some('{') {
                    lexer.skip_while(char::is_whitespace);
                    let (_, labels) = lexer.matchers()?;
                    reads.selectors.push(Selector {
                        metric: word,
                        labels,
                    });
                } else {
                    reads.selectors.push(Selector {
                        metric: word,
                        labels: Vec::new(),
                    });
                }
            }
            _ => lexer.at += 1,
        }
    }
    Ok(reads)
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next_visible(&self) -> Option<char> {
        self.chars[self.at..]
            .iter()
            .copied()
            .find(|c| !c.is_whitespace())
    }

    fn skip_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
    }

    fn skip_past(&mut self, end: char) -> Result<(), String> {
        self.skip_while(|c| c != end);
        if self.peek().is_none() {
            return Err(format!("no closing {end:?}"));
        }
        self.at += 1;
        Ok(())
    }

    fn word(&mut self) -> String {
        let start = self.at;
        self.skip_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        self.chars[start..self.at].iter().collect()
    }

    /// A quoted string (the lexer is on its opening quote); returns its contents.
    fn string(&mut self) -> Result<String, String> {
        let quote = self.peek().ok_or("no string")?;
        self.at += 1;
        let mut value = String::new();
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                '\\' if quote != '`' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.at += 1;
                    }
                }
                c if c == quote => return Ok(value),
                c => value.push(c),
            }
        }
        Err(format!("unclosed string {value:?}"))
    }

    /// `( label, ... )` (the lexer is before the opening parenthesis).
    fn label_list(&mut self) -> Result<Vec<String>, String> {
        self.skip_past('(')?;
        let mut labels = Vec::new();
        loop {
            self.skip_while(|c| c.is_whitespace() || c == ',');
            match self.peek() {
                Some(')') => {
                    self.at += 1;
                    return Ok(labels);
                }
                Some(c) if c.is_ascii_alphabetic() || c == '_' => labels.push(self.word()),
                other => return Err(format!("unexpected {other:?} in a label list")),
            }
        }
    }

    /// `{ label op "value", ... }` (the lexer is on the opening brace): the `__name__` value,
    /// if matched with `=`, and the other label names.
    fn matchers(&mut self) -> Result<(Option<String>, Vec<String>), String> {
        self.at += 1;
        let (mut name, mut labels) = (None, Vec::new());
        loop {
            self.skip_while(|c| c.is_whitespace() || c == ',');
            match self.peek() {
                Some('}') => {
                    self.at += 1;
                    return Ok((name, labels));
                }
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                    let label = self.word();
                    self.skip_while(char::is_whitespace);
                    let op_start = self.at;
                    self.skip_while(|c| matches!(c, '=' | '!' | '~'));
                    let op: String = self.chars[op_start..self.at].iter().collect();
                    if !matches!(op.as_str(), "=" | "!=" | "=~" | "!~") {
                        return Err(format!("bad matcher operator {op:?} after {label}"));
                    }
                    self.skip_while(char::is_whitespace);
                    let value = self.string()?;
                    if label == "__name__" && op == "=" {
                        name = Some(value);
                    } else if label != "__name__" {
                        labels.push(label);
                    }
                }
                other => return Err(format!("unexpected {other:?} in a selector")),
            }
        }
    }
}

#[test]
fn reads_selectors_matchers_and_grouping_labels() {
    let reads = reads(
        r#"histogram_quantile(0.95, sum by (le, backend) (rate(sluice_request_duration_seconds_bucket{route=~"$route", code!="5.."}[$__rate_interval])))
           / on (backend) group_left max without (instance) (up) > bool 0.5 offset 5m and {__name__="x_y", job="j"}"#,
    )
    .expect("readable");
    assert_eq!(
        reads.selectors,
        [
            Selector {
                metric: "sluice_request_duration_seconds_bucket".into(),
                labels: vec!["route".into(), "code".into()]
            },
            Selector {
                metric: "up".into(),
                labels: vec![]
            },
            Selector {
                metric: "x_y".into(),
                labels: vec!["job".into()]
            },
        ]
    );
    assert_eq!(reads.grouping, ["le", "backend", "backend", "instance"]);
}

#[test]
fn unreadable_text_is_an_error() {
    assert!(reads(r#"rate(x{a="b}[5m])"#).is_err());
    assert!(reads("rate(x[$interval])").is_err());
    assert!(reads(r#"{job="a"}"#).is_err());
}
