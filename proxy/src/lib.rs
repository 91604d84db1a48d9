//! sluice's data plane: an HTTP/1.1 and HTTP/2 proxy that routes each request by host, path,
//! method, headers and query, then splits it by weight between a stable and a canary upstream.
//!
//! The request path ([`forward`]) loads the routing snapshot in force with one lock-free
//! `ArcSwap` load, matches a route and picks a backend with `sluice-config`'s pure functions,
//! picks an endpoint by power of two choices, and forwards over a pooled upstream connection.
//! Reloads ([`reload`]) build a new snapshot off the request path and publish it with one
//! store; connection pools live with the endpoints, outside the snapshot, so weight changes
//! never close a connection. [`server`] ties listeners, admin endpoint, reloads and graceful
//! drain together. [`convert`] turns Istio and Gateway API routes into a `sluice.yaml`
//! (`sluice-proxy convert`).

pub mod admin;
pub mod body;
pub mod convert;
pub mod drain;
pub mod error;
pub mod exchange;
pub mod forward;
pub mod future;
pub mod headers;
pub mod io;
pub mod listener;
pub mod metrics;
pub mod mirror;
pub mod reload;
pub mod retry;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod upstream;

pub use error::ProxyError;
pub use listener::Limits;
pub use server::{Options, Server, StartError};
