//! Message heads of sluice's own HTTP/1.1 client: the request head written upstream, and the
//! response head parsed back with httparse (hyper's parser), with the response's framing and
//! whether the connection can carry another request. The rules are hyper's client rules.
//! Pure (no I/O, no hyper), so the fuzz target compiles it on its own.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};

use super::decode::Framing;
use super::{Error, MAX_HEADERS, MAX_HEAD_BYTES};

/// Appends `req`'s head to `dst`, as hyper writes it: the request line as HTTP/1.1, then each
/// field as `name: value`, in the map's order.
pub fn encode_request<B>(req: &Request<B>, dst: &mut Vec<u8>) {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let headers = req.headers();
    dst.reserve(req.method().as_str().len() + target.len() + 13 + headers.len() * 32);
    dst.extend_from_slice(req.method().as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and fields (the body is framed by `framing`), but for a bare
    /// `Connection: keep-alive` line, which the proxy's hop-by-hop rules would remove anyway.
    pub response: Response<()>,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection can carry the next request once this response has ended.
    pub keep_alive: bool,
    /// The reason phrase, when it is not the status code's usual one (hyper's server
    /// writes it back as it came, from the `ReasonPhrase` extension).
    pub reason: Option<Bytes>,
}

/// Takes the response head from the front of `buf` once it is complete, skipping interim
/// (1xx other than 101) responses; `None` while more bytes are needed. `head_request`: the
/// request was `HEAD` (so the response has no body whatever it says).
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, Error> {
    loop {
        // Where each field's name and value are in the head: the parser borrows the buffer,
        // and the values become slices of it once it is split off.
        let mut spans = [[0u32; 4]; MAX_HEADERS];
        let (len, code, http11, reason, count) = {
            let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let config = httparse::ParserConfig::default();
            let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut fields)
            {
                Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
                    return Err(Error::HeadTooLarge)
                }
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                    return Err(Error::HeadTooLarge)
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(Error::Head(e)),
            };
            let start = buf.as_ptr() as usize;
            let offset = |s: &[u8]| (s.as_ptr() as usize - start) as u32;
            for (span, field) in spans.iter_mut().zip(parsed.headers.iter()) {
                *span = [
                    offset(field.name.as_bytes()),
                    field.name.len() as u32,
                    offset(field.value),
                    field.value.len() as u32,
                ];
            }
            let code = parsed.code.unwrap_or_default();
            let reason = parsed.reason.unwrap_or_default();
            let canonical = StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason());
            let reason =
                (canonical != Some(reason)).then(|| Bytes::copy_from_slice(reason.as_bytes()));
            (
                len,
                code,
                parsed.version == Some(1),
                reason,
                parsed.headers.len(),
            )
        };
        let status = StatusCode::from_u16(code).map_err(|_| Error::Status(code))?;
        let head = buf.split_to(len).freeze();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = if http11 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let headers = response.headers_mut();
        headers.reserve(count);
        let mut keep_alive = http11;
        for &[name_at, name_len, value_at, value_len] in &spans[..count] {
            let (name_at, value_at) = (name_at as usize, value_at as usize);
            let name = HeaderName::from_bytes(&head[name_at..name_at + name_len as usize])
                .map_err(|_| Error::Header("invalid field name"))?;
            let value =
                HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len as usize))
                    .map_err(|_| Error::Header("invalid field value"))?;
            if name == CONNECTION {
                if has_token(&value, "close") {
                    keep_alive = false;
                }
                // nginx answers every request with `Connection: keep-alive`. It names only
                // this hop's option, and the proxy removes it before the client sees the
                // response (with any header a `Connection` line names): not storing it saves
                // an insertion and a removal on every response.
                if value.as_bytes().eq_ignore_ascii_case(b"keep-alive") {
                    continue;
                }
            }
            headers.append(name, value);
        }
        let framing = framing(status, http11, head_request, response.headers())?;
        let keep_alive = keep_alive
            && framing != Framing::UntilClose
            && status != StatusCode::SWITCHING_PROTOCOLS;
        return Ok(Some(ResponseHead {
            response,
            framing,
            keep_alive,
            reason,
        }));
    }
}

/// The response body's framing (RFC 9112 §6.3), as hyper decides it.
fn framing(
    status: StatusCode,
    http11: bool,
    head_request: bool,
    headers: &HeaderMap,
) -> Result<Framing, Error> {
    if matches!(status.as_u16(), 101 | 204 | 304) || head_request {
        return Ok(Framing::Empty);
    }
    if let Some(last) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        if !http11 {
            return Err(Error::Header("transfer-encoding in an HTTP/1.0 response"));
        }
        // A value that is not visible ASCII names no coding hyper knows: read until the close.
        let chunked = last
            .to_str()
            .ok()
            .and_then(|line| line.rsplit(',').next())
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = digits(part.trim_ascii()).ok_or(Error::Header("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Header("differing content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// A decimal number of at least one digit that fits in a `u64` (below hyper's sentinels).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (n < u64::MAX - 1).then_some(n)
}

/// Whether a comma-separated field value lists `token` (case-insensitive; a value that is not
/// visible ASCII lists none, as hyper reads it).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|line| {
        line.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}
