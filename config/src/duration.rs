//! Durations as operators write them: `250ms`, `30s`, `5m`, `1h30m`, `1.5s`.

use std::time::Duration;

/// Parses a duration: one or more `<number><unit>` parts, unit one of `us`, `ms`, `s`, `m`, `h`.
/// A bare number is refused (is `30` seconds or milliseconds?).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("expected a number at \"{rest}\""));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("\"{}\" is not a number", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err("missing unit".into()),
            other => return Err(format!("unknown unit \"{other}\" (use us, ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    // Ten years is far beyond any timeout or interval; larger values are certainly typos.
    if !total.is_finite() || total > 10.0 * 365.0 * 86_400.0 {
        return Err("too large".into());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way [`parse_duration`] reads it (`250ms`, `30s`, `1.5s`, `5m`).
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if duration.is_zero() {
        "0s".into()
    } else if ms < 1.0 {
        format!("{}us", duration.as_micros())
    } else if ms < 1000.0 {
        format!("{}ms", trim_float(ms))
    } else if ms % 3_600_000.0 == 0.0 {
        format!("{}h", ms / 3_600_000.0)
    } else if ms % 60_000.0 == 0.0 {
        format!("{}m", ms / 60_000.0)
    } else {
        format!("{}s", trim_float(ms / 1000.0))
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("0s", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_ambiguous_or_wrong() {
        assert_eq!(parse_duration("30"), Err("missing unit".into()));
        assert_eq!(
            parse_duration("3 days"),
            Err("unknown unit \" days\" (use us, ms, s, m or h)".into())
        );
        assert_eq!(
            parse_duration("ms"),
            Err("expected a number at \"ms\"".into())
        );
        assert_eq!(parse_duration(""), Err("empty".into()));
        assert_eq!(
            parse_duration("1.2.3s"),
            Err("\"1.2.3\" is not a number".into())
        );
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "30s", "5m", "1.5s", "2h", "0s"] {
            let d = parse_duration(text).expect("valid");
            assert_eq!(format_duration(d), text);
        }
    }
}
