//! The converted config before it is printed: upstreams, routes in the order sluice tries
//! them, and rollouts, each remembering where it came from.

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
    /// Forward or answer.
    pub(crate) action: Action,
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

/// One weighted backend.
#[derive(Clone, Debug)]
pub(crate) struct BackendPlan {
    pub(crate) upstream: String,
    pub(crate) weight: u64,
}

/// A rollout for a route split between two upstreams.
#[derive(Debug)]
pub(crate) struct RolloutPlan {
    pub(crate) route: String,
    pub(crate) stable: String,
    pub(crate) canary: String,
    pub(crate) stable_weight: u64,
    pub(crate) canary_weight: u64,
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

impl ValuePlan {
    /// A matcher that is not inverted.
    pub(crate) fn plain(kind: ValueKind) -> Self {
        Self {
            kind,
            invert: false,
        }
    }
}
