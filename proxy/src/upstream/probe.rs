//! Active health checks: every endpoint of an upstream with `health_check` is sent a `GET` on
//! connections of its own, and takes traffic only while it passes.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics::Gauge;
use sluice_config::{Address, HealthCheck, UpstreamProtocol};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::connect::Connector;

/// The `user-agent` of every probe, so upstream logs can tell probes from traffic.
const USER_AGENT_VALUE: &str = "sluice-health-check";

/// The active health of one endpoint address of one upstream. Every [`super::Endpoint`] for that
/// address, in any config generation, shares it, so a reload that rebuilds the endpoint (new
/// connect timeout, new TLS files) keeps what the checks found. Owns the probing task, which
/// ends when the last endpoint holding it is dropped.
#[derive(Debug)]
pub struct Probe {
    shared: Arc<Shared>,
    target: watch::Sender<Option<Arc<ProbeTarget>>>,
    task: Mutex<Option<AbortHandle>>,
}

/// Where the health of an endpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeStatus {
    /// The upstream has no `health_check`: only outlier detection decides.
    Unchecked,
    /// Checked, and not passed yet: out of service until its first pass.
    Pending,
    /// Passing: in service.
    Healthy,
    /// Failed `unhealthy` checks in a row: out of service until `healthy` passes in a row.
    Unhealthy,
}

/// What to probe and how, from the config in force.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    /// The upstream's `health_check`.
    pub check: HealthCheck,
    /// The endpoint.
    pub address: Address,
    /// HTTP version spoken to it.
    pub protocol: UpstreamProtocol,
    /// The upstream's connector: its connect timeout, TLS settings and SNI.
    pub connector: Arc<Connector>,
    /// `Host` (HTTP/1.1) or `:authority` (HTTP/2) of the probe: the upstream's
    /// `tls.server_name` when set, else the endpoint's `host:port`.
    pub authority: String,
}

/// State shared between the endpoints (reading) and the probing task (writing).
#[derive(Debug)]
struct Shared {
    backend: Arc<str>,
    endpoint: Arc<str>,
    /// [`ProbeStatus`] as a number, read on every request without a lock.
    status: AtomicU8,
    /// The status and the streaks behind it; written by the task and by reloads.
    streak: Mutex<Streak>,
    /// `sluice_endpoint_healthy` of the endpoint: set to 0 the moment it fails its checks (the
    /// endpoints' housekeeping brings it back to 1, once outlier detection agrees).
    healthy_gauge: Gauge,
}

/// Passes or failures in a row, and the status they led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Streak {
    status: ProbeStatus,
    passes: u32,
    failures: u32,
}

impl Probe {
    /// The health of `endpoint` of upstream `backend`: [`ProbeStatus::Pending`] when the
    /// upstream is `checked` (a new endpoint is proven healthy before it takes traffic), else
    /// [`ProbeStatus::Unchecked`]. Probing starts with [`Probe::configure`]. `healthy_gauge` is
    /// the endpoint's `sluice_endpoint_healthy`.
    pub fn new(backend: Arc<str>, endpoint: Arc<str>, checked: bool, healthy_gauge: Gauge) -> Self {
        let status = if checked {
            ProbeStatus::Pending
        } else {
            ProbeStatus::Unchecked
        };
        Self {
            shared: Arc::new(Shared {
                backend,
                endpoint,
                status: AtomicU8::new(status as u8),
                streak: Mutex::new(Streak::new(status)),
                healthy_gauge,
            }),
            target: watch::Sender::new(None),
            task: Mutex::new(None),
        }
    }

    /// Whether the checks let the endpoint take traffic.
    #[inline]
    pub fn in_service(&self) -> bool {
        ProbeStatus::from_u8(self.shared.status.load(Ordering::Relaxed)).in_service()
    }

    /// Where the endpoint's health checks stand.
    pub fn status(&self) -> ProbeStatus {
        ProbeStatus::from_u8(self.shared.status.load(Ordering::Relaxed))
    }

    /// Applies the config in force: probe `target` from now on (a changed check is probed at
    /// once), or stop probing when `None`. An endpoint that was serving unchecked stays in
    /// service when a check is added; one whose check is removed returns to service. The
    /// probing task starts on the first target (it needs a Tokio runtime).
    pub fn configure(&self, target: Option<ProbeTarget>) {
        {
            let mut streak = self.shared.lock();
            let next = streak.configure(target.is_some());
            if next != *streak {
                *streak = next;
                self.shared.publish(next.status);
            }
        }
        let target = target.map(Arc::new);
        let start = target.is_some();
        self.target.send_if_modified(|current| {
            let changed = match (current.as_deref(), target.as_deref()) {
                (None, None) => false,
                (Some(a), Some(b)) => !a.same_probe(b),
                _ => true,
            };
            // A new connector (reloaded TLS files) is taken silently by the next probe.
            *current = target;
            changed
        });
        if start {
            self.spawn_once();
        }
    }

    fn spawn_once(&self) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let handle = runtime.spawn(run(self.shared.clone(), self.target.subscribe()));
        *task = Some(handle.abort_handle());
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl ProbeStatus {
    /// Whether an endpoint in this status takes traffic.
    #[inline]
    pub fn in_service(self) -> bool {
        matches!(self, Self::Unchecked | Self::Healthy)
    }

    /// The status as `/config` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Pending => "pending",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }

    #[inline]
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Pending,
            2 => Self::Healthy,
            3 => Self::Unhealthy,
            _ => Self::Unchecked,
        }
    }
}

impl ProbeTarget {
    /// Whether `other` probes the same way (the connector aside, which every reload renews).
    fn same_probe(&self, other: &Self) -> bool {
        self.check == other.check
            && self.address == other.address
            && self.protocol == other.protocol
            && self.authority == other.authority
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Streak> {
        self.streak.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, status: ProbeStatus) {
        self.status.store(status as u8, Ordering::Relaxed);
    }

    /// Records a probe's outcome; returns the status before it and the streak after it.
    fn record(&self, pass: bool, check: &HealthCheck) -> (ProbeStatus, Streak) {
        let mut streak = self.lock();
        let before = streak.status;
        *streak = streak.record(pass, check);
        if streak.status != before {
            self.publish(streak.status);
        }
        (before, *streak)
    }
}

impl Streak {
    fn new(status: ProbeStatus) -> Self {
        Self {
            status,
            passes: 0,
            failures: 0,
        }
    }

    /// The state after a reload that turns checking on (`checked`) or off.
    fn configure(self, checked: bool) -> Self {
        match (self.status, checked) {
            // Serving before the check was added: stays in service until the check says not.
            (ProbeStatus::Unchecked, true) => Self::new(ProbeStatus::Healthy),
            (_, false) => Self::new(ProbeStatus::Unchecked),
            (_, true) => self,
        }
    }

    /// The state after one probe: a pending endpoint is in service at its first pass
    /// (Envoy's rule for a new host); then `unhealthy` failures in a row take it out and
    /// `healthy` passes in a row bring it back.
    fn record(self, pass: bool, check: &HealthCheck) -> Self {
        let (passes, failures) = if pass {
            (self.passes.saturating_add(1), 0)
        } else {
            (0, self.failures.saturating_add(1))
        };
        let status = match self.status {
            // A probe that was under way when its check was removed counts for nothing.
            ProbeStatus::Unchecked => return self,
            ProbeStatus::Pending if pass => ProbeStatus::Healthy,
            ProbeStatus::Healthy if failures >= check.unhealthy => ProbeStatus::Unhealthy,
            ProbeStatus::Unhealthy if passes >= check.healthy => ProbeStatus::Healthy,
            status => status,
        };
        Self {
            status,
            passes,
            failures,
        }
    }
}

/// Probes the target in force every `interval` (at once when it changes), until the probe is
/// dropped.
async fn run(shared: Arc<Shared>, mut targets: watch::Receiver<Option<Arc<ProbeTarget>>>) {
    loop {
        let target = targets.borrow_and_update().clone();
        let Some(target) = target else {
            if targets.changed().await.is_err() {
                return;
            }
            continue;
        };
        let outcome = probe(&target).await;
        if let Err(reason) = &outcome {
            debug!(backend = %shared.backend, endpoint = %shared.endpoint, path = %target.check.path, %reason, "health check failed");
        }
        let (before, after) = shared.record(outcome.is_ok(), &target.check);
        let reason = outcome.err().unwrap_or_default();
        match (before, after.status) {
            (ProbeStatus::Healthy, ProbeStatus::Unhealthy) => {
                shared.healthy_gauge.set(0.0);
                warn!(backend = %shared.backend, endpoint = %shared.endpoint, path = %target.check.path, failures = after.failures, %reason, "endpoint failed its health checks; it takes no traffic until it passes again");
            }
            (ProbeStatus::Pending, ProbeStatus::Pending)
                if after.failures == target.check.unhealthy =>
            {
                warn!(backend = %shared.backend, endpoint = %shared.endpoint, path = %target.check.path, failures = after.failures, %reason, "new endpoint has not passed a health check yet; it takes no traffic until it does");
            }
            (before, ProbeStatus::Healthy) if before != ProbeStatus::Healthy => {
                info!(backend = %shared.backend, endpoint = %shared.endpoint, path = %target.check.path, was = before.as_str(), "endpoint passed its health checks; it takes traffic");
            }
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(target.check.interval) => {}
            changed = targets.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One probe: a fresh connection, `GET path`, a 2xx status within the timeout. The connection
/// is driven here and closed when the probe ends, so a hung endpoint holds nothing.
async fn probe(target: &ProbeTarget) -> Result<(), String> {
    match tokio::time::timeout(target.check.timeout, exchange(target)).await {
        Ok(Ok(status)) if status.is_success() => Ok(()),
        Ok(Ok(status)) => Err(format!("status {}", status.as_u16())),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!(
            "no answer within {}",
            sluice_config::format_duration(target.check.timeout)
        )),
    }
}

async fn exchange(target: &ProbeTarget) -> Result<http::StatusCode, String> {
    let stream = target
        .connector
        .connect(&target.address)
        .await
        .map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    let request = |uri: Uri| {
        Request::get(uri)
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())
    };
    let response = match target.protocol {
        UpstreamProtocol::Http1 => {
            let mut req =
                request(Uri::try_from(target.check.path.as_str()).map_err(|e| e.to_string())?)?;
            let host =
                HeaderValue::try_from(target.authority.as_str()).map_err(|e| e.to_string())?;
            req.headers_mut().insert(HOST, host);
            req.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            let (mut sender, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
            drive(sender.send_request(req), conn).await
        }
        UpstreamProtocol::Http2 => {
            let scheme = if target.connector.is_tls() {
                "https"
            } else {
                "http"
            };
            let uri = format!("{scheme}://{}{}", target.authority, target.check.path);
            let req = request(Uri::try_from(uri).map_err(|e| e.to_string())?)?;
            let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            drive(sender.send_request(req), conn).await
        }
    };
    response.map(|r| r.status())
}

/// Waits for the answer while driving its connection.
async fn drive<R, C>(response: R, connection: C) -> Result<Response<Incoming>, String>
where
    R: Future<Output = hyper::Result<Response<Incoming>>>,
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(response, connection);
    tokio::select! {
        biased;
        response = &mut response => response.map_err(|e| e.to_string()),
        // The connection ended: an answer that came before is waiting; otherwise the request
        // fails with the reason.
        _ = &mut connection => response.await.map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy,
            unhealthy,
        }
    }

    /// The statuses after each outcome, from `start`.
    fn walk(start: ProbeStatus, outcomes: &[bool], check: &HealthCheck) -> Vec<ProbeStatus> {
        let mut streak = Streak::new(start);
        outcomes
            .iter()
            .map(|pass| {
                streak = streak.record(*pass, check);
                streak.status
            })
            .collect()
    }

    use ProbeStatus::{Healthy, Pending, Unchecked, Unhealthy};

    #[test]
    fn a_new_endpoint_is_in_service_at_its_first_pass() {
        let check = check(2, 3);
        assert!(!Pending.in_service());
        assert_eq!(
            walk(Pending, &[false, false, false, false, true], &check),
            [Pending, Pending, Pending, Pending, Healthy]
        );
    }

    #[test]
    fn unhealthy_failures_in_a_row_take_it_out_and_healthy_passes_bring_it_back() {
        let check = check(2, 3);
        assert_eq!(
            walk(
                Healthy,
                &[false, false, true, false, false, false, true, false, true, true],
                &check
            ),
            [
                Healthy, Healthy, Healthy, Healthy, Healthy, Unhealthy, Unhealthy, Unhealthy,
                Unhealthy, Healthy
            ]
        );
    }

    #[test]
    fn thresholds_of_one_flip_at_once() {
        let check = check(1, 1);
        assert_eq!(
            walk(Healthy, &[false, true, false], &check),
            [Unhealthy, Healthy, Unhealthy]
        );
    }

    #[test]
    fn an_unchecked_endpoint_ignores_late_outcomes() {
        assert_eq!(walk(Unchecked, &[false; 5], &check(1, 1)), [Unchecked; 5]);
    }

    #[test]
    fn reloads_keep_the_state_of_checked_endpoints() {
        let unhealthy = Streak {
            status: Unhealthy,
            passes: 1,
            failures: 0,
        };
        assert_eq!(unhealthy.configure(true), unhealthy, "settings changed");
        assert_eq!(
            Streak::new(Unchecked).configure(true).status,
            Healthy,
            "a serving endpoint gains a check: it stays in service"
        );
        assert_eq!(
            unhealthy.configure(false).status,
            Unchecked,
            "check removed: back in service"
        );
        assert_eq!(Streak::new(Pending).configure(true).status, Pending);
    }

    #[test]
    fn configure_publishes_the_status_read_on_the_request_path() {
        let probe = Probe::new("app".into(), "127.0.0.1:1".into(), true, Gauge::noop());
        assert_eq!(probe.status(), Pending);
        assert!(!probe.in_service());
        probe.configure(None);
        assert_eq!(probe.status(), Unchecked);
        assert!(probe.in_service());
    }
}
