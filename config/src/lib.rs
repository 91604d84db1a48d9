//! sluice's file formats: the `sluice.yaml` schema and the `weights.yaml` overlay, validated
//! into a ready-to-use routing table.
//!
//! Everything that can be decided without a socket lives here: the serde mirror of the files
//! ([`raw`]), validation that reports every problem with file, line/column and field path
//! ([`ConfigError`]), route matching ([`RouteTable::find`]), the weighted pick
//! ([`Split::pick`]), and atomic file writing for the control. `sluice-proxy` and
//! `sluice-control` do the IO around it; neither parses a file itself. The proxy's metric
//! names and histogram bounds ([`metric_names`]) live here too: the proxy records them and
//! the control reads them back.

mod address;
mod atomic_write;
mod check;
mod clock;
mod config;
mod document;
mod duration;
mod error;
mod grpc;
mod listener;
mod matcher;
pub mod metric_names;
pub mod raw;
mod rollout;
mod route;
mod source_map;
mod split;
mod store;
mod tokens;
mod upstream;
mod weights;

pub use address::{Address, Host};
pub use atomic_write::write_atomic;
pub use clock::{unix_now, unix_seconds};
pub use config::{
    Config, Control, DEFAULT_ADMIN_ADDRESS, DEFAULT_CONTROL_ADDRESS, DEFAULT_CONTROL_STATE,
};
pub use document::{Format, MAX_FILE_BYTES};
pub use duration::{format_duration, parse_duration};
pub use error::{known_list, ConfigError, FieldPath, Invalid, Location, Problem, Segment};
pub use grpc::{GrpcCode, DEFAULT_GRPC_ERROR_CODES, GRPC_CODE_NAMES};
pub use listener::{
    Listener, ListenerProtocol, ServerTls, DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_CONNECTIONS,
};
pub use matcher::{request_host, HostMatch, PathMatch, RequestHead, RouteMatch, ValueMatch};
pub use rollout::{
    Analysis, CustomCheck, FailureCounting, HookKind, MetricsSource, Rollout, Step, Strategy,
    Webhook,
};
pub use route::{
    BackendPolicy, Fault, FaultAbort, FaultDelay, HeaderModifier, Mirror, Percent, Respond,
    Retries, RetryOn, Route, RouteTable, Sticky, StickyCookie, DEFAULT_RETRY_BUDGET_PERCENT,
    DEFAULT_RETRY_MIN_PER_SECOND, DEFAULT_ROUTE_TIMEOUT, DEFAULT_STICKY_MAX_AGE, DEFAULT_UPGRADES,
    MAX_FAULT_DELAY, MAX_RETRY_ATTEMPTS, UNMODIFIABLE_HEADERS,
};
pub use split::{Backend, Split, Weight, MAX_WEIGHT, WEIGHT_SCALE};
pub use store::{Etcd, DEFAULT_ETCD_LEASE_TTL, MAX_ETCD_LEASE_TTL, MIN_ETCD_LEASE_TTL};
pub use tokens::{Caller, Credential, Role, Secret, Tokens, MIN_TOKEN_LENGTH};
pub use upstream::{
    ClientTls, HealthCheck, OutlierDetection, Upstream, UpstreamProtocol, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEALTHY_THRESHOLD, DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_HEALTH_CHECK_TIMEOUT,
    DEFAULT_MAX_PENDING_REQUESTS, DEFAULT_UNHEALTHY_THRESHOLD, DEFAULT_UPSTREAM_MAX_CONNECTIONS,
};
pub use weights::{WeightEntry, Weights};
