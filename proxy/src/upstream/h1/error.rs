//! What can be wrong with an upstream's HTTP/1.1 response, and the limits that bound one
//! (hyper's).

use std::io;

/// The most header fields (and trailer fields) a response may have, as hyper.
pub const MAX_HEADERS: usize = 100;

/// The largest response head accepted, as hyper (its default read buffer limit).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// What went wrong with an upstream's response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The response head is not HTTP/1.x.
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    /// A status code outside 100-999.
    #[error("invalid response status {0}")]
    Status(u16),
    /// The head did not end within [`MAX_HEAD_BYTES`].
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// A field the response cannot be framed or forwarded with.
    #[error("invalid response: {0}")]
    Header(&'static str),
    /// Bad chunked framing.
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    /// The connection closed before the head or the body was complete.
    #[error("connection closed before the message completed")]
    Incomplete,
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}
