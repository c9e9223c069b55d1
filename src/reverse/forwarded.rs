//! Forwarding headers a reverse proxy adds (X-Forwarded-For/-Proto/-Host and RFC 7239
//! Forwarded), and when incoming ones may be believed. Pure functions, unit-tested.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, FORWARDED};
use ipnet::IpNet;

use crate::config::canonical_ip;
use crate::h1::writer::encode_fields;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What this hop knows about the client it is serving.
pub struct Hop<'a> {
    /// The direct peer's address.
    pub peer: IpAddr,
    /// `https` for a TLS listener.
    pub proto: &'static str,
    /// The Host (or :authority) the client asked for.
    pub host: Option<&'a str>,
}

/// Whether values a peer sends about earlier hops may be kept.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical_ip(peer);
    trusted.iter().any(|net| net.contains(&ip))
}

/// Sets the forwarding headers for this hop. From an untrusted peer every incoming
/// value is dropped first, so a client cannot claim to be someone else.
pub fn apply_forwarding(headers: &mut HeaderMap, hop: &Hop<'_>, trusted: bool) {
    let peer = canonical_ip(hop.peer);
    let earlier_xff = if trusted {
        joined(headers, &X_FORWARDED_FOR)
    } else {
        None
    };
    let earlier_fwd = if trusted {
        joined(headers, &FORWARDED)
    } else {
        None
    };
    if !trusted {
        headers.remove(&X_FORWARDED_PROTO);
        headers.remove(&X_FORWARDED_HOST);
    }
    let xff = match earlier_xff {
        Some(prev) => format!("{prev}, {peer}"),
        None => peer.to_string(),
    };
    set(headers, X_FORWARDED_FOR, &xff);
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        set(headers, X_FORWARDED_PROTO, hop.proto);
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = hop.host {
            set(headers, X_FORWARDED_HOST, host);
        }
    }
    let element = forwarded_element(peer, hop);
    let fwd = match earlier_fwd {
        Some(prev) => format!("{prev}, {element}"),
        None => element,
    };
    set(headers, FORWARDED, &fwd);
}

/// What [`apply_forwarding`] sets for an untrusted peer, made once per connection:
/// those values depend only on the peer, which does not change, and the Host, which
/// rarely does (the stamp is remade when it differs).
pub struct Stamp {
    host: Option<HeaderValue>,
    /// The fields as set on an empty map.
    fields: HeaderMap,
    /// The same fields as HTTP/1.1 header lines, for a head written without a map.
    lines: Vec<u8>,
}

impl Stamp {
    /// The stamp for `peer` asking for `host` over `proto`.
    pub fn new(peer: IpAddr, proto: &'static str, host: Option<&HeaderValue>) -> Stamp {
        let hop = Hop {
            peer,
            proto,
            host: host.and_then(|h| h.to_str().ok()),
        };
        let mut fields = HeaderMap::new();
        apply_forwarding(&mut fields, &hop, false);
        let mut lines = Vec::new();
        encode_fields(&mut lines, &fields);
        Stamp {
            host: host.cloned(),
            fields,
            lines,
        }
    }

    /// Whether it was made for this Host.
    pub fn fits(&self, host: Option<&HeaderValue>) -> bool {
        self.host.as_ref() == host
    }

    /// Sets the fields on a map [`Forwarder::stamp_for`] has cleared of the peer's.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.fields {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The fields as `name: value\r\n` lines.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }
}

/// Puts a deferred stamp's fields into `headers`, for what reads or sends the map (rules,
/// an HTTP/2 upstream); nothing is left to add as lines afterwards.
pub fn settle(stamp: &mut Option<Arc<Stamp>>, headers: &mut HeaderMap) {
    if let Some(stamp) = stamp.take() {
        stamp.apply(headers);
    }
}

/// Whether `name` is one of the forwarding fields a stamp sets.
fn is_forwarding(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "forwarded"
    )
}

/// One client connection's forwarding: a trusted peer's headers are extended at each
/// request; an untrusted peer's are replaced by a [`Stamp`] kept for the connection.
pub struct Forwarder {
    peer: IpAddr,
    trusted: bool,
    stamp: Option<Arc<Stamp>>,
}

impl Forwarder {
    /// For a connection from `peer`, trusted when it is in `trusted` (`--trusted-proxy`).
    pub fn new(peer: IpAddr, trusted: &[IpNet]) -> Forwarder {
        Forwarder {
            peer,
            trusted: is_trusted(peer, trusted),
            stamp: None,
        }
    }

    /// Sets X-Forwarded-For/-Proto/-Host and Forwarded for this hop (over HTTPS), for a
    /// request asking for `host`.
    pub fn apply(&mut self, headers: &mut HeaderMap, host: Option<&HeaderValue>) {
        if let Some(stamp) = self.stamp_for(headers, host) {
            stamp.apply(headers);
        }
    }

    /// Like [`Forwarder::apply`], but an untrusted peer's stamp is returned instead of
    /// set: the peer's own forwarding fields are removed from `headers`, and the caller
    /// adds the stamp's (as lines in a written head, or with [`Stamp::apply`]). A
    /// trusted peer's fields are extended in `headers`, and `None` returned.
    pub fn stamp_for(
        &mut self,
        headers: &mut HeaderMap,
        host: Option<&HeaderValue>,
    ) -> Option<Arc<Stamp>> {
        if self.trusted {
            let hop = Hop {
                peer: self.peer,
                proto: "https",
                host: host.and_then(|h| h.to_str().ok()),
            };
            apply_forwarding(headers, &hop, true);
            return None;
        }
        let stamp = match self.stamp.take() {
            Some(stamp) if stamp.fits(host) => stamp,
            _ => Arc::new(Stamp::new(self.peer, "https", host)),
        };
        // One pass over the names: a client rarely sends any of these.
        if headers.keys().any(is_forwarding) {
            for name in [
                X_FORWARDED_FOR,
                X_FORWARDED_PROTO,
                X_FORWARDED_HOST,
                FORWARDED,
            ] {
                headers.remove(name);
            }
        }
        self.stamp = Some(stamp.clone());
        Some(stamp)
    }
}

/// One RFC 7239 element: `for=...;proto=...;host=...`.
pub fn forwarded_element(peer: IpAddr, hop: &Hop<'_>) -> String {
    let node = match peer {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut out = format!("for={node};proto={}", hop.proto);
    if let Some(host) = hop.host {
        out.push_str(";host=");
        out.push_str(&quote_if_needed(host));
    }
    out
}

/// A value as an RFC 7230 token when it is one, else as a quoted-string.
fn quote_if_needed(v: &str) -> String {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !v.is_empty() && v.chars().all(is_tchar) {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// All values of a header, joined with `, ` (None when absent or not text).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("7.7.7.7"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.test"));
        h.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        h
    }

    const HOP: Hop<'static> = Hop {
        peer: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)),
        proto: "https",
        host: Some("app.test:8443"),
    };

    #[test]
    fn untrusted_peer_values_are_replaced() {
        let mut h = spoofed();
        apply_forwarding(&mut h, &HOP, false);
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "app.test:8443");
        assert_eq!(
            h[FORWARDED],
            "for=10.0.0.9;proto=https;host=\"app.test:8443\""
        );
    }

    #[test]
    fn a_stamp_sets_what_apply_forwarding_sets_for_an_untrusted_peer() {
        let host = HeaderValue::from_static("app.test:8443");
        let stamp = Stamp::new(HOP.peer, "https", Some(&host));
        assert!(stamp.fits(Some(&host)));
        assert!(!stamp.fits(None));
        let mut forwarder = Forwarder::new(HOP.peer, &[]);
        let mut stamped = spoofed();
        forwarder.apply(&mut stamped, Some(&host));
        let mut applied = spoofed();
        apply_forwarding(&mut applied, &HOP, false);
        assert_eq!(stamped, applied);
        // Without a Host, a spoofed X-Forwarded-Host does not survive either.
        let mut stamped = spoofed();
        forwarder.apply(&mut stamped, None);
        assert!(!stamped.contains_key(&X_FORWARDED_HOST));
        assert_eq!(stamped[FORWARDED], "for=10.0.0.9;proto=https");
    }

    #[test]
    fn a_deferred_stamp_clears_the_peers_fields_and_carries_them_as_lines() {
        let host = HeaderValue::from_static("app.test:8443");
        let mut forwarder = Forwarder::new(HOP.peer, &[]);
        let mut h = spoofed();
        h.insert("accept", HeaderValue::from_static("*/*"));
        let stamp = forwarder.stamp_for(&mut h, Some(&host)).unwrap();
        assert_eq!(h.len(), 1, "only accept is left: {h:?}");
        assert_eq!(
            std::str::from_utf8(stamp.lines()).unwrap(),
            "x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: https\r\n\
             x-forwarded-host: app.test:8443\r\n\
             forwarded: for=10.0.0.9;proto=https;host=\"app.test:8443\"\r\n"
        );
        // A trusted peer's fields are extended in the map, and no stamp is made.
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = spoofed();
        let mut forwarder = Forwarder::new(HOP.peer, &trusted);
        assert!(forwarder.stamp_for(&mut h, Some(&host)).is_none());
        assert_eq!(h[&X_FORWARDED_FOR], "6.6.6.6, 7.7.7.7, 10.0.0.9");
    }

    #[test]
    fn trusted_peer_values_are_extended() {
        let mut h = spoofed();
        apply_forwarding(&mut h, &HOP, true);
        assert_eq!(h[&X_FORWARDED_FOR], "6.6.6.6, 7.7.7.7, 10.0.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "evil.test");
        assert_eq!(
            h[FORWARDED],
            "for=6.6.6.6, for=10.0.0.9;proto=https;host=\"app.test:8443\""
        );
    }

    #[test]
    fn fresh_request_ipv6_and_trust_matching() {
        let mut h = HeaderMap::new();
        let hop = Hop {
            peer: "2001:db8::1".parse().unwrap(),
            proto: "https",
            host: Some("localhost"),
        };
        apply_forwarding(&mut h, &hop, false);
        assert_eq!(h[&X_FORWARDED_FOR], "2001:db8::1");
        assert_eq!(
            h[FORWARDED],
            "for=\"[2001:db8::1]\";proto=https;host=localhost"
        );
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(!is_trusted("127.0.0.1".parse().unwrap(), &nets));
        assert!(!is_trusted("127.0.0.1".parse().unwrap(), &[]));
        // A v4-mapped peer is written as plain IPv4.
        let mut h = HeaderMap::new();
        let hop = Hop {
            peer: "::ffff:1.2.3.4".parse().unwrap(),
            proto: "https",
            host: None,
        };
        apply_forwarding(&mut h, &hop, false);
        assert_eq!(h[FORWARDED], "for=1.2.3.4;proto=https");
        assert!(!h.contains_key(&X_FORWARDED_HOST));
    }
}
