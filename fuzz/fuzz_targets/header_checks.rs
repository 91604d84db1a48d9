//! The proxy's header checks on raw request heads (parsed with httparse, hyper's parser):
//! framing, `Host` against a plain RFC 3986 reference, upgrades, hop-by-hop removal and the
//! forwarding headers. Never a panic, and nothing the checks let through breaks their rules.

#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};
use libfuzzer_sys::fuzz_target;

// Formatted with its own crate (rustfmt would look for its `mod tests` here).
#[rustfmt::skip]
#[path = "../../proxy/src/headers.rs"]
#[allow(dead_code)]
mod headers;

/// Headers that must never reach the upstream after [`headers::remove_hop_by_hop`].
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "http2-settings",
];

fuzz_target!(|data: &[u8]| {
    // Any bytes as a Host value: the check agrees with the reference.
    assert_eq!(
        headers::valid_authority(data),
        reference_authority(data),
        "{:?}",
        String::from_utf8_lossy(data)
    );

    let mut parsed = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut parsed);
    let Ok(httparse::Status::Complete(_)) = request.parse(data) else {
        return;
    };
    let (Some(path), Some(version)) = (request.path, request.version) else {
        return;
    };
    let Ok(uri) = path.parse::<Uri>() else {
        return;
    };
    let version = if version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut map = HeaderMap::new();
    for header in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return;
        };
        map.append(name, value);
    }

    if headers::check_framing(&map).is_ok() {
        let codings: Vec<&[u8]> = map
            .get_all("transfer-encoding")
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(
            codings.is_empty()
                || (codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked")),
            "{codings:?}"
        );
    }

    match headers::check_host(version, &uri, &map) {
        Ok(()) => {
            let hosts: Vec<&HeaderValue> = map.get_all("host").iter().collect();
            assert!(hosts.len() <= 1, "two Host lines accepted");
            if version == Version::HTTP_11 {
                assert_eq!(hosts.len(), 1, "HTTP/1.1 without Host accepted");
            }
            if let Some(host) = hosts.first() {
                assert!(reference_authority(host.as_bytes()), "{host:?} accepted");
            }
            if let (Some(authority), Some(host)) = (uri.authority(), hosts.first()) {
                let default = if uri.scheme_str() == Some("https") {
                    "443"
                } else {
                    "80"
                };
                assert!(
                    reference_authority(authority.as_str().as_bytes()),
                    "{authority} accepted"
                );
                assert_eq!(
                    normalize(authority.as_str().as_bytes(), default),
                    normalize(host.as_bytes(), default),
                    "a target and a Host naming different origins were accepted"
                );
            }
        }
        Err(headers::BadRequest(reason)) => assert!(!reason.is_empty()),
    }

    let mut forwarded = map.clone();
    let upgrade =
        headers::keep_allowed_upgrades(&mut forwarded, |p| p.eq_ignore_ascii_case(b"websocket"));
    let named: Vec<HeaderName> = if upgrade {
        Vec::new()
    } else {
        map.get_all("connection")
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .collect()
    };
    headers::drop_length_beside_coding(&mut forwarded);
    assert!(
        !(forwarded.contains_key("content-length") && forwarded.contains_key("transfer-encoding")),
        "a length beside a coding survived"
    );
    headers::remove_hop_by_hop(&mut forwarded, upgrade);
    for name in HOP_BY_HOP {
        assert!(!forwarded.contains_key(*name), "{name} survived");
    }
    for name in named {
        assert!(
            !forwarded.contains_key(&name),
            "{name} named by Connection survived"
        );
    }
    if let Some(te) = forwarded.get("te") {
        assert_eq!(te, "trailers");
    }
    if upgrade {
        assert_eq!(forwarded.get_all("connection").iter().count(), 1);
        for offer in forwarded
            .get_all("upgrade")
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        {
            let name = offer.split(|&b| b == b'/').next().unwrap_or_default();
            assert!(
                name.trim_ascii().eq_ignore_ascii_case(b"websocket"),
                "{offer:?} kept"
            );
        }
    } else {
        assert!(
            !forwarded.contains_key("upgrade"),
            "an upgrade not allowed survived"
        );
        assert!(!forwarded.contains_key("connection"));
    }

    let ip = HeaderValue::from_static("10.0.0.1");
    headers::add_forwarded(&mut forwarded, &ip, false);
    let xff: Vec<&HeaderValue> = forwarded.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff.len(), 1, "one x-forwarded-for line");
    assert!(
        xff[0].as_bytes().ends_with(b"10.0.0.1"),
        "the client is last: {:?}",
        xff[0]
    );
});

/// RFC 3986 `host [ ":" port ]`, written out: reg-name (unreserved, sub-delims, `%XX`) or
/// `[IPv6]`, a port of one to five digits up to 65535.
fn reference_authority(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => ("v6", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || !reg_name(host) {
        return false;
    }
    match port {
        None => true,
        Some(port) => {
            !port.is_empty()
                && port.len() <= 5
                && port.chars().all(|c| c.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| p <= 65535)
        }
    }
}

fn reg_name(host: &str) -> bool {
    let mut chars = host.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let (Some(a), Some(b)) = (chars.next(), chars.next()) else {
                    return false;
                };
                if !a.is_ascii_hexdigit() || !b.is_ascii_hexdigit() {
                    return false;
                }
            }
            c if c.is_ascii_alphanumeric() => {}
            '-' | '.' | '_' | '~' | '!' | '$' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | ';'
            | '=' => {}
            _ => return false,
        }
    }
    true
}

/// `(lower-case host, port)` with the scheme's default port filled in.
fn normalize(value: &[u8], default_port: &str) -> (String, String) {
    let text = String::from_utf8_lossy(value).to_ascii_lowercase();
    let split = if text.starts_with('[') {
        text.find(']').map(|end| end + 1)
    } else {
        text.find(':')
    };
    match split {
        Some(at) if text[at..].starts_with(':') => {
            let port = text[at + 1..].trim_start_matches('0');
            let port = if port.is_empty() { "0" } else { port };
            (text[..at].to_string(), port.to_string())
        }
        _ => (text, default_port.to_string()),
    }
}
