//! The byte streams the proxy speaks HTTP over: plain TCP or TLS, either side.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection to a client or an upstream.
#[derive(Debug)]
pub enum Stream {
    /// Cleartext TCP.
    Plain(TcpStream),
    /// TLS terminated by the proxy (client side).
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS originated by the proxy (upstream side).
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The ALPN protocol negotiated on a TLS stream, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Self::Plain(_) => None,
            Self::ServerTls(s) => s.get_ref().1.alpn_protocol(),
            Self::ClientTls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

/// Vectored writes of at most this many bytes in all go out as one buffer (see
/// [`poll_write_gathered`]).
const GATHER_LIMIT: usize = 4096;

/// Writes `bufs` to a TCP stream with one `send`: a single slice as it is, several small ones
/// copied into one buffer first.
///
/// hyper hands over an HTTP/1.1 message as its head and its body chunks, so an ordinary
/// answer becomes a `writev` of two slices (and a request without a body a `writev` of one).
/// For a few hundred bytes the kernel's `writev` path (importing the iovec array,
/// `vfs_writev`, the file-position lock) costs more than the copy: a plain `send` of one
/// buffer is what HAProxy and nginx do. Large writes keep `writev`, so bodies are not copied.
fn poll_write_gathered(
    stream: Pin<&mut TcpStream>,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    if let [one] = bufs {
        return stream.poll_write(cx, one);
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total > GATHER_LIMIT {
        return stream.poll_write_vectored(cx, bufs);
    }
    GATHERED.with(|gathered| {
        let mut gathered = gathered.borrow_mut();
        gathered.clear();
        for b in bufs {
            gathered.extend_from_slice(b);
        }
        stream.poll_write(cx, &gathered)
    })
}

thread_local! {
    /// The buffer small vectored writes are gathered in, one per worker thread (a stack
    /// array would be zeroed on every write).
    static GATHERED: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(GATHER_LIMIT));
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => poll_write_gathered(Pin::new(s), cx, bufs),
            Self::ServerTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Self::ClientTls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::ServerTls(s) => s.is_write_vectored(),
            Self::ClientTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Writes `parts` with vectored writes until all is sent, and returns what the peer read.
    async fn written(parts: &[Vec<u8>]) -> Vec<u8> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let client = TcpStream::connect(address).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let reader = tokio::spawn(async move {
            let mut read = Vec::new();
            server.read_to_end(&mut read).await.expect("read");
            read
        });
        let mut stream = Stream::Plain(client);
        let total: usize = parts.iter().map(Vec::len).sum();
        let mut sent = 0;
        while sent < total {
            // The slices of what is not sent yet.
            let mut skip = sent;
            let mut slices = Vec::new();
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices.push(IoSlice::new(&part[skip..]));
                skip = 0;
            }
            sent += stream.write_vectored(&slices).await.expect("write");
        }
        drop(stream);
        reader.await.expect("reader")
    }

    #[tokio::test]
    async fn vectored_writes_arrive_whole_and_in_order() {
        // Small (gathered into one send), one slice (sent as it is), and large (writev).
        for parts in [
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec(),
                b"hello".to_vec(),
            ],
            vec![b"GET / HTTP/1.1\r\nhost: a\r\n\r\n".to_vec()],
            vec![
                vec![b'a'; GATHER_LIMIT],
                vec![b'b'; 3 * GATHER_LIMIT],
                b"c".to_vec(),
            ],
            vec![Vec::new(), b"x".to_vec(), Vec::new()],
        ] {
            assert_eq!(written(&parts).await, parts.concat());
        }
    }
}
