//! Header rules a proxy must apply (RFC 9110 7.6): hop-by-hop removal, Via, Max-Forwards,
//! and what changes between HTTP/1.1 and HTTP/2 sections. Pure functions over
//! `HeaderMap`, unit-tested below.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

const FIXED_HOP_BY_HOP: usize = 9;

/// Headers that describe one connection, never the message: removed in both directions.
/// Connection stays first: [`strip_hop_by_hop`] reads its tokens when it is present.
static HOP_BY_HOP: [HeaderName; FIXED_HOP_BY_HOP] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers this proxy sets itself; a `Connection` token must never remove them.
static OURS: [HeaderName; 3] = [header::VIA, header::HOST, header::CONTENT_LENGTH];

/// The index in [`HOP_BY_HOP`] of the field named `name` (lowercase), if it is one: a
/// match on the text, cheaper than comparing with each name in turn.
fn fixed_hop_by_hop(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authorization" => 3,
        "proxy-authenticate" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    })
}

/// Removes hop-by-hop headers: the fixed list plus every token `Connection` lists.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which fixed ones are present (most messages carry
    // none, or only Connection): removing only those spares a lookup for each absent one.
    let mut present = [false; FIXED_HOP_BY_HOP];
    for name in headers.keys() {
        if let Some(seen) = fixed_hop_by_hop(name.as_str()).and_then(|i| present.get_mut(i)) {
            *seen = true;
        }
    }
    if present[0] {
        // Tokens naming a fixed field, one of ours, or none present leave nothing more
        // to remove. A name is made only for a field to remove: most tokens are
        // `keep-alive` or `close`.
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .filter(|name| {
                fixed_hop_by_hop(name.as_str()).is_none()
                    && !OURS.contains(name)
                    && headers.contains_key(name)
            })
            .collect();
        for name in &listed {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
}

/// Whether the sender accepts trailers (`TE: trailers`).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// Removes what an HTTP/2 header section must not carry (RFC 9113 8.2.2): the
/// connection-specific fields, TE unless it says `trailers`, and Host, which
/// `:authority` replaces.
pub fn strip_for_h2(headers: &mut HeaderMap) {
    let trailers = accepts_trailers(headers);
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::HOST,
    ] {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// HTTP/2 may split Cookie into several fields; HTTP/1.1 needs one (RFC 9113 8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Whether the client asked to close the connection after this exchange.
pub fn wants_close(headers: &HeaderMap, version: Version) -> bool {
    let has_token = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match version {
        Version::HTTP_10 | Version::HTTP_09 => !has_token("keep-alive"),
        _ => has_token("close"),
    }
}

/// This instance's name in Via, unique per process so chained instances are told apart.
#[derive(Debug, Clone)]
pub struct ViaToken {
    token: String,
}

impl ViaToken {
    /// A token like `interpose-3f9c`, random per process.
    pub fn random() -> Self {
        let mut bytes = [0u8; 2];
        // getrandom failing leaves zeros: the token is then less unique, never wrong.
        let _ = getrandom::fill(&mut bytes);
        ViaToken {
            token: format!("interpose-{:02x}{:02x}", bytes[0], bytes[1]),
        }
    }

    /// No token: nothing is appended and no loop is seen. The reverse proxy's, which
    /// like nginx and HAProxy adds no Via.
    pub fn none() -> Self {
        ViaToken {
            token: String::new(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// True when a Via on this message already names this instance: the request has looped.
    pub fn seen_in(&self, headers: &HeaderMap) -> bool {
        !self.token.is_empty()
            && headers
                .get_all(header::VIA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|element| element.split_whitespace().nth(1))
                .any(|by| by.eq_ignore_ascii_case(&self.token))
    }

    /// Appends our element, e.g. `1.1 interpose-3f9c`, after any existing ones.
    pub fn append_to(&self, headers: &mut HeaderMap, received: Version) {
        if self.token.is_empty() {
            return;
        }
        let proto = match received {
            Version::HTTP_09 => "0.9",
            Version::HTTP_10 => "1.0",
            Version::HTTP_2 => "2",
            Version::HTTP_3 => "3",
            _ => "1.1",
        };
        if let Ok(value) = HeaderValue::from_str(&format!("{proto} {}", self.token)) {
            headers.append(header::VIA, value);
        }
    }
}

/// What Max-Forwards tells a proxy to do with an OPTIONS request.
#[derive(Debug, PartialEq, Eq)]
pub enum MaxForwards {
    /// No Max-Forwards header (or another method): forward as is.
    Absent,
    /// Zero: the proxy is the final recipient and answers itself.
    AnswerHere,
    /// Decremented and forwarded.
    Forward,
    /// Not a number: a malformed request.
    Invalid,
}

/// Applies Max-Forwards (RFC 9110 7.6.2) to OPTIONS, decrementing it when forwarding.
pub fn apply_max_forwards(method: &http::Method, headers: &mut HeaderMap) -> MaxForwards {
    if method != http::Method::OPTIONS {
        return MaxForwards::Absent;
    }
    let Some(value) = headers.get(header::MAX_FORWARDS) else {
        return MaxForwards::Absent;
    };
    let parsed = value
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .map(|s| s.parse::<u64>().unwrap_or(u64::MAX));
    match parsed {
        None => MaxForwards::Invalid,
        Some(0) => MaxForwards::AnswerHere,
        Some(n) => {
            headers.insert(header::MAX_FORWARDS, HeaderValue::from(n - 1));
            MaxForwards::Forward
        }
    }
}

/// The `Upgrade` value when the request asks to switch protocols (`Connection: upgrade`).
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts back the two hop-by-hop headers an upgrade needs on the next hop.
pub fn restore_upgrade_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_fixed_list_and_connection_tokens() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret, via, host"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic abc"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("via", "1.1 other"),
            ("host", "example.org"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "host", "via"]);
    }

    #[test]
    fn the_text_match_agrees_with_the_fixed_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(fixed_hop_by_hop(name.as_str()), Some(i), "{name}");
        }
        assert_eq!(fixed_hop_by_hop("content-length"), None);
    }

    #[test]
    fn connection_tokens_naming_absent_fields_remove_nothing_else() {
        let mut h = map(&[
            ("connection", "close, X-Gone, Keep-Alive"),
            ("x-a", "1"),
            ("x-a", "2"),
            ("server", "origin"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3, "only Connection goes");
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        assert!(h.contains_key("server"));
    }

    #[test]
    fn each_fixed_hop_by_hop_field_goes_even_alone() {
        for name in &HOP_BY_HOP {
            let mut h = map(&[("accept", "*/*"), (name.as_str(), "x"), ("x-a", "1")]);
            strip_hop_by_hop(&mut h);
            let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            left.sort();
            assert_eq!(left, ["accept", "x-a"], "{name} alone");
        }
        let mut h = map(&[("accept", "*/*"), ("x-a", "1"), ("x-a", "2")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3, "nothing hop-by-hop, nothing removed");
    }

    #[test]
    fn h2_sections_lose_connection_fields() {
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip, trailers"),
            ("host", "a.test"),
            ("content-length", "3"),
            ("accept", "*/*"),
        ]);
        strip_for_h2(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "content-length", "te"]);
        assert_eq!(h["te"], "trailers");
        let mut h = map(&[("te", "gzip")]);
        strip_for_h2(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }

    #[test]
    fn close_semantics_per_version() {
        assert!(!wants_close(&map(&[]), Version::HTTP_11));
        assert!(wants_close(
            &map(&[("connection", "Close")]),
            Version::HTTP_11
        ));
        assert!(wants_close(&map(&[]), Version::HTTP_10));
        assert!(!wants_close(
            &map(&[("connection", "keep-alive")]),
            Version::HTTP_10
        ));
    }

    #[test]
    fn via_append_and_loop_detection() {
        let via = ViaToken::random();
        let mut h = map(&[("via", "1.0 fred, 1.1 p.example.net")]);
        assert!(!via.seen_in(&h));
        via.append_to(&mut h, Version::HTTP_10);
        assert!(via.seen_in(&h));
        let last = h
            .get_all("via")
            .iter()
            .next_back()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(last, format!("1.0 {}", via.as_str()));
        let other = ViaToken {
            token: "interpose-0000".into(),
        };
        let h2 = map(&[("via", "1.1 interpose-ffff")]);
        assert!(!other.seen_in(&h2));
        let none = ViaToken::none();
        let mut h3 = map(&[("via", "1.1 interpose-ffff")]);
        none.append_to(&mut h3, Version::HTTP_11);
        assert_eq!(h3.get_all("via").iter().count(), 1);
        assert!(!none.seen_in(&map(&[("via", "1.1 ")])));
    }

    #[test]
    fn max_forwards() {
        let opt = http::Method::OPTIONS;
        let mut h = map(&[("max-forwards", "0")]);
        assert_eq!(apply_max_forwards(&opt, &mut h), MaxForwards::AnswerHere);
        let mut h = map(&[("max-forwards", "3")]);
        assert_eq!(apply_max_forwards(&opt, &mut h), MaxForwards::Forward);
        assert_eq!(h["max-forwards"], "2");
        let mut h = map(&[("max-forwards", "-1")]);
        assert_eq!(apply_max_forwards(&opt, &mut h), MaxForwards::Invalid);
        let mut h = map(&[("max-forwards", "0")]);
        assert_eq!(
            apply_max_forwards(&http::Method::GET, &mut h),
            MaxForwards::Absent
        );
        assert_eq!(apply_max_forwards(&opt, &mut map(&[])), MaxForwards::Absent);
    }

    #[test]
    fn upgrade_needs_connection_token() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(requested_upgrade(&h).is_none());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested_upgrade(&h).unwrap(), "websocket");
    }
}
