use bytes::BytesMut;
use http::{Method, Request, StatusCode, Version};

use super::*;

fn parse(input: &[u8], head_request: bool) -> Result<Option<ResponseHead>, Error> {
    let mut buf = BytesMut::from(input);
    parse_response(&mut buf, head_request)
}

fn framing_of(input: &str) -> Result<(Framing, bool), Error> {
    let head = parse(input.as_bytes(), false)?.expect("complete head");
    Ok((head.framing, head.keep_alive))
}

#[test]
fn the_request_head_is_written_as_hyper_writes_it() {
    let req = Request::get("/a/b?c=d")
        .header("host", "example.com")
        .header("x-forwarded-for", "10.0.0.1")
        .header("accept", "text/plain")
        .header("accept", "text/html")
        .body(())
        .expect("ok");
    let mut out = Vec::new();
    encode_request(&req, &mut out);
    assert_eq!(
        String::from_utf8(out).expect("ok"),
        "GET /a/b?c=d HTTP/1.1\r\nhost: example.com\r\nx-forwarded-for: 10.0.0.1\r\n\
         accept: text/plain\r\naccept: text/html\r\n\r\n"
    );
}

#[test]
fn only_plain_bodyless_requests_are_sent_by_the_own_client() {
    let empty = || http_body_util::Empty::<bytes::Bytes>::new();
    assert!(can_send(&Request::get("/").body(empty()).expect("ok")));
    assert!(can_send(
        &Request::delete("/x")
            .version(Version::HTTP_2)
            .body(empty())
            .expect("ok")
    ));
    let refused = [
        Request::post("/")
            .body(http_body_util::Either::Right(http_body_util::Full::new(
                bytes::Bytes::from("x"),
            )))
            .expect("ok"),
        Request::get("/")
            .version(Version::HTTP_10)
            .body(http_body_util::Either::Left(empty()))
            .expect("ok"),
        Request::get("/")
            .header("upgrade", "websocket")
            .body(http_body_util::Either::Left(empty()))
            .expect("ok"),
        Request::get("/")
            .header("transfer-encoding", "chunked")
            .body(http_body_util::Either::Left(empty()))
            .expect("ok"),
        Request::get("http://example.com/")
            .body(http_body_util::Either::Left(empty()))
            .expect("ok"),
        Request::builder()
            .method(Method::CONNECT)
            .uri("example.com:443")
            .body(http_body_util::Either::Left(empty()))
            .expect("ok"),
    ];
    for req in &refused {
        assert!(!can_send(req), "{req:?}");
    }
}

#[test]
fn a_response_head_is_parsed_once_complete() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Multi: a\r\nx-multi: b\r\n\r\nhello";
    for end in 0..input.len() - 5 {
        assert!(parse(&input[..end], false).expect("ok").is_none(), "{end}");
    }
    let mut buf = BytesMut::from(&input[..]);
    let head = parse_response(&mut buf, false).expect("ok").expect("ok");
    assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
    assert_eq!(head.response.status(), StatusCode::OK);
    assert_eq!(head.response.version(), Version::HTTP_11);
    assert_eq!(head.response.headers()["content-length"], "5");
    let multi: Vec<_> = head.response.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!((head.framing, head.keep_alive), (Framing::Length(5), true));
    assert_eq!(head.reason, None);
}

#[test]
fn connection_keep_alive_is_not_kept_but_other_connection_lines_are() {
    let head = parse(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nConnection: Keep-Alive\r\n\r\n",
        false,
    )
    .expect("parsed")
    .expect("complete");
    assert!(head.keep_alive);
    assert!(!head.response.headers().contains_key("connection"));
    // A line naming anything else, or closing, stays for the proxy's hop-by-hop rules.
    for (line, keep_alive) in [
        ("connection: keep-alive, x-hop", true),
        ("connection: x-hop", true),
        ("connection: close", false),
    ] {
        let input = format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{line}\r\n\r\n");
        let head = parse(input.as_bytes(), false)
            .expect("parsed")
            .expect("complete");
        assert_eq!(head.keep_alive, keep_alive, "{line}");
        assert_eq!(
            head.response.headers()["connection"],
            line.trim_start_matches("connection: "),
            "{line}"
        );
    }
}

#[test]
fn a_non_canonical_reason_is_kept() {
    let head = parse(b"HTTP/1.1 200 Fine\r\ncontent-length: 0\r\n\r\n", false)
        .expect("ok")
        .expect("ok");
    assert_eq!(head.reason.as_deref(), Some(&b"Fine"[..]));
}

#[test]
fn interim_responses_are_skipped_but_101_is_not() {
    let head = parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        false,
    )
    .expect("ok")
    .expect("ok");
    assert_eq!(head.response.status(), StatusCode::NO_CONTENT);
    assert!(head.response.headers().get("link").is_none());
    assert_eq!(
        parse(b"HTTP/1.1 100 Continue\r\n\r\n", false)
            .expect("ok")
            .map(|h| h.framing),
        None
    );
    let (framing, keep_alive) =
        framing_of("HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n").expect("ok");
    assert_eq!((framing, keep_alive), (Framing::Empty, false));
}

#[test]
fn framing_follows_rfc_9112_as_hyper_does() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n",
            Framing::Length(7),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\ncontent-length: 7\r\n\r\n",
            Framing::Length(7),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            Framing::UntilClose,
            false,
        ),
        // The coding wins over the length (the proxy drops the length and does not reuse).
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
        (
            "HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
            Framing::Empty,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
            Framing::Empty,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive, close\r\n\r\n",
            Framing::Length(0),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n",
            Framing::Length(2),
            false,
        ),
    ];
    for (input, framing, keep_alive) in cases {
        assert_eq!(
            framing_of(input).expect("ok"),
            (framing, keep_alive),
            "{input}"
        );
    }
    let head = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", true)
        .expect("ok")
        .expect("ok");
    assert_eq!(
        (head.framing, head.keep_alive),
        (Framing::Empty, true),
        "HEAD"
    );
}

#[test]
fn responses_that_cannot_be_framed_are_refused() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "differing content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
            "differing content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "invalid content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            "invalid content-length",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "invalid content-length",
        ),
        (
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.0",
        ),
        (
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            "invalid response head",
        ),
        (
            "HTTP/1.1 200 OK\r\nfolded: a\r\n b\r\n\r\n",
            "invalid response head",
        ),
        ("HTTP/2 200 OK\r\n\r\n", "invalid response head"),
        ("HTTP/1.1 20 OK\r\n\r\n", "invalid response head"),
    ];
    for (input, expected) in cases {
        let err = parse(input.as_bytes(), false).expect_err("refused");
        assert!(err.to_string().contains(expected), "{input}: {err}");
    }
}

#[test]
fn heads_are_bounded() {
    let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        input.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\n");
    let err = parse(&input, false).expect_err("refused");
    assert!(err.to_string().contains("too many headers"), "{err}");

    let mut input = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    input.resize(MAX_HEAD_BYTES, b'a');
    assert!(matches!(parse(&input, false), Err(Error::HeadTooLarge)));
}

#[tokio::test]
async fn an_answer_before_the_request_is_written_is_relayed() {
    use std::future::poll_fn;
    use std::io::Write;

    // A server that answers at once and reads nothing, behind small socket buffers, so the
    // request head cannot be written whole.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    listener.set_recv_buffer_size(4096).expect("receive buffer");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    listener.bind(&any.into()).expect("bind");
    listener.listen(1).expect("listen");
    let addr = listener
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("an IP address");
    // Dropped once the client has its answer: the server keeps the connection open until then
    // (unread bytes at a close would reset it).
    let (answered, wait_for_answer) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        )
        .expect("answer");
        let _ = wait_for_answer.recv();
    });
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_send_buffer_size(4096).expect("send buffer");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("non-blocking");
    let tcp = tokio::net::TcpStream::from_std(socket.into()).expect("tokio stream");
    let mut codec = Codec::new(crate::io::Stream::Plain(tcp));
    let req = Request::get("/")
        .header("x-big", "a".repeat(4 << 20))
        .body(())
        .expect("request");
    codec.start(&req).expect("started");
    let head = poll_fn(|cx| codec.poll_response(cx, false))
        .await
        .expect("the answer, though the head is not written whole");
    assert_eq!(
        head.response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert!(!codec.is_reusable(), "the request was cut: never reused");
    drop(answered);
    server.join().expect("the server thread");
}

#[test]
fn values_that_are_not_text_name_no_coding_and_no_option() {
    // As hyper reads `Transfer-Encoding` and `Connection`: through `to_str`.
    let head = parse(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: x\x80, chunked\r\n\r\n",
        false,
    )
    .expect("parsed")
    .expect("complete");
    assert_eq!(
        (head.framing, head.keep_alive),
        (Framing::UntilClose, false)
    );
    let head = parse(
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: \x80, close\r\n\r\n",
        false,
    )
    .expect("parsed")
    .expect("complete");
    assert_eq!((head.framing, head.keep_alive), (Framing::Length(1), true));
}
