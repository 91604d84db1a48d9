//! Header rules of a proxy hop: hop-by-hop headers removed, `x-forwarded-*` and
//! `x-request-id` added, framing, `Host` and upgrades checked. Pure functions of the headers
//! (only `http` types), so the fuzz targets compile this file as it is.

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};

/// A request the checks refuse, with the reason: answered 400 `bad_request`, and its
/// connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub &'static str);

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// The settings of an `Upgrade: h2c` offer (RFC 7540 §3.2.1): connection-specific even when
/// `Connection` does not name it, so it never travels past this hop.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
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
pub fn check_framing(headers: &HeaderMap) -> Result<(), BadRequest> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(BadRequest(
            "unsupported transfer coding (only \"chunked\" is accepted)",
        )),
    }
}

/// Checks how the request names its host (RFC 9112 §3.2 and §3.2.2, RFC 9113 §8.3.1); each
/// failure is a 400 and the connection closes:
/// - more than one `Host` line;
/// - a `Host` that is not `host[:port]` (RFC 3986 reg-name, IPv4 or `[IPv6]`; port 0-65535),
///   e.g. `a b.example` or `x@evil`, or is empty;
/// - no `Host` on HTTP/1.1 (even with an absolute-form target), no host at all on HTTP/2
///   (neither `:authority` nor `Host`); HTTP/1.0 may omit it;
/// - a target authority (absolute-form, HTTP/2 `:authority`) that is invalid or carries
///   userinfo, or that differs from `Host` (host compared case-insensitively, a default port
///   equal to no port). When both are given and agree, the authority is what is forwarded.
pub fn check_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), BadRequest> {
    let mut lines = headers.get_all(header::HOST).iter();
    let host = match (lines.next(), lines.next()) {
        (_, Some(_)) => return Err(BadRequest("more than one Host header")),
        (Some(host), None) => {
            if !valid_authority(host.as_bytes()) {
                return Err(BadRequest("invalid Host header"));
            }
            Some(host.as_bytes())
        }
        (None, None) => None,
    };
    if host.is_none() && version == Version::HTTP_11 {
        return Err(BadRequest("missing Host header"));
    }
    match (uri.authority(), host) {
        (Some(authority), host) => {
            if !valid_authority(authority.as_str().as_bytes()) {
                return Err(BadRequest("invalid authority in the request target"));
            }
            let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                443
            } else {
                80
            };
            match host {
                Some(host)
                    if !same_authority(authority.as_str().as_bytes(), host, default_port) =>
                {
                    Err(BadRequest(
                        "Host header differs from the authority of the request target",
                    ))
                }
                _ => Ok(()),
            }
        }
        (None, Some(_)) => Ok(()),
        (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(()),
        (None, None) => Err(BadRequest("missing Host header")),
    }
}

/// Whether `value` is a valid `Host` / authority: `host[:port]` where host is an RFC 3986
/// reg-name (unreserved, sub-delims, percent-encoded octets), an IPv4 address or an IPv6
/// literal in brackets, and port is 0-65535. Empty hosts and userinfo (`@`) are refused.
pub fn valid_authority(value: &[u8]) -> bool {
    let Some((host, port)) = split_authority(value) else {
        return false;
    };
    valid_host(host) && port.is_none_or(|p| parse_port(p).is_some())
}

/// Whether two valid authorities name the same origin: hosts equal ignoring ASCII case, ports
/// equal once a missing port stands for `default_port`.
fn same_authority(a: &[u8], b: &[u8], default_port: u16) -> bool {
    match (split_authority(a), split_authority(b)) {
        (Some((host_a, port_a)), Some((host_b, port_b))) => {
            let port = |p: Option<&[u8]>| p.map_or(Some(default_port), parse_port);
            host_a.eq_ignore_ascii_case(host_b) && port(port_a) == port(port_b)
        }
        _ => false,
    }
}

/// `host` and the port after `:`, if any.
fn split_authority(value: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let host_end = if value.first() == Some(&b'[') {
        value.iter().position(|&b| b == b']')? + 1
    } else {
        value.iter().position(|&b| b == b':').unwrap_or(value.len())
    };
    let (host, rest) = value.split_at(host_end);
    match rest {
        [] => Some((host, None)),
        [b':', port @ ..] => Some((host, Some(port))),
        _ => None,
    }
}

/// The bytes a reg-name may hold besides `%` escapes: letters, digits, unreserved and
/// sub-delims (RFC 3986 §3.2.2). A table, as every request's `Host` goes through it.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < table.len() {
        // `b` is below 256, so the cast keeps it whole.
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

fn valid_host(host: &[u8]) -> bool {
    if let [b'[', inner @ .., b']'] = host {
        // IPvFuture (`[v1.x]`) is not accepted: nothing sends it.
        return std::str::from_utf8(inner).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
    }
    if host.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if REG_NAME[usize::from(b)] => i += 1,
            _ => return false,
        }
    }
    true
}

/// A port of one to five digits, at most 65535.
fn parse_port(port: &[u8]) -> Option<u16> {
    if port.is_empty() || port.len() > 5 {
        return None;
    }
    let mut value = 0u32;
    for &b in port {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(b - b'0');
    }
    u16::try_from(value).ok()
}

/// Whether an HTTP/1.1 request asks to upgrade the connection (`Connection: upgrade` plus an
/// `Upgrade` header), e.g. WebSocket.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, b"upgrade")
}

/// Keeps only the `Upgrade` offers `allowed` accepts. Returns whether the request still asks
/// for an upgrade; when it does not, the caller forwards it as a plain request (with
/// [`remove_hop_by_hop`] removing `Upgrade`), so an upstream can never switch a connection to a
/// protocol the route did not allow (`h2c` above all: through the tunnel a client would send
/// HTTP/2 requests straight to the upstream, past routing).
pub fn keep_allowed_upgrades(headers: &mut HeaderMap, allowed: impl Fn(&[u8]) -> bool) -> bool {
    if !wants_upgrade(headers) {
        return false;
    }
    let mut kept = Vec::new();
    for offer in headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty() && allowed(p))
    {
        if !kept.is_empty() {
            kept.extend_from_slice(b", ");
        }
        kept.extend_from_slice(offer);
    }
    match HeaderValue::from_bytes(&kept) {
        Ok(value) if !kept.is_empty() => {
            headers.insert(header::UPGRADE, value);
            true
        }
        _ => false,
    }
}

/// RFC 9112 §6.3: a message with `Transfer-Encoding` is framed by it, and an intermediary must
/// remove any `Content-Length` before forwarding (it would otherwise cut the body, or frame
/// what follows as a second message). Returns whether one was removed.
pub fn drop_length_beside_coding(headers: &mut HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        && headers.remove(header::CONTENT_LENGTH).is_some()
}

/// Removes hop-by-hop headers: `Connection` and the headers it names, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `TE` (kept only as `te: trailers`), and `Upgrade`
/// unless this is an upgrade, which keeps `Upgrade` and `Connection: upgrade`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names says which of them are there (usually none, or `Connection`
    // alone): cheaper than a hash lookup for each, on every request and response.
    let present = headers
        .keys()
        .fold(0u8, |found, name| found | hop_by_hop_bit(name));
    if present & HOP_CONNECTION != 0 {
        // One lookup takes the values out (a second line, rare, is the only allocation).
        let (first, more) = match headers.entry(header::CONNECTION) {
            Entry::Occupied(entry) => {
                let mut values = entry.remove_entry_mult().1;
                (values.next(), values.collect::<Vec<_>>())
            }
            Entry::Vacant(_) => (None, Vec::new()),
        };
        for token in first
            .iter()
            .chain(&more)
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            // `keep-alive` (nginx's answers carry it) is removed below in any case.
            .filter(|t| {
                !(t.is_empty()
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || upgrade && t.eq_ignore_ascii_case(b"upgrade"))
            })
        {
            // By `&str`: looked up without allocating a name; a token that is no valid header
            // name names nothing that could be there.
            if let Ok(name) = std::str::from_utf8(token) {
                headers.remove(name);
            }
        }
    }
    for (bit, name) in [
        (HOP_KEEP_ALIVE, &KEEP_ALIVE),
        (HOP_PROXY_CONNECTION, &PROXY_CONNECTION),
        (HOP_HTTP2_SETTINGS, &HTTP2_SETTINGS),
        (HOP_TRANSFER_ENCODING, &header::TRANSFER_ENCODING),
    ] {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
    if present & HOP_TE != 0 {
        if let Some(te) = headers.remove(header::TE) {
            if te
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"))
            {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & HOP_UPGRADE != 0 {
        headers.remove(header::UPGRADE);
    }
}

const HOP_CONNECTION: u8 = 1;
const HOP_KEEP_ALIVE: u8 = 1 << 1;
const HOP_PROXY_CONNECTION: u8 = 1 << 2;
const HOP_HTTP2_SETTINGS: u8 = 1 << 3;
const HOP_TRANSFER_ENCODING: u8 = 1 << 4;
const HOP_TE: u8 = 1 << 5;
const HOP_UPGRADE: u8 = 1 << 6;

/// The bit of a hop-by-hop header name for [`remove_hop_by_hop`], 0 for any other name.
#[inline]
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        HOP_CONNECTION
    } else if name == header::TRANSFER_ENCODING {
        HOP_TRANSFER_ENCODING
    } else if name == header::TE {
        HOP_TE
    } else if name == header::UPGRADE {
        HOP_UPGRADE
    } else if name == KEEP_ALIVE {
        HOP_KEEP_ALIVE
    } else if name == PROXY_CONNECTION {
        HOP_PROXY_CONNECTION
    } else if name == HTTP2_SETTINGS {
        HOP_HTTP2_SETTINGS
    } else {
        0
    }
}

/// Appends the client's address to `x-forwarded-for` (all incoming lines joined into one, so
/// a client cannot smuggle a value after the proxy's), sets `x-forwarded-proto`.
pub fn add_forwarded(headers: &mut HeaderMap, client_ip: &HeaderValue, https: bool) {
    match headers.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(entry) => {
            entry.insert(client_ip.clone());
        }
        Entry::Occupied(mut entry) => {
            let mut joined = Vec::with_capacity(64);
            for value in entry.iter() {
                joined.extend_from_slice(value.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client_ip.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                entry.insert(value);
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
    let Entry::Vacant(entry) = headers.entry(&X_REQUEST_ID) else {
        return;
    };
    let bits = u128::from(random()) << 64 | u128::from(random());
    // Version 4, variant 1.
    let v = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // 8-4-4-4-12 hex digits: a dash before bytes 4, 6, 8 and 10.
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in v.to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xF)];
        at += 2;
    }
    if let Ok(value) = HeaderValue::from_bytes(&out) {
        entry.insert(value);
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
mod tests;
