//! The converted config before it is printed: upstreams, routes in the order sluice tries
//! them (with what they do besides choosing a backend), and rollouts, each remembering where
//! it came from.

use std::collections::HashSet;

/// Everything the output will hold.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) upstreams: Upstreams,
    pub(crate) routes: Vec<RoutePlan>,
    pub(crate) rollouts: Vec<RolloutPlan>,
    /// How the routes are ordered, for a comment.
    pub(crate) order: &'static str,
}

/// The upstreams, named once per distinct source (Istio host + subset, Gateway API backend).
#[derive(Debug, Default)]
pub(crate) struct Upstreams {
    list: Vec<UpstreamPlan>,
}

/// One upstream of the output.
#[derive(Debug)]
pub(crate) struct UpstreamPlan {
    /// What it stands for (`istio reviews v1`, `gateway ns/name:8080`): two sources with one
    /// key are one upstream.
    key: String,
    /// Its name in the output.
    pub(crate) name: String,
    /// The `version` label of an Istio subset.
    pub(crate) version: Option<String>,
    /// `host:port` endpoints.
    pub(crate) endpoints: Vec<String>,
    /// Whether the endpoints are the service's address, which reaches more than this
    /// upstream (an Istio subset), until `--upstream` gives its own.
    pub(crate) placeholder: bool,
    /// Where it came from, for a comment.
    pub(crate) origin: String,
    /// Where it is listed: by this (a subset's place in its `DestinationRule`), then in order
    /// of first use.
    order: Option<usize>,
}

/// What a new upstream looks like, when a source first names it.
#[derive(Debug)]
pub(crate) struct NewUpstream {
    /// The identity of the source.
    pub(crate) key: String,
    /// Names to try in order; the first one free is taken.
    pub(crate) names: Vec<String>,
    /// The `version` label.
    pub(crate) version: Option<String>,
    /// The service's address, until `--upstream` gives better.
    pub(crate) endpoint: String,
    /// Whether that address reaches more than this upstream.
    pub(crate) placeholder: bool,
    /// Where it came from.
    pub(crate) origin: String,
    /// Where to list it (see [`UpstreamPlan`]).
    pub(crate) order: Option<usize>,
}

/// One route of the output.
#[derive(Debug)]
pub(crate) struct RoutePlan {
    /// Unique name (made unique by [`Plan::make_names_unique`]).
    pub(crate) name: String,
    /// The source document and rule, for a comment.
    pub(crate) origin: String,
    /// What it matches.
    pub(crate) matches: MatchPlan,
    /// `timeout:` as written in the output (`0s` for none).
    pub(crate) timeout: Option<String>,
    /// Why the timeout is what it is, when it was not written in the source.
    pub(crate) timeout_why: Option<&'static str>,
    /// Mirroring, retries, faults and header changes.
    pub(crate) policy: PolicyPlan,
    /// Forward or answer.
    pub(crate) action: Action,
}

/// What a route does besides choosing a backend.
#[derive(Clone, Debug, Default)]
pub(crate) struct PolicyPlan {
    /// `mirror:`.
    pub(crate) mirror: Option<MirrorPlan>,
    /// `retries:`.
    pub(crate) retries: Option<RetriesPlan>,
    /// `fault:`.
    pub(crate) fault: Option<FaultPlan>,
    /// `request_headers:`.
    pub(crate) request_headers: HeadersPlan,
    /// `response_headers:`.
    pub(crate) response_headers: HeadersPlan,
}

/// `request_headers` / `response_headers` of a route or backend: lowercase names sluice
/// accepts, values it can write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeadersPlan {
    pub(crate) set: Vec<(String, String)>,
    pub(crate) add: Vec<(String, String)>,
    pub(crate) remove: Vec<String>,
}

/// `mirror: { upstream, percent }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MirrorPlan {
    pub(crate) upstream: String,
    pub(crate) percent: PercentPlan,
}

/// A share of requests in hundredths of a percent (sluice's precision): `1250` is 12.5%.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PercentPlan(pub(crate) u32);

/// Why a percentage cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PercentError {
    /// Not within 0..=100.
    OutOfRange,
    /// More precise than hundredths of a percent.
    TooFine,
}

/// `retries: { attempts, on }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetriesPlan {
    /// Retries after the first try.
    pub(crate) attempts: u64,
    /// Why `attempts` is what it is, when the source did not say.
    pub(crate) attempts_why: Option<&'static str>,
    pub(crate) on: RetryOnPlan,
}

/// `retries.on`: the failures retried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RetryOnPlan {
    pub(crate) connect_failure: bool,
    pub(crate) reset: bool,
    /// 502, 503 and 504.
    pub(crate) gateway_error: bool,
    /// Every 5xx.
    pub(crate) server_error: bool,
    /// Single statuses (408, 429, 5xx).
    pub(crate) statuses: Vec<u16>,
}

/// `fault: { abort, delay }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FaultPlan {
    /// Status and share aborted.
    pub(crate) abort: Option<(u16, PercentPlan)>,
    /// Duration (as written in the output) and share delayed.
    pub(crate) delay: Option<(String, PercentPlan)>,
}

/// The `match:` block of a route.
#[derive(Clone, Debug, Default)]
pub(crate) struct MatchPlan {
    pub(crate) host: Option<String>,
    pub(crate) path: Option<PathPlan>,
    pub(crate) method: Option<String>,
    pub(crate) headers: Vec<(String, ValuePlan)>,
    pub(crate) query: Vec<(String, ValuePlan)>,
}

/// A path matcher, by its sluice key.
#[derive(Clone, Debug)]
pub(crate) enum PathPlan {
    /// `path_exact`.
    Exact(String),
    /// `path_prefix` (a string prefix: Istio's `prefix`).
    Prefix(String),
    /// `path_segment_prefix` (whole segments: the Gateway API's `PathPrefix`).
    SegmentPrefix(String),
    /// `path_regex`.
    Regex(String),
}

/// A header or query matcher.
#[derive(Clone, Debug)]
pub(crate) struct ValuePlan {
    pub(crate) kind: ValueKind,
    /// `invert: true`.
    pub(crate) invert: bool,
}

/// The four value matchers of sluice.
#[derive(Clone, Debug)]
pub(crate) enum ValueKind {
    Exact(String),
    Prefix(String),
    Regex(String),
    Present(bool),
}

/// What a route does with a request.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// Split between upstreams by weight.
    Forward(Vec<BackendPlan>),
    /// Answer with a fixed status (and body), forwarding nothing.
    Respond {
        status: u16,
        body: Option<String>,
        /// Why, for a comment.
        why: String,
    },
}

/// One weighted backend, with its own header changes.
#[derive(Clone, Debug)]
pub(crate) struct BackendPlan {
    pub(crate) upstream: String,
    pub(crate) weight: u64,
    pub(crate) request_headers: HeadersPlan,
    pub(crate) response_headers: HeadersPlan,
}

/// A rollout for a route split between two upstreams.
#[derive(Debug)]
pub(crate) struct RolloutPlan {
    pub(crate) route: String,
    pub(crate) stable: String,
    pub(crate) canary: String,
    pub(crate) stable_weight: u64,
    pub(crate) canary_weight: u64,
    /// A `shadow` step first: the route mirrors its requests to the canary.
    pub(crate) shadow: bool,
    pub(crate) steps: Vec<u64>,
}

impl Upstreams {
    /// The name of the upstream standing for `new.key`, created on first use under the first
    /// free name of `new.names` (or that name with a number).
    pub(crate) fn name_for(&mut self, new: NewUpstream) -> String {
        if let Some(known) = self.list.iter().find(|u| u.key == new.key) {
            return known.name.clone();
        }
        let taken = |name: &str| self.list.iter().any(|u| u.name == name);
        let name = new
            .names
            .iter()
            .find(|n| !taken(n))
            .cloned()
            .unwrap_or_else(|| {
                let base = new.names.first().cloned().unwrap_or_default();
                (2..)
                    .map(|i| format!("{base}-{i}"))
                    .find(|n| !taken(n))
                    .unwrap_or(base)
            });
        self.list.push(UpstreamPlan {
            key: new.key,
            name: name.clone(),
            version: new.version,
            endpoints: vec![new.endpoint],
            placeholder: new.placeholder,
            origin: new.origin,
            order: new.order,
        });
        name
    }

    /// Gives the upstream `name` its endpoints; false when there is no such upstream.
    pub(crate) fn set_endpoints(&mut self, name: &str, endpoints: Vec<String>) -> bool {
        match self.list.iter_mut().find(|u| u.name == name) {
            Some(upstream) => {
                upstream.endpoints = endpoints;
                upstream.placeholder = false;
                true
            }
            None => false,
        }
    }

    /// Lists subsets in their `DestinationRule`'s order, then the rest in order of first use.
    pub(crate) fn sort(&mut self) {
        self.list
            .sort_by_key(|u| (u.order.is_none(), u.order.unwrap_or_default()));
    }

    /// The names, in order of first use.
    pub(crate) fn names(&self) -> Vec<String> {
        self.list.iter().map(|u| u.name.clone()).collect()
    }

    /// The upstreams, in order of first use.
    pub(crate) fn list(&self) -> &[UpstreamPlan] {
        &self.list
    }
}

impl Plan {
    /// Route names become unique by a numeric suffix (`reviews-0-2`) on the later duplicates.
    pub(crate) fn make_names_unique(&mut self) {
        let mut seen = HashSet::new();
        for route in &mut self.routes {
            if !seen.insert(route.name.clone()) {
                let base = route.name.clone();
                let name = (2..)
                    .map(|i| format!("{base}-{i}"))
                    .find(|n| !seen.contains(n))
                    .unwrap_or(base);
                seen.insert(name.clone());
                route.name = name;
            }
        }
    }
}

impl HeadersPlan {
    /// Whether it changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Every header it touches.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.set
            .iter()
            .chain(&self.add)
            .map(|(name, _)| name.as_str())
            .chain(self.remove.iter().map(String::as_str))
    }
}

impl PercentPlan {
    /// All requests.
    pub(crate) const ALL: Self = Self(10_000);

    /// `value` percent.
    pub(crate) fn from_f64(value: f64) -> Result<Self, PercentError> {
        if !(0.0..=100.0).contains(&value) {
            return Err(PercentError::OutOfRange);
        }
        let hundredths = (value * 100.0).round();
        if (value * 100.0 - hundredths).abs() > 1e-6 {
            return Err(PercentError::TooFine);
        }
        // Within 0..=10_000: the cast is exact.
        Ok(Self(hundredths as u32))
    }

    /// `numerator / denominator` of all requests.
    pub(crate) fn from_fraction(numerator: u64, denominator: u64) -> Result<Self, PercentError> {
        if denominator == 0 || numerator > denominator {
            return Err(PercentError::OutOfRange);
        }
        let scaled = u128::from(numerator) * 10_000;
        if !scaled.is_multiple_of(u128::from(denominator)) {
            return Err(PercentError::TooFine);
        }
        u32::try_from(scaled / u128::from(denominator))
            .map(Self)
            .map_err(|_| PercentError::OutOfRange)
    }
}

impl std::fmt::Display for PercentPlan {
    /// `12.5`, `0.01`, `100`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, hundredths) = (self.0 / 100, self.0 % 100);
        match hundredths {
            0 => write!(f, "{whole}"),
            h if h.is_multiple_of(10) => write!(f, "{whole}.{}", h / 10),
            h => write!(f, "{whole}.{h:02}"),
        }
    }
}

impl RetryOnPlan {
    /// Adds a status, once.
    pub(crate) fn status(&mut self, code: u16) {
        if !self.statuses.contains(&code) {
            self.statuses.push(code);
        }
    }

    /// Whether nothing is retried.
    pub(crate) fn is_empty(&self) -> bool {
        !(self.connect_failure || self.reset || self.gateway_error || self.server_error)
            && self.statuses.is_empty()
    }

    /// The `on:` entries, without the redundant ones (a 502 under `gateway-error`).
    pub(crate) fn tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = [
            (self.connect_failure, "connect-failure"),
            (self.reset, "reset"),
            (self.gateway_error && !self.server_error, "gateway-error"),
            (self.server_error, "5xx"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, token)| token.to_string())
        .collect();
        let mut statuses: Vec<u16> = self
            .statuses
            .iter()
            .copied()
            .filter(|s| !(self.server_error && (500..=599).contains(s)))
            .filter(|s| !(self.gateway_error && [502, 503, 504].contains(s)))
            .collect();
        statuses.sort_unstable();
        tokens.extend(statuses.iter().map(u16::to_string));
        tokens
    }
}

impl ValuePlan {
    /// A matcher that is not inverted.
    pub(crate) fn plain(kind: ValueKind) -> Self {
        Self {
            kind,
            invert: false,
        }
    }
}
