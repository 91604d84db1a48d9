//! An upstream HTTP/1.1 connection driven by the task of the request that uses it: hyper's
//! `SendRequest` and its connection future kept together, so a request never crosses tasks.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper::{Request, Response};
use pin_project_lite::pin_project;
use tracing::debug;

use super::breaker::ConnectionSlot;
use crate::body::RequestBody;

pin_project! {
    /// [`Http1Connection::send`]'s future.
    ///
    /// The response is produced by the connection while it is polled here, so it needs no
    /// wake-up of its own, and the connection is polled with the task's waker only when the
    /// response is not there yet: hyper registers the waker of the poll that reads the
    /// response in the body's channel too, and taking the body's data would then wake the
    /// running task, one more poll of it per request. Whoever reads the body polls the
    /// connection with its own waker whenever the body has nothing to give.
    pub(crate) struct Sending<F> {
        conn: Option<Http1Connection>,
        #[pin]
        response: F,
    }
}

impl<F, T> Future for Sending<F>
where
    F: Future<Output = T>,
{
    type Output = (Http1Connection, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut conn = this.conn.take().expect("Sending polled after it completed");
        let mut noop = Context::from_waker(Waker::noop());
        conn.poll_drive(&mut noop);
        let mut answer = this.response.as_mut().poll(&mut noop);
        if answer.is_pending() {
            conn.poll_drive(cx);
            answer = this.response.poll(&mut noop);
        }
        match answer {
            Poll::Ready(answer) => Poll::Ready((conn, answer)),
            Poll::Pending => {
                *this.conn = Some(conn);
                Poll::Pending
            }
        }
    }
}

/// What hyper's future of a response gives: the response head, or the request back when it was
/// never written.
pub(super) type Answer = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>;

/// hyper's connection state machine (with upgrades), boxed once per connection: its type
/// cannot be named.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One HTTP/1.1 connection to an endpoint. Whoever holds it polls it: the request waiting for
/// its response head, then the response body as it streams, the pool's checks while it is
/// idle, a tunnel until its upgrade completes. Holds its slot of the upstream's
/// `max_connections` until dropped; dropping it closes the connection.
pub(crate) struct Http1Connection {
    sender: http1::SendRequest<RequestBody>,
    /// `None` once the connection has ended (closed, failed, or handed over to an upgrade).
    driver: Option<Driver>,
    endpoint: Arc<str>,
    _slot: ConnectionSlot,
}

impl fmt::Debug for Http1Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http1Connection")
            .field("endpoint", &self.endpoint)
            .field("open", &self.driver.is_some())
            .finish()
    }
}

impl Http1Connection {
    /// A connection from hyper's handshake.
    pub(super) fn new<C>(
        sender: http1::SendRequest<RequestBody>,
        connection: C,
        slot: ConnectionSlot,
        endpoint: Arc<str>,
    ) -> Self
    where
        C: Future<Output = hyper::Result<()>> + Send + 'static,
    {
        Self {
            sender,
            driver: Some(Box::pin(connection)),
            endpoint,
            _slot: slot,
        }
    }

    /// Moves the connection on (reads, writes, a request body still uploading) with `cx`'s
    /// waker. Returns whether it is still open.
    pub(crate) fn poll_drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = &mut self.driver else {
            return false;
        };
        match driver.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    debug!(endpoint = %self.endpoint, error = %e, "upstream connection ended with an error");
                }
                self.driver = None;
                false
            }
        }
    }

    /// Whether an idle connection can take a request now: open, and hyper ready for the next
    /// request.
    ///
    /// Usually hyper asked for the next request when the last response ended, and the
    /// connection is not polled here: a close by the server while it was idle is noticed by
    /// the first poll of [`Sending`], which reads before it writes and gives the request back
    /// unsent (sent again on another connection). Otherwise it is polled once, with a no-op
    /// waker (a real one would be woken by the request about to be queued, an extra poll of
    /// the whole task), which lets hyper finish the previous exchange.
    pub(super) fn is_reusable(&mut self) -> bool {
        if self.driver.is_some() && self.sender.is_ready() {
            return true;
        }
        self.is_open() && self.sender.is_ready()
    }

    /// Whether the connection is still open, polling it with a no-op waker (for checks made
    /// outside the task that will drive it).
    pub(super) fn is_open(&mut self) -> bool {
        self.poll_drive(&mut Context::from_waker(Waker::noop()))
    }

    /// Sends `req` and drives the connection until the response head arrives; the future
    /// gives the connection back with the answer. The request comes back in the error when it
    /// was never written (the connection was closing).
    ///
    /// hyper queues the request at once, so the future holds only the connection and hyper's
    /// future of the response, not the request.
    pub(super) fn send(
        mut self,
        req: Request<RequestBody>,
    ) -> Sending<impl Future<Output = Answer>> {
        let response = self.sender.try_send_request(req);
        Sending {
            conn: Some(self),
            response,
        }
    }

    /// Drives the connection while `future` runs, until `future` completes (e.g. a tunnel's
    /// `OnUpgrade`, which the connection fulfils once the upgrade is complete).
    pub(crate) async fn drive_until<F: Future>(&mut self, future: F) -> F::Output {
        let mut future = pin!(future);
        poll_fn(|cx| {
            self.poll_drive(cx);
            future.as_mut().poll(cx)
        })
        .await
    }

    /// Lets the connection finish the exchange in progress (a request body still uploading)
    /// in a task of its own, then close: nothing else will be sent on it.
    pub(super) fn finish_in_background(self) {
        let Self {
            sender,
            driver,
            endpoint,
            _slot: slot,
        } = self;
        // Without a sender, hyper closes the connection once the exchange is over.
        drop(sender);
        let Some(driver) = driver else { return };
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                debug!(endpoint = %endpoint, error = %e, "upstream connection ended with an error");
            }
            drop(slot);
        });
    }
}
