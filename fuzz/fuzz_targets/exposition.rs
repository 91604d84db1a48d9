//! The Prometheus text parser of sluice-control: never a panic on arbitrary text, and what it
//! accepts survives a render and a second parse unchanged.

#![no_main]

use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;

// Formatted with its own crate (rustfmt would look for its `mod tests` here).
#[rustfmt::skip]
#[path = "../../control/src/exposition.rs"]
#[allow(dead_code)]
mod exposition;

use exposition::{parse, Sample};

fuzz_target!(|text: &str| {
    let Ok(samples) = parse(text) else {
        return;
    };
    let rendered = render(&samples);
    let again = match parse(&rendered) {
        Ok(again) => again,
        Err(e) => panic!("a rendered scrape does not parse: {e}\n{rendered}"),
    };
    assert_eq!(samples.len(), again.len(), "{rendered}");
    for (a, b) in samples.iter().zip(&again) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.labels, b.labels, "{rendered}");
        assert!(
            a.value == b.value || (a.value.is_nan() && b.value.is_nan()),
            "{} became {} in {rendered}",
            a.value,
            b.value
        );
    }
});

/// The text exposition of `samples`, escaping label values as the format says.
fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for sample in samples {
        out.push_str(&sample.name);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (name, value)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{name}=\"{escaped}\"");
            }
            out.push('}');
        }
        let value = match sample.value {
            v if v.is_nan() => "NaN".to_string(),
            v if v == f64::INFINITY => "+Inf".to_string(),
            v if v == f64::NEG_INFINITY => "-Inf".to_string(),
            v => v.to_string(),
        };
        let _ = writeln!(out, " {value}");
    }
    out
}
