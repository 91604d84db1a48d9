//! Config files for tests: listeners and admin on port 0, backends by address.

use crate::backend::Backend;

/// A config with one listener, the admin endpoint, upstreams `stable` and `canary`, a
/// `testers` route (header `canary: true` → canary) and a `default` route split by weight.
pub fn split(
    stable: &Backend,
    canary: &Backend,
    stable_weight: &str,
    canary_weight: &str,
) -> String {
    format!(
        r#"listeners:
  - name: http
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  stable:
    version: v1
    endpoints: [{stable}]
  canary:
    version: v2
    endpoints: [{canary}]
routes:
  - name: testers
    match:
      headers:
        canary: {{ exact: "true" }}
    backends:
      - {{ upstream: canary, weight: 100 }}
  - name: default
    timeout: 5s
    backends:
      - {{ upstream: stable, weight: {stable_weight} }}
      - {{ upstream: canary, weight: {canary_weight} }}
weights_file: weights.yaml
"#,
        stable = stable.endpoint(),
        canary = canary.endpoint(),
    )
}

/// The `store.etcd` section of fleet mode: the members `endpoints_yaml` (a YAML flow list, as
/// `Etcd::endpoints_yaml` writes it) and the key `prefix`.
pub fn store_etcd(endpoints_yaml: &str, prefix: &str) -> String {
    format!("store:\n  etcd:\n    endpoints: {endpoints_yaml}\n    prefix: {prefix}\n")
}
