//! Routes and the routing table: first match wins, with an index that skips routes which
//! cannot match, so a thousand tenant routes cost one hash lookup rather than a thousand scans.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};

use crate::matcher::{request_host, HostMatch, PathMatch, RequestHead, RouteMatch};
use crate::split::Split;

mod compile;
mod policy;

pub(crate) use compile::compile_routes;
pub use compile::{DEFAULT_ROUTE_TIMEOUT, DEFAULT_STICKY_MAX_AGE, DEFAULT_UPGRADES};
pub use policy::{
    BackendPolicy, Fault, FaultAbort, FaultDelay, HeaderModifier, Mirror, Percent, Retries,
    RetryOn, DEFAULT_RETRY_BUDGET_PERCENT, DEFAULT_RETRY_MIN_PER_SECOND, MAX_FAULT_DELAY,
    MAX_RETRY_ATTEMPTS, UNMODIFIABLE_HEADERS,
};

/// Consecutive routes sharing an exact-match key are indexed once there are this many;
/// below it a plain scan is faster than hashing.
const INDEX_MIN_ROUTES: usize = 8;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// One route: what it matches and where matching requests go.
#[derive(Clone, Debug)]
pub struct Route {
    /// The route's name (metrics label, weights file key).
    pub name: Arc<str>,
    /// What a request must look like.
    pub matches: RouteMatch,
    /// Deadline for the upstream's response headers, counted from the request's arrival;
    /// `None` when the route has no timeout (`timeout: 0s`).
    pub timeout: Option<Duration>,
    /// Where the key for sticky backend choice comes from, if any.
    pub sticky: Option<Sticky>,
    /// The weighted backends; empty when the route answers itself (`respond`).
    pub split: Split,
    /// The fixed answer of a route that forwards nothing (`respond:`); such a route has no
    /// backends.
    pub respond: Option<Respond>,
    /// The protocols a client may switch to with `Upgrade` on this route (lower-case protocol
    /// names, version ignored); any other `Upgrade` offer is removed before forwarding.
    /// Default: `websocket` only.
    pub upgrades: Vec<Box<str>>,
    /// Where copies of the route's requests go, if anywhere.
    pub mirror: Option<Mirror>,
    /// When failed attempts are tried again.
    pub retries: Option<Arc<Retries>>,
    /// Faults injected into the route's requests (a backend's own fault replaces it).
    pub fault: Option<Arc<Fault>>,
    /// Changes to every forwarded request's headers.
    pub request_headers: Option<Arc<HeaderModifier>>,
    /// Changes to every response's headers (proxy errors included).
    pub response_headers: Option<Arc<HeaderModifier>>,
    /// Per backend, in the split's order: its own fault and header changes.
    pub backend_policies: Arc<[BackendPolicy]>,
}

/// A fixed answer given by the proxy itself (`respond: { status: 500 }`), e.g. for a Gateway
/// API rule without usable backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Respond {
    /// The status sent.
    pub status: StatusCode,
    /// The body sent (`text/plain`); empty by default.
    pub body: Arc<str>,
}

/// Where a route's sticky key is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sticky {
    /// The value of this request header.
    Header(HeaderName),
    /// The value of this cookie.
    Cookie(StickyCookie),
}

/// A sticky cookie: its name, and whether clients without it are given one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyCookie {
    /// The cookie's name.
    pub name: String,
    /// Give a client without the cookie a random key in `Set-Cookie`, and place it by that key.
    pub set_cookie: bool,
    /// `Max-Age` of a cookie sluice sets.
    pub max_age: Duration,
}

/// All routes in file order plus the lookup index.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    blocks: Vec<Block>,
    uses_host: bool,
}

/// A run of consecutive routes, searched as a unit in file order.
#[derive(Clone, Debug)]
enum Block {
    /// Check each route in turn.
    Scan(Range<usize>),
    /// Every route here requires an exact value of header `name`; only the routes requiring
    /// the request's value can match.
    Header {
        name: HeaderName,
        by_value: FastMap<Box<[u8]>, Vec<usize>>,
        range: Range<usize>,
    },
    /// Every route here requires an exact host (lower-cased keys).
    Host {
        by_host: FastMap<Box<str>, Vec<usize>>,
    },
    /// Every route here requires an exact path.
    PathExact {
        by_path: FastMap<Box<str>, Vec<usize>>,
    },
}

/// The exact-match key a route can be indexed by.
#[derive(Clone, Debug, PartialEq, Eq)]
enum IndexKey {
    Header(HeaderName),
    Host,
    PathExact,
}

impl Sticky {
    /// The request's sticky key, if it carries one.
    pub fn key<'a>(&self, headers: &'a HeaderMap) -> Option<&'a [u8]> {
        match self {
            Self::Header(name) => headers.get(name).map(|v| v.as_bytes()),
            Self::Cookie(StickyCookie { name, .. }) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .find_map(|value| {
                    value.as_bytes().split(|&b| b == b';').find_map(|pair| {
                        let pair = pair.trim_ascii();
                        let (key, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
                        (key == name.as_bytes()).then_some(&value[1..])
                    })
                }),
        }
    }

    /// A well-mixed hash of the key, identical on every proxy and across restarts, so one user
    /// lands on the same backend whichever sidecar serves them.
    #[inline]
    pub fn hash(key: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(key)
    }
}

impl Route {
    /// Whether `protocol` (one entry of an `Upgrade` header, `name` or `name/version`) is an
    /// upgrade this route lets through. Names compare case-insensitively.
    pub fn allows_upgrade(&self, protocol: &[u8]) -> bool {
        let name = protocol
            .split(|&b| b == b'/')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        self.upgrades
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(name))
    }
}

impl RouteTable {
    /// Builds the table and its index. Routes keep their order: first match wins.
    pub fn new(routes: Vec<Route>) -> Self {
        let uses_host = routes.iter().any(|r| r.matches.host.is_some());
        let keys: Vec<Option<IndexKey>> = routes.iter().map(index_key).collect();
        let mut blocks = Vec::new();
        let mut start = 0;
        while start < routes.len() {
            let mut end = start + 1;
            if let Some(key) = &keys[start] {
                while end < routes.len() && keys[end].as_ref() == Some(key) {
                    end += 1;
                }
                if end - start >= INDEX_MIN_ROUTES {
                    blocks.push(build_index(key, &routes, start..end));
                    start = end;
                    continue;
                }
            }
            // Not indexable (or too short a run): extend the previous scan block.
            match blocks.last_mut() {
                Some(Block::Scan(range)) if range.end == start => range.end = end,
                _ => blocks.push(Block::Scan(start..end)),
            }
            start = end;
        }
        Self {
            routes,
            blocks,
            uses_host,
        }
    }

    /// The first route matching the request, with its index.
    #[inline]
    pub fn find(&self, head: &RequestHead<'_>) -> Option<(usize, &Route)> {
        let host = if self.uses_host {
            request_host(head.uri, head.headers)
        } else {
            None
        };
        let matching = |i: &usize| self.routes[*i].matches.matches(head, host);
        for block in &self.blocks {
            let found = match block {
                Block::Scan(range) => range.clone().find(matching),
                Block::Header {
                    name,
                    by_value,
                    range,
                } => {
                    let mut values = head.headers.get_all(name).iter();
                    match (values.next(), values.next()) {
                        (None, _) => None,
                        (Some(value), None) => by_value
                            .get(value.as_bytes())
                            .and_then(|candidates| candidates.iter().copied().find(matching)),
                        // Repeated header: any value may match; rare enough to scan.
                        (Some(_), Some(_)) => range.clone().find(matching),
                    }
                }
                Block::Host { by_host, .. } => host.and_then(|host| {
                    let candidates = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                        by_host.get(host.to_ascii_lowercase().as_str())
                    } else {
                        by_host.get(host)
                    };
                    candidates.and_then(|c| c.iter().copied().find(matching))
                }),
                Block::PathExact { by_path, .. } => by_path
                    .get(head.uri.path())
                    .and_then(|candidates| candidates.iter().copied().find(matching)),
            };
            if let Some(i) = found {
                return Some((i, &self.routes[i]));
            }
        }
        None
    }

    /// All routes in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Index of the route named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| &*r.name == name)
    }

    /// A copy of this table with some routes' splits replaced (the index stays valid: matching
    /// does not depend on weights).
    pub fn with_splits(&self, splits: impl IntoIterator<Item = (usize, Split)>) -> Self {
        let mut table = self.clone();
        for (route, split) in splits {
            if let Some(r) = table.routes.get_mut(route) {
                r.split = split;
            }
        }
        table
    }

    /// How many blocks the index has (for tests and diagnostics).
    pub fn index_blocks(&self) -> usize {
        self.blocks.len()
    }
}

fn index_key(route: &Route) -> Option<IndexKey> {
    let m = &route.matches;
    if let Some((name, _)) = m.headers.iter().find(|(_, v)| v.exact().is_some()) {
        return Some(IndexKey::Header(name.clone()));
    }
    if matches!(m.host, Some(HostMatch::Exact(_))) {
        return Some(IndexKey::Host);
    }
    if matches!(m.path, Some(PathMatch::Exact(_))) {
        return Some(IndexKey::PathExact);
    }
    None
}

fn build_index(key: &IndexKey, routes: &[Route], range: Range<usize>) -> Block {
    match key {
        IndexKey::Header(name) => {
            let mut by_value: FastMap<Box<[u8]>, Vec<usize>> = FastMap::default();
            for i in range.clone() {
                let exact = routes[i]
                    .matches
                    .headers
                    .iter()
                    .find(|(n, v)| n == name && v.exact().is_some())
                    .and_then(|(_, v)| v.exact());
                if let Some(value) = exact {
                    by_value.entry(value.as_bytes().into()).or_default().push(i);
                }
            }
            Block::Header {
                name: name.clone(),
                by_value,
                range,
            }
        }
        IndexKey::Host => {
            let mut by_host: FastMap<Box<str>, Vec<usize>> = FastMap::default();
            for i in range {
                if let Some(HostMatch::Exact(host)) = &routes[i].matches.host {
                    by_host.entry(host.as_str().into()).or_default().push(i);
                }
            }
            Block::Host { by_host }
        }
        IndexKey::PathExact => {
            let mut by_path: FastMap<Box<str>, Vec<usize>> = FastMap::default();
            for i in range {
                if let Some(PathMatch::Exact(path)) = &routes[i].matches.path {
                    by_path.entry(path.as_str().into()).or_default().push(i);
                }
            }
            Block::PathExact { by_path }
        }
    }
}

#[cfg(test)]
mod tests;
