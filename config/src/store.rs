//! `store`: where the state shared by proxies and control lives; absent, files (fleet mode: etcd).

use std::collections::HashMap;
use std::time::Duration;

use crate::address::Address;
use crate::check::Checker;
use crate::duration::format_duration;
use crate::error::{FieldPath, Invalid};
use crate::raw::{RawEtcd, RawStore};
use crate::upstream::{compile_client_tls, ClientTls};

/// `store.etcd.lease_ttl` when not given.
pub const DEFAULT_ETCD_LEASE_TTL: Duration = Duration::from_secs(5);
/// The shortest `store.etcd.lease_ttl` accepted.
pub const MIN_ETCD_LEASE_TTL: Duration = Duration::from_secs(1);
/// The longest `store.etcd.lease_ttl` accepted.
pub const MAX_ETCD_LEASE_TTL: Duration = Duration::from_secs(60);

/// `store.etcd`: fleet mode, the shared state in etcd instead of files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Etcd {
    /// The etcd members (`host:port`, no scheme), in file order, each once.
    pub endpoints: Vec<Address>,
    /// Every key of this deployment lives under it: starts with `/`, does not end with one.
    pub prefix: String,
    /// The control's leadership lease: a whole number of seconds within 1s..=60s. Default 5s.
    pub lease_ttl: Duration,
    /// TLS to the etcd members, when configured (plain TCP otherwise).
    pub tls: Option<ClientTls>,
}

impl Etcd {
    /// The full key of `suffix` (written without a leading `/`): `{prefix}/{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.prefix)
    }
}

/// `store`: `Some(None)` when absent (files), `Some(Some(etcd))` when valid, `None` after
/// reporting why it is not.
pub(crate) fn compile_store(
    check: &mut Checker<'_>,
    raw: &Option<RawStore>,
) -> Option<Option<Etcd>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let path = FieldPath::root().key("store");
    let Some(etcd) = &raw.etcd else {
        check.report(
            path,
            Invalid::Value("store needs `etcd`; remove `store` to use files".into()),
        );
        return None;
    };
    compile_etcd(check, etcd, &path.key("etcd")).map(Some)
}

fn compile_etcd(check: &mut Checker<'_>, raw: &RawEtcd, path: &FieldPath) -> Option<Etcd> {
    let endpoints = compile_endpoints(check, raw, path);
    let prefix =
        check
            .required(&raw.prefix, path, "prefix")
            .and_then(|prefix| match prefix_problem(prefix) {
                None => Some(prefix.clone()),
                Some(problem) => {
                    check.report(path.key("prefix"), Invalid::Value(problem));
                    None
                }
            });
    let lease_ttl = compile_lease_ttl(check, raw, path);
    let tls = match &raw.tls {
        None => Some(None),
        Some(tls) => compile_client_tls(check, tls, &path.key("tls")).map(Some),
    };
    Some(Etcd {
        endpoints: endpoints?,
        prefix: prefix?,
        lease_ttl: lease_ttl?,
        tls: tls?,
    })
}

fn compile_endpoints(
    check: &mut Checker<'_>,
    raw: &RawEtcd,
    path: &FieldPath,
) -> Option<Vec<Address>> {
    let list = check.required(&raw.endpoints, path, "endpoints")?;
    if list.is_empty() {
        check.report(
            path.key("endpoints"),
            Invalid::Value("must list at least one etcd member (host:port)".into()),
        );
        return None;
    }
    let mut ok = true;
    let mut seen = HashMap::new();
    let mut endpoints = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let at = path.key("endpoints").index(i);
        if let Some((scheme, _)) = text.trim().split_once("://") {
            check.report(
                at,
                Invalid::Address {
                    value: text.clone(),
                    reason: format!(
                        "drop the \"{scheme}://\" prefix (TLS is chosen by store.etcd.tls)"
                    ),
                },
            );
            ok = false;
            continue;
        }
        match check.address(text, at.clone(), false) {
            Some(address) => {
                if check.unique(&mut seen, &address.to_string(), at, "endpoint") {
                    endpoints.push(address);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(endpoints)
}

/// Why `prefix` cannot be the deployment's key prefix, if it cannot, with the fix.
fn prefix_problem(prefix: &str) -> Option<String> {
    const EXAMPLE: &str = "e.g. \"/sluice/myapp\"";
    if prefix.is_empty() {
        return Some(format!(
            "must not be empty: every key of this deployment lives under it ({EXAMPLE})"
        ));
    }
    if prefix.chars().any(char::is_whitespace) {
        return Some(format!(
            "must not contain whitespace, got {prefix:?} ({EXAMPLE})"
        ));
    }
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Some(format!(
            "must name a directory below \"/\", got {prefix:?}: the deployment needs keys of its own ({EXAMPLE})"
        ));
    }
    let fixed = format!("/{trimmed}");
    if !prefix.starts_with('/') {
        return Some(format!(
            "must start with \"/\", got {prefix:?} (write {fixed:?})"
        ));
    }
    if prefix.ends_with('/') {
        return Some(format!(
            "must not end with \"/\", got {prefix:?} (write {fixed:?})"
        ));
    }
    None
}

/// `lease_ttl`: within 1s..=60s and a whole number of seconds (etcd grants leases in seconds).
fn compile_lease_ttl(check: &mut Checker<'_>, raw: &RawEtcd, path: &FieldPath) -> Option<Duration> {
    let at = path.key("lease_ttl");
    let ttl = check.duration(&raw.lease_ttl, at.clone(), Some(DEFAULT_ETCD_LEASE_TTL))?;
    let given = format_duration(ttl);
    if ttl < MIN_ETCD_LEASE_TTL || ttl > MAX_ETCD_LEASE_TTL {
        check.report(
            at,
            Invalid::Value(format!(
                "must be from {}s to {}s, got {given}",
                MIN_ETCD_LEASE_TTL.as_secs(),
                MAX_ETCD_LEASE_TTL.as_secs(),
            )),
        );
        return None;
    }
    // Durations are parsed through f64: "3000ms" may be a hair off 3s.
    let seconds = ttl.as_secs_f64();
    let whole = seconds.round();
    if (seconds - whole).abs() > 1e-6 {
        // Within 1s..=60s, so both neighbours are valid TTLs.
        let (below, above) = (seconds.floor(), seconds.ceil());
        check.report(
            at,
            Invalid::Value(format!(
                "must be a whole number of seconds (etcd lease TTLs are), got {given}; write {below}s or {above}s"
            )),
        );
        return None;
    }
    // Within 1..=60 and whole: the cast is exact.
    Some(Duration::from_secs(whole as u64))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::Config;

    const BASE: &str = "\
listeners:
  - name: http
    address: 127.0.0.1:8080
upstreams:
  stable:
    endpoints: [127.0.0.1:18081]
routes:
  - name: default
    backends:
      - { upstream: stable, weight: 1 }
";

    /// `BASE` plus `store` as `sluice.yaml` in `dir`.
    fn parse_in(dir: &Path, store: &str) -> Result<Config, Vec<String>> {
        let text = format!("{BASE}{store}");
        Config::parse(&text, &dir.join("sluice.yaml"))
            .map_err(|e| e.to_string().lines().map(str::to_string).collect())
    }

    fn parse(store: &str) -> Result<Config, Vec<String>> {
        parse_in(Path::new(""), store)
    }

    /// The error lines of `BASE` plus `store`, which must be invalid.
    fn errors(store: &str) -> Vec<String> {
        match parse(store) {
            Ok(config) => panic!("valid, but expected errors: {:?}", config.store),
            Err(lines) => lines,
        }
    }

    fn etcd(store: &str) -> Etcd {
        match parse(store) {
            Ok(config) => config.store.expect("store.etcd given"),
            Err(lines) => panic!("invalid: {lines:#?}"),
        }
    }

    #[test]
    fn absent_store_means_files() {
        assert_eq!(parse("").map(|c| c.store), Ok(None));
    }

    #[test]
    fn a_minimal_section_gets_the_defaults() {
        let etcd =
            etcd("store:\n  etcd:\n    endpoints: [127.0.0.1:2379]\n    prefix: /sluice/myapp\n");
        assert_eq!(
            etcd,
            Etcd {
                endpoints: vec![Address::parse("127.0.0.1:2379").expect("literal")],
                prefix: "/sluice/myapp".into(),
                lease_ttl: DEFAULT_ETCD_LEASE_TTL,
                tls: None,
            }
        );
        assert_eq!(etcd.key("leader"), "/sluice/myapp/leader");
        assert_eq!(etcd.key("weights/default"), "/sluice/myapp/weights/default");
    }

    #[test]
    fn a_full_section_compiles() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("certs")).expect("mkdir");
        for file in ["etcd-ca.pem", "etcd.pem", "etcd.key"] {
            std::fs::write(dir.path().join("certs").join(file), "PEM").expect("write");
        }
        let store = "\
store:
  etcd:
    endpoints: [10.0.0.1:2379, Etcd-2.Example:2379, \"[::1]:2379\"]
    prefix: /sluice/myapp
    lease_ttl: 10s
    tls: { ca: certs/etcd-ca.pem, cert: certs/etcd.pem, key: certs/etcd.key, server_name: etcd.example }
";
        let etcd = match parse_in(dir.path(), store) {
            Ok(config) => config.store.expect("store.etcd given"),
            Err(lines) => panic!("invalid: {lines:#?}"),
        };
        let certs: PathBuf = dir.path().join("certs");
        assert_eq!(
            etcd,
            Etcd {
                endpoints: ["10.0.0.1:2379", "etcd-2.example:2379", "[::1]:2379"]
                    .iter()
                    .map(|a| Address::parse(a).expect("literal"))
                    .collect(),
                prefix: "/sluice/myapp".into(),
                lease_ttl: Duration::from_secs(10),
                tls: Some(ClientTls {
                    ca: certs.join("etcd-ca.pem"),
                    server_name: Some("etcd.example".into()),
                    cert: Some(certs.join("etcd.pem")),
                    key: Some(certs.join("etcd.key")),
                }),
            }
        );
        assert_eq!(
            etcd.endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.0.0.1:2379", "etcd-2.example:2379", "[::1]:2379"]
        );
    }

    #[test]
    fn toml_has_the_same_section() {
        let text = "\
[[listeners]]
name = \"http\"
address = \"127.0.0.1:8080\"

[upstreams.stable]
endpoints = [\"127.0.0.1:18081\"]

[[routes]]
name = \"default\"
backends = [{ upstream = \"stable\", weight = 1 }]

[store.etcd]
endpoints = [\"127.0.0.1:2379\"]
prefix = \"/sluice/myapp\"
lease_ttl = \"7s\"
";
        let config = Config::parse(text, Path::new("sluice.toml")).expect("valid");
        let etcd = config.store.expect("store.etcd given");
        assert_eq!(etcd.prefix, "/sluice/myapp");
        assert_eq!(etcd.lease_ttl, Duration::from_secs(7));
    }

    #[test]
    fn lease_ttl_accepts_whole_seconds_from_1s_to_60s() {
        for (text, seconds) in [
            ("1s", 1),
            ("60s", 60),
            ("1m", 60),
            ("3000ms", 3),
            ("30s", 30),
        ] {
            let store = format!(
                "store:\n  etcd:\n    endpoints: [127.0.0.1:2379]\n    prefix: /p\n    lease_ttl: {text}\n"
            );
            assert_eq!(
                etcd(&store).lease_ttl,
                Duration::from_secs(seconds),
                "{text}"
            );
        }
    }

    #[test]
    fn store_without_etcd_is_an_error() {
        assert_eq!(
            errors("store: {}\n"),
            ["sluice.yaml:11:8: store: store needs `etcd`; remove `store` to use files"]
        );
    }

    #[test]
    fn endpoints_and_prefix_are_required() {
        assert_eq!(
            errors("store:\n  etcd: { lease_ttl: 5s }\n"),
            [
                "sluice.yaml:12:9: store.etcd: missing required field \"endpoints\"",
                "sluice.yaml:12:9: store.etcd: missing required field \"prefix\"",
            ]
        );
    }

    #[test]
    fn endpoints_must_not_be_empty() {
        assert_eq!(
            errors("store:\n  etcd:\n    endpoints: []\n    prefix: /p\n"),
            [
                "sluice.yaml:13:16: store.etcd.endpoints: must list at least one etcd member (host:port)"
            ]
        );
    }

    #[test]
    fn endpoints_are_host_port_without_scheme() {
        assert_eq!(
            errors(
                "store:\n  etcd:\n    endpoints: [\"https://etcd-1:2379\", http://etcd-2:2379, etcd-3, 127.0.0.1:0, etcd-4:2379, ETCD-4:2379]\n    prefix: /p\n"
            ),
            [
                "sluice.yaml:13:17: store.etcd.endpoints[0]: invalid address \"https://etcd-1:2379\": drop the \"https://\" prefix (TLS is chosen by store.etcd.tls) (expected host:port, e.g. 127.0.0.1:8080)",
                "sluice.yaml:13:40: store.etcd.endpoints[1]: invalid address \"http://etcd-2:2379\": drop the \"http://\" prefix (TLS is chosen by store.etcd.tls) (expected host:port, e.g. 127.0.0.1:8080)",
                "sluice.yaml:13:60: store.etcd.endpoints[2]: invalid address \"etcd-3\": missing \":port\" (expected host:port, e.g. 127.0.0.1:8080)",
                "sluice.yaml:13:68: store.etcd.endpoints[3]: invalid address \"127.0.0.1:0\": port 0 is only valid for listening (expected host:port, e.g. 127.0.0.1:8080)",
                "sluice.yaml:13:94: store.etcd.endpoints[5]: duplicate endpoint \"etcd-4:2379\" (first defined at store.etcd.endpoints[4])",
            ]
        );
    }

    #[test]
    fn prefix_rules() {
        let cases = [
            ("\"\"", "must not be empty: every key of this deployment lives under it (e.g. \"/sluice/myapp\")"),
            ("/", "must name a directory below \"/\", got \"/\": the deployment needs keys of its own (e.g. \"/sluice/myapp\")"),
            ("sluice/myapp", "must start with \"/\", got \"sluice/myapp\" (write \"/sluice/myapp\")"),
            ("/sluice/myapp/", "must not end with \"/\", got \"/sluice/myapp/\" (write \"/sluice/myapp\")"),
            ("\"/sluice/my app\"", "must not contain whitespace, got \"/sluice/my app\" (e.g. \"/sluice/myapp\")"),
        ];
        for (prefix, message) in cases {
            let store =
                format!("store:\n  etcd:\n    endpoints: [127.0.0.1:2379]\n    prefix: {prefix}\n");
            assert_eq!(
                errors(&store),
                [format!("sluice.yaml:14:13: store.etcd.prefix: {message}")],
                "{prefix}"
            );
        }
    }

    #[test]
    fn lease_ttl_rules() {
        let cases = [
            ("500ms", "must be from 1s to 60s, got 500ms"),
            ("0s", "must be from 1s to 60s, got 0s"),
            ("61s", "must be from 1s to 60s, got 61s"),
            ("2m", "must be from 1s to 60s, got 2m"),
            (
                "1.5s",
                "must be a whole number of seconds (etcd lease TTLs are), got 1.5s; write 1s or 2s",
            ),
            (
                "2500ms",
                "must be a whole number of seconds (etcd lease TTLs are), got 2.5s; write 2s or 3s",
            ),
            (
                "5",
                "invalid duration \"5\": missing unit (expected e.g. 250ms, 30s, 5m, 1h30m)",
            ),
        ];
        for (ttl, message) in cases {
            let store = format!(
                "store:\n  etcd:\n    endpoints: [127.0.0.1:2379]\n    prefix: /p\n    lease_ttl: {ttl}\n"
            );
            assert_eq!(
                errors(&store),
                [format!(
                    "sluice.yaml:15:16: store.etcd.lease_ttl: {message}"
                )],
                "{ttl}"
            );
        }
    }

    #[test]
    fn tls_is_checked_like_an_upstreams() {
        let store = "\
store:
  etcd:
    endpoints: [127.0.0.1:2379]
    prefix: /p
    tls: { server_name: \"bad name\", cert: c.pem }
";
        let mut lines = errors(store);
        // The OS words the missing file; the rest is ours.
        let unreadable = lines.pop().unwrap_or_default();
        assert!(
            unreadable.starts_with("sluice.yaml:15:43: store.etcd.tls.cert: cannot read c.pem: "),
            "{unreadable}"
        );
        assert_eq!(
            lines,
            [
                "sluice.yaml:15:10: store.etcd.tls: missing required field \"ca\"",
                "sluice.yaml:15:10: store.etcd.tls: cert and key must be given together (client certificate for mTLS)",
                "sluice.yaml:15:25: store.etcd.tls.server_name: \"bad name\" is not a valid DNS name or IP address",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let store = "\
store:
  etcd:
    endpoints: [127.0.0.1:2379]
    prefix: /p
    lease_tll: 5s
    username: root
  consul: {}
";
        assert_eq!(
            errors(store),
            [
                "sluice.yaml:15:5: store.etcd: unknown key \"lease_tll\" (did you mean \"lease_ttl\"?)",
                "sluice.yaml:16:5: store.etcd: unknown key \"username\"",
                "sluice.yaml:17:3: store: unknown key \"consul\"",
            ]
        );
    }
}
