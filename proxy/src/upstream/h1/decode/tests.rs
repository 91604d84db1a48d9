use bytes::BytesMut;

use super::*;

/// Decodes `input` fed in pieces of `step` bytes (the connection closing after the last one),
/// and returns the data, the trailers, or the first error.
fn decode_in_steps(
    framing: Framing,
    input: &[u8],
    step: usize,
) -> Result<(Vec<u8>, Option<HeaderMap>, usize), Error> {
    let mut decoder = BodyDecoder::new(framing);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        let closed = fed == input.len();
        match decoder.decode(&mut buf, closed)? {
            Decoded::Data(bytes) => {
                assert!(!bytes.is_empty(), "no empty data frames");
                data.extend_from_slice(&bytes);
            }
            Decoded::Trailers(map) => {
                assert!(trailers.is_none(), "one trailers frame");
                trailers = Some(map);
            }
            Decoded::End => {
                assert!(decoder.is_end());
                return Ok((data, trailers, buf.len()));
            }
            Decoded::NeedMore => {
                assert!(!closed, "NeedMore after the close must be an error");
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

/// Every way of splitting `input` into reads gives the same outcome.
fn decode_all_ways(
    framing: Framing,
    input: &[u8],
) -> Result<(Vec<u8>, Option<HeaderMap>, usize), Error> {
    let whole = decode_in_steps(framing, input, input.len().max(1));
    for step in 1..input.len().max(1) {
        let split = decode_in_steps(framing, input, step);
        match (&whole, &split) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "step {step}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "step {step}"),
            _ => panic!("step {step}: {split:?} against {whole:?}"),
        }
    }
    whole
}

#[test]
fn a_length_body_ends_at_its_length_and_leaves_what_follows() {
    let (data, trailers, left) = decode_all_ways(Framing::Length(5), b"hello").expect("ok");
    assert_eq!((&data[..], trailers, left), (&b"hello"[..], None, 0));
    let mut buf = BytesMut::from(&b"helloHTTP/1.1"[..]);
    let mut decoder = BodyDecoder::new(Framing::Length(5));
    assert_eq!(
        decoder.decode(&mut buf, false).expect("ok"),
        Decoded::Data("hello".into())
    );
    assert!(decoder.is_end(), "the end is known with the last data");
    assert_eq!(&buf[..], b"HTTP/1.1");
}

#[test]
fn a_length_body_cut_short_is_incomplete() {
    let err = decode_all_ways(Framing::Length(10), b"hello").expect_err("refused");
    assert!(matches!(err, Error::Incomplete), "{err}");
}

#[test]
fn an_empty_body_ends_at_once() {
    for framing in [Framing::Empty, Framing::Length(0)] {
        let decoder = BodyDecoder::new(framing);
        assert!(decoder.is_end());
        assert_eq!(decoder.remaining(), Some(0));
    }
}

#[test]
fn a_body_until_close_takes_everything() {
    let (data, _, _) = decode_all_ways(Framing::UntilClose, b"all of it\r\n0\r\n\r\n").expect("ok");
    assert_eq!(&data[..], b"all of it\r\n0\r\n\r\n");
}

#[test]
fn chunked_bodies_decode_with_extensions_and_whitespace() {
    let input = b"5\r\nhello\r\n6;name=value\r\n world\r\nA  \r\n0123456789\r\n0\r\n\r\n";
    let (data, trailers, left) = decode_all_ways(Framing::Chunked, input).expect("ok");
    assert_eq!(&data[..], b"hello world0123456789");
    assert_eq!((trailers, left), (None, 0));
}

#[test]
fn chunked_trailers_are_the_last_frame() {
    let input = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-count: 2\r\n\r\n";
    let (data, trailers, _) = decode_all_ways(Framing::Chunked, input).expect("ok");
    assert_eq!(&data[..], b"abc");
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-count"], "2");
}

#[test]
fn the_end_of_a_chunked_body_is_known_with_its_last_data() {
    let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nHTTP"[..]);
    let mut decoder = BodyDecoder::new(Framing::Chunked);
    assert_eq!(
        decoder.decode(&mut buf, false).expect("ok"),
        Decoded::Data("abc".into())
    );
    assert!(decoder.is_end());
    assert_eq!(
        &buf[..],
        b"HTTP",
        "bytes after the body are left for the caller"
    );
}

#[test]
fn malformed_chunked_framing_is_refused() {
    let cases: &[(&[u8], &str)] = &[
        (b"\r\n", "without a size"),
        (b"zz\r\n", "without a size"),
        (b"5x\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        (b"5\rhello", "not ended by CRLF"),
        (b"5\r\nhelloXY0\r\n\r\n", "not followed by CRLF"),
        (b"5\r\nhello\rX", "not followed by CRLF"),
        (b"5;a\nb\r\nhello\r\n0\r\n\r\n", "contains LF"),
        (b"10000000000000000\r\n", "overflows"),
        (b"0\r\n\r\r", "not ended by CRLF"),
        (b"0\r\nx: y\rz", "trailer line not ended by CRLF"),
        (b"0\r\nbad trailer\r\n\r\n", "invalid trailer field"),
        // Two fields on one CRLF-ended line (a bare LF between them), as hyper refuses.
        (b"0\r\na: 1\nb: 2\r\n\r\n", "invalid trailer field"),
    ];
    for (input, expected) in cases {
        let err = decode_all_ways(Framing::Chunked, input).expect_err("refused");
        assert!(
            err.to_string().contains(expected),
            "{:?}: {err} (expected {expected:?})",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn a_chunked_body_cut_short_is_incomplete() {
    for input in [
        &b"5\r\nhel"[..],
        b"5\r\nhello\r\n",
        b"5\r\nhello\r\n0\r\n",
        b"5",
    ] {
        let err = decode_all_ways(Framing::Chunked, input).expect_err("refused");
        assert!(matches!(err, Error::Incomplete), "{input:?}: {err}");
    }
}

#[test]
fn chunk_extensions_and_trailers_are_bounded() {
    let mut input = b"1;".to_vec();
    input.extend(std::iter::repeat_n(b'x', EXTENSIONS_LIMIT as usize));
    input.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
    let err = decode_in_steps(Framing::Chunked, &input, 4096).expect_err("refused");
    assert!(err.to_string().contains("extensions over"), "{err}");

    let mut input = b"0\r\nx: ".to_vec();
    input.extend(std::iter::repeat_n(b'y', TRAILERS_LIMIT));
    input.extend_from_slice(b"\r\n\r\n");
    let err = decode_in_steps(Framing::Chunked, &input, 4096).expect_err("refused");
    assert!(err.to_string().contains("trailers over"), "{err}");

    let mut input = b"0\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        input.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\n");
    let err = decode_in_steps(Framing::Chunked, &input, 4096).expect_err("refused");
    assert!(err.to_string().contains("more than 100 trailer"), "{err}");
}
