//! The control's tokens file (`control.auth.tokens_file`): who may call the control's admin
//! API, with which role, and the bearer token (or its SHA-256) that proves it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::config::{invalid, read_text};
use crate::document::{Document, Format};
use crate::error::{ConfigError, FieldPath, Invalid, Problem};
use crate::raw::RawTokens;

/// Tokens shorter than this are refused: they would be guessable.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// What a caller may do. Each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `status`, `history`, `/metrics`.
    Read,
    /// `read`, plus `pause`, `resume`, `approve`.
    Operate,
    /// `operate`, plus `start`, `promote`, `abort`, `retry`.
    Release,
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// How a caller proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The bearer token itself.
    Token(Secret),
    /// The SHA-256 of the bearer token (so the file need not hold the token).
    Sha256([u8; 32]),
    /// No token: the caller is known by its client certificate only (`control.tls`).
    Certificate,
}

/// One caller of the tokens file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Its name: shown in the audit trail; for certificate callers, the certificate's
    /// subject common name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it proves it.
    pub credential: Credential,
}

/// A valid tokens file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    callers: Vec<Caller>,
}

impl Role {
    /// The role as written in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Release => "release",
        }
    }

    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Self::Read, Self::Operate, Self::Release];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Secret {
    /// The secret's bytes, for hashing; never print them.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Tokens {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    /// Validates `text` (read from `path`). Every problem is reported; no token appears in
    /// an error message.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let document = Document::<RawTokens>::parse(text, Format::of(path));
        let mut problems = document.problems;
        let mut callers = Vec::new();
        if let Some(raw) = document.value {
            let root = FieldPath::root().key("tokens");
            match &raw.tokens {
                None => problems.push(Problem::new(
                    FieldPath::root(),
                    Invalid::Missing("tokens (a list of { name, role, token })"),
                )),
                Some(list) => {
                    let mut names: HashMap<&str, usize> = HashMap::new();
                    for (i, entry) in list.iter().enumerate() {
                        let at = root.index(i);
                        let before = problems.len();
                        let name = match entry.name.as_deref().map(str::trim) {
                            None => {
                                problems.push(Problem::new(at.clone(), Invalid::Missing("name")));
                                None
                            }
                            Some("") => {
                                problems.push(Problem::new(at.key("name"), Invalid::Empty("name")));
                                None
                            }
                            Some(name) => {
                                if let Some(first) = names.insert(name, i) {
                                    problems.push(Problem::new(
                                        at.key("name"),
                                        Invalid::Duplicate {
                                            what: "caller name",
                                            name: name.to_string(),
                                            first: format!("tokens[{first}]"),
                                        },
                                    ));
                                }
                                Some(name.to_string())
                            }
                        };
                        let role = match entry.role.as_deref() {
                            None => {
                                problems.push(Problem::new(at.clone(), Invalid::Missing("role")));
                                None
                            }
                            Some(role) => match Role::ALL.iter().find(|r| r.as_str() == role) {
                                Some(role) => Some(*role),
                                None => {
                                    problems.push(Problem::new(
                                        at.key("role"),
                                        Invalid::Value(format!(
                                            "unknown role \"{role}\" (roles: read, operate, release)"
                                        )),
                                    ));
                                    None
                                }
                            },
                        };
                        let credential = match (&entry.token, &entry.token_sha256) {
                            (Some(_), Some(_)) => {
                                problems.push(Problem::new(
                                    at.key("token_sha256"),
                                    Invalid::Value("give token or token_sha256, not both".into()),
                                ));
                                None
                            }
                            (Some(token), None) if token.chars().count() < MIN_TOKEN_LENGTH => {
                                problems.push(Problem::new(
                                    at.key("token"),
                                    Invalid::Value(format!(
                                        "token is shorter than {MIN_TOKEN_LENGTH} characters; use a random one (e.g. `openssl rand -hex 32`)"
                                    )),
                                ));
                                None
                            }
                            (Some(token), None) => Some(Credential::Token(Secret(token.clone()))),
                            (None, Some(hex)) => match decode_sha256(hex) {
                                Some(digest) => Some(Credential::Sha256(digest)),
                                None => {
                                    problems.push(Problem::new(
                                        at.key("token_sha256"),
                                        Invalid::Value(
                                            "token_sha256 must be 64 hex digits (`printf %s TOKEN | sha256sum`)"
                                                .into(),
                                        ),
                                    ));
                                    None
                                }
                            },
                            (None, None) => Some(Credential::Certificate),
                        };
                        if problems.len() == before {
                            if let (Some(name), Some(role), Some(credential)) =
                                (name, role, credential)
                            {
                                callers.push(Caller {
                                    name,
                                    role,
                                    credential,
                                });
                            }
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { callers })
        } else {
            Err(invalid(path, problems, &document.map))
        }
    }

    /// The callers, in file order.
    pub fn callers(&self) -> &[Caller] {
        &self.callers
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Tokens, String> {
        Tokens::parse(text, Path::new("tokens.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_callers_with_roles_and_credentials() {
        let tokens = parse(
            "tokens:\n  - { name: ci-deploy, role: release, token: \"0123456789abcdef0123\" }\n  - { name: oncall, role: operate, token_sha256: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\" }\n  - { name: mesh-client, role: read }\n",
        )
        .expect("valid");
        let callers = tokens.callers();
        assert_eq!(callers.len(), 3);
        assert_eq!(
            (callers[0].name.as_str(), callers[0].role),
            ("ci-deploy", Role::Release)
        );
        assert!(
            matches!(callers[1].credential, Credential::Sha256(d) if d[0] == 0x9f && d[31] == 0x08)
        );
        assert_eq!(callers[2].credential, Credential::Certificate);
        assert!(Role::Read < Role::Operate && Role::Operate < Role::Release);
        assert!(
            !format!("{tokens:?}").contains("0123456789abcdef"),
            "tokens never in Debug"
        );
    }

    #[test]
    fn every_problem_is_reported_without_the_secret() {
        let err = parse(
            "tokens:\n  - { name: a, role: admin, token: \"0123456789abcdef0123\" }\n  - { name: a, role: read, token: short-secret }\n  - { name: b, role: read, token_sha256: nothex }\n  - { role: read, token: \"0123456789abcdef0123\", tokn: x }\n",
        )
        .expect_err("invalid");
        for expected in [
            "tokens.yaml:2:",
            "unknown role \"admin\" (roles: read, operate, release)",
            "duplicate caller name \"a\"",
            "token is shorter than 16 characters",
            "token_sha256 must be 64 hex digits",
            "missing required field \"name\"",
            "unknown key \"tokn\" (did you mean \"token\"?)",
        ] {
            assert!(err.contains(expected), "{expected:?} in:\n{err}");
        }
        assert!(!err.contains("short-secret"), "{err}");
    }
}
