//! A rollout rig: stable and canary backends, a fleet of proxies sharing one config directory
//! (so they share the weights file), and the config with a rollout for `sluice-control`.

use std::path::Path;

use crate::backend::Backend;
use crate::control::Control;
use crate::proxy::Proxy;

/// Backends, proxies and the directory holding `sluice.yaml` and `weights.yaml`.
#[derive(Debug)]
pub struct Rig {
    /// The stable upstream.
    pub stable: Backend,
    /// The canary upstream.
    pub canary: Backend,
    /// The proxies, all reading the same files.
    pub proxies: Vec<Proxy>,
    dir: tempfile::TempDir,
    /// `(listener, admin)` addresses written in the config.
    ports: (String, String),
    /// More top-level config (fleet mode's `store:` section), appended to every config.
    extra: String,
}

impl Rig {
    /// Starts the backends and `proxies` proxies (listeners and admin on ephemeral ports).
    pub async fn new(proxies: usize) -> Self {
        Self::build(
            proxies,
            ("127.0.0.1:0".into(), "127.0.0.1:0".into()),
            String::new(),
        )
        .await
    }

    /// Like [`Rig::new`], in fleet mode: weights and rollout state in etcd at `endpoints`
    /// (a YAML list) under `prefix`, leases of `lease_ttl`.
    pub async fn fleet(proxies: usize, endpoints: &str, prefix: &str, lease_ttl: &str) -> Self {
        let store = format!(
            "store:\n  etcd:\n    endpoints: {endpoints}\n    prefix: {prefix}\n    lease_ttl: {lease_ttl}\n"
        );
        Self::build(proxies, ("127.0.0.1:0".into(), "127.0.0.1:0".into()), store).await
    }

    /// One proxy on fixed (free, picked now) ports, so it can be restarted at the same
    /// addresses with [`Rig::restart_proxy`].
    pub async fn new_fixed_ports() -> Self {
        let pick = || format!("127.0.0.1:{}", crate::free_port());
        Self::build(1, (pick(), pick()), String::new()).await
    }

    async fn build(proxies: usize, ports: (String, String), extra: String) -> Self {
        let stable = Backend::spawn("stable").await;
        let canary = Backend::spawn("canary").await;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("sluice.yaml"),
            format!("{}{extra}", base_config(&stable, &canary, "v2", &ports)),
        )
        .expect("write config");
        let proxies = (0..proxies)
            .map(|_| Proxy::start_in(dir.path(), &[]))
            .collect();
        Self {
            stable,
            canary,
            proxies,
            dir,
            ports,
            extra,
        }
    }

    /// Kills proxy `index` (SIGKILL) and starts it again on the same config.
    pub fn restart_proxy(&mut self, index: usize) {
        self.proxies[index].process.kill();
        self.proxies[index] = Proxy::start_in(self.dir.path(), &[]);
    }

    /// The shared directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `[admin1, admin2, ...]` of the proxies, for `metrics.targets`.
    pub fn targets(&self) -> String {
        let all: Vec<String> = self.proxies.iter().map(|p| p.admin.to_string()).collect();
        format!("[{}]", all.join(", "))
    }

    /// Writes `sluice.yaml`: the base config plus `control:` and the `rollouts:` given (YAML
    /// list items; `{targets}` is replaced by [`Rig::targets`]). `canary_version` is the
    /// canary upstream's version.
    pub fn write_config(&self, rollouts: &str, canary_version: &str) {
        self.write_config_text(&self.config_text(rollouts, canary_version));
    }

    /// The text [`Rig::write_config`] writes, for a test to edit before
    /// [`Rig::write_config_text`] (a fault on the canary, say).
    pub fn config_text(&self, rollouts: &str, canary_version: &str) -> String {
        format!(
            "{}{}control:\n  admin: 127.0.0.1:0\n  state: control-state.json\nrollouts:\n{}",
            base_config(&self.stable, &self.canary, canary_version, &self.ports),
            self.extra,
            rollouts.replace("{targets}", &self.targets())
        )
    }

    /// Writes `text` as `sluice.yaml`, atomically (temp file + rename): a control or proxy
    /// reading it meanwhile (a control still starting, say) sees the old or the new file,
    /// never half of one.
    pub fn write_config_text(&self, text: &str) {
        sluice_config::write_atomic(&self.dir.path().join("sluice.yaml"), text.as_bytes())
            .expect("write config");
    }

    /// Rewrites `sluice.yaml` as `edit` returns it (atomically); the edit must change it.
    pub fn edit_config(&self, edit: impl FnOnce(&str) -> String) {
        let text =
            std::fs::read_to_string(self.dir.path().join("sluice.yaml")).expect("read config");
        let edited = edit(&text);
        assert_ne!(text, edited, "the edit changes the config");
        self.write_config_text(&edited);
    }

    /// Writes `rollouts` (see [`Rig::write_config`], canary version `v2`), waits until every
    /// proxy loaded them, and starts a control on this directory.
    pub async fn with_control(&self, rollouts: &str) -> Control {
        self.write_config(rollouts, "v2");
        self.wait_for_rollouts().await;
        Control::start(self.dir())
    }

    /// Waits until every proxy's `/config` shows the rollouts of the config file.
    pub async fn wait_for_rollouts(&self) {
        for proxy in &self.proxies {
            crate::eventually!(
                proxy.config_json().await["rollouts"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
                "proxy reloaded the rollout config"
            );
        }
    }

    /// The canary weight each proxy applies, from its `/config`.
    pub async fn canary_weights(&self) -> Vec<f64> {
        let mut weights = Vec::new();
        for proxy in &self.proxies {
            weights.push(proxy.weight("default", "canary").await);
        }
        weights
    }

    /// Writes the weights file by hand.
    pub fn write_weights(&self, text: &str) {
        std::fs::write(self.dir.path().join("weights.yaml"), text).expect("write weights");
    }

    /// The weights file as it is now.
    pub fn weights_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weights.yaml")).unwrap_or_default()
    }
}

/// Stable 100 / canary 0 in sluice.yaml (the rollout moves it); `(listener, admin)` addresses.
pub fn base_config(
    stable: &Backend,
    canary: &Backend,
    canary_version: &str,
    ports: &(String, String),
) -> String {
    format!(
        r#"listeners:
  - name: http
    address: {listener}
admin:
  address: {admin}
upstreams:
  stable:
    version: v1
    endpoints: [{stable}]
  canary:
    version: {canary_version}
    endpoints: [{canary}]
    outlier_detection: {{ consecutive_failures: 0 }}
routes:
  - name: default
    timeout: 5s
    backends:
      - {{ upstream: stable, weight: 100 }}
      - {{ upstream: canary, weight: 0 }}
weights_file: weights.yaml
"#,
        stable = stable.endpoint(),
        canary = canary.endpoint(),
        listener = ports.0,
        admin = ports.1,
    )
}

/// A rollout named `myapp` of route `default` scraping the rig's proxies; `extra` adds or
/// overrides analysis lines (indented 6 spaces).
pub fn rollout(steps: &str, interval: &str, analysis: &str) -> String {
    format!(
        "  - name: myapp\n    route: default\n    stable: stable\n    canary: canary\n    steps: {steps}\n    interval: {interval}\n    analysis:\n{analysis}    metrics:\n      source: scrape\n      targets: {{targets}}\n"
    )
}
