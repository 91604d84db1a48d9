//! Every way a proxied request can fail, each with the status and short kind it answers with.

use http::StatusCode;

use crate::metrics::UpstreamErrorKind;

/// A request the proxy answers itself. Every variant becomes a response (never a dropped
/// connection while headers can still be sent), with `x-sluice-error: <kind>`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matched the request.
    #[error("no route matches this request")]
    NoRoute,
    /// The chosen backend has no healthy endpoint and no other backend could take the request.
    #[error("no healthy endpoint for this route")]
    NoHealthyEndpoint,
    /// The TCP connection to the upstream could not be established.
    #[error("upstream connect failed: {0}")]
    Connect(std::io::Error),
    /// The TCP connect did not finish within the upstream's connect timeout.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The TLS handshake with the upstream failed.
    #[error("upstream TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The upstream closed or reset the connection before sending response headers, or sent
    /// a response that cannot be read.
    #[error("upstream reset the connection: {0}")]
    Reset(Box<dyn std::error::Error + Send + Sync>),
    /// The upstream did not send response headers within the route timeout.
    #[error("upstream did not respond within the route timeout")]
    Timeout,
    /// The request is malformed in a way the HTTP parser let through (framing we refuse to
    /// forward ambiguously).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request body was malformed (bad chunk) while being forwarded.
    #[error("malformed request body")]
    BadRequestBody,
    /// The client stopped sending its request body, or was still sending it when the route
    /// timeout expired.
    #[error("request body not received in time")]
    RequestBodyTimeout,
    /// The request cannot be forwarded as it is (hyper refused to send it).
    #[error("request cannot be forwarded: {0}")]
    Unsendable(hyper::Error),
    /// A method the proxy does not forward (`CONNECT`).
    #[error("method not allowed: sluice does not tunnel CONNECT")]
    MethodNotAllowed,
    /// The upstream's circuit breaker is open: `max_pending_requests` requests already wait
    /// for one of its `max_connections` connections.
    #[error("upstream overloaded: too many requests waiting for a connection")]
    Overloaded,
    /// The upstream answered `101 Switching Protocols` to a request that offered no upgrade
    /// the route allows.
    #[error("upstream switched protocols without an allowed upgrade")]
    UnexpectedUpgrade,
    /// An injected fault (`fault.abort`) answered the request with this status.
    #[error("fault injected (routes[].fault.abort)")]
    FaultAbort(StatusCode),
}

impl From<crate::body::ClientBodyError> for ProxyError {
    fn from(error: crate::body::ClientBodyError) -> Self {
        match error {
            crate::body::ClientBodyError::Timeout(_) => Self::RequestBodyTimeout,
            crate::body::ClientBodyError::Malformed(_) => Self::BadRequestBody,
        }
    }
}

impl From<crate::headers::BadRequest> for ProxyError {
    fn from(refused: crate::headers::BadRequest) -> Self {
        Self::BadRequest(refused.0)
    }
}

impl ProxyError {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoHealthyEndpoint | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect(_)
            | Self::ConnectTimeout
            | Self::Tls(_)
            | Self::Reset(_)
            | Self::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) | Self::BadRequestBody | Self::Unsendable(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::FaultAbort(status) => *status,
        }
    }

    /// A short, stable label: the `x-sluice-error` header value and log field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::NoHealthyEndpoint => "no_healthy_endpoint",
            Self::Connect(_) | Self::ConnectTimeout => "connect",
            Self::Tls(_) => "tls",
            Self::Reset(_) => "reset",
            Self::Timeout => "timeout",
            Self::BadRequest(_) | Self::BadRequestBody | Self::Unsendable(_) => "bad_request",
            Self::RequestBodyTimeout => "request_body_timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Overloaded => "overloaded",
            Self::UnexpectedUpgrade => "unexpected_upgrade",
            Self::FaultAbort(_) => "fault",
        }
    }

    /// The `sluice_upstream_errors_total` kind, for failures that are the upstream's.
    pub fn upstream_kind(&self) -> Option<UpstreamErrorKind> {
        match self {
            Self::Connect(_) | Self::ConnectTimeout => Some(UpstreamErrorKind::Connect),
            Self::Tls(_) => Some(UpstreamErrorKind::Tls),
            Self::Reset(_) => Some(UpstreamErrorKind::Reset),
            Self::Timeout => Some(UpstreamErrorKind::Timeout),
            _ => None,
        }
    }

    /// Whether the client connection must be closed after the answer (its framing can no
    /// longer be trusted).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::BadRequest(_) | Self::BadRequestBody | Self::RequestBodyTimeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_kinds() {
        let cases = [
            (ProxyError::NoRoute, 404, "no_route"),
            (ProxyError::NoHealthyEndpoint, 503, "no_healthy_endpoint"),
            (ProxyError::ConnectTimeout, 502, "connect"),
            (ProxyError::Timeout, 504, "timeout"),
            (ProxyError::BadRequest("x"), 400, "bad_request"),
            (ProxyError::RequestBodyTimeout, 408, "request_body_timeout"),
            (ProxyError::Overloaded, 503, "overloaded"),
            (ProxyError::UnexpectedUpgrade, 502, "unexpected_upgrade"),
            (
                ProxyError::FaultAbort(StatusCode::IM_A_TEAPOT),
                418,
                "fault",
            ),
        ];
        for (error, status, kind) in cases {
            assert_eq!(error.status().as_u16(), status);
            assert_eq!(error.kind(), kind);
        }
        assert_eq!(
            ProxyError::Timeout.upstream_kind(),
            Some(UpstreamErrorKind::Timeout)
        );
        assert_eq!(ProxyError::NoRoute.upstream_kind(), None);
    }
}
