//! sluice's own HTTP/1.1 client for the usual exchange, a request without a body: its head
//! written with one `send`, the response head parsed with httparse (hyper's parser) and the
//! body decoded straight from the connection's read buffer, all in the request's task. hyper's
//! client sends every other request ([`can_send`]) on the same kind of connection, so the
//! rules here are hyper's client rules.

mod decode;
mod error;
mod head;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::header::{TRANSFER_ENCODING, UPGRADE};
use http::{Method, Request, Version};
use http_body::{Body, Frame};
use tokio::io::AsyncWrite;

pub use decode::{BodyDecoder, Decoded, Framing};
pub use error::{Error, MAX_HEADERS, MAX_HEAD_BYTES};
pub use head::{encode_request, parse_response, ResponseHead};

use crate::io::Stream;

/// Whether sluice's own client can send `req`: no body, no upgrade offer, no
/// `Transfer-Encoding`, an origin-form target, not HTTP/1.0 (whose keep-alive rules hyper
/// handles). Everything else goes through hyper's client.
pub fn can_send<B: Body>(req: &Request<B>) -> bool {
    req.body().is_end_stream()
        && req.version() != Version::HTTP_10
        && req.method() != Method::CONNECT
        && req.uri().scheme().is_none()
        && req.uri().authority().is_none()
        && !req.headers().contains_key(UPGRADE)
        && !req.headers().contains_key(TRANSFER_ENCODING)
}

/// The first read of a response, and the smallest; reads grow while they fill the buffer.
const READ_MIN: usize = 8 * 1024;

/// The largest read of a response body.
const READ_MAX: usize = 256 * 1024;

/// A write buffer larger than this is given back when the connection goes idle.
const IDLE_BUFFER_MAX: usize = 16 * 1024;

/// One upstream HTTP/1.1 connection spoken to by sluice's own client.
#[derive(Debug)]
pub struct Codec {
    io: Stream,
    read: BytesMut,
    /// The size of the next read (see [`READ_MIN`]).
    read_size: usize,
    /// Reads grew past [`READ_MIN`] since the buffers were last trimmed.
    read_grew: bool,
    write: Vec<u8>,
    written: usize,
    flushed: bool,
    /// The upstream closed its side.
    closed: bool,
    /// The last response lets the connection carry another request.
    keep_alive: bool,
}

impl Codec {
    /// A fresh connection.
    pub fn new(io: Stream) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            read_size: READ_MIN,
            read_grew: false,
            write: Vec::new(),
            written: 0,
            flushed: true,
            closed: false,
            keep_alive: true,
        }
    }

    /// Whether the connection may carry another request (the last exchange allowed it and
    /// ended cleanly). Nothing is read here; see [`Codec::is_idle_open`].
    pub fn is_reusable(&self) -> bool {
        self.keep_alive && !self.closed && self.read.is_empty() && self.flushed
    }

    /// The stream, for hyper's client to take over, when nothing is buffered either way.
    pub fn into_io(self) -> Option<Stream> {
        self.is_reusable().then_some(self.io)
    }

    /// Whether an idle connection is still open and silent: reads with a no-op waker (without
    /// a system call when the last read drained the socket). A close, an error or unexpected
    /// bytes end it.
    pub fn is_idle_open(&mut self) -> bool {
        if !self.is_reusable() {
            return false;
        }
        match self.poll_fill(&mut Context::from_waker(Waker::noop())) {
            Poll::Pending => true,
            Poll::Ready(Ok(0) | Err(_)) => {
                self.closed = true;
                false
            }
            Poll::Ready(Ok(_)) => {
                self.keep_alive = false;
                false
            }
        }
    }

    /// Queues `req`'s head and writes what the socket takes now. An error means nothing was
    /// sent (the connection is unusable; the request can go elsewhere).
    pub fn start<B>(&mut self, req: &Request<B>) -> io::Result<()> {
        self.write.clear();
        self.written = 0;
        self.flushed = false;
        encode_request(req, &mut self.write);
        match self.poll_flush(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Err(e)) if self.written == 0 => {
                self.keep_alive = false;
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Writes the request head and reads until the response head is complete. Reading starts
    /// while the head is still being written, as hyper's client does: a server may answer (431,
    /// 400) and close without reading the rest, and that answer is relayed rather than the
    /// failed write (the connection is then not reused).
    pub fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
    ) -> Poll<Result<ResponseHead, Error>> {
        let mut write_error = None;
        if !self.flushed {
            if let Poll::Ready(Err(e)) = self.poll_flush(cx) {
                self.keep_alive = false;
                write_error = Some(e);
            }
        }
        loop {
            if !self.read.is_empty() {
                let parsed = parse_response(&mut self.read, head_request).inspect_err(|_| {
                    self.keep_alive = false;
                })?;
                if let Some(mut head) = parsed {
                    self.keep_alive &= head.keep_alive && self.flushed;
                    if let Some(reason) = head.reason.take() {
                        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
                            head.response.extensions_mut().insert(reason);
                        }
                    }
                    if matches!(head.framing, Framing::Empty | Framing::Length(0)) {
                        self.trim();
                    }
                    return Poll::Ready(Ok(head));
                }
            }
            if self.closed {
                return Poll::Ready(Err(write_error.map_or(Error::Incomplete, Error::Io)));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => self.closed = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => {
                    return match write_error {
                        Some(e) => Poll::Ready(Err(Error::Io(e))),
                        None => Poll::Pending,
                    }
                }
            }
        }
    }

    /// The next frame of the response body `decoder` decodes.
    pub fn poll_body(
        &mut self,
        decoder: &mut BodyDecoder,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            let decoded = decoder.decode(&mut self.read, self.closed);
            if decoder.is_end() {
                self.body_ended();
            }
            match decoded {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::Trailers(trailers)) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => match ready!(self.poll_fill(cx)) {
                    Ok(0) => self.closed = true,
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Some(Err(Error::Io(e)))),
                },
                Err(e) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    /// The body has been decoded to its end: bytes after it mean the upstream's framing is off
    /// (the connection is not reused).
    fn body_ended(&mut self) {
        if !self.read.is_empty() {
            self.keep_alive = false;
        }
        self.trim();
    }

    /// Gives back the buffers of an exchange that needed large ones, before the connection
    /// goes idle: a read buffer whose reads grew past [`READ_MIN`] (its allocation may be up to
    /// [`READ_MAX`]), a write buffer that held a head over [`IDLE_BUFFER_MAX`].
    fn trim(&mut self) {
        if self.read_grew && self.read.is_empty() {
            self.read = BytesMut::new();
            self.read_size = READ_MIN;
            self.read_grew = false;
        }
        if self.write.capacity() > IDLE_BUFFER_MAX && self.flushed {
            self.write = Vec::new();
            self.written = 0;
        }
    }

    /// Writes the queued head, then flushes (TLS).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.write.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.flushed = true;
        Poll::Ready(Ok(()))
    }

    /// Reads what the socket has into the read buffer; `0` at the end of the stream. A read
    /// that fills the room it was given makes the next one larger, a small one smaller.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read.reserve(self.read_size);
        let room = self.read.capacity() - self.read.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read
        ))?;
        if n >= room {
            self.read_size = (self.read_size * 2).min(READ_MAX);
            self.read_grew = true;
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(READ_MIN);
        }
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests;
