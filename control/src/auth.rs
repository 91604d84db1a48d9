//! Who is calling the control's admin API, and whether they may: bearer tokens from the
//! tokens file (compared as SHA-256 digests in constant time, reloaded when the file changes)
//! or the subject of a verified client certificate, each with a role.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use sluice_config::{Credential, Role, Tokens};
use subtle::ConstantTimeEq;
use tracing::{error, info};

/// How often the tokens file is looked at for changes.
const RELOAD: Duration = Duration::from_secs(1);

/// Who made a request: a name from the tokens file or a certificate, and the address it came
/// from. Shown in the audit trail as "ci-deploy from 10.1.2.3".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The caller's name (`anonymous` without authentication).
    pub name: String,
    /// Its IP address.
    pub address: IpAddr,
}

/// An authenticated caller with its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Who.
    pub caller: Caller,
    /// What it may do.
    pub role: Role,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credential at all (401).
    #[error("authentication required: pass a token (sluice-control --token-file FILE, or SLUICE_TOKEN; HTTP: Authorization: Bearer TOKEN)")]
    MissingToken,
    /// A token that matches no caller (401).
    #[error(
        "the token is not valid for this control (unknown, or rotated out of its tokens file)"
    )]
    WrongToken,
    /// A verified certificate whose subject is not a caller of the tokens file (403).
    #[error(
        "the client certificate's subject \"{0}\" is not a caller in the control's tokens file"
    )]
    UnknownCertificate(String),
    /// A known caller without the role the request needs (403).
    #[error("{name} has role {has}; this needs role {needs}")]
    Forbidden {
        /// The caller.
        name: String,
        /// Its role.
        has: Role,
        /// The role needed.
        needs: Role,
    },
}

/// The access rules in force: off (anyone), or the callers of the tokens file.
#[derive(Debug)]
pub struct Access {
    /// The tokens file, when authentication is on.
    file: Option<PathBuf>,
    /// Whether callers present verified client certificates (mTLS on the admin endpoint).
    certificates: bool,
    keys: RwLock<Arc<Keys>>,
}

/// The callers of one version of the tokens file, tokens reduced to their digests.
#[derive(Debug, Default)]
struct Keys {
    callers: Vec<Key>,
    /// The file's bytes, to notice a change.
    source: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Key {
    name: String,
    role: Role,
    /// SHA-256 of the token; `None` for certificate-only callers.
    digest: Option<[u8; 32]>,
}

impl Denied {
    /// The HTTP status: 401 for a missing or wrong credential, 403 for a known caller (or
    /// certificate) that may not do this.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingToken | Self::WrongToken => 401,
            Self::UnknownCertificate(_) | Self::Forbidden { .. } => 403,
        }
    }

    /// The `reason` label of `sluice_control_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::WrongToken => "wrong_token",
            Self::UnknownCertificate(_) => "unknown_certificate",
            Self::Forbidden { .. } => "forbidden",
        }
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {}", self.name, self.address)
    }
}

impl Access {
    /// Access as configured: `tokens_file` (read now; an invalid file is an error) and
    /// whether the admin endpoint verifies client certificates.
    pub fn new(
        tokens_file: Option<&Path>,
        certificates: bool,
    ) -> Result<Self, sluice_config::ConfigError> {
        let keys = match tokens_file {
            Some(path) => Keys::load(path)?,
            None => Keys::default(),
        };
        Ok(Self {
            file: tokens_file.map(Path::to_path_buf),
            certificates,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// Whether anyone who can reach the endpoint is let in.
    pub fn is_open(&self) -> bool {
        self.file.is_none() && !self.certificates
    }

    /// Re-reads the tokens file every second while the returned task runs; a changed valid
    /// file replaces the callers (a rotated token works at once, the old one stops), an
    /// invalid one is logged and the previous callers stay.
    pub fn watch(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.file.clone()?;
        let access = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                access.reload(&path);
            }
        }))
    }

    fn reload(&self, path: &Path) {
        let Ok(bytes) = std::fs::read(path) else {
            // A half-done rename or a deleted file: keep the callers in force.
            return;
        };
        if bytes == self.keys().source {
            return;
        }
        match Keys::parse(&bytes, path) {
            Ok(keys) => {
                info!(file = %path.display(), callers = keys.callers.len(), "tokens file reloaded");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
            }
            Err(e) => {
                error!(error = %e, "tokens file rejected; the previous tokens stay in force");
                // Remember the bad bytes so the error is logged once, not every second.
                let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
                let callers = keys.callers.clone();
                *keys = Arc::new(Keys {
                    callers,
                    source: bytes,
                });
            }
        }
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Who is calling: from `authorization` (the header's value) or, without one, the
    /// verified client certificate's subject `certificate`. `address` is the peer's.
    pub fn identify(
        &self,
        authorization: Option<&[u8]>,
        certificate: Option<&str>,
        address: IpAddr,
    ) -> Result<Identity, Denied> {
        let caller = |name: &str| Caller {
            name: name.to_string(),
            address,
        };
        let token = authorization.and_then(bearer);
        if self.file.is_none() {
            // No tokens file: anyone who reached the endpoint (through its client-certificate
            // check, when there is one) may do everything.
            let name = certificate.unwrap_or("anonymous");
            return Ok(Identity {
                caller: caller(name),
                role: Role::Release,
            });
        }
        let keys = self.keys();
        if let Some(token) = token {
            let presented = digest(&SHA256, token);
            let mut found: Option<&Key> = None;
            // Every key is compared, so the time taken does not say which one matched.
            for key in &keys.callers {
                if let Some(expected) = &key.digest {
                    if bool::from(expected.ct_eq(presented.as_ref())) && found.is_none() {
                        found = Some(key);
                    }
                }
            }
            return found
                .map(|key| Identity {
                    caller: caller(&key.name),
                    role: key.role,
                })
                .ok_or(Denied::WrongToken);
        }
        if let Some(subject) = certificate {
            return keys
                .callers
                .iter()
                .find(|key| key.name == subject)
                .map(|key| Identity {
                    caller: caller(&key.name),
                    role: key.role,
                })
                .ok_or_else(|| Denied::UnknownCertificate(subject.to_string()));
        }
        Err(Denied::MissingToken)
    }
}

impl Identity {
    /// `Ok` when the role includes `needs`.
    pub fn may(&self, needs: Role) -> Result<(), Denied> {
        if self.role >= needs {
            Ok(())
        } else {
            Err(Denied::Forbidden {
                name: self.caller.name.clone(),
                has: self.role,
                needs,
            })
        }
    }
}

impl Keys {
    fn load(path: &Path) -> Result<Self, sluice_config::ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| sluice_config::ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self, sluice_config::ConfigError> {
        let tokens = Tokens::parse(&String::from_utf8_lossy(bytes), path)?;
        let callers = tokens
            .callers()
            .iter()
            .map(|c| Key {
                name: c.name.clone(),
                role: c.role,
                digest: match &c.credential {
                    Credential::Token(secret) => {
                        digest(&SHA256, secret.expose()).as_ref().try_into().ok()
                    }
                    Credential::Sha256(digest) => Some(*digest),
                    Credential::Certificate => None,
                },
            })
            .collect();
        Ok(Self {
            callers,
            source: bytes.to_vec(),
        })
    }
}

/// The token of an `Authorization: Bearer TOKEN` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let rest = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))?;
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKENS: &str = "tokens:\n  - { name: ci-deploy, role: release, token: \"release-token-0123456789\" }\n  - { name: oncall, role: operate, token: \"operate-token-0123456789\" }\n  - { name: dashboards, role: read, token: \"read-token-0123456789ab\" }\n  - { name: mesh-client, role: operate }\n";

    fn access(dir: &Path, certificates: bool) -> Access {
        let path = dir.join("tokens.yaml");
        std::fs::write(&path, TOKENS).expect("write tokens");
        Access::new(Some(&path), certificates).expect("valid tokens")
    }

    fn ip() -> IpAddr {
        IpAddr::from([10, 1, 2, 3])
    }

    #[test]
    fn tokens_identify_callers_with_their_roles() {
        let dir = tempfile::tempdir().expect("temp dir");
        let access = access(dir.path(), false);
        let who = access
            .identify(Some(b"Bearer release-token-0123456789"), None, ip())
            .expect("known token");
        assert_eq!(who.caller.to_string(), "ci-deploy from 10.1.2.3");
        assert_eq!(who.role, Role::Release);
        let oncall = access
            .identify(Some(b"Bearer operate-token-0123456789"), None, ip())
            .expect("known token");
        assert!(oncall.may(Role::Operate).is_ok());
        let refused = oncall.may(Role::Release).expect_err("operate < release");
        assert_eq!(refused.status(), 403);
        assert_eq!(
            refused.to_string(),
            "oncall has role operate; this needs role release"
        );
        assert_eq!(access.identify(None, None, ip()), Err(Denied::MissingToken));
        assert_eq!(
            access.identify(Some(b"Bearer nope-nope-nope-nope"), None, ip()),
            Err(Denied::WrongToken)
        );
        assert_eq!(
            access.identify(Some(b"Basic abc"), None, ip()),
            Err(Denied::MissingToken)
        );
    }

    #[test]
    fn certificates_are_callers_by_subject() {
        let dir = tempfile::tempdir().expect("temp dir");
        let access = access(dir.path(), true);
        let mesh = access
            .identify(None, Some("mesh-client"), ip())
            .expect("known subject");
        assert_eq!(
            (mesh.caller.name.as_str(), mesh.role),
            ("mesh-client", Role::Operate)
        );
        let unknown = access
            .identify(None, Some("stranger"), ip())
            .expect_err("unknown subject");
        assert_eq!(
            (unknown.status(), unknown.reason()),
            (403, "unknown_certificate")
        );
        // Without a tokens file a verified certificate is trusted with every role.
        let ca_only = Access::new(None, true).expect("no file");
        assert!(!ca_only.is_open());
        let who = ca_only
            .identify(None, Some("ci-runner"), ip())
            .expect("verified by the CA");
        assert_eq!(
            (who.caller.name.as_str(), who.role),
            ("ci-runner", Role::Release)
        );
    }

    #[test]
    fn a_rotated_file_applies_and_a_bad_one_keeps_the_previous() {
        let dir = tempfile::tempdir().expect("temp dir");
        let access = access(dir.path(), false);
        let path = dir.path().join("tokens.yaml");
        std::fs::write(
            &path,
            "tokens:\n  - { name: ci-deploy, role: release, token: \"rotated-token-0123456789\" }\n",
        )
        .expect("rotate");
        access.reload(&path);
        assert!(access
            .identify(Some(b"Bearer rotated-token-0123456789"), None, ip())
            .is_ok());
        assert_eq!(
            access.identify(Some(b"Bearer release-token-0123456789"), None, ip()),
            Err(Denied::WrongToken),
            "the old token stopped working"
        );
        std::fs::write(&path, "tokens: [").expect("break");
        access.reload(&path);
        assert!(
            access
                .identify(Some(b"Bearer rotated-token-0123456789"), None, ip())
                .is_ok(),
            "a bad file keeps the tokens in force"
        );
    }
}
