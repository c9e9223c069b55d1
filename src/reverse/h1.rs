//! The reverse proxy's HTTP/1.1 side on the proxy engine (the one `forward` and `mitm`
//! run on): requests are read by the engine's parser and go upstream over its pools and
//! round trip, inside the connection's own task. Forwarding headers and the client's Host
//! here; round-robin with one retry elsewhere in [`super::h1_upstream`]; WebSocket
//! upgrades, flows and the rewrite rules as in the other modes ([`super::h1_rules`]
//! routes).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::forwarded::{self, Forwarder};
use super::h1_rules::{route, Route};
use super::h1_upstream::{balanced, mapped as mapped_send, Outbound};
use super::ReverseProxy;
use crate::error::{ErrorKind, ProxyError};
use crate::flow::record::TlsFacts;
use crate::h1::head::{Framing, RequestHead};
use crate::h1::reader::{BodyState, MessageReader};
use crate::proxy::conn::{next_request, Conn};
use crate::proxy::forward::{conclude, Done, Ended};
use crate::proxy::headers::wants_close;
use crate::proxy::next_hop;
use crate::proxy::recording::{Asked, Recording};
use crate::proxy::rules_h1::answer_local;

/// Serves the requests of one TLS client connection until it closes.
///
/// A plain function around an `async move` block: the stream is split before the
/// future is made, so that the connection's task does not keep it twice (as an
/// argument, and inside the halves).
#[allow(clippy::manual_async_fn)]
pub fn serve<'a>(
    proxy: &'a ReverseProxy,
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = ()> + Send + 'a {
    let facts = Arc::new(crate::tls::session_facts(tls.get_ref().1));
    let (read, write) = tokio::io::split(tls);
    async move {
        let mut write = write;
        let mut reader = MessageReader::new(read);
        let conn = Conn {
            engine: &proxy.engine,
            peer,
            shutdown,
            id: crate::flow::recorder::next_connection_id(),
        };
        // A connection that has not asked for anything yet keeps its task small: the
        // exchanges' state (kilobytes) is boxed once the first request has arrived.
        let Some(first) = next_request(conn, &mut reader, &mut write).await else {
            return;
        };
        let client = Client {
            conn,
            facts,
            forwarder: Forwarder::new(peer.ip(), &proxy.cfg.trusted_proxies),
        };
        Box::pin(serve_requests(proxy, client, reader, write, first)).await;
    }
}

/// Serves `first`, then every request after it, until the connection closes.
async fn serve_requests<R, W>(
    proxy: &ReverseProxy,
    mut client: Client<'_>,
    mut reader: MessageReader<R>,
    mut write: W,
    first: (RequestHead, Instant),
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut next = Some(first);
    while let Some((head, started)) = next {
        let client = &mut client;
        let keep_alive = serve_exchange(proxy, client, &mut reader, &mut write, head, started);
        if !keep_alive.await {
            let _ = write.shutdown().await;
            return;
        }
        next = next_request(client.conn, &mut reader, &mut write).await;
    }
}

/// The client connection an exchange arrived on.
struct Client<'a> {
    conn: Conn<'a>,
    facts: Arc<TlsFacts>,
    /// Sets the forwarding headers of each request.
    forwarder: Forwarder,
}

/// Serves one request; returns whether the connection may carry another.
async fn serve_exchange<R, W>(
    proxy: &ReverseProxy,
    client: &mut Client<'_>,
    reader: &mut MessageReader<R>,
    w: &mut W,
    head: RequestHead,
    started: Instant,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let engine = client.conn.engine.as_ref();
    let peer = client.conn.peer;
    let client_close =
        client.conn.shutdown.is_cancelled() || wants_close(&head.headers, head.version);
    let method = head.method.clone();
    let target = head.target.clone();
    let plan = &engine.record;
    let mut recording = if plan.recorder.is_some() || plan.rules.is_some() {
        plan.begin(Asked {
            client: peer,
            connection_id: client.conn.id,
            method: &head.method,
            url: &absolute_url(&head),
            version: head.version,
            headers: &head.headers,
            tls: Some(client.facts.as_ref().clone()),
        })
    } else {
        None
    };
    let mut body = BodyState::new(head.framing);
    let rec = recording.as_deref_mut();
    let outcome = exchange(proxy, client, reader, w, head, &mut body, client_close, rec).await;
    let ended = Ended {
        peer,
        method: &method,
        target: &target,
        started,
        keep_alive: !client_close && body.is_done(),
    };
    conclude(engine, w, ended, outcome, recording).await
}

/// The URL the client asked for: `https://` + its Host + the path.
fn absolute_url(head: &RequestHead) -> String {
    if !head.target.starts_with('/') {
        return head.target.clone();
    }
    let host = head.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    format!("https://{}{}", host.unwrap_or("-"), head.target)
}

/// The exchange proper; an `Err` is answered by the caller (nothing was sent yet).
#[allow(clippy::too_many_arguments)]
async fn exchange<R, W>(
    proxy: &ReverseProxy,
    client: &mut Client<'_>,
    reader: &mut MessageReader<R>,
    w: &mut W,
    head: RequestHead,
    body_state: &mut BodyState,
    client_close: bool,
    mut recording: Option<&mut Recording>,
) -> Result<Done, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let RequestHead {
        method,
        target,
        version,
        mut headers,
        framing,
    } = head;
    if method == Method::CONNECT {
        return Err(ProxyError::bad_request(
            "CONNECT is not served by a reverse proxy",
        ));
    }
    let mut path = origin_form(&target)?;
    if let (Framing::Length(n), Some(max)) = (framing, proxy.cfg.max_body_size) {
        // Refused before any upstream is contacted; the unread body closes the connection.
        if n > max {
            return Err(ErrorKind::BodyTooLarge(max).into());
        }
    }
    let client_host = headers.get(header::HOST).cloned();
    let mut host = client_host.clone();
    let rules = proxy.engine.record.rules.as_deref();
    let mut mapped = None;
    if let (Some(rules), Some(rec)) = (rules, recording.as_deref_mut()) {
        match route(rules, rec)? {
            Route::Balanced => {}
            Route::Mapped { upstream, path: to } => {
                // The Host the new upstream is asked for is its own.
                host = HeaderValue::from_str(upstream.authority.as_str()).ok();
                path = to;
                mapped = Some(upstream);
            }
            Route::Local(answer) => {
                let keep_alive = !client_close && body_state.is_done();
                let is_head = method == Method::HEAD;
                return Box::pin(answer_local(w, answer, is_head, keep_alive)).await;
            }
        }
    }
    let hop = next_hop::prepare(&mut headers, version, framing);
    let mut stamp = client
        .forwarder
        .stamp_for(&mut headers, client_host.as_ref());
    next_hop::continue_if_asked(w, &hop, version, framing).await?;
    let (mut framing, mut prefix) = (framing, Bytes::new());
    if let (Some(rules), Some(rec)) = (rules, recording.as_deref_mut()) {
        // The rules see (and may change) the forwarding fields.
        forwarded::settle(&mut stamp, &mut headers);
        let idle = proxy.engine.cfg.idle_timeout;
        let applying =
            next_hop::apply_rules(rules, rec, reader, body_state, &mut headers, framing, idle);
        (framing, prefix) = applying.await?;
    }
    let out = Outbound {
        method,
        path,
        headers,
        stamp,
        host,
        framing,
        version,
        client_close,
        upgrade: hop.upgrade.is_some(),
        prefix,
    };
    match mapped {
        Some(upstream) => {
            mapped_send(proxy, &upstream, out, reader, body_state, w, recording).await
        }
        None => balanced(proxy, out, reader, body_state, w, recording).await,
    }
}

/// The path and query to ask the upstream for: an origin-form target as sent, the
/// path of an absolute-form one (RFC 9112 3.2.2: a server accepts both).
fn origin_form(target: &str) -> Result<String, ProxyError> {
    if target.starts_with('/') {
        return Ok(target.to_string());
    }
    let uri: http::Uri = target
        .parse()
        .map_err(|_| ProxyError::bad_request("invalid request target"))?;
    match (uri.scheme(), uri.path_and_query()) {
        (Some(_), Some(pq)) if pq.as_str().starts_with('/') => Ok(pq.as_str().to_string()),
        (Some(_), _) => Ok("/".to_string()),
        _ if target == "*" => Ok("*".to_string()),
        _ => Err(ProxyError::bad_request("invalid request target")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Version};

    fn fields(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(*n, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn targets_become_origin_form() {
        assert_eq!(origin_form("/a?b=c").unwrap(), "/a?b=c");
        assert_eq!(origin_form("https://h.test/x/y?z").unwrap(), "/x/y?z");
        assert_eq!(origin_form("http://h.test").unwrap(), "/");
        assert_eq!(origin_form("*").unwrap(), "*");
        for bad in ["h.test:443", "x y", "relative/path"] {
            assert!(origin_form(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_flow_url_is_absolute() {
        let head = RequestHead {
            method: Method::GET,
            target: "/p?q".into(),
            version: Version::HTTP_11,
            headers: fields(&[("host", "site.test:8443")]),
            framing: Framing::Empty,
        };
        assert_eq!(absolute_url(&head), "https://site.test:8443/p?q");
    }
}
