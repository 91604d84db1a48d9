//! The compiled `sluice.yaml`: everything validated, resolved and ready to serve.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::address::Address;
use crate::check::Checker;
use crate::document::{Document, Format, MAX_FILE_BYTES};
use crate::error::{ConfigError, FieldPath, Invalid, Problem};
use crate::listener::{compile_listeners, compile_server_tls, Listener, ServerTls};
use crate::raw::RawConfig;
use crate::rollout::{compile_rollouts, Rollout};
use crate::route::{compile_routes, RouteTable};
use crate::source_map::SourceMap;
use crate::store::{compile_store, Etcd};
use crate::upstream::{compile_upstreams, Upstream};

/// The proxy's admin address when none is configured.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9901";
/// The control's admin address when none is configured.
pub const DEFAULT_CONTROL_ADDRESS: &str = "127.0.0.1:9902";
/// The control's state file when none is configured (relative to the config file).
pub const DEFAULT_CONTROL_STATE: &str = "control-state.json";

/// A valid `sluice.yaml`.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// Where the proxy accepts traffic.
    pub listeners: Vec<Listener>,
    /// The proxy's admin endpoint.
    pub admin: SocketAddr,
    /// Upstreams in file order; route backends refer to them by index.
    pub upstreams: Vec<Upstream>,
    /// Routes with the weights written in this file (before any weights file).
    pub routes: RouteTable,
    /// The weights overlay written by `sluice-control`, resolved against the config's directory.
    pub weights_file: Option<PathBuf>,
    /// Settings of `sluice-control`.
    pub control: Control,
    /// Rollouts for `sluice-control`.
    pub rollouts: Vec<Rollout>,
    /// Where the shared state lives: `None` (no `store`) for files (`weights_file`,
    /// `control.state`), `Some` for fleet mode in etcd (`store.etcd`).
    pub store: Option<Etcd>,
}

/// Settings of `sluice-control`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// The control's own admin endpoint (`/metrics`, `/status`, commands).
    pub admin: Address,
    /// The persisted rollout state.
    pub state: PathBuf,
    /// Who may call the admin endpoint: the tokens file (`None`: anyone who can reach it,
    /// which `sluice-control run` allows on a loopback address only).
    pub tokens_file: Option<PathBuf>,
    /// TLS on the admin endpoint; with `client_ca`, callers present certificates (mTLS).
    pub tls: Option<ServerTls>,
}

impl Config {
    /// Reads and validates `path`; the error lists every problem found.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    /// Validates `text` as if read from `path` (which decides the format, the directory that
    /// relative paths resolve against, and the file named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let document = Document::<RawConfig>::parse(text, Format::of(path));
        let mut problems = document.problems;
        let config = document.value.and_then(|raw| {
            let base_dir = path.parent().unwrap_or(Path::new("."));
            let mut check = Checker::new(base_dir);
            let config = compile(&mut check, &raw, path);
            problems.extend(check.into_problems());
            config
        });
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(invalid(path, problems, &document.map)),
        }
    }

    /// The upstream named `name`, with its index.
    pub fn upstream(&self, name: &str) -> Option<(usize, &Upstream)> {
        self.upstreams
            .iter()
            .enumerate()
            .find(|(_, u)| &*u.name == name)
    }
}

fn compile(check: &mut Checker<'_>, raw: &RawConfig, path: &Path) -> Option<Config> {
    let root = FieldPath::root();
    let listeners = compile_listeners(check, &raw.listeners);
    let admin_text = raw
        .admin
        .as_ref()
        .and_then(|a| {
            if a.address.is_none() {
                check.report(root.key("admin"), Invalid::Missing("address"));
            }
            a.address.clone()
        })
        .unwrap_or_else(|| DEFAULT_ADMIN_ADDRESS.to_string());
    let admin = check.bind_address(&admin_text, root.key("admin").key("address"));
    if let (Some(admin), true) = (&admin, admin.as_ref().is_some_and(|a| a.port() != 0)) {
        if let Some(l) = listeners
            .iter()
            .find(|l| Some(l.address) == admin.bind_addr())
        {
            check.report(
                root.key("admin").key("address"),
                Invalid::Value(format!(
                    "{admin} is already used by listener \"{}\"",
                    l.name
                )),
            );
        }
    }
    // A config whose every route answers itself (`respond`) needs no upstream.
    let forwards = raw
        .routes
        .as_ref()
        .is_none_or(|routes| routes.iter().any(|r| r.respond.is_none()));
    let upstreams = if forwards || raw.upstreams.as_ref().is_some_and(|u| !u.0.is_empty()) {
        compile_upstreams(check, &raw.upstreams)
    } else {
        Vec::new()
    };
    let declared_upstreams: Vec<&str> = raw
        .upstreams
        .as_ref()
        .map(|u| {
            u.0.iter()
                .map(|(name, _)| name.as_str())
                .filter(|name| !name.trim().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let routes = compile_routes(check, &raw.routes, &upstreams, &declared_upstreams);
    let declared_routes: Vec<&str> = raw
        .routes
        .as_ref()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.name.as_deref())
                .filter(|name| !name.trim().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let weights_file = raw.weights_file.as_ref().and_then(|w| {
        if w.trim().is_empty() {
            check.report(root.key("weights_file"), Invalid::Empty("weights_file"));
            None
        } else {
            Some(check.resolve(w))
        }
    });
    let control = compile_control(check, raw);
    let rollouts = compile_rollouts(check, &raw.rollouts, &routes, &declared_routes, &admin);
    let store = compile_store(check, &raw.store);
    // In fleet mode the weights go to etcd and `weights_file` is only the proxies' cache.
    let fleet = matches!(store, Some(Some(_)));
    if !rollouts.is_empty() && !fleet && weights_file.is_none() && raw.weights_file.is_none() {
        check.report(
            root,
            Invalid::Missing("weights_file (rollouts move traffic by writing it)"),
        );
    }
    if check.has_problems() {
        return None;
    }
    Some(Config {
        source: path.to_path_buf(),
        listeners,
        admin: admin?.bind_addr()?,
        upstreams,
        routes,
        weights_file,
        control: control?,
        rollouts,
        store: store?,
    })
}

fn compile_control(check: &mut Checker<'_>, raw: &RawConfig) -> Option<Control> {
    let path = FieldPath::root().key("control");
    let raw_control = raw.control.as_ref();
    let admin_text = raw_control
        .and_then(|c| c.admin.clone())
        .unwrap_or_else(|| DEFAULT_CONTROL_ADDRESS.to_string());
    let admin = check.bind_address(&admin_text, path.key("admin"));
    let state = raw_control
        .and_then(|c| c.state.clone())
        .unwrap_or_else(|| DEFAULT_CONTROL_STATE.to_string());
    if state.trim().is_empty() {
        check.report(path.key("state"), Invalid::Empty("state"));
        return None;
    }
    let auth = raw_control.and_then(|c| c.auth.as_ref());
    let tokens_file = match auth {
        None => Ok(None),
        Some(auth) => check
            .required(&auth.tokens_file, &path.key("auth"), "tokens_file")
            .and_then(|f| {
                if f.trim().is_empty() {
                    check.report(
                        path.key("auth").key("tokens_file"),
                        Invalid::Empty("tokens_file"),
                    );
                    None
                } else {
                    Some(Some(check.resolve(f)))
                }
            })
            .ok_or(()),
    };
    let tls = match raw_control.and_then(|c| c.tls.as_ref()) {
        None => Ok(None),
        Some(raw) => compile_server_tls(check, raw, &path.key("tls"), false)
            .map(Some)
            .ok_or(()),
    };
    Some(Control {
        admin: admin?,
        state: check.resolve(&state),
        tokens_file: tokens_file.ok()?,
        tls: tls.ok()?,
    })
}

/// Reads a config or weights file, refusing absurdly large ones.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::Invalid {
            file: path.to_path_buf(),
            problems: vec![Problem::new(
                FieldPath::root(),
                Invalid::Value(format!("file is larger than {MAX_FILE_BYTES} bytes")),
            )],
        });
    }
    Ok(text)
}

/// Fills in locations from the source map and orders problems as they appear in the file.
pub(crate) fn invalid(path: &Path, mut problems: Vec<Problem>, map: &SourceMap) -> ConfigError {
    for problem in &mut problems {
        if problem.location.is_none() {
            problem.location = map.value(&problem.path);
        }
    }
    // Stable sort: problems without a location keep their order, after the located ones.
    problems.sort_by_key(|p| {
        p.location
            .map_or((usize::MAX, usize::MAX), |l| (l.line, l.column))
    });
    let mut seen = HashMap::new();
    problems.retain(|p| seen.insert(p.to_string_key(), ()).is_none());
    ConfigError::Invalid {
        file: path.to_path_buf(),
        problems,
    }
}

impl Problem {
    fn to_string_key(&self) -> String {
        format!("{}|{}", self.path, self.kind)
    }
}
