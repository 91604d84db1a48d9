//! Raw wire tools for tests where the exact bytes matter: a scripted HTTP/1.1 upstream that
//! answers with fixed bytes, a one-shot raw client exchange, and a hand-rolled HTTP/2 frame
//! writer/reader (HPACK literals only) for sequences a well-behaved client never sends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that reads each request head and answers with fixed bytes, keeping the
/// connection open for the next request. Stops when dropped.
#[derive(Debug)]
pub struct RawUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    /// Answers every request (a head without body) with `response`.
    pub async fn spawn(response: &'static [u8]) -> Self {
        Self::spawn_with(response, usize::MAX).await
    }

    /// Answers `per_connection` requests on each connection, then closes it without warning
    /// (no `Connection: close`), as a server whose keep-alive timeout ran out does.
    pub async fn spawn_with(response: &'static [u8], per_connection: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw upstream");
        let addr = listener.local_addr().expect("raw upstream address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let (seen, accepted, ended) = (heads.clone(), connections.clone(), closed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (seen, ended) = (seen.clone(), ended.clone());
                tokio::spawn(async move {
                    let mut answered = 0;
                    while answered < per_connection {
                        let Some(head) = read_head(&mut tcp).await else {
                            break;
                        };
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(head);
                        if tcp.write_all(response).await.is_err() {
                            break;
                        }
                        answered += 1;
                    }
                    drop(tcp);
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            heads,
            connections,
            closed,
            task,
        }
    }

    /// `host:port`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The request heads received so far, lower-cased.
    pub fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// TCP connections it has closed so far (or the client closed).
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (up to the blank line), lower-cased; `None` at end of stream.
async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).to_lowercase())
}

/// Writes `request` on a fresh connection to `addr` and reads until the peer closes it (or
/// `wait` passes).
pub async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// HTTP/2 frame types used by the tests.
pub mod h2 {
    use super::*;

    /// The client connection preface.
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /// `DATA`.
    pub const DATA: u8 = 0x0;
    /// `HEADERS`.
    pub const HEADERS: u8 = 0x1;
    /// `RST_STREAM`.
    pub const RST_STREAM: u8 = 0x3;
    /// `SETTINGS`.
    pub const SETTINGS: u8 = 0x4;
    /// `GOAWAY`.
    pub const GOAWAY: u8 = 0x7;
    /// `CONTINUATION`.
    pub const CONTINUATION: u8 = 0x9;
    /// `END_STREAM` flag.
    pub const END_STREAM: u8 = 0x1;
    /// `END_HEADERS` flag.
    pub const END_HEADERS: u8 = 0x4;
    /// `ACK` flag of `SETTINGS`.
    pub const ACK: u8 = 0x1;
    /// `CANCEL` error code.
    pub const CANCEL: u32 = 0x8;
    /// `REFUSED_STREAM` error code.
    pub const REFUSED_STREAM: u32 = 0x7;

    /// One frame as read from the wire.
    #[derive(Debug, Clone)]
    pub struct Frame {
        /// Frame type.
        pub kind: u8,
        /// Flags.
        pub flags: u8,
        /// Stream id.
        pub stream: u32,
        /// Payload.
        pub payload: Vec<u8>,
    }

    impl Frame {
        /// The error code of a `RST_STREAM` or `GOAWAY`.
        pub fn error_code(&self) -> Option<u32> {
            let at = match self.kind {
                RST_STREAM => 0,
                GOAWAY => 4,
                _ => return None,
            };
            let bytes: [u8; 4] = self.payload.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_be_bytes(bytes))
        }
    }

    /// A frame's bytes.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("frame fits");
        let mut out = Vec::with_capacity(9 + payload.len());
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// An HPACK header block of literals without indexing (no Huffman): what any decoder takes.
    pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0x00);
            string(&mut out, name.as_bytes());
            string(&mut out, value.as_bytes());
        }
        out
    }

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        // 7-bit prefix integer, H = 0.
        let mut len = s.len();
        if len < 0x7f {
            out.push(len as u8);
        } else {
            out.push(0x7f);
            len -= 0x7f;
            while len >= 0x80 {
                out.push((len % 0x80) as u8 | 0x80);
                len /= 0x80;
            }
            out.push(len as u8);
        }
        out.extend_from_slice(s);
    }

    /// The request header block of `GET path` for `authority` (plus `extra` fields).
    pub fn get(authority: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
        ];
        fields.extend_from_slice(extra);
        block(&fields)
    }

    /// A raw HTTP/2 client connection.
    #[derive(Debug)]
    pub struct Conn {
        tcp: TcpStream,
        buf: Vec<u8>,
    }

    impl Conn {
        /// Connects, sends the preface and an empty `SETTINGS`, and acknowledges the server's.
        pub async fn open(addr: SocketAddr) -> std::io::Result<Self> {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let mut hello = PREFACE.to_vec();
            hello.extend(frame(SETTINGS, 0, 0, &[]));
            tcp.write_all(&hello).await?;
            let mut conn = Self {
                tcp,
                buf: Vec::new(),
            };
            loop {
                let f = conn.read().await?;
                if f.kind == SETTINGS && f.flags & ACK == 0 {
                    conn.send(&frame(SETTINGS, ACK, 0, &[])).await?;
                    return Ok(conn);
                }
            }
        }

        /// Writes raw bytes.
        pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.tcp.write_all(bytes).await
        }

        /// Reads the next frame.
        pub async fn read(&mut self) -> std::io::Result<Frame> {
            loop {
                if self.buf.len() >= 9 {
                    let len =
                        u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                    if self.buf.len() >= 9 + len {
                        let head: Vec<u8> = self.buf.drain(..9 + len).collect();
                        return Ok(Frame {
                            kind: head[3],
                            flags: head[4],
                            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                                & 0x7fff_ffff,
                            payload: head[9..].to_vec(),
                        });
                    }
                }
                let mut chunk = [0u8; 16384];
                let n = self.tcp.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        /// Reads frames (up to `wait`) until `want` holds for one; returns it.
        pub async fn read_until(
            &mut self,
            wait: Duration,
            want: impl Fn(&Frame) -> bool,
        ) -> Option<Frame> {
            tokio::time::timeout(wait, async {
                loop {
                    match self.read().await {
                        Ok(f) if want(&f) => return Some(f),
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten()
        }
    }
}
