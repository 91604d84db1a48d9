//! sluice's own HTTP/1.1 client on raw upstream responses: the head parser (httparse, hyper's
//! rules for framing) and the body decoder (length, chunked with trailers, until the close).
//! Never a panic, and the outcome (head, data, trailers, error) does not depend on how the
//! bytes are split into reads.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

// The pure parts of `proxy/src/upstream/h1`, compiled from their files (they find each
// other as `super::`).
#[rustfmt::skip]
#[path = "../../proxy/src/upstream/h1/decode.rs"]
#[allow(dead_code)]
mod decode;
#[rustfmt::skip]
#[path = "../../proxy/src/upstream/h1/error.rs"]
#[allow(dead_code)]
mod error;
#[rustfmt::skip]
#[path = "../../proxy/src/upstream/h1/head.rs"]
#[allow(dead_code)]
mod head;

use decode::{BodyDecoder, Decoded};
use error::{Error, MAX_HEADERS, MAX_HEAD_BYTES};
use head::parse_response;

/// What a response came to, comparable across splits.
#[derive(Debug, PartialEq)]
struct Outcome {
    head: Option<(u16, Vec<(String, Vec<u8>)>, String, bool)>,
    data: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
    error: Option<String>,
}

/// Feeds `input` in reads of `step` bytes (the connection closing after the last) through the
/// head parser, then the body decoder.
fn run(input: &[u8], head_request: bool, step: usize) -> Outcome {
    let mut outcome = Outcome {
        head: None,
        data: Vec::new(),
        trailers: Vec::new(),
        error: None,
    };
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut feed = |buf: &mut BytesMut| -> bool {
        if fed == input.len() {
            return false;
        }
        let end = (fed + step).min(input.len());
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        true
    };
    let head = loop {
        match parse_response(&mut buf, head_request) {
            Ok(Some(head)) => break head,
            Ok(None) => {
                if !feed(&mut buf) {
                    outcome.error = Some("incomplete head".into());
                    return outcome;
                }
            }
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        }
    };
    let fields = head
        .response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    outcome.head = Some((
        head.response.status().as_u16(),
        fields,
        format!("{:?}", head.framing),
        head.keep_alive,
    ));
    let mut decoder = BodyDecoder::new(head.framing);
    let mut closed = false;
    loop {
        match decoder.decode(&mut buf, closed) {
            Ok(Decoded::Data(data)) => {
                assert!(!data.is_empty(), "empty data frame");
                outcome.data.extend_from_slice(&data);
            }
            Ok(Decoded::Trailers(map)) => {
                assert!(outcome.trailers.is_empty(), "two trailer frames");
                outcome.trailers = map
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect();
            }
            Ok(Decoded::End) => {
                assert!(decoder.is_end());
                assert_eq!(decoder.decode(&mut buf, closed).ok(), Some(Decoded::End));
                return outcome;
            }
            Ok(Decoded::NeedMore) => {
                assert!(!closed, "NeedMore after the close");
                closed = !feed(&mut buf);
            }
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let step = usize::from(flags >> 1) + 1;
    let whole = run(input, head_request, input.len().max(1));
    let split = run(input, head_request, step);
    assert_eq!(whole, split, "step {step}");
});
