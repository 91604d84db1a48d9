//! A parser for the Prometheus text exposition format (what `/metrics` serves): samples with
//! their labels; comments, HELP/TYPE lines and timestamps are skipped.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, with any `_bucket`/`_count`/`_sum` suffix.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// The value (`+Inf`, `-Inf`, `NaN` included).
    pub value: f64,
}

/// A line that is not a valid sample.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
    /// The line (truncated).
    pub text: String,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Parses a whole exposition. Any malformed line fails the whole parse: a half-understood
/// scrape must not become a measurement.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason| ParseError {
            line: i + 1,
            reason,
            text: line.chars().take(120).collect(),
        };
        samples.push(parse_line(line).map_err(error)?);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("missing value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        return Err("invalid metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("missing value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| "value is not a number")?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| "timestamp is not an integer")?;
    }
    if fields.next().is_some() {
        return Err("trailing garbage");
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` (after the opening brace); returns what follows the closing brace.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, &'static str> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = text.find('=').ok_or("label without '='")?;
        let key = text[..eq].trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("invalid label name");
        }
        text = text[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = text.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err("unterminated label value"),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value"),
            }
        };
        labels.insert(key.to_string(), value);
        text = text[end + 1..].trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err("expected ',' or '}' after a label");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_and_special_values() {
        let text = "# HELP x help\n# TYPE x counter\nx{route=\"a\",code=\"200\"} 3\n\
                    y_bucket{le=\"+Inf\"} 7 1700000000000\nz 1.5e3\nq{v=\"a\\\"b\\\\c\\nd\"} NaN\nw{} +Inf\n";
        let samples = parse(text).expect("valid");
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].name, "x");
        assert_eq!(samples[0].label("route"), Some("a"));
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].label("le"), Some("+Inf"));
        assert_eq!(samples[2].value, 1500.0);
        assert_eq!(samples[3].label("v"), Some("a\"b\\c\nd"));
        assert!(samples[3].value.is_nan());
        assert_eq!(samples[4].value, f64::INFINITY);
    }

    #[test]
    fn a_bad_line_fails_the_whole_scrape() {
        for bad in [
            "x{a=\"1\"",
            "x{a=1} 2",
            "x 1 2 3",
            "x{a=\"1\"} abc",
            "x{a=\"1\" b=\"2\"} 1",
            "{a=\"1\"} 1",
            "x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        let err = parse("ok 1\nx{a=\"1\"} abc\n").expect_err("invalid");
        assert_eq!(err.line, 2);
        assert_eq!(err.reason, "value is not a number");
    }
}
