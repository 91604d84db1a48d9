//! A response body's framing, decoded from the bytes read so far: a length, `chunked`
//! (RFC 9112 §7.1, trailers included) or until the connection closes. Pure (no I/O), so the
//! same bytes decode the same way however the reads split them.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{Error, MAX_HEADERS};

/// Bytes of chunk extensions accepted per body (they are skipped), as hyper.
const EXTENSIONS_LIMIT: u64 = 16 * 1024;

/// Bytes of trailer fields accepted, as hyper.
const TRAILERS_LIMIT: usize = 16 * 1024;

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (a `HEAD` request, 1xx, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// What [`BodyDecoder::decode`] found in the buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Body data.
    Data(Bytes),
    /// The trailer fields of a chunked body (its last frame).
    Trailers(HeaderMap),
    /// The body needs more bytes than the buffer holds.
    NeedMore,
    /// The body has ended.
    End,
}

/// The state of one response body's decoding.
#[derive(Debug)]
pub struct BodyDecoder {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    /// Trailers decoded, not yet handed out (boxed: rare, and the decoder moves with every
    /// response).
    Trailers(Box<HeaderMap>),
    Done,
}

#[derive(Debug)]
struct Chunked {
    state: State,
    /// The size of the chunk being read, then what is left of it.
    size: u64,
    extensions: u64,
    trailers: Option<BytesMut>,
    trailer_lines: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The first hex digit of a chunk size.
    Start,
    /// More hex digits.
    Size,
    /// Whitespace after the size.
    SizeLws,
    /// A chunk extension, skipped up to its CR.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    /// Chunk data.
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: CR (the end) or the first byte of a trailer line.
    EndCr,
    /// Within a trailer line.
    Trailer,
    TrailerLf,
    /// The final LF.
    EndLf,
    /// Past the final LF.
    End,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let kind = match framing {
            Framing::Empty | Framing::Length(0) => Kind::Done,
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked(Chunked {
                state: State::Start,
                size: 0,
                extensions: 0,
                trailers: None,
                trailer_lines: 0,
            }),
            Framing::UntilClose => Kind::UntilClose,
        };
        Self { kind }
    }

    /// Whether the whole body has been handed out.
    #[inline]
    pub fn is_end(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// The body bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length(n) => Some(n),
            Kind::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body from the front of `buf`. `closed`: the connection has
    /// ended, no byte will follow what `buf` holds. The framing bytes before and after a chunk's
    /// data are consumed eagerly, so the end of a body is noticed with its last data.
    pub fn decode(&mut self, buf: &mut BytesMut, closed: bool) -> Result<Decoded, Error> {
        let chunked = match &mut self.kind {
            Kind::Done => return Ok(Decoded::End),
            Kind::Trailers(trailers) => {
                let trailers = std::mem::take(&mut **trailers);
                self.kind = Kind::Done;
                return Ok(Decoded::Trailers(trailers));
            }
            Kind::Length(left) => {
                if buf.is_empty() {
                    return if closed {
                        Err(Error::Incomplete)
                    } else {
                        Ok(Decoded::NeedMore)
                    };
                }
                let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                *left -= take as u64;
                if *left == 0 {
                    self.kind = Kind::Done;
                }
                return Ok(Decoded::Data(buf.split_to(take).freeze()));
            }
            Kind::UntilClose => {
                if !buf.is_empty() {
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                if closed {
                    self.kind = Kind::Done;
                    return Ok(Decoded::End);
                }
                return Ok(Decoded::NeedMore);
            }
            Kind::Chunked(chunked) => chunked,
        };
        chunked.advance(buf)?;
        if let Some(data) = chunked.data(buf) {
            // The CRLF after the data, and the next size line or the end, if there already. A
            // framing error there is left for the next call (it stops at the same byte), so the
            // data before it is handed out however the reads split the bytes.
            if chunked.advance(buf).is_ok()
                && chunked.state == State::End
                && chunked.trailers.is_none()
            {
                self.kind = Kind::Done;
            }
            return Ok(Decoded::Data(data));
        }
        if chunked.state == State::End {
            self.end_chunked()?;
            return self.decode(buf, closed);
        }
        if closed {
            return Err(Error::Incomplete);
        }
        Ok(Decoded::NeedMore)
    }

    /// A chunked body past its last CRLF: its trailers to hand out, or done.
    fn end_chunked(&mut self) -> Result<(), Error> {
        if let Kind::Chunked(chunked) = &mut self.kind {
            if chunked.state == State::End {
                self.kind = match chunked.trailers.take() {
                    Some(lines) => {
                        Kind::Trailers(Box::new(parse_trailers(&lines, chunked.trailer_lines)?))
                    }
                    None => Kind::Done,
                };
            }
        }
        Ok(())
    }
}

impl Chunked {
    /// The data of the current chunk that `buf` holds.
    fn data(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        if self.state != State::Data || self.size == 0 || buf.is_empty() {
            return None;
        }
        let take = usize::try_from(self.size).map_or(buf.len(), |s| s.min(buf.len()));
        self.size -= take as u64;
        if self.size == 0 {
            self.state = State::DataCr;
        }
        Some(buf.split_to(take).freeze())
    }

    /// Consumes framing bytes from the front of `buf` until chunk data, the end of the body or
    /// the end of `buf`.
    /// An error leaves the byte that caused it at the front of `buf`.
    fn advance(&mut self, buf: &mut BytesMut) -> Result<(), Error> {
        let mut used = 0;
        let mut result = Ok(());
        while used < buf.len() && !matches!(self.state, State::Data | State::End) {
            match self.step(buf[used]) {
                Ok(state) => {
                    self.state = state;
                    used += 1;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let _ = buf.split_to(used);
        result
    }

    fn step(&mut self, byte: u8) -> Result<State, Error> {
        use State::*;
        Ok(match (self.state, byte) {
            (Start | Size, b) if b.is_ascii_hexdigit() => {
                let digit = u64::from(match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => b - b'A' + 10,
                });
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(Error::Chunked("chunk size overflows"))?;
                Size
            }
            (Start, _) => return Err(Error::Chunked("chunk size line without a size")),
            (Size | SizeLws, b'\t' | b' ') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws, b'\r') => SizeLf,
            (Size | SizeLws, _) => return Err(Error::Chunked("invalid chunk size")),
            (Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return Err(Error::Chunked("chunk extension contains LF")),
            (Extension, _) => {
                self.extensions += 1;
                if self.extensions >= EXTENSIONS_LIMIT {
                    return Err(Error::Chunked("chunk extensions over 16 KiB"));
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Data,
            (SizeLf, _) => return Err(Error::Chunked("chunk size line not ended by CRLF")),
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(Error::Chunked("chunk data not followed by CRLF")),
            (DataLf, b'\n') => {
                self.size = 0;
                Start
            }
            (DataLf, _) => return Err(Error::Chunked("chunk data not followed by CRLF")),
            (EndCr, b'\r') => {
                self.push_trailer(byte)?;
                EndLf
            }
            (EndCr, _) => {
                self.trailers
                    .get_or_insert_with(|| BytesMut::with_capacity(64));
                self.push_trailer(byte)?;
                Trailer
            }
            (Trailer, b'\r') => {
                self.push_trailer(byte)?;
                TrailerLf
            }
            (Trailer, _) => {
                self.push_trailer(byte)?;
                Trailer
            }
            (TrailerLf, b'\n') => {
                if self.trailer_lines >= MAX_HEADERS {
                    return Err(Error::Chunked("more than 100 trailer fields"));
                }
                self.trailer_lines += 1;
                self.push_trailer(byte)?;
                EndCr
            }
            (TrailerLf, _) => return Err(Error::Chunked("trailer line not ended by CRLF")),
            (EndLf, b'\n') => {
                self.push_trailer(byte)?;
                End
            }
            (EndLf, _) => return Err(Error::Chunked("chunked body not ended by CRLF")),
            (Data, _) => Data,
            (End, _) => End,
        })
    }

    fn push_trailer(&mut self, byte: u8) -> Result<(), Error> {
        if let Some(trailers) = &mut self.trailers {
            trailers.extend_from_slice(&[byte]);
            if trailers.len() >= TRAILERS_LIMIT {
                return Err(Error::Chunked("trailers over 16 KiB"));
            }
        }
        Ok(())
    }
}

/// The trailer fields of a chunked body: `count` lines, each ended by CRLF, then an empty
/// line. No more fields than CRLF-ended lines are accepted (httparse also ends a field at a
/// bare LF, which would smuggle two fields into one counted line), as hyper.
fn parse_trailers(lines: &[u8], count: usize) -> Result<HeaderMap, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let fields = &mut fields[..count.min(MAX_HEADERS)];
    let fields = match httparse::parse_headers(lines, fields) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        Ok(httparse::Status::Partial) => return Err(Error::Chunked("incomplete trailers")),
        Err(_) => return Err(Error::Chunked("invalid trailer field")),
    };
    let mut trailers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Error::Chunked("invalid trailer name"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| Error::Chunked("invalid trailer value"))?;
        trailers.append(name, value);
    }
    Ok(trailers)
}

#[cfg(test)]
mod tests;
