//! One request's exchange with the upstream, from the prepared request to the response head:
//! a single attempt, or (on a route with retries) attempts until one is not retried.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use sluice_config::Retries;
use tokio::time::error::Elapsed;
use tracing::debug;

use crate::body::{BodyDone, RequestBody};
use crate::error::ProxyError;
use crate::forward::{random, retarget};
use crate::future::{within, Within};
use crate::metrics::{BackendMetrics, RetryResult};
use crate::mirror::{MirrorHead, MirrorPermit, MIRROR_MAX_BODY};
use crate::retry::{retries_error, retries_status, RetryBudget};
use crate::upstream::{Endpoint, Exchanged, Lease, Upstream, UpstreamBody};

/// [`Exchanged`], or the deadline passed first.
pub(crate) type Sent = Result<Exchanged, Elapsed>;

/// The exchange's outcome: the response head, the lease, and the endpoint that answered.
pub(crate) type Answered<'a> =
    Result<((Response<UpstreamBody>, Lease), &'a Arc<Endpoint>), ProxyError>;

pin_project! {
    /// A request's exchange with the upstream, as a future of its [`Answered`] outcome.
    #[project = ExchangeProjection]
    pub(crate) enum Exchange<'a, F, R> {
        /// One attempt (`F`, within the deadline), settled when it ends.
        Once {
            #[pin]
            sent: Within<F>,
            endpoint: &'a Arc<Endpoint>,
            body_done: Option<BodyDone>,
            labels: &'a BackendMetrics,
        },
        /// Attempts with retries (`R`, boxed by the caller: only routes that retry pay for
        /// their state in the request's future).
        Retried { #[pin] attempts: R },
    }
}

impl<'a, F, R> Future for Exchange<'a, F, R>
where
    F: Future<Output = Exchanged>,
    R: Future<Output = Answered<'a>>,
{
    type Output = Answered<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ExchangeProjection::Once {
                sent,
                endpoint,
                body_done,
                labels,
            } => sent.poll(cx).map(|sent| {
                settle(sent, endpoint, body_done.take(), labels).map(|answer| (answer, *endpoint))
            }),
            ExchangeProjection::Retried { attempts } => attempts.poll(cx),
        }
    }
}

/// The attempts of a request whose route retries and whose body is held in memory.
pub(crate) struct Attempts<'a> {
    pub(crate) retries: &'a Retries,
    pub(crate) budget: &'a RetryBudget,
    pub(crate) labels: &'a BackendMetrics,
    pub(crate) upstream: &'a Upstream,
    pub(crate) deadline: Option<tokio::time::Instant>,
    pub(crate) start: Instant,
}

impl<'a> Attempts<'a> {
    /// Reads the body into memory (within the deadline), hands the mirror its copy, then sends
    /// the request, and again (to another endpoint when there is one) after each failure the
    /// route retries, while attempts and budget last. Only complete response heads are looked
    /// at, so nothing has reached the client yet.
    pub(crate) async fn run(
        self,
        first: &'a Arc<Endpoint>,
        parts: http::request::Parts,
        body: RequestBody,
        mirror: Option<(MirrorPermit, MirrorHead)>,
    ) -> Answered<'a> {
        let body = within(self.deadline, body.into_bytes())
            .await
            .map_err(|_| ProxyError::RequestBodyTimeout)?
            .map_err(ProxyError::from)?;
        if let Some((permit, head)) = mirror {
            permit.spawn(
                head,
                RequestBody::buffered(body.clone()).tee(MIRROR_MAX_BODY),
            );
        }
        let mut endpoint = first;
        let mut tried = 0;
        loop {
            let mut head = copy_head(&parts);
            retarget(&mut head, endpoint)?;
            let req = Request::from_parts(head, RequestBody::buffered(body.clone()));
            let sent = within(self.deadline, endpoint.send(req, None, self.start)).await;
            let result = settle(sent, endpoint, None, self.labels);
            let again = match &result {
                Ok((response, _)) => retries_status(self.retries, response.status()),
                Err(error) => retries_error(self.retries, error),
            };
            if tried > 0 {
                self.labels.retry(if again {
                    RetryResult::Failed
                } else {
                    RetryResult::Ok
                });
            }
            if !again || tried >= self.retries.attempts {
                return result.map(|answer| (answer, endpoint));
            }
            let now = Instant::now();
            if !self.budget.try_withdraw(now) {
                self.labels.retry(RetryResult::BudgetExhausted);
                return result.map(|answer| (answer, endpoint));
            }
            tried += 1;
            match self.upstream.pick_other(random(), now, endpoint) {
                Some(next) => endpoint = next,
                None => return result.map(|answer| (answer, endpoint)),
            }
            debug!(
                route = self.labels.route(),
                backend = self.labels.backend(),
                endpoint = endpoint.label(),
                attempt = tried + 1,
                "retrying"
            );
        }
    }
}

/// The outcome of one attempt, which had until its deadline to get a response head. A
/// failure the upstream is to blame for is counted against the endpoint; time running out
/// while the request body was still uploading is the client's fault, not the upstream's.
fn settle(
    sent: Sent,
    endpoint: &Endpoint,
    body_done: Option<BodyDone>,
    labels: &BackendMetrics,
) -> Exchanged {
    let sent = sent.unwrap_or_else(|_| {
        if body_done.is_some_and(|d| !d.is_done()) {
            Err(ProxyError::RequestBodyTimeout)
        } else {
            Err(ProxyError::Timeout)
        }
    });
    match &sent {
        Ok((response, _)) => endpoint.record_outcome(!response.status().is_server_error()),
        Err(error) => {
            if let Some(kind) = error.upstream_kind() {
                endpoint.count_error(kind);
                endpoint.record_outcome(false);
            }
            debug!(route = labels.route(), backend = labels.backend(), endpoint = endpoint.label(), %error, "upstream failed");
        }
    }
    sent
}

/// A copy of a request head for another attempt (extensions are not copied: a request with
/// an upgrade is never retried).
fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    head.into_parts().0
}
