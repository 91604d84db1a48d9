//! The body of an upstream's response as the exchange hands it over: hyper's, or one that
//! sluice's own HTTP/1.1 client decodes from the connection the lease holds.

use http_body::SizeHint;
use hyper::body::Incoming;

use super::h1::BodyDecoder;

/// An upstream response's body.
#[derive(Debug)]
pub enum UpstreamBody {
    /// Read by hyper's client (HTTP/2, and the HTTP/1.1 requests hyper sent).
    Hyper(Incoming),
    /// Decoded by sluice's own HTTP/1.1 client: its frames come from the lease
    /// ([`super::Lease::poll_own_body`]).
    Own(BodyDecoder),
}

impl UpstreamBody {
    /// Whether the body has no more frames.
    #[inline]
    pub fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(body) => http_body::Body::is_end_stream(body),
            Self::Own(decoder) => decoder.is_end(),
        }
    }

    /// What is known of the body's length.
    #[inline]
    pub fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(body) => http_body::Body::size_hint(body),
            Self::Own(decoder) => decoder
                .remaining()
                .map_or_else(SizeHint::default, SizeHint::with_exact),
        }
    }
}
