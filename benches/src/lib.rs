//! Inputs shared by sluice's benchmarks: generated configs with many routes.

use std::path::Path;

use sluice_config::Config;

/// A config with `n` tenant routes (`x-tenant: t<i>` plus a path prefix) in front of a
/// 90/10 default route, like a multi-tenant edge.
pub fn tenant_config(n: usize) -> Config {
    let mut yaml = String::from(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nupstreams:\n  stable:\n    endpoints: [127.0.0.1:18081]\n  canary:\n    endpoints: [127.0.0.1:18082]\nroutes:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - name: tenant-{i}\n    match: {{ path_prefix: /api, headers: {{ x-tenant: {{ exact: t{i} }} }} }}\n    backends: [{{ upstream: stable, weight: 90 }}, {{ upstream: canary, weight: 10 }}]\n"
        ));
    }
    yaml.push_str("  - name: default\n    backends: [{ upstream: stable, weight: 90 }, { upstream: canary, weight: 10 }]\n");
    Config::parse(&yaml, Path::new("bench.yaml"))
        .unwrap_or_else(|e| panic!("generated config is valid: {e}"))
}

/// A config with `n` routes that differ only by path prefix (`/svc<i>/`): nothing to index,
/// every miss is a scan.
pub fn prefix_config(n: usize) -> Config {
    let mut yaml = String::from(
        "listeners:\n  - name: http\n    address: 127.0.0.1:0\nupstreams:\n  stable:\n    endpoints: [127.0.0.1:18081]\n  canary:\n    endpoints: [127.0.0.1:18082]\nroutes:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - name: svc-{i}\n    match: {{ path_prefix: /svc{i}/ }}\n    backends: [{{ upstream: stable, weight: 90 }}, {{ upstream: canary, weight: 10 }}]\n"
        ));
    }
    Config::parse(&yaml, Path::new("bench.yaml"))
        .unwrap_or_else(|e| panic!("generated config is valid: {e}"))
}
