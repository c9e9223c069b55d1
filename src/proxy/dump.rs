//! `--dump headers`: the full request and response heads of each exchange, as the
//! seed article's DumpRequest/DumpResponse show them, with credentials redacted;
//! `--dump bodies`: the same heads, each followed by its capped body, as one block.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode, Version};

use super::dump_body::{render_body, BodyCapture, BodyView};

/// Headers whose values are secrets: shown as `<redacted>` unless `--dump-secrets`.
static SECRET: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
];

/// Whether secret header values are shown (`--dump-secrets`) or redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Secrets {
    #[default]
    Redact,
    Show,
}

/// The request head as sent upstream, each line prefixed with `> `.
pub fn request_dump(
    method: &Method,
    url: &str,
    path: &str,
    version: Version,
    headers: &HeaderMap,
    secrets: Secrets,
) -> String {
    let mut out = format!("> {method} {path} {}    ({url})\n", version_text(version));
    write_fields(&mut out, "> ", headers, secrets);
    out
}

/// The response head as received, each line prefixed with `< `.
pub fn response_dump(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    secrets: Secrets,
) -> String {
    let version = version_text(version);
    let reason = status.canonical_reason().unwrap_or("");
    let mut out = format!("< {version} {} {reason}\n", status.as_u16());
    write_fields(&mut out, "< ", headers, secrets);
    out
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// One exchange under `--dump bodies` (or `--dump` with `--filter`): its heads as dumped,
/// printed with its bodies as captured while they streamed when the exchange ends.
pub struct ExchangeDump {
    /// Body bytes shown (0: bodies are not shown).
    max: usize,
    request: HeadSeen,
    /// Set once the response head arrives.
    pub response: Option<HeadSeen>,
}

/// A dumped head and what is needed to show its body.
pub struct HeadSeen {
    text: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
}

impl HeadSeen {
    /// `text` is the head as [`request_dump`] or [`response_dump`] wrote it.
    pub fn new(text: String, headers: &HeaderMap) -> Self {
        let value = |name| {
            headers
                .get(name)
                .map(|v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        HeadSeen {
            text,
            content_type: value(header::CONTENT_TYPE),
            content_encoding: value(header::CONTENT_ENCODING),
        }
    }
}

impl ExchangeDump {
    /// Starts with the request head; bodies are shown up to `max` bytes.
    pub fn new(max: usize, request: HeadSeen) -> Self {
        ExchangeDump {
            max,
            request,
            response: None,
        }
    }

    /// The whole block: request head and body, then response head and body, the
    /// bodies as `request_body` and `response_body` captured them.
    pub fn render(&self, request_body: &BodyCapture, response_body: &BodyCapture) -> String {
        let mut out = self.request.text.clone();
        out.push_str(&self.body(&self.request, request_body, "> "));
        if let Some(response) = &self.response {
            out.push_str(&response.text);
            out.push_str(&self.body(response, response_body, "< "));
        }
        out
    }

    fn body(&self, head: &HeadSeen, capture: &BodyCapture, prefix: &str) -> String {
        if self.max == 0 {
            return String::new();
        }
        let view = BodyView {
            kept: capture.kept(),
            total: capture.total(),
            content_type: head.content_type.as_deref(),
            content_encoding: head.content_encoding.as_deref(),
        };
        render_body(&view, self.max, prefix)
    }
}

/// Proxy-Authorization is ours, never forwarded: it stays redacted even with `Show`.
fn write_fields(out: &mut String, prefix: &str, headers: &HeaderMap, secrets: Secrets) {
    for (name, value) in headers {
        let hidden = SECRET.contains(name)
            && (secrets == Secrets::Redact || name == header::PROXY_AUTHORIZATION);
        let shown = if hidden {
            "<redacted>".into()
        } else {
            String::from_utf8_lossy(value.as_bytes())
        };
        let _ = writeln!(out, "{prefix}{name}: {shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_shown_with_secrets_redacted() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "a.test".parse().unwrap());
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        h.insert(header::COOKIE, "session=abc".parse().unwrap());
        let req = request_dump(
            &Method::GET,
            "https://a.test/x",
            "/x",
            Version::HTTP_11,
            &h,
            Secrets::Redact,
        );
        assert!(
            req.starts_with("> GET /x HTTP/1.1    (https://a.test/x)\n"),
            "{req}"
        );
        assert!(req.contains("> host: a.test\n"));
        assert!(req.contains("> authorization: <redacted>\n"));
        assert!(!req.contains("s3cret") && !req.contains("abc"));
        let mut r = HeaderMap::new();
        r.insert(header::SET_COOKIE, "id=1".parse().unwrap());
        let resp = response_dump(StatusCode::OK, Version::HTTP_11, &r, Secrets::Redact);
        assert_eq!(resp, "< HTTP/1.1 200 OK\n< set-cookie: <redacted>\n");
        let resp = response_dump(
            StatusCode::OK,
            Version::HTTP_2,
            &HeaderMap::new(),
            Secrets::Redact,
        );
        assert_eq!(resp, "< HTTP/2 200 OK\n");
    }

    #[test]
    fn dump_secrets_shows_them_but_never_proxy_authorization() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        h.insert(header::COOKIE, "session=abc".parse().unwrap());
        h.insert(header::PROXY_AUTHORIZATION, "Basic cHc=".parse().unwrap());
        let req = request_dump(
            &Method::GET,
            "http://a.test/",
            "/",
            Version::HTTP_11,
            &h,
            Secrets::Show,
        );
        assert!(req.contains("> authorization: Bearer s3cret\n"), "{req}");
        assert!(req.contains("> cookie: session=abc\n"), "{req}");
        assert!(req.contains("> proxy-authorization: <redacted>\n"), "{req}");
        let mut r = HeaderMap::new();
        r.insert(header::SET_COOKIE, "id=1".parse().unwrap());
        let resp = response_dump(StatusCode::OK, Version::HTTP_11, &r, Secrets::Show);
        assert_eq!(resp, "< HTTP/1.1 200 OK\n< set-cookie: id=1\n");
    }

    #[test]
    fn an_exchange_block_shows_heads_then_bodies() {
        let mut req_h = HeaderMap::new();
        req_h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let text = request_dump(
            &Method::POST,
            "http://a.test/p",
            "/p",
            Version::HTTP_11,
            &req_h,
            Secrets::Redact,
        );
        let mut dump = ExchangeDump::new(8, HeadSeen::new(text, &req_h));
        let (mut request_body, mut response_body) = (BodyCapture::new(8), BodyCapture::new(8));
        request_body.observe(b"{\"k\":\"value\"}");
        let resp_h = HeaderMap::new();
        let text = response_dump(StatusCode::OK, Version::HTTP_11, &resp_h, Secrets::Redact);
        dump.response = Some(HeadSeen::new(text, &resp_h));
        response_body.observe(b"ok\n");
        assert_eq!(
            dump.render(&request_body, &response_body),
            "> POST /p HTTP/1.1    (http://a.test/p)\n> content-type: application/json\n\
             >\n> {\"k\":\"va\n> … (8 of 13 bytes shown)\n\
             < HTTP/1.1 200 OK\n<\n< ok\n"
        );
    }
}
