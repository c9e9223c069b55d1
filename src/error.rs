//! Errors that end an exchange, with the side that caused them, and the one
//! function that turns them into an HTTP answer.

use http::header::{HeaderMap, HeaderValue, PROXY_AUTHENTICATE};
use http::StatusCode;

/// Who caused an error: decides the status family and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

/// What went wrong, at the level of this proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or ambiguous (400).
    BadRequest(String),
    /// The client or destination is not allowed (403).
    Forbidden(String),
    /// Nothing to answer with (404): a `--map-local` rule found no file.
    NotFound(String),
    /// Proxy credentials missing or wrong (407).
    ProxyAuthRequired,
    /// The request head is too large (431).
    HeadersTooLarge,
    /// The request body is larger than `--max-body-size` allows (413); the limit.
    BodyTooLarge(u64),
    /// The client took too long to send its request head (408).
    RequestTimeout,
    /// The upstream could not be reached or broke the exchange (502).
    BadGateway(String),
    /// The upstream did not connect or answer in time (504).
    GatewayTimeout(String),
    /// The request has already passed through this instance (508).
    Loop,
    /// The proxy itself failed (500).
    Internal(String),
}

/// An error that ends an exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub struct ProxyError {
    pub kind: ErrorKind,
}

impl ProxyError {
    pub fn bad_request(reason: impl Into<String>) -> Self {
        ErrorKind::BadRequest(reason.into()).into()
    }
    pub fn forbidden(reason: impl Into<String>) -> Self {
        ErrorKind::Forbidden(reason.into()).into()
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        ErrorKind::NotFound(reason.into()).into()
    }
    pub fn bad_gateway(reason: impl Into<String>) -> Self {
        ErrorKind::BadGateway(reason.into()).into()
    }
    pub fn gateway_timeout(reason: impl Into<String>) -> Self {
        ErrorKind::GatewayTimeout(reason.into()).into()
    }

    /// Which side caused it.
    pub fn side(&self) -> Side {
        match self.kind {
            ErrorKind::BadRequest(_)
            | ErrorKind::Forbidden(_)
            | ErrorKind::NotFound(_)
            | ErrorKind::ProxyAuthRequired
            | ErrorKind::HeadersTooLarge
            | ErrorKind::BodyTooLarge(_)
            | ErrorKind::RequestTimeout
            | ErrorKind::Loop => Side::Client,
            ErrorKind::BadGateway(_) | ErrorKind::GatewayTimeout(_) => Side::Upstream,
            ErrorKind::Internal(_) => Side::Internal,
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest(_) => StatusCode::BAD_REQUEST,
            ErrorKind::Forbidden(_) => StatusCode::FORBIDDEN,
            ErrorKind::NotFound(_) => StatusCode::NOT_FOUND,
            ErrorKind::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ErrorKind::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Loop => StatusCode::LOOP_DETECTED,
            ErrorKind::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The one-line reason sent as the body and written to the log.
    pub fn reason(&self) -> String {
        match &self.kind {
            ErrorKind::BadRequest(r) => format!("bad request: {r}"),
            ErrorKind::Forbidden(r) => format!("forbidden: {r}"),
            ErrorKind::NotFound(r) => format!("not found: {r}"),
            ErrorKind::ProxyAuthRequired => "proxy authentication required".into(),
            ErrorKind::HeadersTooLarge => "request header section too large".into(),
            ErrorKind::BodyTooLarge(max) => {
                format!("request body too large (over --max-body-size {max} bytes)")
            }
            ErrorKind::RequestTimeout => "request head not received in time".into(),
            ErrorKind::BadGateway(r) => format!("bad gateway: {r}"),
            ErrorKind::GatewayTimeout(r) => format!("gateway timeout: {r}"),
            ErrorKind::Loop => {
                "loop detected: this request already passed through this proxy".into()
            }
            ErrorKind::Internal(r) => format!("internal error: {r}"),
        }
    }

    /// Headers the answer needs besides the body (the 407 challenge).
    pub fn extra_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if self.kind == ErrorKind::ProxyAuthRequired {
            h.insert(
                PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"interpose\""),
            );
        }
        h
    }

    /// Whether the connection must be closed after answering: any client-side
    /// framing doubt means the next bytes cannot be trusted as a request.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::BadRequest(_)
                | ErrorKind::HeadersTooLarge
                | ErrorKind::BodyTooLarge(_)
                | ErrorKind::RequestTimeout
                | ErrorKind::Loop
        )
    }
}

impl From<ErrorKind> for ProxyError {
    fn from(kind: ErrorKind) -> Self {
        ProxyError { kind }
    }
}

impl From<crate::h1::reader::ReadError> for ProxyError {
    fn from(e: crate::h1::reader::ReadError) -> Self {
        use crate::h1::head::HeadError;
        use crate::h1::reader::ReadError;
        match e {
            ReadError::Head(HeadError::TooLarge) => ErrorKind::HeadersTooLarge.into(),
            other => ProxyError::bad_request(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_sides() {
        let cases = [
            (ProxyError::bad_request("x"), 400, Side::Client),
            (ProxyError::forbidden("x"), 403, Side::Client),
            (ErrorKind::ProxyAuthRequired.into(), 407, Side::Client),
            (ErrorKind::HeadersTooLarge.into(), 431, Side::Client),
            (ProxyError::bad_gateway("x"), 502, Side::Upstream),
            (ProxyError::gateway_timeout("x"), 504, Side::Upstream),
            (ErrorKind::Loop.into(), 508, Side::Client),
        ];
        for (err, status, side) in cases {
            assert_eq!(err.status().as_u16(), status);
            assert_eq!(err.side(), side);
        }
        let auth: ProxyError = ErrorKind::ProxyAuthRequired.into();
        assert_eq!(
            auth.extra_headers()["proxy-authenticate"],
            "Basic realm=\"interpose\""
        );
    }
}
