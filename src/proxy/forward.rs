//! Forwarding one absolute-form request: target to origin-form, header rules, the
//! upstream call with the body streamed both ways, and the answer to the client.

use std::future::Future;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::conn::{answer_error, Conn};
use super::connect::dial;
use super::headers::{apply_max_forwards, strip_hop_by_hop, wants_close, MaxForwards};
use super::recording::{Asked, Recording};
use super::round_trip::{round_trip, Answer, Outgoing, TripError};
use super::rules_h1::{self, ResponseSide, Route};
use super::target::{parse_forward_target, parse_tunnel_target, Scope, TunnelTarget};
use super::upstream_tls::{self, Opened};
use super::{access, forward_h2, next_hop, Engine};
use crate::access_log::AccessRecord;
use crate::error::{ErrorKind, ProxyError};
use crate::h1::head::{Framing, RequestHead, ResponseHead};
use crate::h1::reader::{BodyState, MessageReader};
use crate::h1::writer::{
    choose_framing, encode_head, encode_request_head, simple_response, OutFraming,
};
use crate::upstream::pool::Pool;
use crate::upstream::stream::UpstreamIo;

/// How an exchange ended, for the access line and the keep-alive decision.
pub(crate) struct Done {
    pub(crate) status: u16,
    pub(crate) up: u64,
    pub(crate) down: u64,
    pub(crate) keep_alive: bool,
    pub(crate) note: Option<String>,
}

/// Serves one forwarded request; returns whether the connection may carry another.
pub async fn serve_exchange<R, W>(
    conn: Conn<'_>,
    reader: &mut MessageReader<R>,
    w: &mut W,
    head: RequestHead,
    started: Instant,
    scope: &Scope,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (engine, peer) = (conn.engine.as_ref(), conn.peer);
    let shutting_down = conn.shutdown.is_cancelled();
    let method = head.method.clone();
    let target = match scope {
        Scope::Forward => head.target.clone(),
        Scope::Tunnel(t) if head.target.starts_with('/') => {
            format!("{}{}", t.origin(), head.target)
        }
        Scope::Tunnel(_) => head.target.clone(),
    };
    let client_close = shutting_down || wants_close(&head.headers, head.version);
    let mut recording = engine.record.begin(Asked {
        client: peer,
        connection_id: conn.id,
        method: &head.method,
        url: &target,
        version: head.version,
        headers: &head.headers,
        tls: match scope {
            Scope::Tunnel(t) => t.client_tls.as_deref().cloned(),
            Scope::Forward => None,
        },
    });
    let mut body = BodyState::new(head.framing);
    let rec = recording.as_deref_mut();
    let outcome = exchange(engine, reader, w, head, &mut body, client_close, scope, rec).await;
    let ended = Ended {
        peer,
        method: &method,
        target: &target,
        started,
        keep_alive: !client_close && body.is_done(),
    };
    conclude(engine, w, ended, outcome, recording).await
}

/// What [`conclude`] needs to know about an exchange besides its outcome.
pub(crate) struct Ended<'a> {
    pub(crate) peer: std::net::SocketAddr,
    pub(crate) method: &'a Method,
    /// As the access line shows it.
    pub(crate) target: &'a str,
    pub(crate) started: Instant,
    /// The connection could carry another request after an error answer: the client
    /// did not ask to close and its request body was read to the end.
    pub(crate) keep_alive: bool,
}

/// Ends an exchange: answers an error (nothing was sent yet), writes the access line,
/// finishes the recording. Returns whether the connection may carry another request.
pub(crate) async fn conclude<W: AsyncWrite + Unpin>(
    engine: &Engine,
    w: &mut W,
    ended: Ended<'_>,
    outcome: Result<Done, ProxyError>,
    recording: Option<Box<Recording>>,
) -> bool {
    let done = match outcome {
        Ok(done) => done,
        Err(err) => {
            let keep_alive = ended.keep_alive && !err.closes_connection();
            answer_error(w, &err, keep_alive).await;
            Done {
                status: err.status().as_u16(),
                up: 0,
                down: 0,
                keep_alive,
                note: Some(err.reason()),
            }
        }
    };
    let access = AccessRecord {
        client: ended.peer,
        method: ended.method.as_str(),
        target: ended.target,
        status: done.status,
        up: done.up,
        down: done.down,
        elapsed: ended.started.elapsed(),
        note: done.note.as_deref(),
    };
    match recording {
        Some(recording) => {
            // The note says why an exchange failed (an error answer, or a body cut off
            // after the head was relayed): that is the flow's error.
            recording.finish(&access, done.note.as_deref(), engine.access_line());
        }
        None => engine.log_access(&access),
    }
    done.keep_alive
}

/// The exchange proper; an `Err` is answered by the caller (nothing was sent yet).
#[allow(clippy::too_many_arguments)]
async fn exchange<R, W>(
    engine: &Engine,
    reader: &mut MessageReader<R>,
    w: &mut W,
    head: RequestHead,
    body_state: &mut BodyState,
    client_close: bool,
    scope: &Scope,
    mut recording: Option<&mut Recording>,
) -> Result<Done, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let RequestHead {
        method,
        target: raw_target,
        version,
        mut headers,
        framing,
    } = head;
    if let Scope::Forward = scope {
        // Inside a tunnel the client already authenticated with its CONNECT.
        access::check_proxy_auth(engine.cfg.auth.as_ref(), &headers)?;
    }
    if engine.via.seen_in(&headers) {
        return Err(ErrorKind::Loop.into());
    }
    match apply_max_forwards(&method, &mut headers) {
        MaxForwards::Invalid => return Err(ProxyError::bad_request("invalid Max-Forwards")),
        MaxForwards::AnswerHere => {
            // An unread body leaves the connection unusable for another request.
            return answer_options_here(w, client_close || !body_state.is_done()).await;
        }
        _ => {}
    }
    let mut target = match scope {
        Scope::Forward => parse_forward_target(&raw_target)?,
        Scope::Tunnel(tunnel) => parse_tunnel_target(&raw_target, tunnel, &headers)?,
    };
    let rules = engine.record.rules.as_deref();
    let mut mapped = None;
    if let (Some(rules), Some(rec)) = (rules, recording.as_deref_mut()) {
        match rules_h1::route(rules, rec, &mut target, scope)? {
            Route::Upstream(to) => mapped = to,
            Route::Local(answer) => {
                let keep_alive = !client_close && body_state.is_done();
                let is_head = method == Method::HEAD;
                return Box::pin(rules_h1::answer_local(w, answer, is_head, keep_alive)).await;
            }
        }
    }
    let scope = mapped.as_ref().unwrap_or(scope);
    if let (Framing::Length(n), Some(max)) = (framing, engine.cfg.max_body_size) {
        // Refused before any upstream is contacted; the unread body closes the connection.
        if n > max {
            return Err(ErrorKind::BodyTooLarge(max).into());
        }
    }

    let hop = next_hop::prepare(&mut headers, version, framing);
    let upgrade = hop.upgrade.clone();
    headers.insert(header::HOST, target.host_header.clone());
    engine.via.append_to(&mut headers, version);
    next_hop::continue_if_asked(w, &hop, version, framing).await?;
    let (mut framing, mut prefix) = (framing, Bytes::new());
    if let (Some(rules), Some(rec)) = (rules, recording.as_deref_mut()) {
        let idle = engine.cfg.idle_timeout;
        let applying =
            next_hop::apply_rules(rules, rec, reader, body_state, &mut headers, framing, idle);
        (framing, prefix) = applying.await?;
    }

    let mut head_bytes = BytesMut::with_capacity(512);
    encode_request_head(
        &mut head_bytes,
        &method,
        &target.path,
        &headers,
        &[],
        framing == Framing::Chunked,
    );
    if engine.record.dump_headers {
        let url = match scope {
            Scope::Forward => raw_target.clone(),
            Scope::Tunnel(t) => format!("{}{}", t.origin(), target.path),
        };
        // An upgrade has no body, and may last long: its heads are printed as they pass.
        let deferred = recording.as_deref_mut().filter(|_| upgrade.is_none());
        engine.record.dump_request(
            deferred,
            &method,
            &url,
            &target.path,
            Version::HTTP_11,
            &headers,
        );
    }

    let request = Prepared {
        key: pool_key(scope, &target.host, target.port),
        head: head_bytes.freeze(),
        upgrade: upgrade.is_some(),
        framing,
        method,
        version,
        client_close,
        path: target.path,
        headers,
        recording,
        prefix,
    };
    let done = match scope {
        Scope::Tunnel(tunnel) if tunnel.tls => {
            // ALPN is read on new connections only: pooled ones are HTTP/1.1.
            let h1_only = request.upgrade;
            let connect = || upstream_tls::open(engine, tunnel, h1_only);
            // Boxed: TLS (and HTTP/2) futures are large, and would otherwise size the
            // task of every connection, intercepted or not.
            let sending = send_via(
                engine,
                &engine.tls_pool,
                connect,
                Some(tunnel),
                request,
                reader,
                body_state,
                w,
            );
            Box::pin(sending).await
        }
        Scope::Tunnel(_) | Scope::Forward => {
            // Plain HTTP: a tunnel's first request reuses the connection its CONNECT opened.
            let connect = || async {
                let first = match scope {
                    Scope::Tunnel(tunnel) => tunnel.take_first_tcp(),
                    Scope::Forward => None,
                };
                match first {
                    Some(tcp) => Ok(Opened::H1(tcp)),
                    None => dial(&target.host, target.port, engine.cfg.connect_timeout)
                        .await
                        .map(Opened::H1),
                }
            };
            send_via(
                engine,
                &engine.pool,
                connect,
                None,
                request,
                reader,
                body_state,
                w,
            )
            .await
        }
    };
    done
}

/// The pool key: `host:port`, and for TLS also the server name the connection was made
/// and verified for, so that a connection opened for one name (SNI) never carries the
/// requests of a tunnel that asked for another name at the same address.
pub(crate) fn pool_key(scope: &Scope, host: &str, port: u16) -> String {
    match scope {
        Scope::Tunnel(t) if t.tls => format!("{}@{host}:{port}", t.server_name),
        _ => format!("{host}:{port}"),
    }
}

/// A request ready to go upstream.
pub(crate) struct Prepared<'a> {
    /// Pool key: `host:port`.
    pub(crate) key: String,
    /// Request line and headers, encoded.
    pub(crate) head: bytes::Bytes,
    /// The client asked to switch protocols.
    pub(crate) upgrade: bool,
    pub(crate) framing: Framing,
    pub(crate) method: Method,
    /// The version the client spoke.
    pub(crate) version: Version,
    pub(crate) client_close: bool,
    /// Origin-form target and the headers `head` encodes, for an HTTP/2 upstream.
    pub(crate) path: String,
    pub(crate) headers: http::HeaderMap,
    /// Where the response head, both bodies and the timings are recorded.
    pub(crate) recording: Option<&'a mut Recording>,
    /// Body bytes read from the client already (rewritten by a rule), sent first.
    pub(crate) prefix: Bytes,
}

/// Sends `request` over a pooled or new connection from `connect`. A reused connection
/// the origin closed meanwhile fails before any answer: then an idempotent request
/// without a body is sent once more on a fresh connection. A new connection on which
/// the origin chose HTTP/2 carries the exchange as HTTP/2.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_via<S, C, F, R, W>(
    engine: &Engine,
    pool: &Pool<S>,
    connect: C,
    tls_tunnel: Option<&TunnelTarget>,
    mut request: Prepared<'_>,
    reader: &mut MessageReader<R>,
    body_state: &mut BodyState,
    w: &mut W,
) -> Result<Done, ProxyError>
where
    S: UpstreamIo,
    C: Fn() -> F,
    F: Future<Output = Result<Opened<S>, ProxyError>>,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Prepared {
        ref key,
        ref head,
        upgrade,
        framing,
        ref method,
        version,
        client_close,
        ref mut recording,
        ref prefix,
        ..
    } = request;
    let replayable = framing == Framing::Empty && method.is_idempotent();
    let mut pooled = pool.checkout(key);
    let mut h2_retried = false;
    loop {
        let reused = pooled.is_some();
        let connecting = std::time::Instant::now();
        let (mut stream, server) = match pooled.take() {
            Some((stream, server)) => {
                if let Some(r) = recording.as_deref_mut() {
                    r.connected(server, None, None);
                }
                (stream, server)
            }
            None => match connect().await? {
                Opened::H1(stream) => {
                    let mut server = None;
                    if let Some(r) = recording.as_deref_mut() {
                        server = stream.tcp().peer_addr().ok();
                        match tls_tunnel.and_then(TunnelTarget::take_opened) {
                            Some(o) => r.connected(server, o.tcp, Some(o.tls)),
                            None => r.connected(server, Some(connecting.elapsed()), None),
                        }
                    }
                    (stream, server)
                }
                Opened::H2(mut sender) => {
                    // A cached connection the origin has just closed: open another, once.
                    if sender.ready().await.is_err() && !h2_retried {
                        h2_retried = true;
                        continue;
                    }
                    // Boxed, so the rare HTTP/2 path does not size every connection's task.
                    let sending = forward_h2::send(engine, sender, request, reader, body_state, w);
                    return Box::pin(sending).await;
                }
            },
        };
        let out = Outgoing {
            head: head.clone(),
            chunked: framing == Framing::Chunked,
            is_head: method == Method::HEAD,
            upgrade,
            response_timeout: engine.cfg.response_timeout,
            idle: engine.cfg.idle_timeout,
            max_body: engine.cfg.max_body_size,
            prefix: prefix.clone(),
        };
        let (taps, slot) = match recording.as_deref_mut() {
            Some(r) => {
                let (taps, slot) = r.parts();
                (Some(taps), Some(slot))
            }
            None => (None, None),
        };
        let mut side = ResponseSide {
            plan: &engine.record,
            slot,
        };
        let is_head = method == Method::HEAD;
        let answer = |head: &mut ResponseHead, side: &ResponseSide<'_>| {
            answer_head(engine, head, is_head, version, client_close, side)
        };
        let trip = round_trip(
            &mut stream,
            out,
            reader,
            body_state,
            w,
            answer,
            taps,
            &mut side,
        );
        match trip.await {
            Ok(trip) => {
                if trip.reusable {
                    pool.checkin(key, stream, server);
                }
                return Ok(Done {
                    status: trip.status,
                    up: trip.up,
                    down: trip.down,
                    keep_alive: trip.complete
                        && trip.note.is_none()
                        && !client_close
                        && trip.framing != OutFraming::Close,
                    note: trip.note,
                });
            }
            Err(TripError::Upstream { stale: true, .. }) if reused && replayable => continue,
            Err(TripError::Upstream { err, .. }) | Err(TripError::Client(err)) => return Err(err),
        }
    }
}

/// Applies the header rules (ours, then `--modify-header`) to a response head that
/// `side` has recorded, and encodes what the client gets.
pub(super) fn answer_head(
    engine: &Engine,
    head: &mut ResponseHead,
    is_head: bool,
    client_version: Version,
    client_close: bool,
    side: &ResponseSide<'_>,
) -> Answer {
    let mut headers = std::mem::take(&mut head.headers);
    let protocol = headers.get(header::UPGRADE).cloned();
    let trailer_decl: Vec<HeaderValue> = headers.get_all(header::TRAILER).iter().cloned().collect();
    strip_hop_by_hop(&mut headers);
    engine.via.append_to(&mut headers, head.version);
    side.modify_headers(&mut headers);
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(protocol) = protocol {
            headers.insert(header::UPGRADE, protocol);
        }
        let mut out = BytesMut::with_capacity(256);
        encode_head(&mut out, head.status, &headers, OutFraming::Upgrade, false);
        return Answer {
            head: out,
            framing: OutFraming::Upgrade,
        };
    }
    let has_length = headers.contains_key(header::CONTENT_LENGTH);
    let framing = choose_framing(head.status, is_head, has_length, client_version);
    if framing == OutFraming::Chunked {
        for v in trailer_decl {
            headers.append(header::TRAILER, v);
        }
    }
    let keep_alive = !client_close && framing != OutFraming::Close;
    let mut out = BytesMut::with_capacity(512);
    encode_head(&mut out, head.status, &headers, framing, keep_alive);
    Answer { head: out, framing }
}

/// Max-Forwards reached zero on OPTIONS: this proxy is the final recipient.
async fn answer_options_here<W: AsyncWrite + Unpin>(
    w: &mut W,
    client_close: bool,
) -> Result<Done, ProxyError> {
    let mut extra = http::HeaderMap::new();
    extra.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, CONNECT"),
    );
    let bytes = simple_response(StatusCode::OK, &extra, "", !client_close);
    w.write_all(&bytes).await.map_err(client_gone)?;
    Ok(Done {
        status: 200,
        up: 0,
        down: 0,
        keep_alive: !client_close,
        note: Some("answered here: Max-Forwards 0".into()),
    })
}

fn client_gone(e: std::io::Error) -> ProxyError {
    ProxyError::bad_request(format!("client went away: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(server_name: &str, tls: bool) -> Scope {
        Scope::Tunnel(TunnelTarget {
            host: "10.0.0.1".into(),
            port: 443,
            tls,
            server_name: server_name.into(),
            first_tcp: std::sync::Mutex::new(None),
            client_tls: None,
            opened: std::sync::Mutex::new(None),
        })
    }

    #[test]
    fn tls_connections_are_pooled_per_server_name() {
        let a = pool_key(&tunnel("a.test", true), "10.0.0.1", 443);
        let b = pool_key(&tunnel("b.test", true), "10.0.0.1", 443);
        assert_ne!(a, b);
        assert_eq!(a, "a.test@10.0.0.1:443");
        // Plain TCP carries no name: one pool per address.
        assert_eq!(
            pool_key(&tunnel("a.test", false), "10.0.0.1", 443),
            "10.0.0.1:443"
        );
        assert_eq!(
            pool_key(&Scope::Forward, "example.org", 80),
            "example.org:80"
        );
    }
}
