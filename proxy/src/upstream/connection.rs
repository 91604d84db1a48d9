//! An upstream HTTP/1.1 connection driven by the task of the request that uses it: sluice's
//! own client for requests without a body, hyper's (`SendRequest` and its connection future
//! kept together) for the others, so a request never crosses tasks.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::Method;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tracing::debug;

use super::breaker::ConnectionSlot;
use super::h1::{self, BodyDecoder, Codec};
use super::response::UpstreamBody;
use crate::body::{ClientBodyError, RequestBody};
use crate::error::ProxyError;
use crate::io::Stream;

/// What hyper's future of a response gives: the response head, or the request back when it was
/// never written.
pub(super) type HyperAnswer = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>;

/// What sending a request on a connection came to.
pub(crate) enum Answer {
    /// The response head.
    Response(Response<UpstreamBody>),
    /// Never written: the connection was closing. The request can go to another one.
    Unsent(Request<RequestBody>),
    /// The exchange failed.
    Failed(ProxyError),
}

pin_project! {
    /// [`Http1Connection::send`]'s future.
    ///
    /// hyper's response is produced by its connection while it is polled here, so it needs no
    /// wake-up of its own, and the connection is polled with the task's waker only when the
    /// response is not there yet: hyper registers the waker of the poll that reads the
    /// response in the body's channel too, and taking the body's data would then wake the
    /// running task, one more poll of it per request. Whoever reads the body polls the
    /// connection with its own waker whenever the body has nothing to give.
    #[project = SendingProjection]
    pub(crate) enum Sending<F> {
        /// On sluice's own client: the head is written, the response head awaited.
        Own {
            conn: Option<Http1Connection>,
            head_request: bool,
        },
        /// On hyper's client (boxed, as the request in `Unsent`: both are rare, and this
        /// future is part of every request's).
        Hyper {
            conn: Option<Http1Connection>,
            response: Pin<Box<F>>,
        },
        /// Not sent: the connection had closed.
        Unsent {
            conn: Option<Http1Connection>,
            req: Option<Box<Request<RequestBody>>>,
        },
    }
}

impl<F> Future for Sending<F>
where
    F: Future<Output = HyperAnswer>,
{
    type Output = (Http1Connection, Answer);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        const DONE: &str = "Sending polled after it completed";
        match self.project() {
            SendingProjection::Own { conn, head_request } => {
                let connection = conn.as_mut().expect(DONE);
                let Transport::Own(codec) = &mut connection.transport else {
                    let closed = ProxyError::Reset(Box::new(h1::Error::Incomplete));
                    return Poll::Ready((conn.take().expect(DONE), Answer::Failed(closed)));
                };
                let answer = match std::task::ready!(codec.poll_response(cx, *head_request)) {
                    Ok(head) => Answer::Response(
                        head.response
                            .map(|()| UpstreamBody::Own(BodyDecoder::new(head.framing))),
                    ),
                    Err(e) => Answer::Failed(ProxyError::Reset(Box::new(e))),
                };
                Poll::Ready((conn.take().expect(DONE), answer))
            }
            SendingProjection::Hyper { conn, response } => {
                let connection = conn.as_mut().expect(DONE);
                let mut noop = Context::from_waker(Waker::noop());
                connection.poll_drive(&mut noop);
                let mut answer = response.as_mut().poll(&mut noop);
                if answer.is_pending() {
                    connection.poll_drive(cx);
                    answer = response.as_mut().poll(&mut noop);
                }
                let answer = match std::task::ready!(answer) {
                    Ok(response) => Answer::Response(response.map(UpstreamBody::Hyper)),
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => Answer::Unsent(unsent),
                        None => Answer::Failed(classify(e.into_error())),
                    },
                };
                Poll::Ready((conn.take().expect(DONE), answer))
            }
            SendingProjection::Unsent { conn, req } => Poll::Ready((
                conn.take().expect(DONE),
                Answer::Unsent(*req.take().expect(DONE)),
            )),
        }
    }
}

/// hyper's connection state machine (with upgrades), boxed once per connection: its type
/// cannot be named.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// Who speaks HTTP/1.1 on the connection.
enum Transport {
    /// sluice's own client (boxed: the stream and buffers stay put while the connection
    /// moves between the pool and requests).
    Own(Box<Codec>),
    /// hyper's client, once a request needed it (it keeps the connection from then on).
    Hyper {
        sender: http1::SendRequest<RequestBody>,
        /// `None` once the connection has ended (closed, failed, or handed over to an
        /// upgrade).
        driver: Option<Driver>,
    },
    /// Ended.
    Closed,
}

/// One HTTP/1.1 connection to an endpoint. Whoever holds it polls it: the request waiting for
/// its response head, then the response body as it streams, the pool's checks while it is
/// idle, a tunnel until its upgrade completes. Holds its slot of the upstream's
/// `max_connections` until dropped; dropping it closes the connection.
pub(crate) struct Http1Connection {
    transport: Transport,
    endpoint: Arc<str>,
    _slot: ConnectionSlot,
}

impl fmt::Debug for Http1Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = match &self.transport {
            Transport::Own(_) => "own",
            Transport::Hyper {
                driver: Some(_), ..
            } => "hyper",
            Transport::Hyper { driver: None, .. } | Transport::Closed => "closed",
        };
        f.debug_struct("Http1Connection")
            .field("endpoint", &self.endpoint)
            .field("client", &client)
            .finish()
    }
}

impl Http1Connection {
    /// A new connection, spoken to by sluice's own client until a request needs hyper's.
    pub(super) fn new(stream: Stream, slot: ConnectionSlot, endpoint: Arc<str>) -> Self {
        Self {
            transport: Transport::Own(Box::new(Codec::new(stream))),
            endpoint,
            _slot: slot,
        }
    }

    /// Whether sluice's own client speaks on the connection (hyper's has not taken it over).
    pub(super) fn is_own(&self) -> bool {
        matches!(self.transport, Transport::Own(_))
    }

    /// Hands the connection to hyper's client. An HTTP/1.1 handshake does no I/O, so it is
    /// complete at its first poll.
    pub(super) fn switch_to_hyper(&mut self) {
        let Transport::Own(codec) = std::mem::replace(&mut self.transport, Transport::Closed)
        else {
            return;
        };
        let Some(stream) = codec.into_io() else {
            return;
        };
        let handshake = pin!(http1::Builder::new().handshake(TokioIo::new(stream)));
        if let Poll::Ready(Ok((sender, connection))) =
            handshake.poll(&mut Context::from_waker(Waker::noop()))
        {
            self.transport = Transport::Hyper {
                sender,
                driver: Some(Box::pin(connection.with_upgrades())),
            };
        }
    }

    /// Moves hyper's connection on (reads, writes, a request body still uploading) with
    /// `cx`'s waker. Returns whether it is still open.
    pub(crate) fn poll_drive(&mut self, cx: &mut Context<'_>) -> bool {
        let driver = match &mut self.transport {
            Transport::Own(codec) => return codec.is_reusable(),
            Transport::Hyper {
                driver: Some(driver),
                ..
            } => driver,
            Transport::Hyper { driver: None, .. } | Transport::Closed => return false,
        };
        match driver.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    debug!(endpoint = %self.endpoint, error = %e, "upstream connection ended with an error");
                }
                if let Transport::Hyper { driver, .. } = &mut self.transport {
                    *driver = None;
                }
                false
            }
        }
    }

    /// The next frame of a body sluice's own client decodes from this connection.
    pub(crate) fn poll_own_body(
        &mut self,
        decoder: &mut BodyDecoder,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h1::Error>>> {
        match &mut self.transport {
            Transport::Own(codec) => codec.poll_body(decoder, cx),
            _ => Poll::Ready(Some(Err(h1::Error::Incomplete))),
        }
    }

    /// Whether the last exchange left the connection fit for another (sluice's own client
    /// knows at once; hyper's is asked when the connection is taken again).
    pub(super) fn can_pool(&self) -> bool {
        match &self.transport {
            Transport::Own(codec) => codec.is_reusable(),
            Transport::Hyper { .. } => true,
            Transport::Closed => false,
        }
    }

    /// Whether an idle connection can take a request now: open, and ready for the next
    /// request.
    ///
    /// sluice's own client checks the socket when it sends (see [`Http1Connection::send`]).
    /// hyper usually asked for the next request when the last response ended, and the
    /// connection is not polled here: a close by the server while it was idle is noticed by
    /// the first poll of [`Sending`], which reads before it writes and gives the request back
    /// unsent (sent again on another connection). Otherwise it is polled once, with a no-op
    /// waker (a real one would be woken by the request about to be queued, an extra poll of
    /// the whole task), which lets hyper finish the previous exchange.
    pub(super) fn is_reusable(&mut self) -> bool {
        match &mut self.transport {
            Transport::Own(codec) => codec.is_reusable(),
            Transport::Hyper {
                sender,
                driver: Some(_),
            } if sender.is_ready() => true,
            Transport::Hyper { .. } => {
                self.is_open()
                    && matches!(&self.transport, Transport::Hyper { sender, .. } if sender.is_ready())
            }
            Transport::Closed => false,
        }
    }

    /// Whether the connection is still open, polling it with a no-op waker (for checks made
    /// outside the task that will drive it).
    pub(super) fn is_open(&mut self) -> bool {
        match &mut self.transport {
            Transport::Own(codec) => codec.is_idle_open(),
            _ => self.poll_drive(&mut Context::from_waker(Waker::noop())),
        }
    }

    /// Sends `req`; the future drives the connection until the response head arrives and gives
    /// the connection back with the answer. The request comes back unsent when the connection
    /// had closed.
    ///
    /// A request without a body goes out on sluice's own client: an idle connection is checked
    /// first (a close by the server while it was idle gives the request back unsent), then the
    /// head is written at once, so the future holds only the connection. Any other request
    /// hands the connection to hyper's client, which queues it at once. `own`: what
    /// [`h1::can_send`] says of `req` (the caller has asked it already, to choose the
    /// connection).
    pub(super) fn send(
        mut self,
        req: Request<RequestBody>,
        own: bool,
    ) -> Sending<impl Future<Output = HyperAnswer>> {
        if let Transport::Own(codec) = &mut self.transport {
            if own {
                if codec.is_idle_open() && codec.start(&req).is_ok() {
                    return Sending::Own {
                        conn: Some(self),
                        head_request: req.method() == Method::HEAD,
                    };
                }
                return Sending::Unsent {
                    conn: Some(self),
                    req: Some(Box::new(req)),
                };
            }
            self.switch_to_hyper();
        }
        match &mut self.transport {
            Transport::Hyper { sender, .. } => {
                let response = Box::pin(sender.try_send_request(req));
                Sending::Hyper {
                    conn: Some(self),
                    response,
                }
            }
            _ => Sending::Unsent {
                conn: Some(self),
                req: Some(Box::new(req)),
            },
        }
    }

    /// Drives the connection while `future` runs, until `future` completes (e.g. a tunnel's
    /// `OnUpgrade`, which hyper's connection fulfils once the upgrade is complete).
    pub(crate) async fn drive_until<F: Future>(&mut self, future: F) -> F::Output {
        let mut future = pin!(future);
        poll_fn(|cx| {
            self.poll_drive(cx);
            future.as_mut().poll(cx)
        })
        .await
    }

    /// Lets hyper's connection finish the exchange in progress (a request body still
    /// uploading) in a task of its own, then close: nothing else will be sent on it.
    pub(super) fn finish_in_background(self) {
        let Self {
            transport,
            endpoint,
            _slot: slot,
        } = self;
        let Transport::Hyper {
            sender,
            driver: Some(driver),
        } = transport
        else {
            return;
        };
        // Without a sender, hyper closes the connection once the exchange is over.
        drop(sender);
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                debug!(endpoint = %endpoint, error = %e, "upstream connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// Maps a hyper client error to the proxy's view of it: the client's body, a request hyper
/// refused to send, or the upstream.
pub(super) fn classify(error: hyper::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(body) = e.downcast_ref::<ClientBodyError>() {
            return match body {
                ClientBodyError::Timeout(_) => ProxyError::RequestBodyTimeout,
                ClientBodyError::Malformed(_) => ProxyError::BadRequestBody,
            };
        }
        source = e.source();
    }
    if error.is_user() {
        // Not the upstream's fault: something in the request hyper will not send.
        return ProxyError::Unsendable(error);
    }
    ProxyError::Reset(Box::new(error))
}
