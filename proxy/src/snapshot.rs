//! One config generation made ready to serve: routes with weights applied, each backend bound
//! to its upstream's endpoints and its metric handles. Endpoints (pools, health) are reused
//! from the previous generation whenever their settings did not change; the state of their
//! active health checks is kept per address even when they did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::SystemTime;

use sluice_config::{
    Address, ClientTls, Config, OutlierDetection, RouteTable, UpstreamProtocol, Weights,
};

use crate::metrics::{BackendMetrics, Metrics};
use crate::mirror::{MirrorRuntime, MIRROR_POOL_SUFFIX};
use crate::retry::RetryBudget;
use crate::tls::{client_config, TlsError};
use crate::upstream::{
    Breaker, Connector, Endpoint, EndpointSettings, Probe, ProbeTarget, Upstream,
};

/// A routing generation.
#[derive(Debug)]
pub struct Snapshot {
    /// Rises by one with each applied change.
    pub generation: u64,
    /// The config it was built from.
    pub config: Arc<Config>,
    /// The weights file overrides in force.
    pub weights: Weights,
    /// The route table with the overrides applied: what requests are matched against.
    pub table: RouteTable,
    /// Per route (same order as `table`), per backend: where requests go.
    pub routes: Vec<Vec<BackendRuntime>>,
    /// Per route (same order as `table`): the metrics of a `respond` route's own answers,
    /// counted under `backend=""`; `None` for routes that forward.
    pub respond_metrics: Vec<Option<Arc<BackendMetrics>>>,
    /// Per route (same order as `table`): its retry budget and mirror.
    pub route_runtime: Vec<RouteRuntime>,
    /// Upstreams in config order.
    pub upstreams: Vec<Arc<Upstream>>,
    /// The mirrors' own pools of the upstreams routes mirror to, by upstream index.
    pub mirror_upstreams: Vec<(usize, Arc<Upstream>)>,
    /// Metrics of requests that matched no route.
    pub unrouted: Arc<BackendMetrics>,
    /// When it was published.
    pub built_at: SystemTime,
}

/// A backend of a route at run time.
#[derive(Clone, Debug)]
pub struct BackendRuntime {
    /// The upstream requests for this backend go to.
    pub upstream: Arc<Upstream>,
    /// The route/backend metric handles.
    pub metrics: Arc<BackendMetrics>,
}

/// What a route keeps at run time besides its backends.
#[derive(Clone, Debug, Default)]
pub struct RouteRuntime {
    /// The retry budget, when the route retries.
    pub budget: Option<Arc<RetryBudget>>,
    /// Where copies of its requests go, when it mirrors.
    pub mirror: Option<Arc<MirrorRuntime>>,
}

/// Endpoints alive in some generation, by everything that makes one distinct. Only reloads
/// touch it.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    endpoints: Mutex<HashMap<EndpointKey, Weak<Endpoint>>>,
    /// Circuit breakers by upstream name: like endpoints, they outlive a generation.
    breakers: Mutex<HashMap<Arc<str>, Weak<Breaker>>>,
    /// Active health by upstream name and endpoint address: kept while any endpoint at that
    /// address lives, even one rebuilt with other settings.
    probes: Mutex<HashMap<ProbeKey, Weak<Probe>>>,
}

/// An endpoint address of an upstream: what active health is kept by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ProbeKey {
    backend: Arc<str>,
    address: Address,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EndpointKey {
    backend: Arc<str>,
    address: Address,
    protocol: UpstreamProtocol,
    connect_timeout: std::time::Duration,
    tls: Option<ClientTls>,
    outlier: (u32, std::time::Duration, std::time::Duration),
}

/// Why a snapshot could not be built from an otherwise valid config.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An upstream's TLS files could not be loaded.
    #[error("upstreams.{upstream}.tls: {source}")]
    Tls {
        /// The upstream.
        upstream: String,
        /// What went wrong.
        source: TlsError,
    },
}

impl Snapshot {
    /// Builds generation `generation` from a (re)loaded `config` and `weights` (already checked
    /// against `config`). Endpoints whose settings did not change are reused from `registry`
    /// (pools, health) and given a connector built from the TLS files as they are now, so
    /// rotated certificates apply to new connections.
    pub fn build(
        generation: u64,
        config: Arc<Config>,
        weights: Weights,
        registry: &EndpointRegistry,
        metrics: &Metrics,
    ) -> Result<Self, SnapshotError> {
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut probes = Vec::new();
        let mirrored: Vec<usize> = {
            let mut m: Vec<usize> = config
                .routes
                .routes()
                .iter()
                .filter_map(|r| r.mirror.as_ref().map(|m| m.upstream))
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        let mut mirror_upstreams = Vec::with_capacity(mirrored.len());
        for (index, upstream) in config.upstreams.iter().enumerate() {
            let connector = Arc::new(match &upstream.tls {
                None => Connector::plain(upstream.connect_timeout),
                Some(tls) => {
                    let (client, name) =
                        client_config(tls, upstream.protocol).map_err(|source| {
                            SnapshotError::Tls {
                                upstream: upstream.name.to_string(),
                                source,
                            }
                        })?;
                    Connector::tls(upstream.connect_timeout, client, name)
                }
            });
            let build = UpstreamBuild {
                upstream,
                connector: &connector,
                registry,
                metrics,
            };
            upstreams.push(build.endpoints(&upstream.name, &mut probes));
            if mirrored.binary_search(&index).is_ok() {
                let pool: Arc<str> = format!("{}{MIRROR_POOL_SUFFIX}", upstream.name).into();
                mirror_upstreams.push((index, build.endpoints(&pool, &mut Vec::new())));
            }
        }
        // Once every upstream is built: a config refused half-way changes no health check.
        for (probe, target) in probes {
            probe.configure(target);
        }
        registry.prune();
        let table = weights.apply(&config.routes);
        let routes = table
            .routes()
            .iter()
            .map(|route| {
                route
                    .split
                    .backends()
                    .iter()
                    .map(|backend| BackendRuntime {
                        upstream: upstreams[backend.upstream].clone(),
                        metrics: metrics.backend(&route.name, &backend.name),
                    })
                    .collect()
            })
            .collect();
        let route_runtime = table
            .routes()
            .iter()
            .map(|route| RouteRuntime {
                budget: route
                    .retries
                    .as_deref()
                    .map(|r| Arc::new(RetryBudget::new(r))),
                mirror: route.mirror.as_ref().and_then(|mirror| {
                    let (_, pool) = mirror_upstreams
                        .iter()
                        .find(|(index, _)| *index == mirror.upstream)?;
                    Some(Arc::new(MirrorRuntime::new(
                        mirror,
                        pool.clone(),
                        metrics.mirror(&route.name, &mirror.name),
                        route.timeout,
                    )))
                }),
            })
            .collect();
        let empty: Arc<str> = Arc::from("");
        let respond_metrics = table
            .routes()
            .iter()
            .map(|route| {
                route
                    .respond
                    .as_ref()
                    .map(|_| metrics.backend(&route.name, &empty))
            })
            .collect();
        Ok(Self {
            generation,
            unrouted: metrics.backend(&empty, &empty),
            config,
            weights,
            table,
            routes,
            respond_metrics,
            route_runtime,
            upstreams,
            mirror_upstreams,
            built_at: SystemTime::now(),
        })
    }

    /// The next generation when only the weights file changed: same config, same upstreams
    /// and metric handles (nothing is re-read), new splits.
    pub fn with_weights(&self, generation: u64, weights: Weights) -> Self {
        Self {
            generation,
            config: self.config.clone(),
            table: weights.apply(&self.config.routes),
            weights,
            routes: self.routes.clone(),
            respond_metrics: self.respond_metrics.clone(),
            route_runtime: self.route_runtime.clone(),
            upstreams: self.upstreams.clone(),
            mirror_upstreams: self.mirror_upstreams.clone(),
            unrouted: self.unrouted.clone(),
            built_at: SystemTime::now(),
        }
    }

    /// Every endpoint of this generation, the mirrors' own pools included.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.upstreams
            .iter()
            .chain(self.mirror_upstreams.iter().map(|(_, u)| u))
            .flat_map(|u| u.endpoints().iter())
    }

    /// `(route, backend, weight)` for every backend of every route.
    pub fn weights_in_force(&self) -> impl Iterator<Item = (&str, &str, f64)> {
        self.table.routes().iter().flat_map(|route| {
            route
                .split
                .backends()
                .iter()
                .map(move |b| (&*route.name, &*b.name, b.weight.as_f64()))
        })
    }
}

/// What building one upstream's endpoints needs.
struct UpstreamBuild<'a> {
    upstream: &'a sluice_config::Upstream,
    connector: &'a Arc<Connector>,
    registry: &'a EndpointRegistry,
    metrics: &'a Metrics,
}

impl UpstreamBuild<'_> {
    /// The upstream's endpoints in a pool named `pool`: the upstream's own name for real
    /// traffic, another for a mirror's copies (own connections, own `max_connections` and
    /// outlier state; active health checks and error counters shared with the upstream).
    /// Health probes to configure are pushed to `probes`.
    fn endpoints(
        &self,
        pool: &Arc<str>,
        probes: &mut Vec<(Arc<Probe>, Option<ProbeTarget>)>,
    ) -> Arc<Upstream> {
        let Self {
            upstream,
            connector,
            registry,
            metrics,
        } = self;
        let real = *pool == upstream.name;
        let errors = metrics.upstream_errors(&upstream.name);
        let breaker = registry.breaker(pool, || {
            Breaker::new(
                upstream.max_connections,
                upstream.max_pending_requests,
                metrics.upstream_overloaded(&upstream.name),
            )
        });
        breaker.set_limits(upstream.max_connections, upstream.max_pending_requests);
        let endpoints = upstream
            .endpoints
            .iter()
            .map(|address| {
                let probe = registry.probe(&upstream.name, address, || {
                    Probe::new(
                        upstream.name.clone(),
                        address.to_string().into(),
                        upstream.health_check.is_some(),
                        metrics.endpoint_healthy(&upstream.name, &address.to_string()),
                    )
                });
                let target = upstream.health_check.as_ref().map(|check| ProbeTarget {
                    check: check.clone(),
                    address: address.clone(),
                    protocol: upstream.protocol,
                    connector: (*connector).clone(),
                    authority: upstream
                        .tls
                        .as_ref()
                        .and_then(|tls| tls.server_name.clone())
                        .unwrap_or_else(|| address.to_string()),
                });
                if real {
                    probes.push((probe.clone(), target));
                }
                let key = EndpointKey {
                    backend: pool.clone(),
                    address: address.clone(),
                    protocol: upstream.protocol,
                    connect_timeout: upstream.connect_timeout,
                    tls: upstream.tls.clone(),
                    outlier: outlier_key(&upstream.outlier_detection),
                };
                let endpoint = registry.get_or_create(key, || {
                    Endpoint::new(EndpointSettings {
                        address: address.clone(),
                        backend: upstream.name.clone(),
                        protocol: upstream.protocol,
                        connector: (*connector).clone(),
                        outlier: upstream.outlier_detection,
                        probe,
                        // One series per endpoint address: the real pool's endpoint owns it.
                        healthy_gauge: if real {
                            metrics.endpoint_healthy(&upstream.name, &address.to_string())
                        } else {
                            metrics::Gauge::noop()
                        },
                        errors: errors.clone(),
                        breaker: breaker.clone(),
                    })
                });
                endpoint.set_connector((*connector).clone());
                endpoint
            })
            .collect();
        Arc::new(Upstream::new(upstream.name.clone(), endpoints))
    }
}

impl EndpointRegistry {
    fn get_or_create(
        &self,
        key: EndpointKey,
        create: impl FnOnce() -> Arc<Endpoint>,
    ) -> Arc<Endpoint> {
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        let endpoint = create();
        map.insert(key, Arc::downgrade(&endpoint));
        endpoint
    }

    /// The circuit breaker of upstream `name`: the live one, or a new one from `create`.
    fn breaker(&self, name: &Arc<str>, create: impl FnOnce() -> Arc<Breaker>) -> Arc<Breaker> {
        let mut map = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = map.get(name).and_then(Weak::upgrade) {
            return live;
        }
        let breaker = create();
        map.insert(name.clone(), Arc::downgrade(&breaker));
        breaker
    }

    /// The active health of `address` in upstream `backend`: the live one, or a new one from
    /// `create`.
    fn probe(
        &self,
        backend: &Arc<str>,
        address: &Address,
        create: impl FnOnce() -> Probe,
    ) -> Arc<Probe> {
        let mut map = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        let key = ProbeKey {
            backend: backend.clone(),
            address: address.clone(),
        };
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        let probe = Arc::new(create());
        map.insert(key, Arc::downgrade(&probe));
        probe
    }

    /// Forgets endpoints, breakers and probes no generation uses any more (their pools have
    /// been dropped, their probing stopped).
    fn prune(&self) {
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, weak| weak.strong_count() > 0);
        self.breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, weak| weak.strong_count() > 0);
        self.probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, weak| weak.strong_count() > 0);
    }
}

fn outlier_key(o: &OutlierDetection) -> (u32, std::time::Duration, std::time::Duration) {
    (
        o.consecutive_failures,
        o.base_ejection_time,
        o.max_ejection_time,
    )
}
