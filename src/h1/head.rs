//! Parses and strictly validates an HTTP/1.x request head: httparse does the
//! tokenising; this module rejects everything a request smuggler relies on.

use std::mem::MaybeUninit;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Largest request head accepted; beyond it the client gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines accepted in one head.
const MAX_HEADERS: usize = 256;

/// How the body that follows a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// A request head as read from the client, before any proxy rule is applied.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    /// The request-target exactly as sent (absolute-form, authority-form, origin-form or `*`).
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
}

/// A response head as read from an upstream.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
}

/// Why a head was refused; each maps to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("request header section larger than 64 KiB")]
    TooLarge,
}

/// Room for the header lines of one head, left uninitialised: httparse fills what it
/// uses (zeroing all 256 slots, 8 KiB, at every parse showed in profiles).
fn header_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses one head from the start of `buf`: `Ok(None)` means more bytes are needed;
/// `Ok(Some((head, len)))` gives the head and how many bytes it used.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut slots = header_slots();
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(describe(e))),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let method = req
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(HeadError::Malformed("invalid method"))?;
    let target = req.path.unwrap_or_default().to_string();
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };

    let fields = collect_fields(buf, req.headers, REQUEST_SPARE)?;
    let (headers, chunked, content_length) =
        (fields.headers, fields.chunked, fields.content_length);
    let host_count = headers.get_all(header::HOST).iter().count();
    if chunked && version == Version::HTTP_10 {
        return Err(HeadError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    // Clients such as hyper send CONNECT without Host; its target already names the host.
    let host_optional = version == Version::HTTP_10 || method == Method::CONNECT;
    if host_count > 1 || (host_count == 0 && !host_optional) {
        return Err(HeadError::Malformed(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    let framing = match (chunked, content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    let head = RequestHead {
        method,
        target,
        version,
        headers,
        framing,
    };
    Ok(Some((head, len)))
}

/// Header fields with the framing facts found while collecting them.
struct Fields {
    headers: HeaderMap,
    chunked: bool,
    content_length: Option<u64>,
}

/// Room left in a request's header map for the fields a proxy adds before sending it on
/// (Via, the forwarding headers, TE, Upgrade): the map then never grows and rehashes.
const REQUEST_SPARE: usize = 6;

/// Builds the header map, refusing ambiguous framing headers on the way.
fn collect_fields(
    buf: &[u8],
    raw: &[httparse::Header<'_>],
    spare: usize,
) -> Result<Fields, HeadError> {
    let mut headers = HeaderMap::with_capacity(raw.len() + spare);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for h in raw {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            ends_without_whitespace(buf, h.value)?;
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            if content_length.is_some() {
                continue;
            }
            content_length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            ends_without_whitespace(buf, h.value)?;
            if chunked || !h.value.eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::Malformed(
                    "unsupported Transfer-Encoding (only a single \"chunked\" is accepted)",
                ));
            }
            chunked = true;
        }
        headers.append(name, value);
    }
    if chunked && content_length.is_some() {
        return Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(Fields {
        headers,
        chunked,
        content_length,
    })
}

/// Parses one response head from the start of `buf` (see [`parse_request_head`]);
/// `is_head` says the request was HEAD, so no body follows whatever the headers say.
pub fn parse_response_head(
    buf: &[u8],
    is_head: bool,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let mut slots = header_slots();
    let mut resp = httparse::Response::new(&mut []);
    let parser = httparse::ParserConfig::default();
    let len = match parser.parse_response_with_uninit_headers(&mut resp, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(describe(e))),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Malformed("invalid status code"))?;
    let version = match resp.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let fields = collect_fields(buf, resp.headers, 0)?;
    let bodiless = is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match (bodiless, fields.chunked, fields.content_length) {
        (true, _, _) => Framing::Empty,
        (_, true, _) => Framing::Chunked,
        (_, _, Some(0)) => Framing::Empty,
        (_, _, Some(n)) => Framing::Length(n),
        _ => Framing::UntilClose,
    };
    let head = ResponseHead {
        status,
        version,
        headers: fields.headers,
        framing,
    };
    Ok(Some((head, len)))
}

/// Content-Length is 1*DIGIT: no sign, no spaces, no list, and it must fit in u64.
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    let bad = HeadError::Malformed("invalid Content-Length");
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(bad)
}

/// httparse trims trailing whitespace from values; for the framing headers we refuse it,
/// since `chunked\t` and `5 ` are classic ways to make two parsers disagree.
fn ends_without_whitespace(buf: &[u8], value: &[u8]) -> Result<(), HeadError> {
    let end = (value.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) + value.len();
    match buf.get(end) {
        Some(b'\r') | Some(b'\n') => Ok(()),
        _ => Err(HeadError::Malformed(
            "whitespace after a Content-Length or Transfer-Encoding value",
        )),
    }
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name (whitespace before colon or obs-fold?)",
        httparse::Error::HeaderValue => "invalid character in a header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request_head(raw.as_bytes())
    }

    fn malformed(raw: &str) {
        assert!(
            matches!(parse(raw), Err(HeadError::Malformed(_))),
            "should be malformed: {raw:?} -> {:?}",
            parse(raw).map(|o| o.map(|(h, _)| h))
        );
    }

    #[test]
    fn parses_absolute_form_with_length() {
        let raw = "POST http://a.test/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello";
        let (head, len) = parse(raw).unwrap().unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.target, "http://a.test/x");
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(&raw[len..], "hello");
    }

    #[test]
    fn partial_head_needs_more() {
        assert!(parse("GET / HTTP/1.1\r\nHost: a").unwrap().is_none());
    }

    #[test]
    fn connect_may_omit_host() {
        let (head, _) = parse("CONNECT a.test:443 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::CONNECT);
    }

    #[test]
    fn duplicate_equal_lengths_collapse() {
        let raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        let (head, _) = parse(raw).unwrap().unwrap();
        assert_eq!(head.headers.get_all("content-length").iter().count(), 1);
    }

    #[test]
    fn smuggling_shapes_are_malformed() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        ];
        for raw in cases {
            malformed(raw);
        }
    }

    #[test]
    fn response_framing() {
        let p = |raw: &str, head: bool| {
            parse_response_head(raw.as_bytes(), head)
                .unwrap()
                .unwrap()
                .0
        };
        let r = p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!((r.status, r.framing), (StatusCode::OK, Framing::Length(5)));
        assert_eq!(
            p("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).framing,
            Framing::Empty
        );
        assert_eq!(
            p("HTTP/1.1 204 No Content\r\n\r\n", false).framing,
            Framing::Empty
        );
        assert_eq!(
            p(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            )
            .framing,
            Framing::Empty
        );
        assert_eq!(
            p(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .framing,
            Framing::Chunked
        );
        let r = p("HTTP/1.0 200 OK\r\n\r\n", false);
        assert_eq!(
            (r.version, r.framing),
            (Version::HTTP_10, Framing::UntilClose)
        );
        assert_eq!(
            p("HTTP/1.1 100 Continue\r\n\r\n", false).framing,
            Framing::Empty
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(
                parse_response_head(bad.as_bytes(), false).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn oversized_head_is_too_large() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        while raw.len() <= MAX_HEAD_BYTES {
            raw.push_str(
                "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        assert_eq!(parse(&raw).err(), Some(HeadError::TooLarge));
        let big_value = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "a".repeat(70_000));
        assert_eq!(parse(&big_value).err(), Some(HeadError::TooLarge));
    }
}
