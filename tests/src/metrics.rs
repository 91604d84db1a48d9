//! Reading numbers out of Prometheus text exposition in tests.

/// Sums the samples of metric `name` (exact name, no suffix matching) whose labels include
/// every pair of `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| {
                label_text
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_matching_series() {
        let text = "# HELP x\nreq{route=\"a\",code=\"200\"} 3\nreq{route=\"a\",code=\"500\"} 2\nreq{route=\"b\",code=\"200\"} 7\nreq_count 9\n";
        assert_eq!(super::sum(text, "req", &[("route", "a")]), 5.0);
        assert_eq!(super::sum(text, "req", &[("code", "200")]), 10.0);
        assert_eq!(super::sum(text, "req_count", &[]), 9.0);
    }
}
