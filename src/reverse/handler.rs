//! One HTTP/2 exchange through the reverse proxy, on hyper: header rules, upstream
//! choice with one retry, the upstream call with a response timeout, error answers.
//! (HTTP/1.1 runs on the proxy engine: [`super::h1`].)

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;

use super::config::UpstreamTarget;
use super::forwarded::{self, Forwarder, Stamp};
use super::h2_inline::{self, InlineBody};
use super::metered::{ExchangeLog, Metered};
use super::rule_steps::{prepare, Prepared};
use super::{ReverseProxy, UpstreamBody};
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::headers::{accepts_trailers, join_cookies, strip_hop_by_hop};
use crate::proxy::hyper_rules::answer_body::AnswerBody;
use crate::proxy::hyper_rules::respond;
use crate::proxy::recording::{Asked, Recording};
use crate::upstream::classify;

/// What the client receives: the upstream's streamed body, our own text, or what the
/// rewrite rules made of the answer.
pub type ResponseBody = Metered<Either<AnswerBody<Incoming>, InlineBody>>;

/// Per-connection context every exchange on it shares.
#[derive(Clone)]
pub struct ConnCtx {
    pub peer: SocketAddr,
    /// Numbers the connection in flows.
    pub id: u64,
    /// What the client's TLS agreed, for flows.
    pub tls: Arc<crate::flow::record::TlsFacts>,
    /// Sets the forwarding headers (its stamp is made once per connection).
    pub forwarder: Arc<Mutex<Forwarder>>,
}

/// Serves one request; never fails (errors become 502/504 answers).
///
/// What can be done at once (the exchange's log, the head to send on) is done before the
/// future is made: hyper keeps that future with the stream and moves it several times on
/// the way, so it holds only what lives across its awaits.
pub fn handle(
    proxy: Arc<ReverseProxy>,
    ctx: ConnCtx,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static {
    let log = begin_exchange(&proxy, &ctx, &req);
    let prepared = outbound(&proxy, &ctx, req);
    async move {
        let forwarded = match prepared {
            // Boxed: the forward future is large, and would size every stream's future.
            Ok((out, body, version)) => Box::pin(forward(&proxy, out, body, version, &log)).await,
            Err(err) => Err(err),
        };
        let response = match forwarded {
            Ok(resp) => resp,
            Err(err) => {
                log.set_note(err.reason());
                error_response(&err).map(|text| Either::Left(AnswerBody::text(text)))
            }
        };
        log.set_status(response.status().as_u16());
        Ok(response.map(|body| Metered::download(body, log)))
    }
}

/// The exchange's log line, and its flow when flows are recorded or rules apply.
fn begin_exchange(
    proxy: &ReverseProxy,
    ctx: &ConnCtx,
    req: &Request<Incoming>,
) -> Arc<ExchangeLog> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", PathAndQuery::as_str)
        .to_string();
    let log = ExchangeLog::new(ctx.peer, req.method().clone(), target);
    if proxy.record.recorder.is_some() || proxy.record.rules.is_some() {
        let url = absolute_url(req);
        let recording = proxy.record.begin(Asked {
            client: ctx.peer,
            connection_id: ctx.id,
            method: req.method(),
            url: &url,
            version: req.version(),
            headers: req.headers(),
            tls: Some(ctx.tls.as_ref().clone()),
        });
        if let Some(recording) = recording {
            log.start_recording(recording);
        }
    }
    log
}

/// The URL the client asked for: `https://` + its Host (or `:authority`) + the path.
fn absolute_url(req: &Request<Incoming>) -> String {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            let host = req.headers().get(header::HOST)?;
            host.to_str().ok().map(str::to_string)
        })
        .unwrap_or_else(|| "-".into());
    let pq = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    format!("https://{host}{pq}")
}

/// The answer for an error, from the one mapping in [`ProxyError`].
pub fn error_response(err: &ProxyError) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{}\n", err.reason()))));
    *resp.status_mut() = err.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().extend(err.extra_headers());
    resp
}

/// A request head ready to go upstream, reusable for one retry.
pub struct Outbound {
    pub method: Method,
    pub pq: PathAndQuery,
    pub headers: HeaderMap,
    /// The Host sent on (unless `--upstream-host`).
    pub client_host: Option<HeaderValue>,
    /// The connection's forwarding fields, not yet in `headers`: a head written for a
    /// plain upstream takes them as lines, which spares four map insertions.
    pub stamp: Option<Arc<Stamp>>,
}

impl Outbound {
    /// Puts the forwarding fields into `headers`, for what reads or sends the map.
    fn settle_stamp(&mut self) {
        forwarded::settle(&mut self.stamp, &mut self.headers);
    }
}

/// Sends `out` (with the client's `body`) upstream: rules, the balancer's pick, one retry
/// elsewhere for an idempotent request whose upstream refused it; then the answer.
///
/// A plain function around an `async move` block: an `async fn` would store its owned
/// arguments twice in its future (as arguments, and as the locals they are moved to).
#[allow(clippy::manual_async_fn)] // see above: the future would be larger
fn forward<'a>(
    proxy: &'a ReverseProxy,
    mut out: Outbound,
    body: Incoming,
    version: Version,
    log: &'a Arc<ExchangeLog>,
) -> impl Future<Output = Result<Response<Either<AnswerBody<Incoming>, InlineBody>>, ProxyError>>
       + Send
       + 'a {
    async move {
        let rules = proxy.record.rules.as_deref();
        // The attempt that sends the body takes it.
        let (mut body, mapped) = match rules {
            None => (Some(Either::Left(body)), None),
            // Boxed, as the rules' other steps are: rare, and large beside the common path.
            Some(rules) => {
                // The rules see (and may change) the forwarding fields.
                out.settle_stamp();
                match Box::pin(prepare(proxy, rules, log, &mut out, body, version)).await? {
                    Prepared::Answered(resp) => return Ok(resp.map(Either::Left)),
                    // Boxed: the rules' body and upstream are rare, and large beside
                    // the client's body; they would size every request's future.
                    Prepared::Send { body, mapped } => {
                        let body = match body {
                            Either::Left(body) => Either::Left(body),
                            Either::Right(spliced) => Either::Right(Box::new(spliced)),
                        };
                        (Some(body), mapped.map(Box::new))
                    }
                }
            }
        };

        // Only a request with no body can be sent twice: the body is not kept.
        let bodiless = body.as_ref().is_some_and(|b| b.is_end_stream());
        let retryable = is_idempotent(&out.method) && bodiless;
        let balancer = &proxy.balancer;
        let mut index = match mapped {
            Some(_) => 0,
            None => balancer
                .pick()
                .ok_or_else(|| ProxyError::bad_gateway("no upstream"))?,
        };
        let mut retried = false;
        let mut resp = loop {
            // `--map-remote` chose the upstream: one attempt, no health bookkeeping.
            let target = match &mapped {
                Some(target) => &**target,
                None => balancer
                    .target(index)
                    .ok_or_else(|| ProxyError::bad_gateway("no upstream"))?,
            };
            let can_retry = mapped.is_none() && retryable && !retried && balancer.len() > 1;
            if bodiless {
                // Nothing follows the head (and hyper never polls an ended body): the
                // request is all sent as it goes.
                log.with_recording(Recording::request_sent);
            }
            let sent = if rules.is_none() && h2_inline::serves(target, bodiless) {
                // Encoded before the wait: the header map and path need not live across it.
                let head = {
                    let headers = outbound_headers(proxy, &mut out, target, can_retry);
                    let path = upstream_path(target, &out.pq)?;
                    let stamp = out.stamp.as_deref().map_or(&[][..], Stamp::lines);
                    h2_inline::request_head(&out.method, path.as_str(), &headers, stamp)
                };
                h2_inline::send(&proxy.engine, target, &out.method, &head, log)
                    .await
                    .map(|resp| resp.map(Either::Right))
            } else {
                let limit = proxy.cfg.max_body_size;
                let attempt_body: UpstreamBody = match body.take() {
                    Some(Either::Left(b)) if !retryable => {
                        Either::Left(Metered::upload(b, log.clone(), limit))
                    }
                    Some(Either::Right(b)) if !retryable => {
                        Either::Right(Either::Right(Metered::upload(*b, log.clone(), limit)))
                    }
                    _ => Either::Right(Either::Left(Empty::new())),
                };
                out.settle_stamp();
                let request = build_request(proxy, &mut out, target, attempt_body, can_retry)?;
                send(proxy, request, target)
                    .await
                    .map(|resp| resp.map(Either::Left))
            };
            match sent {
                Ok(resp) => break resp,
                Err(_) if log.body_too_large() => {
                    // The upstream request was aborted, its connection not reused.
                    let max = proxy.cfg.max_body_size.unwrap_or_default();
                    return Err(ErrorKind::BodyTooLarge(max).into());
                }
                Err(_) if log.client_body_failed() => {
                    // Not the upstream's fault: the client's body was malformed or cut off.
                    return Err(ProxyError::bad_request(
                        "malformed or incomplete request body",
                    ));
                }
                Err((err, _)) if mapped.is_some() => return Err(err),
                Err((err, connect_failed)) => {
                    if connect_failed {
                        balancer.mark_down(index);
                    }
                    match balancer
                        .pick_other(index)
                        .filter(|_| can_retry && connect_failed)
                    {
                        Some(next) => {
                            tracing::debug!("retrying on another upstream: {}", err.reason());
                            index = next;
                            retried = true;
                        }
                        None => return Err(err),
                    }
                }
            }
        };

        let (status, version) = (resp.status(), resp.version());
        log.with_recording(|r| r.response_head(&proxy.record, status, version, resp.headers()));
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // HTTP/2 has no upgrades, and none was asked for.
            return Err(ProxyError::bad_gateway(
                "upstream switched protocols unasked",
            ));
        }
        strip_hop_by_hop(resp.headers_mut());
        let (parts, body) = resp.into_parts();
        let body = match body {
            Either::Left(body) => body,
            // Sent inline only without rules: passed through.
            Either::Right(inline) => return Ok(Response::from_parts(parts, Either::Right(inline))),
        };
        let resp = Response::from_parts(parts, body);
        let Some(rules) = rules else {
            return Ok(resp.map(|body| Either::Left(AnswerBody::streamed(body))));
        };
        // An upstream that stops sending a body being read for `--modify-body` would hold the
        // exchange: reading is bounded like waiting for the head.
        let limit = proxy.cfg.response_timeout;
        let responding = Box::pin(respond(rules, log, &out.method, resp));
        match tokio::time::timeout(limit, responding).await {
            Ok(Ok(resp)) => Ok(resp.map(Either::Left)),
            Ok(Err(e)) => Err(ProxyError::bad_gateway(format!(
                "the upstream's response body failed: {e}"
            ))),
            Err(_) => Err(ProxyError::gateway_timeout(format!(
                "the upstream's response body was not read within {}s",
                limit.as_secs_f64()
            ))),
        }
    }
}

/// The head to send upstream (hop-by-hop fields gone, forwarding fields set), the
/// client's body and its HTTP version; refused here: CONNECT, and a declared length over
/// `--max-body-size`.
fn outbound(
    proxy: &ReverseProxy,
    ctx: &ConnCtx,
    req: Request<Incoming>,
) -> Result<(Outbound, Incoming, Version), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::bad_request(
            "CONNECT is not served by a reverse proxy",
        ));
    }
    if let Some(max) = proxy.cfg.max_body_size {
        // A declared length over the limit is refused before any upstream is contacted.
        if req.body().size_hint().lower() > max {
            return Err(ErrorKind::BodyTooLarge(max).into());
        }
    }
    let wants_trailers = accepts_trailers(req.headers());
    let (parts, body) = req.into_parts();
    let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    if parts.version == Version::HTTP_2 {
        join_cookies(&mut headers);
    }
    let stamp = match ctx.forwarder.lock() {
        Ok(mut forwarder) => forwarder.stamp_for(&mut headers, client_host.as_ref()),
        Err(_) => None,
    };
    if wants_trailers {
        // TE is hop-by-hop, but gRPC needs `te: trailers` on every hop: we relay trailers.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let out = Outbound {
        method: parts.method,
        pq: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        headers,
        client_host,
        stamp,
    };
    Ok((out, body, parts.version))
}

/// The request for one attempt through hyper's client.
fn build_request(
    proxy: &ReverseProxy,
    out: &mut Outbound,
    target: &UpstreamTarget,
    body: UpstreamBody,
    keep_for_retry: bool,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let uri = Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(upstream_path(target, &out.pq)?)
        .build()
        .map_err(|e| ProxyError::bad_request(format!("cannot build upstream URL: {e}")))?;
    let mut req = Request::new(body);
    *req.method_mut() = out.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = outbound_headers(proxy, out, target, keep_for_retry);
    Ok(req)
}

/// The path and query at `target`, behind its prefix.
fn upstream_path(target: &UpstreamTarget, pq: &PathAndQuery) -> Result<PathAndQuery, ProxyError> {
    if target.prefix.is_empty() {
        return Ok(pq.clone());
    }
    PathAndQuery::try_from(format!("{}{}", target.prefix, pq.as_str()))
        .map_err(|_| ProxyError::bad_request("path cannot be prefixed"))
}

/// The header fields for one attempt, with the Host sent on. Cloned only when a retry
/// may need them again; else the last attempt takes them.
fn outbound_headers(
    proxy: &ReverseProxy,
    out: &mut Outbound,
    target: &UpstreamTarget,
    keep_for_retry: bool,
) -> HeaderMap {
    let mut headers = if keep_for_retry {
        out.headers.clone()
    } else {
        std::mem::take(&mut out.headers)
    };
    let host = if proxy.cfg.upstream_host {
        HeaderValue::from_str(target.authority.as_str()).ok()
    } else {
        out.client_host.clone()
    };
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
    headers
}

/// Sends one attempt. The flag says whether the upstream refused or timed out on
/// connect: it is then marked down, and an idempotent request may go elsewhere.
async fn send(
    proxy: &ReverseProxy,
    req: Request<UpstreamBody>,
    target: &UpstreamTarget,
) -> Result<Response<Incoming>, (ProxyError, bool)> {
    let limit = proxy.cfg.response_timeout;
    match tokio::time::timeout(limit, proxy.client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => {
            let connect_failed = e.is_connect() && refused_or_timed_out(&e);
            Err((classify(&e, target.authority.as_str()), connect_failed))
        }
        Err(_) => Err((
            ProxyError::gateway_timeout(format!(
                "upstream {} did not answer within {}s",
                target.origin(),
                limit.as_secs_f64()
            )),
            false,
        )),
    }
}

fn refused_or_timed_out(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut
            );
        }
        cur = e.source();
    }
    false
}

/// Methods a request may be sent again with (RFC 9110 9.2.2).
pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
