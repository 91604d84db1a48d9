//! The proxy process as a whole: load, bind, serve, reload, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::Admin;
use crate::drain::{Drain, DrainWatch};
use crate::forward::Proxy;
use crate::listener::{bind_tcp, BoundListener, ConnectionLimit, Limits, ListenerError};
use crate::metrics::Metrics;
use crate::reload::{EtcdWeights, ReloadError, Reloader, StartConfig, StartWeights, StoreError};
use crate::routing::Routing;
use crate::tls::ListenerTls;

/// How the process runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The config file.
    pub config: PathBuf,
    /// Longest wait for in-flight requests after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    /// After SIGTERM/SIGINT, how long to keep accepting with `/ready` already 503, so load
    /// balancers (Kubernetes endpoints) stop sending before the listeners close.
    pub shutdown_delay: Duration,
    /// Connection-level limits.
    pub limits: Limits,
    /// A request body that stalls this long fails with 408.
    pub body_idle_timeout: Duration,
}

/// A proxy with its config loaded and its sockets bound, not yet serving.
#[derive(Debug)]
pub struct Server {
    options: Options,
    listeners: Vec<BoundListener>,
    admin_socket: TcpListener,
    admin: Arc<Admin>,
    proxy: Arc<Proxy>,
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
    routing: Arc<Routing>,
    /// Fleet mode: the weights in etcd, followed once serving.
    store: Option<EtcdWeights>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or weights file is invalid.
    #[error("{0}")]
    Config(#[from] ReloadError),
    /// The etcd client of fleet mode could not be set up.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("{0}")]
    Listener(#[from] ListenerError),
    /// The admin address could not be bound.
    #[error("admin: cannot listen on {address}: {source}")]
    Admin {
        /// The admin address.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

impl Server {
    /// Loads the config and the weights (the weights file, or in fleet mode etcd's document,
    /// read within a couple of seconds) and binds every listener and the admin endpoint. Must
    /// run inside a Tokio runtime.
    pub async fn bind(options: Options) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let start = StartConfig::load(&options.config)?;
        let (store, weights) = match &start.config().store {
            None => (None, StartWeights::File),
            Some(etcd) => {
                let (store, weights) = EtcdWeights::start(etcd, start.config(), &metrics).await?;
                (Some(store), weights)
            }
        };
        let (mut reloader, routing) = Reloader::start(start, weights, metrics.clone())?;
        let config = reloader.startup_config();
        let mut certificates = Vec::new();
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let tls = ListenerTls::load(listener, metrics.tls_certificate_expiry(&listener.name))
                .map_err(|source| ListenerError::Tls {
                    name: listener.name.clone(),
                    source,
                })?
                .map(Arc::new);
            certificates.extend(tls.clone());
            listeners.push(BoundListener::bind(listener, tls)?);
        }
        // Watched and reloaded with the config: new handshakes get the new certificate.
        reloader.reload_certificates_of(certificates);
        let reloader = Arc::new(reloader);
        let admin_socket = bind_tcp(config.admin).map_err(|source| StartError::Admin {
            address: config.admin,
            source,
        })?;
        let bound = listeners
            .iter()
            .filter_map(|l| Some((l.name().to_string(), l.local_addr().ok()?)))
            .collect();
        let admin = Arc::new(Admin {
            metrics: metrics.clone(),
            routing: routing.clone(),
            reloader: reloader.clone(),
            ready: false.into(),
            bound,
            store: store.as_ref().map(EtcdWeights::status),
        });
        let proxy = Arc::new(Proxy::new(routing.clone(), options.body_idle_timeout));
        Ok(Self {
            options,
            listeners,
            admin_socket,
            admin,
            proxy,
            reloader,
            metrics,
            routing,
            store,
        })
    }

    /// Serves until `shutdown` completes, then drains: `/ready` turns 503, listeners stop
    /// accepting, in-flight requests get up to the drain timeout to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (drain, drain_watch) = Drain::new();
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        for (listener, (name, address)) in self.listeners.into_iter().zip(&self.admin.bound) {
            info!(listener = %name, %address, "listening");
            let connections = ConnectionLimit::new(
                listener.max_connections(),
                self.metrics.active_connections(name),
                self.metrics.connections_rejected(name),
            );
            tokio::spawn(listener.serve(
                self.proxy.clone(),
                self.options.limits,
                connections,
                drain_watch.clone(),
            ));
        }
        if let Ok(address) = self.admin_socket.local_addr() {
            info!(%address, "admin listening");
        }
        tokio::spawn(self.admin.clone().serve(self.admin_socket, admin_stop_rx));
        // Watching starts before "ready", so no file change after it can be missed.
        tokio::spawn(self.reloader.clone().watch().run(drain_watch.clone()));
        if let Some(store) = self.store {
            tokio::spawn(store.run(self.reloader.clone(), drain_watch.clone()));
        }
        tokio::spawn(housekeeping(
            self.metrics.clone(),
            self.routing.clone(),
            drain_watch,
        ));
        self.admin.ready.store(true, Ordering::Relaxed);
        info!(generation = self.routing.snapshot().generation, "ready");

        shutdown.await;
        self.admin.ready.store(false, Ordering::Relaxed);
        if !self.options.shutdown_delay.is_zero() {
            info!(delay = ?self.options.shutdown_delay, "shutting down: /ready is 503; still accepting for the shutdown delay");
            tokio::time::sleep(self.options.shutdown_delay).await;
        }
        info!(drain_timeout = ?self.options.drain_timeout, "shutting down: draining in-flight requests");
        let started = Instant::now();
        match drain.drain(self.options.drain_timeout).await {
            0 => info!(took = ?started.elapsed(), "drained"),
            open => warn!(
                open,
                "drain timeout reached; closing the remaining connections"
            ),
        }
        let _ = admin_stop_tx.send(true);
    }
}

/// Periodic upkeep: histogram samples into buckets, endpoint health gauges after ejections
/// end, expired idle upstream connections closed. The histograms every fifth tick: every tick
/// made each drain a fifth as long and saved memory after load, but cost throughput while the
/// weights file reloads (benches/RESULTS.md, row 22).
async fn housekeeping(metrics: Arc<Metrics>, routing: Arc<Routing>, mut drain: DrainWatch) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = drain.started() => return,
        }
        ticks += 1;
        let now = Instant::now();
        for endpoint in routing.snapshot().endpoints() {
            endpoint.housekeeping(now);
        }
        if ticks.is_multiple_of(5) {
            metrics.run_upkeep();
        }
    }
}
