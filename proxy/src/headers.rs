//! Header rules of a proxy hop: hop-by-hop headers removed, `x-forwarded-*` and
//! `x-request-id` added, framing checked.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::error::ProxyError;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-sluice-error`: the kind of a proxy-generated error.
pub static X_SLUICE_ERROR: HeaderName = HeaderName::from_static("x-sluice-error");

/// Refuses transfer codings the proxy cannot re-frame faithfully: anything but a single
/// `chunked` (hyper already refuses a non-final `chunked`, and drops `Content-Length` when
/// both are present, closing the connection after the response, per RFC 9112 §6.1).
pub fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(ProxyError::BadRequest(
            "unsupported transfer coding (only \"chunked\" is accepted)",
        )),
    }
}

/// Whether an HTTP/1.1 request asks to upgrade the connection (`Connection: upgrade` plus an
/// `Upgrade` header), e.g. WebSocket.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, b"upgrade")
}

/// Removes hop-by-hop headers: `Connection` and the headers it names, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `TE` (kept only as `te: trailers`), and `Upgrade`
/// unless this is an upgrade, which keeps `Upgrade` and `Connection: upgrade`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
            .filter(|name| !(upgrade && name == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    if let Some(te) = headers.remove(header::TE) {
        if te
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
        {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Appends the client's address to `x-forwarded-for` (all incoming lines joined into one, so
/// a client cannot smuggle a value after the proxy's), sets `x-forwarded-proto`.
pub fn add_forwarded(headers: &mut HeaderMap, client_ip: &HeaderValue, https: bool) {
    let mut existing = headers.get_all(&X_FORWARDED_FOR).iter();
    match (existing.next(), existing.next()) {
        (None, _) => {
            headers.insert(X_FORWARDED_FOR.clone(), client_ip.clone());
        }
        (Some(_), _) => {
            let mut joined = Vec::with_capacity(64);
            for value in headers.get_all(&X_FORWARDED_FOR) {
                joined.extend_from_slice(value.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client_ip.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), value);
            }
        }
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
}

/// Sets `x-request-id` to a fresh UUIDv4 (from `random`) unless the request carries one.
pub fn ensure_request_id(headers: &mut HeaderMap, random: impl Fn() -> u64) {
    if headers.contains_key(&X_REQUEST_ID) {
        return;
    }
    let bits = u128::from(random()) << 64 | u128::from(random());
    // Version 4, variant 1.
    let v = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut nibble = 32;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
        } else {
            nibble -= 1;
            *slot = HEX[((v >> (nibble * 4)) & 0xF) as usize];
        }
    }
    if let Ok(value) = HeaderValue::from_bytes(&out) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
}

fn connection_has(headers: &HeaderMap, token: &[u8]) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers, deflate"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["te", "x-kept"]);
        assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
    }

    #[test]
    fn upgrades_keep_upgrade_headers() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn framing_accepts_only_plain_chunked() {
        assert!(check_framing(&headers(&[])).is_ok());
        assert!(check_framing(&headers(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_framing(&headers(&[("transfer-encoding", "Chunked")])).is_ok());
        assert!(check_framing(&headers(&[("transfer-encoding", "gzip, chunked")])).is_err());
        assert!(check_framing(&headers(&[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked")
        ]))
        .is_err());
    }

    #[test]
    fn forwarded_headers_append_and_set() {
        let ip = HeaderValue::from_static("10.0.0.2");
        let mut h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        add_forwarded(&mut h, &ip, true);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"1.2.3.4, 10.0.0.2"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"https"[..])
        );
        let mut fresh = HeaderMap::new();
        add_forwarded(&mut fresh, &ip, false);
        assert_eq!(
            fresh.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"10.0.0.2"[..])
        );
    }

    #[test]
    fn request_ids_are_uuid_v4_and_kept_when_present() {
        let mut h = HeaderMap::new();
        ensure_request_id(&mut h, || u64::MAX);
        let id = h
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let mut counting = HeaderMap::new();
        let n = std::cell::Cell::new(0u64);
        ensure_request_id(&mut counting, || {
            n.set(n.get() + 1);
            0x0123_4567_89ab_cdef
        });
        let id = counting
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(id, "01234567-89ab-4def-8123-456789abcdef");
        let mut given = headers(&[("x-request-id", "abc")]);
        ensure_request_id(&mut given, || 7);
        assert_eq!(
            given.get("x-request-id").map(|v| v.as_bytes()),
            Some(&b"abc"[..])
        );
    }
}
