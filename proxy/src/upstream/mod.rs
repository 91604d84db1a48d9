//! Upstreams at run time: endpoints with pools, passive health (outlier detection) and active
//! health checks, and the choice of an endpoint by power of two choices on in-flight requests.

mod breaker;
mod connect;
mod connection;
mod endpoint;
pub mod h1;
mod health;
mod pool;
mod probe;
mod response;

use std::sync::Arc;
use std::time::Instant;

pub use breaker::{Breaker, ConnectionSlot};
pub use connect::Connector;
pub use endpoint::{Endpoint, EndpointSend, EndpointSettings, Exchanged, Lease};
pub use probe::{Probe, ProbeStatus, ProbeTarget};
pub use response::UpstreamBody;

/// One upstream of a config generation: its endpoints, shared with other generations.
#[derive(Debug)]
pub struct Upstream {
    name: Arc<str>,
    endpoints: Vec<Arc<Endpoint>>,
}

impl Upstream {
    /// An upstream over `endpoints`.
    pub fn new(name: Arc<str>, endpoints: Vec<Arc<Endpoint>>) -> Self {
        Self { name, endpoints }
    }

    /// The upstream's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The endpoints, in config order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The circuit breaker its endpoints share.
    pub fn breaker(&self) -> Option<&Arc<Breaker>> {
        self.endpoints.first().map(|e| e.breaker())
    }

    /// A healthy endpoint: of two picked at random, the one with fewer requests in flight
    /// (power of two choices). `None` when every endpoint is ejected or failing its checks.
    #[inline]
    pub fn pick(&self, random: u64, now: Instant) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        match n {
            0 => None,
            1 => Some(&self.endpoints[0]).filter(|e| e.is_healthy(now)),
            _ => {
                let a = (random % n as u64) as usize;
                let mut b = ((random >> 32) % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                let (ea, eb) = (&self.endpoints[a], &self.endpoints[b]);
                match (ea.is_healthy(now), eb.is_healthy(now)) {
                    (true, true) => Some(if eb.in_flight() < ea.in_flight() {
                        eb
                    } else {
                        ea
                    }),
                    (true, false) => Some(ea),
                    (false, true) => Some(eb),
                    (false, false) => self.endpoints.iter().find(|e| e.is_healthy(now)),
                }
            }
        }
    }

    /// A healthy endpoint other than `tried` for a retry, or `tried` itself when it is the only
    /// healthy one. `None` when none is healthy.
    pub fn pick_other(
        &self,
        random: u64,
        now: Instant,
        tried: &Arc<Endpoint>,
    ) -> Option<&Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = (random % n.max(1) as u64) as usize;
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .find(|e| !Arc::ptr_eq(e, tried) && e.is_healthy(now))
            .or_else(|| self.pick(random, now))
    }
}
