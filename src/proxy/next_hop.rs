//! An HTTP/1.1 request head made ready for the next hop, the same way by `forward`,
//! `mitm` and `reverse`: hop-by-hop fields go, except what the next hop still needs
//! (a WebSocket or other upgrade, never h2c; `TE: trailers` for a client that takes
//! trailers; the Trailer declaration of a chunked body); `Expect: 100-continue` is
//! answered here, so the body streams at once; then the request rules, if any.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::Version;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::headers::strip_hop_by_hop;
use super::headers::{accepts_trailers, requested_upgrade, restore_upgrade_headers};
use super::recording::Recording;
use super::rules_h1::{modify_request_headers, rewrite_request_body};
use crate::error::ProxyError;
use crate::h1::head::Framing;
use crate::h1::reader::{BodyState, MessageReader};
use crate::rules::Rules;

/// What the hop-by-hop rules left for the caller to act on.
pub struct NextHop {
    /// The protocol the client asked to switch to (kept in the headers).
    pub upgrade: Option<HeaderValue>,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
}

/// Applies the hop-by-hop rules to `headers`.
pub fn prepare(headers: &mut HeaderMap, version: Version, framing: Framing) -> NextHop {
    let expect_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let trailer_decl: Vec<HeaderValue> = headers.get_all(header::TRAILER).iter().cloned().collect();
    let takes_trailers = accepts_trailers(headers);
    // h2c is never passed on: the proxy would then carry a protocol it does not parse.
    let upgrade = requested_upgrade(headers)
        .filter(|p| !p.as_bytes().eq_ignore_ascii_case(b"h2c"))
        .filter(|_| version == Version::HTTP_11 && framing == Framing::Empty);
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade.clone() {
        restore_upgrade_headers(headers, protocol);
    }
    if takes_trailers && version == Version::HTTP_11 {
        // TE is hop-by-hop: we say it again for our own hop, since we relay trailers.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if framing == Framing::Chunked {
        headers.extend(trailer_decl.into_iter().map(|v| (header::TRAILER, v)));
    }
    if expect_continue {
        // Answered by `continue_if_asked`: the origin must not wait for it too.
        headers.remove(header::EXPECT);
    }
    NextHop {
        upgrade,
        expect_continue,
    }
}

/// Sends `100 Continue` to a client that asked for it and has a body to send.
pub async fn continue_if_asked<W: AsyncWrite + Unpin>(
    w: &mut W,
    hop: &NextHop,
    version: Version,
    framing: Framing,
) -> Result<(), ProxyError> {
    if hop.expect_continue && version == Version::HTTP_11 && framing != Framing::Empty {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| ProxyError::bad_request(format!("client went away: {e}")))?;
    }
    Ok(())
}

/// `--modify-body` (reading the body it applies to) and then `--modify-header`, which
/// has the last word. Returns the framing the request now goes out with and the body
/// bytes already read, to send first.
#[allow(clippy::too_many_arguments)]
pub async fn apply_rules<R: AsyncRead + Unpin>(
    rules: &Rules,
    recording: &mut Recording,
    reader: &mut MessageReader<R>,
    body: &mut BodyState,
    headers: &mut HeaderMap,
    framing: Framing,
    idle: std::time::Duration,
) -> Result<(Framing, Bytes), ProxyError> {
    let rewriting = rewrite_request_body(rules, recording, reader, body, headers, framing, idle);
    let sent = match Box::pin(rewriting).await? {
        Some(body) => (body.framing, body.prefix),
        None => (framing, Bytes::new()),
    };
    modify_request_headers(rules, recording, headers);
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_websocket_upgrade_survives_and_h2c_does_not() {
        let ws = [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("x", "1"),
        ];
        let mut h = map(&ws);
        let hop = prepare(&mut h, Version::HTTP_11, Framing::Empty);
        assert_eq!(hop.upgrade.as_ref().unwrap(), "websocket");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "h2c")]);
        assert!(prepare(&mut h, Version::HTTP_11, Framing::Empty)
            .upgrade
            .is_none());
        assert!(!h.contains_key("upgrade") && !h.contains_key("connection"));
    }

    #[test]
    fn expect_trailers_and_te() {
        let mut h = map(&[
            ("expect", "100-continue"),
            ("te", "trailers"),
            ("connection", "te"),
            ("trailer", "x-checksum"),
        ]);
        let hop = prepare(&mut h, Version::HTTP_11, Framing::Chunked);
        assert!(hop.expect_continue);
        assert!(!h.contains_key("expect"));
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["trailer"], "x-checksum");
        // Without a chunked body there are no trailers to declare.
        let mut h = map(&[("trailer", "x-checksum")]);
        prepare(&mut h, Version::HTTP_11, Framing::Length(3));
        assert!(!h.contains_key("trailer"));
    }
}
