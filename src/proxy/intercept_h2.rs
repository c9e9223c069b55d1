//! An intercepted client that chose HTTP/2: hyper serves its connection, and each
//! stream is one exchange under the same rules as on HTTP/1.1 (loop check, Max-Forwards,
//! hop-by-hop removal, Via, `--dump headers`, one access line with the full URL), sent
//! to the origin by [`TunnelUpstream`] in whichever protocol the origin chose.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::Conn;
use super::headers::{accepts_trailers, apply_max_forwards, strip_hop_by_hop, MaxForwards};
use super::hyper_rules::answer_body::AnswerBody;
use super::hyper_rules::respond;
use super::intercept_h2_rules::{prepare, Prepared};
use super::recording::{Asked, Recording};
use super::stream_watch::{Activity, Counted, StallLimit};
use super::target::TunnelTarget;
use super::tunnel_upstream::TunnelUpstream;
use crate::error::{ErrorKind, ProxyError};
use crate::reverse::handler::error_response;
use crate::reverse::metered::{ExchangeLog, Metered};
use crate::stream_set::{drive, StreamSet};
use crate::upstream::h2::BoxedBody;

/// A refused body up to this size is read and dropped before the refusal is sent.
const DISCARD_MAX: u64 = 64 * 1024;
/// How long that may take.
const DISCARD_WAIT: Duration = Duration::from_secs(1);

/// The upstream's response body (limited against stalls), our own text, or what the
/// rewrite rules made of it.
pub(super) type Answer = AnswerBody<StallLimit<Incoming>>;

/// Serves the client's HTTP/2 connection until it closes or shutdown finishes it.
pub async fn serve<IO>(conn: Conn<'_>, io: IO, tunnel: TunnelTarget)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (peer, conn_id) = (conn.peer, conn.id);
    let idle = conn.engine.cfg.idle_timeout;
    let upstream = Arc::new(TunnelUpstream::new(conn.engine.clone(), tunnel));
    let activity = Activity::new();
    let streams = activity.clone();
    let service = service_fn(move |req| {
        let upstream = upstream.clone();
        let guard = streams.open_stream();
        async move {
            let resp = exchange(&upstream, peer, conn_id, req).await;
            Ok::<_, Infallible>(resp.map(|body| Counted::new(body, guard)))
        }
    });
    // The streams run in this connection's task (see `stream_set`).
    let streams = StreamSet::new();
    let mut builder = http2::Builder::new(streams.clone());
    // HTTP/2 has no request-head timeout to end a dead connection: ping it when silent.
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20))
        // The reverse proxy's defaults: streams per connection, and the resets a client
        // may cause before GOAWAY (rapid reset, CVE-2023-44487; MadeYouReset, CVE-2025-8671).
        .max_concurrent_streams(crate::reverse::config::DEFAULT_H2_MAX_STREAMS)
        .max_pending_accept_reset_streams(crate::reverse::config::DEFAULT_H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(crate::reverse::config::DEFAULT_H2_MAX_ERROR_RESETS);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    // Like an idle keep-alive connection on HTTP/1.1, one with no stream open for the
    // idle timeout is closed (gracefully: a stream that races it still completes).
    let quiet = async {
        loop {
            let left = match activity.quiet_for() {
                Some(quiet) if quiet >= idle => return,
                Some(quiet) => idle.saturating_sub(quiet),
                None => idle,
            };
            tokio::time::sleep(left).await;
        }
    };
    let serving = async {
        tokio::select! {
            r = served.as_mut() => r,
            _ = quiet => {
                served.as_mut().graceful_shutdown();
                served.await
            }
            _ = conn.shutdown.cancelled() => {
                served.as_mut().graceful_shutdown();
                served.await
            }
        }
    };
    let result = drive(serving, streams).await;
    if let Err(e) = result {
        if crate::reverse::h2_limits::ended_for_resets(&e) {
            tracing::warn!(
                client = %peer,
                "HTTP/2 connection ended with GOAWAY: too many reset streams \
                 (rapid reset / MadeYouReset protection)"
            );
        } else {
            tracing::debug!(client = %peer, "HTTP/2 connection ended: {e}");
        }
    }
}

/// One stream: forwarded, or answered with the error; the access line is written when
/// both bodies are done.
async fn exchange(
    upstream: &TunnelUpstream,
    peer: std::net::SocketAddr,
    conn_id: u64,
    req: Request<Incoming>,
) -> Response<Metered<Answer>> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let url = format!("{}{}", upstream.tunnel.origin(), path);
    let log = ExchangeLog::new_flow(peer, req.method().clone(), url.clone());
    let recording = upstream.engine.record.begin(Asked {
        client: peer,
        connection_id: conn_id,
        method: req.method(),
        url: &url,
        version: Version::HTTP_2,
        headers: req.headers(),
        tls: upstream.tunnel.client_tls.as_deref().cloned(),
    });
    if let Some(recording) = recording {
        log.start_recording(recording);
    }
    let response = match forward(upstream, req, &url, &path, &log).await {
        Ok(resp) => resp,
        Err(err) => {
            log.set_note(err.reason());
            error_response(&err).map(AnswerBody::text)
        }
    };
    log.set_status(response.status().as_u16());
    response.map(|body| Metered::download(body, log))
}

/// Applies the proxy's rules to the request, sends it, and applies them to the response.
async fn forward(
    upstream: &TunnelUpstream,
    req: Request<Incoming>,
    url: &str,
    path: &str,
    log: &Arc<ExchangeLog>,
) -> Result<Response<Answer>, ProxyError> {
    let engine = &upstream.engine;
    if req.method() == Method::CONNECT {
        return Err(ProxyError::bad_request("CONNECT inside a tunnel"));
    }
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    if engine.via.seen_in(headers) {
        return Err(ErrorKind::Loop.into());
    }
    match apply_max_forwards(&parts.method, headers) {
        MaxForwards::Invalid => return Err(ProxyError::bad_request("invalid Max-Forwards")),
        MaxForwards::AnswerHere => return Ok(options_here().map(AnswerBody::text)),
        _ => {}
    }
    // `:authority`, else Host, else where the tunnel leads.
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            let host = headers.get(header::HOST)?;
            host.to_str().ok().map(str::to_string)
        })
        .unwrap_or_else(|| upstream.tunnel.authority());
    let takes_trailers = accepts_trailers(headers);
    strip_hop_by_hop(headers);
    if takes_trailers {
        // TE is hop-by-hop: we say it again for our own hop, since we relay trailers.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    engine.via.append_to(headers, Version::HTTP_2);
    let idle = engine.cfg.idle_timeout;
    let limit = engine.cfg.max_body_size;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (Some(max), Some(len)) = (limit, declared) {
        if len > max {
            discard_small_body(body, len).await;
            return Err(ErrorKind::BodyTooLarge(max).into());
        }
    }
    let rules = engine.record.rules.as_deref();
    let mut mapped = None;
    let body = match rules {
        None => {
            let body = Metered::upload(body, log.clone(), limit);
            BoxedBody::new(StallLimit::new(body, idle, "request body"))
        }
        Some(rules) => {
            let body = StallLimit::new(body, idle, "request body");
            match prepare(upstream, rules, log, &mut parts, body).await? {
                Prepared::Answered(resp) => return Ok(resp),
                Prepared::Send { body, mapped: m } => {
                    mapped = m;
                    body
                }
            }
        }
    };
    if engine.record.dump_headers {
        let (url, path) = mapped
            .as_ref()
            .map_or((url, path), |m| (m.url.as_str(), m.path.as_str()));
        let (plan, method, headers) = (&engine.record, &parts.method, &parts.headers);
        let dump = |r: Option<&mut Recording>| {
            plan.dump_request(r, method, url, path, Version::HTTP_2, headers);
        };
        if log.with_recording(|r| dump(Some(r))).is_none() {
            dump(None);
        }
    }
    let (authority, upstream) = match &mapped {
        Some(m) => (
            m.authority.as_str(),
            m.upstream.as_ref().unwrap_or(upstream),
        ),
        None => (authority.as_str(), upstream),
    };
    let method = parts.method.clone();
    if body.is_end_stream() {
        // Nothing follows the head, and hyper never polls an ended body: the request is
        // all sent as it goes.
        log.with_recording(Recording::request_sent);
    }
    let sent = upstream
        .send(Request::from_parts(parts, body), authority)
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(_) if log.body_too_large() => {
            return Err(ErrorKind::BodyTooLarge(limit.unwrap_or_default()).into())
        }
        Err(_) if log.client_body_failed() => {
            return Err(ProxyError::bad_request(
                "malformed or incomplete request body",
            ))
        }
        Err(e) => return Err(e),
    };
    let (status, version) = (resp.status(), resp.version());
    let opened = upstream.tunnel.take_opened();
    let recorded = log.with_recording(|r| {
        if let Some(o) = opened {
            r.connected(o.server, o.tcp, Some(o.tls));
        }
        r.response_head(&engine.record, status, version, resp.headers());
    });
    if recorded.is_none() && engine.record.dump_headers {
        engine
            .record
            .dump_response_now(status, version, resp.headers());
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(ProxyError::bad_gateway(
            "the upstream switched protocols unasked",
        ));
    }
    let mut resp = resp.map(|body| StallLimit::new(body, idle, "response"));
    strip_hop_by_hop(resp.headers_mut());
    engine.via.append_to(resp.headers_mut(), version);
    match rules {
        None => Ok(resp.map(AnswerBody::streamed)),
        Some(rules) => respond(rules, log, &method, resp)
            .await
            .map_err(|e| ProxyError::bad_gateway(format!("response body failed: {e}"))),
    }
}

/// Reads and drops a refused request body of at most [`DISCARD_MAX`] bytes, briefly,
/// before the refusal is sent (as nginx discards one): a client still sending gets the
/// answer instead of a reset stream (curl reports that as a framing error).
async fn discard_small_body(mut body: Incoming, declared: u64) {
    use http_body_util::BodyExt;
    if declared > DISCARD_MAX {
        return;
    }
    let drain = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(DISCARD_WAIT, drain).await;
}

/// Max-Forwards reached zero on OPTIONS: this proxy is the final recipient.
fn options_here() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    resp.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, CONNECT"),
    );
    resp
}
