//! `--dump headers`: the full request and response heads of each exchange, as the
//! seed article's DumpRequest/DumpResponse show them, with credentials redacted.

use std::fmt::Write as _;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode, Version};

/// Headers whose values are secrets: shown as `<redacted>`.
const SECRET: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
];

/// The request head as sent upstream, each line prefixed with `> `.
pub fn request_dump(
    method: &Method,
    url: &str,
    path: &str,
    version: Version,
    headers: &HeaderMap,
) -> String {
    let mut out = format!("> {method} {path} {}    ({url})\n", version_text(version));
    write_fields(&mut out, "> ", headers);
    out
}

/// The response head as received, each line prefixed with `< `.
pub fn response_dump(status: StatusCode, version: Version, headers: &HeaderMap) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    let version = version_text(version);
    let mut out = format!("< {version} {} {reason}\n", status.as_u16());
    write_fields(&mut out, "< ", headers);
    out
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

fn write_fields(out: &mut String, prefix: &str, headers: &HeaderMap) {
    for (name, value) in headers {
        let shown = if SECRET.contains(name) {
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
        let req = request_dump(&Method::GET, "https://a.test/x", "/x", Version::HTTP_11, &h);
        assert!(
            req.starts_with("> GET /x HTTP/1.1    (https://a.test/x)\n"),
            "{req}"
        );
        assert!(req.contains("> host: a.test\n"));
        assert!(req.contains("> authorization: <redacted>\n"));
        assert!(!req.contains("s3cret") && !req.contains("abc"));
        let mut r = HeaderMap::new();
        r.insert(header::SET_COOKIE, "id=1".parse().unwrap());
        let resp = response_dump(StatusCode::OK, Version::HTTP_11, &r);
        assert_eq!(resp, "< HTTP/1.1 200 OK\n< set-cookie: <redacted>\n");
        let resp = response_dump(StatusCode::OK, Version::HTTP_2, &HeaderMap::new());
        assert_eq!(resp, "< HTTP/2 200 OK\n");
    }
}
