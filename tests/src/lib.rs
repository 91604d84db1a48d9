//! Test harness of sluice's integration tests: backends on `127.0.0.1:0`, the real
//! `sluice-proxy` and `sluice-control` binaries as processes, HTTP clients, config builders,
//! and [`eventually!`] to wait on an observable event instead of sleeping.

pub mod backend;
pub mod client;
pub mod config;
pub mod control;
pub mod etcd;
pub mod grpc;
pub mod hooks;
pub mod load;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod rig;
pub mod servers;
pub mod tls;

pub use backend::{Backend, Behavior};
pub use control::Control;
pub use load::{Load, LoadReport};
pub use proxy::Proxy;
pub use rig::Rig;

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

/// A loopback port free now and never handed out before in this process, for a server that
/// must be told its port (etcd, Prometheus, a fixed admin address). Tests run in parallel,
/// and the kernel may give a port just released to the next caller: two servers would then
/// be told the same port, the second would fail to bind, and its test would talk to the
/// first.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// Polls `$cond` (which may `.await`) every 20 ms until it holds; panics after 20 s with the
/// message. Tests wait on events, never on sleeps.
#[macro_export]
macro_rules! eventually {
    ($cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out after 20s waiting for: {}", format!($($msg)+));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}
