//! A small etcd v3 client for sluice's fleet mode, over etcd's JSON gateway (`/v3/...` on the
//! client port, HTTP/1.1, TLS optional). It covers what the proxies and the control need:
//! reads, conditional transactions, leases, watches, and user/password authentication.
//!
//! Why not the `etcd-client` crate: its build compiles etcd's `.proto` files with `protoc`,
//! which a machine with only a Rust toolchain does not have. The gateway is part of every
//! etcd v3 server (3.4 and later serve it on the client port), and it speaks the same
//! semantics as gRPC; a watch is a long-lived response of one JSON message per line.

mod client;
mod transport;
mod wire;

pub use client::{
    Client, Compare, Credentials, Event, Op, Read, Settings, TxnOutcome, Watch, WatchMessage,
};
pub use transport::Tls;
pub use wire::KeyValue;

/// The environment variable with the etcd user name.
pub const USERNAME_ENV: &str = "SLUICE_ETCD_USERNAME";
/// The environment variable with the etcd user's password.
pub const PASSWORD_ENV: &str = "SLUICE_ETCD_PASSWORD";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No member could be reached (or the connection broke before an answer).
    #[error("etcd unreachable: {0}")]
    Connect(String),
    /// The member answered that it cannot serve now (no leader, no quorum).
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The token is missing or expired.
    #[error("etcd authentication needed: {0}")]
    Unauthenticated(String),
    /// The user or password is wrong, or the user lacks the permission.
    #[error("etcd refused the credentials or the permission: {0}")]
    Auth(String),
    /// Any other refusal or an answer that could not be read.
    #[error("etcd: {0}")]
    Etcd(String),
}

impl Credentials {
    /// The user and password from [`USERNAME_ENV`] and [`PASSWORD_ENV`], when the user is set.
    pub fn from_env() -> Option<Self> {
        let user = std::env::var(USERNAME_ENV).ok().filter(|u| !u.is_empty())?;
        let password = std::env::var(PASSWORD_ENV).unwrap_or_default();
        Some(Self { user, password })
    }
}
