//! Request matchers of a route: host, path, method, headers and query parameters.

use http::{HeaderMap, HeaderName, Method, Uri};
use regex::bytes::Regex;

/// How one header or query value is matched.
#[derive(Clone, Debug)]
pub enum ValueMatch {
    /// The value equals this string exactly (case-sensitive).
    Exact(String),
    /// The value starts with this string.
    Prefix(String),
    /// The whole value matches this regex (anchored at both ends).
    Regex(Regex),
    /// The header or parameter is present (`true`) or absent (`false`), whatever its value.
    Present(bool),
    /// The opposite of the inner matcher (`invert: true`): an absent header or parameter
    /// matches `Not(Exact(..))`, and a repeated header matches only when none of its values
    /// matches the inner one.
    Not(Box<ValueMatch>),
}

/// How the request's host (the `Host` header or the HTTP/2 `:authority`, without port) is
/// matched. Comparison is case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com`: exactly this host.
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com` (stored as `.example.com`), not the
    /// apex itself.
    Wildcard(String),
}

/// How the request path (without query) is matched.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// The path starts with this string (`/api` matches `/api` and `/apiv2`).
    Prefix(String),
    /// The path starts with these whole segments: `/api` matches `/api`, `/api/` and
    /// `/api/v1`, not `/apiv2`. Stored without trailing `/` (so `/` is stored empty and
    /// matches every path).
    SegmentPrefix(String),
    /// The path equals this string.
    Exact(String),
    /// The whole path matches this regex.
    Regex(Regex),
}

/// Everything a route requires of a request. An empty matcher matches every request.
#[derive(Clone, Debug, Default)]
pub struct RouteMatch {
    /// Required host.
    pub host: Option<HostMatch>,
    /// Required path.
    pub path: Option<PathMatch>,
    /// Required method.
    pub method: Option<Method>,
    /// Required headers; all must match.
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Required query parameters (names and values percent-decoded); all must match.
    pub query: Vec<(String, ValueMatch)>,
}

/// The parts of a request that routing looks at.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

impl ValueMatch {
    /// Whether `value` (absent = `None`) satisfies this matcher.
    #[inline]
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        match (self, value) {
            (Self::Not(inner), value) => !inner.matches(value),
            (Self::Present(want), value) => *want == value.is_some(),
            (_, None) => false,
            (Self::Exact(want), Some(v)) => want.as_bytes() == v,
            (Self::Prefix(want), Some(v)) => v.starts_with(want.as_bytes()),
            (Self::Regex(re), Some(v)) => re.is_match(v),
        }
    }

    /// Whether the values of a header (none when it is absent) satisfy this matcher: any one
    /// value may match, and an inverted matcher holds when none does.
    #[inline]
    pub fn matches_header(&self, values: http::header::GetAll<'_, http::HeaderValue>) -> bool {
        if let Self::Not(inner) = self {
            return !inner.matches_header(values);
        }
        let mut values = values.iter().peekable();
        if values.peek().is_none() {
            self.matches(None)
        } else {
            values.any(|v| self.matches(Some(v.as_bytes())))
        }
    }

    /// The exact value this matcher requires, if that is what it does (used to index routes).
    pub fn exact(&self) -> Option<&str> {
        match self {
            Self::Exact(v) => Some(v),
            _ => None,
        }
    }
}

impl HostMatch {
    /// Parses `api.example.com` or `*.example.com`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        if lower.is_empty() {
            return Err("host must not be empty".into());
        }
        if lower.contains(':') {
            return Err(format!(
                "host \"{text}\" must not include a port (ports are ignored when matching)"
            ));
        }
        match lower.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 && !rest[1..].contains('*') => {
                Ok(Self::Wildcard(rest.to_string()))
            }
            Some(_) => Err(format!(
                "host \"{text}\": a wildcard is only allowed as a leading \"*.\" (e.g. \"*.example.com\")"
            )),
            None if lower.contains('*') => Err(format!(
                "host \"{text}\": a wildcard is only allowed as a leading \"*.\" (e.g. \"*.example.com\")"
            )),
            None => Ok(Self::Exact(lower)),
        }
    }

    /// Whether `host` (port already removed) matches, ignoring ASCII case.
    #[inline]
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(want) => want.eq_ignore_ascii_case(host),
            Self::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

impl PathMatch {
    /// The segment-aware prefix `prefix` as written (`/api`, `/api/`): trailing `/`s are
    /// ignored, as the Gateway API's `PathPrefix` does.
    pub fn segment_prefix(prefix: &str) -> Self {
        Self::SegmentPrefix(prefix.trim_end_matches('/').to_string())
    }

    /// Whether `path` matches.
    #[inline]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Self::SegmentPrefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Self::Exact(exact) => path == exact,
            Self::Regex(re) => re.is_match(path.as_bytes()),
        }
    }
}

impl RouteMatch {
    /// Whether the request satisfies every condition. `host` is the request's host without
    /// port, computed once per request by the caller.
    #[inline]
    pub fn matches(&self, head: &RequestHead<'_>, host: Option<&str>) -> bool {
        if let Some(method) = &self.method {
            if head.method != method {
                return false;
            }
        }
        if let Some(path) = &self.path {
            if !path.matches(head.uri.path()) {
                return false;
            }
        }
        if let Some(want) = &self.host {
            if !host.is_some_and(|h| want.matches(h)) {
                return false;
            }
        }
        for (name, matcher) in &self.headers {
            if !matcher.matches_header(head.headers.get_all(name)) {
                return false;
            }
        }
        for (name, matcher) in &self.query {
            if !matcher.matches(
                query_param(head.uri.query(), name)
                    .as_deref()
                    .map(str::as_bytes),
            ) {
                return false;
            }
        }
        true
    }
}

/// Compiles `pattern` so that it must match the whole value, like Envoy's `safe_regex`.
pub(crate) fn full_match_regex(pattern: &str) -> Result<Regex, String> {
    regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
}

/// The request's host without port: the `Host` header, else the URI authority (HTTP/2).
#[inline]
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let raw = match headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        Some(host) => host,
        None => uri.authority()?.as_str(),
    };
    Some(strip_port(raw))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rfind(':') {
        Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..colon],
        _ => host,
    }
}

/// The first value of query parameter `name`, percent-decoded (borrowed unless decoding
/// changed it).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<std::borrow::Cow<'q, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(req: &http::Request<()>) -> RequestHead<'_> {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        }
    }

    #[test]
    fn value_matchers() {
        let re = full_match_regex("v[0-9]+").expect("valid");
        let cases: [(ValueMatch, Option<&[u8]>, bool); 10] = [
            (ValueMatch::Exact("true".into()), Some(b"true"), true),
            (ValueMatch::Exact("true".into()), Some(b"True"), false),
            (ValueMatch::Exact("true".into()), None, false),
            (ValueMatch::Prefix("qa-".into()), Some(b"qa-team"), true),
            (ValueMatch::Prefix("qa-".into()), Some(b"dev"), false),
            (ValueMatch::Regex(re.clone()), Some(b"v12"), true),
            (ValueMatch::Regex(re), Some(b"xv12"), false),
            (ValueMatch::Present(true), Some(b""), true),
            (ValueMatch::Present(false), None, true),
            (ValueMatch::Present(false), Some(b"x"), false),
        ];
        for (matcher, value, want) in cases {
            assert_eq!(matcher.matches(value), want, "{matcher:?} {value:?}");
        }
    }

    #[test]
    fn segment_prefixes_match_whole_segments() {
        let cases = [
            ("/abc", "/abc", true),
            ("/abc", "/abc/", true),
            ("/abc", "/abc/def", true),
            ("/abc", "/abcd", false),
            ("/abc", "/ab", false),
            ("/abc/", "/abc", true),
            ("/abc/", "/abc/def", true),
            ("/abc/", "/abcd", false),
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/v2", "/foo/v2/example", false),
        ];
        for (prefix, path, want) in cases {
            assert_eq!(
                PathMatch::segment_prefix(prefix).matches(path),
                want,
                "{prefix} vs {path}"
            );
        }
        assert!(PathMatch::Prefix("/abc".into()).matches("/abcd"));
    }

    #[test]
    fn inverted_matchers_negate_the_whole_header() {
        let not_one = ValueMatch::Not(Box::new(ValueMatch::Exact("one".into())));
        let not_present = ValueMatch::Not(Box::new(ValueMatch::Present(true)));
        let req = |values: &[&str]| {
            let mut b = http::Request::get("/");
            for v in values {
                b = b.header("x-v", *v);
            }
            b.body(()).expect("valid request")
        };
        let name = HeaderName::from_static("x-v");
        let cases: [(&[&str], bool, bool); 4] = [
            (&[], true, true),
            (&["two"], true, false),
            (&["one"], false, false),
            (&["two", "one"], false, false),
        ];
        for (values, want_not_one, want_absent) in cases {
            let r = req(values);
            assert_eq!(
                not_one.matches_header(r.headers().get_all(&name)),
                want_not_one,
                "{values:?}"
            );
            assert_eq!(
                not_present.matches_header(r.headers().get_all(&name)),
                want_absent,
                "{values:?}"
            );
        }
        assert!(not_one.matches(None));
        assert!(!not_one.matches(Some(b"one")));
        assert_eq!(
            not_one.exact(),
            None,
            "an inverted matcher is never indexed"
        );
    }

    #[test]
    fn host_matchers() {
        let exact = HostMatch::parse("API.example.com").expect("valid");
        assert!(exact.matches("api.EXAMPLE.com"));
        assert!(!exact.matches("www.example.com"));
        let wild = HostMatch::parse("*.example.com").expect("valid");
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert!(HostMatch::parse("api.*.com").is_err());
        assert!(HostMatch::parse("api.example.com:80").is_err());
    }

    #[test]
    fn host_comes_from_header_or_authority_without_port() {
        let req = http::Request::get("/x")
            .header("host", "api.example.com:8080")
            .body(());
        let req = req.expect("valid request");
        assert_eq!(
            request_host(req.uri(), req.headers()),
            Some("api.example.com")
        );
        let h2 = http::Request::get("http://h2.example.com/x")
            .body(())
            .expect("valid request");
        assert_eq!(request_host(h2.uri(), h2.headers()), Some("h2.example.com"));
        let v6 = http::Request::get("/")
            .header("host", "[::1]:80")
            .body(())
            .expect("valid request");
        assert_eq!(request_host(v6.uri(), v6.headers()), Some("[::1]"));
    }

    #[test]
    fn route_match_requires_everything() {
        let m = RouteMatch {
            host: Some(HostMatch::parse("*.example.com").expect("valid")),
            path: Some(PathMatch::Prefix("/api".into())),
            method: Some(Method::POST),
            headers: vec![(
                HeaderName::from_static("x-team"),
                ValueMatch::Prefix("qa-".into()),
            )],
            query: vec![("variant".into(), ValueMatch::Exact("b c".into()))],
        };
        let good = http::Request::post("/api/v1?variant=b+c&x=1")
            .header("host", "a.example.com")
            .header("x-team", "qa-1")
            .body(())
            .expect("valid request");
        let head = head_of(&good);
        assert!(m.matches(&head, request_host(head.uri, head.headers)));
        let wrong_query = http::Request::post("/api/v1?variant=a")
            .header("host", "a.example.com")
            .header("x-team", "qa-1")
            .body(())
            .expect("valid request");
        let head = head_of(&wrong_query);
        assert!(!m.matches(&head, request_host(head.uri, head.headers)));
        assert!(RouteMatch::default().matches(&head, None));
    }
}
