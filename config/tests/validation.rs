//! Every validation rule of docs/config.md "What validation rejects", each with a bad file and the
//! exact message an operator sees.

use std::path::Path;

use sluice_config::{Config, RouteTable, Weights};

const BASE: &str = r#"listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  stable:
    endpoints: [127.0.0.1:18081]
  canary:
    endpoints: [127.0.0.1:18082]
routes:
  - name: default
    backends:
      - { upstream: stable, weight: 90 }
      - { upstream: canary, weight: 10 }
weights_file: weights.yaml
rollouts:
  - name: myapp
    route: default
    stable: stable
    canary: canary
    steps: [5, 50, 100]
    interval: 30s
"#;

/// The error lines for `text` read as `sluice.yaml`.
fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new("sluice.yaml")) {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

/// `BASE` with one substring replaced (which must exist).
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

fn assert_errors(text: &str, want: &[&str]) {
    assert_eq!(errors(text), want, "for file:\n{text}");
}

#[test]
fn the_base_file_is_valid() {
    assert_errors(BASE, &[]);
}

#[test]
fn empty_names() {
    assert_errors(
        &base_with("- name: http", "- name: \"\""),
        &["sluice.yaml:2:11: listeners[0].name: name must not be empty"],
    );
    assert_errors(
        &base_with("- name: default", "- name: \"  \""),
        &[
            "sluice.yaml:10:11: routes[0].name: name must not be empty",
            "sluice.yaml:17:12: rollouts[0].route: unknown route \"default\" (known: none)",
        ],
    );
    assert_errors(
        &base_with("  stable:\n    endpoints", "  \"\":\n    endpoints"),
        &[
            "sluice.yaml:6:5: upstreams[\"\"]: upstream name must not be empty",
            "sluice.yaml:12:21: routes[0].backends[0].upstream: unknown upstream \"stable\" (known: canary)",
        ],
    );
}

#[test]
fn missing_names() {
    assert_errors(
        &base_with("  - name: myapp\n", "  - \n"),
        &["sluice.yaml:17:5: rollouts[0]: missing required field \"name\""],
    );
}

#[test]
fn duplicate_names() {
    assert_errors(
        &base_with("weights_file", "  - name: default\n    backends: [{ upstream: stable, weight: 1 }]\nweights_file"),
        &["sluice.yaml:14:11: routes[1].name: duplicate route name \"default\" (first defined at routes[0].name)"],
    );
    assert_errors(
        &base_with("upstreams:", "  - name: http\n    address: 127.0.0.1:8081\nupstreams:"),
        &["sluice.yaml:4:11: listeners[1].name: duplicate listener name \"http\" (first defined at listeners[0].name)"],
    );
    assert_errors(
        &base_with("{ upstream: canary, weight: 10 }", "{ upstream: stable, weight: 10 }"),
        &[
            "sluice.yaml:13:21: routes[0].backends[1].upstream: duplicate backend \"stable\" (first defined at routes[0].backends[0].upstream)",
        ],
    );
    assert_errors(
        &format!("{BASE}  - name: myapp\n    route: default\n    stable: stable\n    canary: canary\n    steps: [50]\n    interval: 1m\n"),
        &[
            "sluice.yaml:22:11: rollouts[1].name: duplicate rollout name \"myapp\" (first defined at rollouts[0].name)",
            "sluice.yaml:23:12: rollouts[1].route: duplicate rollout of route \"default\" (first defined at rollouts[0].route)",
        ],
    );
    // Two upstreams with one name: YAML itself forbids duplicate keys.
    let dup = base_with("  canary:\n", "  stable:\n");
    let lines = errors(&dup);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("sluice.yaml:7:3: upstreams: duplicate mapping key"),
        "{lines:?}"
    );
}

#[test]
fn a_scrape_target_listed_twice_is_refused() {
    assert_errors(
        &format!("{BASE}    metrics: {{ targets: [127.0.0.1:9901, 127.0.0.1:9901] }}\n"),
        &["sluice.yaml:22:42: rollouts[0].metrics.targets[1]: duplicate target \"127.0.0.1:9901\" (first defined at rollouts[0].metrics.targets[0])"],
    );
}

#[test]
fn one_route_cannot_have_two_rollouts() {
    assert_errors(
        &format!("{BASE}  - name: other\n    route: default\n    stable: stable\n    canary: canary\n    steps: [50]\n    interval: 1m\n"),
        &["sluice.yaml:23:12: rollouts[1].route: duplicate rollout of route \"default\" (first defined at rollouts[0].route)"],
    );
}

#[test]
fn backend_naming_an_unknown_upstream() {
    assert_errors(
        &base_with("{ upstream: canary, weight: 10 }", "{ upstream: canry, weight: 10 }"),
        &[
            "sluice.yaml:13:21: routes[0].backends[1].upstream: unknown upstream \"canry\" (known: stable, canary)",
        ],
    );
}

#[test]
fn bad_weights() {
    assert_errors(
        &base_with("weight: 10 }", "weight: -10 }"),
        &["sluice.yaml:13:37: routes[0].backends[1].weight: weight must not be negative, got -10"],
    );
    assert_errors(
        &base_with("weight: 10 }", "weight: ten }"),
        &["sluice.yaml:13:37: routes[0].backends[1].weight: weight must be a number, got \"ten\""],
    );
    assert_errors(
        &base_with("weight: 10 }", "weight: 0.125 }"),
        &["sluice.yaml:13:37: routes[0].backends[1].weight: weight 0.125 has more than 2 decimals (the finest weight is 0.01)"],
    );
    assert_errors(
        &base_with("weight: 90 }", "weight: 0 }").replacen("weight: 10 }", "weight: 0 }", 1),
        &["sluice.yaml:12:7: routes[0].backends: all backend weights are 0; at least one must be positive (weights are relative: 90/10, 9/1 and 99.5/0.5 are all valid)"],
    );
    assert_errors(
        &base_with("{ upstream: canary, weight: 10 }", "{ upstream: canary }"),
        &["sluice.yaml:13:9: routes[0].backends[1]: missing required field \"weight\""],
    );
}

#[test]
fn relative_weights_are_all_valid() {
    for (stable, canary) in [("90", "10"), ("9", "1"), ("99.5", "0.5"), ("100", "0")] {
        let text = base_with("weight: 90 }", &format!("weight: {stable} }}")).replacen(
            "weight: 10 }",
            &format!("weight: {canary} }}"),
            1,
        );
        assert_errors(&text, &[]);
    }
}

#[test]
fn upstream_without_endpoints() {
    assert_errors(
        &base_with("endpoints: [127.0.0.1:18082]", "endpoints: []"),
        &["sluice.yaml:8:16: upstreams.canary.endpoints: endpoints must not be empty"],
    );
    assert_errors(
        &base_with("    endpoints: [127.0.0.1:18082]\n", "    version: v2\n"),
        &["sluice.yaml:8:5: upstreams.canary: missing required field \"endpoints\""],
    );
}

#[test]
fn unparsable_address() {
    assert_errors(
        &base_with("127.0.0.1:18082", "127.0.0.1"),
        &["sluice.yaml:8:17: upstreams.canary.endpoints[0]: invalid address \"127.0.0.1\": missing \":port\" (expected host:port, e.g. 127.0.0.1:8080)"],
    );
    assert_errors(
        &base_with("address: 127.0.0.1:8080", "address: 127.0.0.1:80800"),
        &["sluice.yaml:3:14: listeners[0].address: invalid address \"127.0.0.1:80800\": port \"80800\" is not a number from 0 to 65535 (expected host:port, e.g. 127.0.0.1:8080)"],
    );
    assert_errors(
        &base_with("address: 127.0.0.1:8080", "address: example.com:8080"),
        &["sluice.yaml:3:14: listeners[0].address: invalid address \"example.com:8080\": a listening address must be an IP address or localhost (expected host:port, e.g. 127.0.0.1:8080)"],
    );
}

#[test]
fn unparsable_duration() {
    assert_errors(
        &base_with("interval: 30s", "interval: 30"),
        &["sluice.yaml:21:15: rollouts[0].interval: invalid duration \"30\": missing unit (expected e.g. 250ms, 30s, 5m, 1h30m)"],
    );
    assert_errors(
        &base_with("    backends:\n      - { upstream: stable", "    timeout: 3 days\n    backends:\n      - { upstream: stable"),
        &["sluice.yaml:11:14: routes[0].timeout: invalid duration \"3 days\": unknown unit \" days\" (use us, ms, s, m or h) (expected e.g. 250ms, 30s, 5m, 1h30m)"],
    );
}

#[test]
fn unparsable_regex() {
    assert_errors(
        &base_with("    backends:\n      - { upstream: stable", "    match: { path_regex: \"/v[0-9\" }\n    backends:\n      - { upstream: stable"),
        &["sluice.yaml:11:26: routes[0].match.path_regex: invalid regex \"/v[0-9\": error: unclosed character class"],
    );
    assert_errors(
        &base_with("    backends:\n      - { upstream: stable", "    match: { headers: { x-v: { regex: \"(a\" } } }\n    backends:\n      - { upstream: stable"),
        &["sluice.yaml:11:39: routes[0].match.headers.x-v.regex: invalid regex \"(a\": error: unclosed group"],
    );
}

#[test]
fn rollout_naming_unknown_route_or_backend() {
    assert_errors(
        &base_with("route: default", "route: defualt"),
        &["sluice.yaml:17:12: rollouts[0].route: unknown route \"defualt\" (known: default)"],
    );
    assert_errors(
        &base_with("canary: canary\n    steps", "canary: canari\n    steps"),
        &["sluice.yaml:19:13: rollouts[0].canary: route \"default\" has no backend \"canari\" (its backends: stable, canary)"],
    );
}

#[test]
fn steps_not_increasing_or_out_of_range() {
    assert_errors(
        &base_with("steps: [5, 50, 100]", "steps: [5, 50, 25]"),
        &["sluice.yaml:20:20: rollouts[0].steps[2]: steps must increase: 25 follows 50"],
    );
    assert_errors(
        &base_with("steps: [5, 50, 100]", "steps: [5, 50, 150]"),
        &["sluice.yaml:20:20: rollouts[0].steps[2]: step 150 is outside 0..=100"],
    );
    assert_errors(
        &base_with("steps: [5, 50, 100]", "steps: [-5, 50]"),
        &["sluice.yaml:20:13: rollouts[0].steps[0]: step -5 is outside 0..=100"],
    );
    assert_errors(
        &base_with("steps: [5, 50, 100]", "steps: [0.5, 1, 2.5]"),
        &[],
    );
}

#[test]
fn unknown_keys_are_all_reported() {
    assert_errors(
        &base_with(
            "    address: 127.0.0.1:8080\n",
            "    address: 127.0.0.1:8080\n    protcol: auto\n    colour: red\n",
        ),
        &[
            "sluice.yaml:4:5: listeners[0]: unknown key \"protcol\" (did you mean \"protocol\"?)",
            "sluice.yaml:5:5: listeners[0]: unknown key \"colour\"",
        ],
    );
    assert_errors(
        &base_with("      - { upstream: canary, weight: 10 }", "      - { upstream: canary, weigth: 10 }"),
        &[
            "sluice.yaml:13:9: routes[0].backends[1]: missing required field \"weight\"",
            "sluice.yaml:13:29: routes[0].backends[1]: unknown key \"weigth\" (did you mean \"weight\"?)",
        ],
    );
}

#[test]
fn every_problem_of_a_file_is_reported_in_file_order() {
    let text = base_with("127.0.0.1:18082", "nope")
        .replacen("weight: 90 }", "weight: -1 }", 1)
        .replacen("interval: 30s", "interval: soon", 1);
    assert_errors(
        &text,
        &[
            "sluice.yaml:8:17: upstreams.canary.endpoints[0]: invalid address \"nope\": missing \":port\" (expected host:port, e.g. 127.0.0.1:8080)",
            "sluice.yaml:12:37: routes[0].backends[0].weight: weight must not be negative, got -1",
            "sluice.yaml:21:15: rollouts[0].interval: invalid duration \"soon\": expected a number at \"soon\" (expected e.g. 250ms, 30s, 5m, 1h30m)",
        ],
    );
}

#[test]
fn syntax_errors_have_a_location() {
    assert_errors(
        "listeners: [\n  bad",
        &["sluice.yaml:1:12: listeners: unclosed bracket '['"],
    );
    assert_errors("", &["sluice.yaml: the file is empty"]);
}

#[test]
fn toml_is_accepted_with_the_same_rules() {
    let toml = r#"weights_file = "weights.yaml"

[[listeners]]
name = "http"
address = "127.0.0.1:8080"

[upstreams.stable]
endpoints = ["127.0.0.1:18081"]

[[routes]]
name = "default"
[[routes.backends]]
upstream = "stable"
weight = 1
"#;
    assert!(Config::parse(toml, Path::new("sluice.toml")).is_ok());
    let bad = toml
        .replace("upstream = \"stable\"", "upstream = \"canry\"")
        .replace("name = \"http\"", "name = \"http\"\nbogus = 1");
    let err = Config::parse(&bad, Path::new("sluice.toml")).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "sluice.toml:5:1: listeners[0]: unknown key \"bogus\"\n\
         sluice.toml:14:12: routes[0].backends[0].upstream: unknown upstream \"canry\" (known: stable)"
    );
}

fn table() -> RouteTable {
    Config::parse(BASE, Path::new("sluice.yaml"))
        .expect("valid")
        .routes
}

fn weight_errors(text: &str) -> Vec<String> {
    match Weights::parse(text, Path::new("weights.yaml"), &table()) {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

#[test]
fn weights_file_rules() {
    assert_eq!(
        weight_errors("routes:\n  default: { stable: 75, canary: 25 }\n"),
        Vec::<String>::new()
    );
    assert_eq!(weight_errors("routes: {}\n"), Vec::<String>::new());
    assert_eq!(
        weight_errors("routes:\n  defualt: { stable: 75 }\n"),
        ["weights.yaml:2:3: routes.defualt: unknown route \"defualt\" (known: default)"]
    );
    assert_eq!(
        weight_errors("routes:\n  default: { stable: 75, canry: 25 }\n"),
        ["weights.yaml:2:26: routes.default.canry: route \"default\" has no backend \"canry\" (its backends: stable, canary)"]
    );
    assert_eq!(
        weight_errors("routes:\n  default: { stable: 0, canary: 0 }\n"),
        ["weights.yaml:2:12: routes.default: all backend weights are 0; at least one must be positive (weights are relative: 90/10, 9/1 and 99.5/0.5 are all valid)"]
    );
    assert_eq!(
        weight_errors("routes:\n  default: { stable: -5 }\n"),
        ["weights.yaml:2:22: routes.default.stable: weight must not be negative, got -5"]
    );
    assert_eq!(weight_errors(""), ["weights.yaml: the file is empty"]);
    assert_eq!(
        weight_errors("routes:\n  default: { stable: 7"),
        ["weights.yaml:2:12: routes.default: unclosed bracket '{'"]
    );
    assert_eq!(
        weight_errors("{}\n"),
        ["weights.yaml:1:1: missing required field \"routes (write `routes: {}` for no overrides)\""]
    );
}

#[test]
fn weights_apply_on_top_of_the_config() {
    let table = table();
    let weights = Weights::parse(
        "routes:\n  default: { canary: 30 }\n",
        Path::new("w.yaml"),
        &table,
    )
    .expect("valid");
    let applied = weights.apply(&table);
    let split = &applied.routes()[0].split;
    let got: Vec<(String, String)> = split
        .backends()
        .iter()
        .map(|b| (b.name.to_string(), b.weight.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("stable".to_string(), "90".to_string()),
            ("canary".to_string(), "30".to_string())
        ]
    );
}

/// `BASE` with `route` (YAML list item lines) inserted before the `default` route.
fn with_route_first(route: &str) -> String {
    base_with(
        "  - name: default\n",
        &format!("{route}  - name: default\n"),
    )
}

#[test]
fn respond_routes_answer_without_backends() {
    let text = with_route_first(
        "  - name: broken\n    match: { path_exact: /broken }\n    respond: { status: 500, body: \"no backend\" }\n",
    );
    let config = Config::parse(&text, Path::new("sluice.yaml")).expect("valid");
    let route = &config.routes.routes()[0];
    let respond = route.respond.as_ref().expect("a respond route");
    assert_eq!(
        (respond.status.as_u16(), &*respond.body),
        (500, "no backend")
    );
    assert!(route.split.backends().is_empty());
    assert!(config.routes.routes()[1].respond.is_none());
}

#[test]
fn respond_rules() {
    assert_errors(
        &with_route_first("  - name: both\n    respond: { status: 500 }\n    backends: [{ upstream: stable, weight: 1 }]\n"),
        &["sluice.yaml:10:5: routes[0]: give either backends or respond, not both"],
    );
    assert_errors(
        &with_route_first("  - name: odd\n    respond: { status: 99 }\n"),
        &["sluice.yaml:11:24: routes[0].respond.status: must be an HTTP status from 200 to 599, got 99"],
    );
    assert_errors(
        &with_route_first("  - name: text\n    respond: { status: \"500\" }\n"),
        &["sluice.yaml:11:24: routes[0].respond.status: must be an HTTP status from 200 to 599, got \"500\""],
    );
    assert_errors(
        &with_route_first("  - name: none\n    respond: { body: hi }\n"),
        &["sluice.yaml:11:14: routes[0].respond: missing required field \"status\""],
    );
    assert_errors(
        &with_route_first(
            "  - name: sticky\n    sticky: { header: x-user }\n    respond: { status: 503 }\n",
        ),
        &["sluice.yaml:11:13: routes[0].sticky: a respond route has no backends to stick to"],
    );
    let rollout_of_respond = base_with(
        "  - name: default\n",
        "  - name: fixed\n    respond: { status: 503 }\n  - name: default\n",
    )
    .replace("route: default", "route: fixed");
    assert_errors(
        &rollout_of_respond,
        &[
            "sluice.yaml:20:13: rollouts[0].stable: route \"fixed\" has no backend \"stable\" (its backends: none)",
            "sluice.yaml:21:13: rollouts[0].canary: route \"fixed\" has no backend \"canary\" (its backends: none)",
        ],
    );
}

#[test]
fn segment_prefix_and_invert_are_matchers_like_the_others() {
    let text = with_route_first(
        "  - name: api\n    match:\n      path_segment_prefix: /api/\n      headers: { x-debug: { present: true, invert: true } }\n      query: { v: { exact: \"1\", invert: true } }\n    backends: [{ upstream: canary, weight: 1 }]\n",
    );
    assert_errors(&text, &[]);
    assert_errors(
        &with_route_first("  - name: two\n    match: { path_prefix: /a, path_segment_prefix: /a }\n    backends: [{ upstream: canary, weight: 1 }]\n"),
        &["sluice.yaml:11:12: routes[0].match: give at most one of path_prefix, path_segment_prefix, path_exact, path_regex (found path_prefix, path_segment_prefix)"],
    );
    assert_errors(
        &with_route_first("  - name: rel\n    match: { path_segment_prefix: api }\n    backends: [{ upstream: canary, weight: 1 }]\n"),
        &["sluice.yaml:11:35: routes[0].match.path_segment_prefix: path \"api\" must start with \"/\""],
    );
}

#[test]
fn a_config_that_only_responds_needs_no_upstream() {
    let text = "listeners:\n  - { name: http, address: 127.0.0.1:8080 }\nroutes:\n  - name: down\n    respond: { status: 503 }\n";
    let config = Config::parse(text, Path::new("sluice.yaml")).expect("valid");
    assert!(config.upstreams.is_empty());
    assert_errors(
        &text.replace("    respond: { status: 503 }\n", "    backends: [{ upstream: a, weight: 1 }]\n"),
        &[
            "sluice.yaml:1:1: missing required field \"upstreams\"",
            "sluice.yaml:5:28: routes[0].backends[0].upstream: unknown upstream \"a\" (known: none)",
        ],
    );
}

#[test]
fn pause_steps_strategy_bake_checks_and_webhooks() {
    // Valid: a pause between weights, bake, a custom check with its Prometheus, every hook type.
    let full = base_with(
        "    interval: 30s\n",
        "    interval: 30s\n    bake: 3\n    analysis:\n      checks:\n        - { name: cpu, query: 'avg(rate(cpu{version=\"{{canary_version}}\"}[{{interval}}]))', max: 0.8 }\n    metrics:\n      prometheus: { url: \"http://127.0.0.1:9090\" }\n    webhooks:\n      - { name: a, type: confirm-rollout, url: \"http://127.0.0.1:1/a\" }\n      - { name: b, type: pre-rollout, url: \"http://127.0.0.1:1/b\", timeout: 30s }\n      - { name: c, type: rollout, url: \"http://127.0.0.1:1/c\" }\n      - { name: d, type: confirm-promotion, url: \"http://127.0.0.1:1/d\" }\n      - { name: e, type: post-rollout, url: \"https://hooks.example.com/x\" }\n      - { name: f, type: event, url: \"https://hooks.example.com/y\", headers_env: { Authorization: HOOK_TOKEN } }\n",
    )
    .replace("steps: [5, 50, 100]", "steps: [5, pause, 50, 100]");
    assert_errors(&full, &[]);
    let config = Config::parse(&full, Path::new("sluice.yaml")).expect("valid");
    let rollout = &config.rollouts[0];
    assert_eq!(rollout.steps[1], sluice_config::Step::Pause);
    assert_eq!((rollout.bake, rollout.webhooks.len()), (3, 6));
    assert_eq!(rollout.analysis.checks[0].max, Some(0.8));

    assert_errors(
        &base_with("steps: [5, 50, 100]", "steps: [pause, 5, pause, pause, 100, pause]"),
        &[
            "sluice.yaml:20:13: rollouts[0].steps[0]: a pause step holds between two weights: not first, last or twice in a row",
            "sluice.yaml:20:23: rollouts[0].steps[2]: a pause step holds between two weights: not first, last or twice in a row",
            "sluice.yaml:20:42: rollouts[0].steps[5]: a pause step holds between two weights: not first, last or twice in a row",
        ],
    );
    assert_errors(
        &base_with("    interval: 30s\n", "    interval: 30s\n    strategy: blue_green\n"),
        &["sluice.yaml:20:12: rollouts[0].steps: strategy blue_green switches 100% at once: steps must be [100]"],
    );
    assert_errors(
        &base_with("    interval: 30s\n", "    interval: 30s\n    strategy: rainbow\n"),
        &["sluice.yaml:22:15: rollouts[0].strategy: unknown value \"rainbow\" (expected one of: canary, blue_green)"],
    );
    assert_errors(
        &base_with(
            "    interval: 30s\n",
            "    interval: 30s\n    analysis:\n      checks:\n        - { name: cpu, query: 'up' }\n",
        ),
        &["sluice.yaml:24:11: rollouts[0].analysis.checks[0]: missing required field \"max or min (the bound the value must keep)\""],
    );
    assert_errors(
        &base_with(
            "    interval: 30s\n",
            "    interval: 30s\n    analysis:\n      checks:\n        - { name: cpu, query: 'up', min: 1 }\n",
        ),
        &["sluice.yaml:16:5: rollouts[0].metrics: missing required field \"prometheus.url (analysis.checks are PromQL queries)\""],
    );
    assert_errors(
        &base_with(
            "    interval: 30s\n",
            "    interval: 30s\n    webhooks:\n      - { name: a, type: sometimes, url: \"ftp://x\" }\n",
        ),
        &[
            "sluice.yaml:23:26: rollouts[0].webhooks[0].type: unknown value \"sometimes\" (expected one of: confirm-rollout, pre-rollout, rollout, confirm-promotion, post-rollout, event)",
            "sluice.yaml:23:42: rollouts[0].webhooks[0].url: \"ftp://x\" must start with http:// or https://",
        ],
    );
}
