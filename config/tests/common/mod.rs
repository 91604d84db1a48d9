//! What the per-key config test files share: a minimal valid config and a parse that
//! returns the error's lines.

use std::path::Path;

use sluice_config::Config;

/// One listener, one upstream, one route: valid on its own. (Test files with a base of their
/// own, e.g. with rollouts, use only [`parse`].)
#[allow(dead_code)]
pub(crate) const BASE: &str = r#"listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  app:
    endpoints: [127.0.0.1:18081]
routes:
  - name: default
    backends:
      - { upstream: app, weight: 1 }
"#;

/// `text` compiled as `sluice.yaml`, or the lines of its error.
pub(crate) fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::parse(text, Path::new("sluice.yaml"))
        .map_err(|e| e.to_string().lines().map(str::to_string).collect())
}
