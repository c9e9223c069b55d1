//! A reverse-proxy HTTP/1.1 request on its way upstream: to the balancer's pick, with
//! one retry elsewhere for a request that can be sent twice, or to the `--map-remote`
//! upstream; each attempt on the engine's pools: plain TCP for `http://` upstreams,
//! verified TLS for `https://` ones (HTTP/2 when the upstream chooses it by ALPN).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Version};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::config::UpstreamTarget;
use super::forwarded::Stamp;
use super::handler::is_idempotent;
use super::ReverseProxy;
use crate::error::ProxyError;
use crate::h1::head::Framing;
use crate::h1::reader::{BodyState, MessageReader};
use crate::h1::writer::encode_request_head;
use crate::proxy::connect::{dial_classified, DialFailure};
use crate::proxy::forward::{send_via, Done, Prepared};
use crate::proxy::recording::Recording;
use crate::proxy::target::TunnelTarget;
use crate::proxy::upstream_tls::{self, cached_h2, Opened};
use crate::proxy::Engine;

/// A request head ready to go upstream, for one attempt or, without a body, two.
pub(crate) struct Outbound {
    pub(crate) method: Method,
    /// Origin-form path and query, before an upstream's prefix.
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    /// The connection's forwarding fields, not yet in `headers`: a head for a plain
    /// upstream takes them as lines, which spares four map insertions.
    pub(crate) stamp: Option<Arc<Stamp>>,
    /// The Host sent on (unless `--upstream-host`).
    pub(crate) host: Option<HeaderValue>,
    pub(crate) framing: Framing,
    /// The version the client spoke.
    pub(crate) version: Version,
    pub(crate) client_close: bool,
    /// The client asked to switch protocols.
    pub(crate) upgrade: bool,
    /// Body bytes a `--modify-body` rule read and rewrote already: sent first.
    pub(crate) prefix: Bytes,
}

impl Outbound {
    /// Only a request with no body can be sent twice: the body is not kept.
    fn replayable(&self) -> bool {
        !self.upgrade
            && is_idempotent(&self.method)
            && self.framing == Framing::Empty
            && self.prefix.is_empty()
    }

    /// The request for one attempt at `upstream`. The head is cloned when `again`
    /// says another attempt may follow, else moved.
    fn prepare<'r>(
        &mut self,
        upstream: &UpstreamTarget,
        upstream_host: bool,
        again: bool,
        recording: Option<&'r mut Recording>,
    ) -> Prepared<'r> {
        let mut fields = if again {
            self.headers.clone()
        } else {
            std::mem::take(&mut self.headers)
        };
        let host = if upstream_host {
            HeaderValue::from_str(upstream.authority.as_str()).ok()
        } else {
            self.host.clone()
        };
        if let Some(host) = host {
            fields.insert(header::HOST, host);
        }
        let mut lines: &[u8] = &[];
        if let Some(stamp) = &self.stamp {
            // An https upstream may answer in HTTP/2, which sends the map, not the head.
            if upstream.is_https() {
                stamp.apply(&mut fields);
            } else {
                lines = stamp.lines();
            }
        }
        let path = format!("{}{}", upstream.prefix, self.path);
        let mut head = BytesMut::with_capacity(512);
        let chunked = self.framing == Framing::Chunked;
        encode_request_head(&mut head, &self.method, &path, &fields, lines, chunked);
        Prepared {
            key: upstream.pool_key.clone(),
            head: head.freeze(),
            upgrade: self.upgrade,
            framing: self.framing,
            method: self.method.clone(),
            version: self.version,
            client_close: self.client_close,
            path,
            headers: fields,
            recording,
            prefix: self.prefix.clone(),
        }
    }
}

/// Sends `out` to the balancer's pick. An upstream that refuses or times out on
/// connect is skipped for a while, and a request that can be sent twice goes once more
/// to another.
pub(crate) async fn balanced<R, W>(
    proxy: &ReverseProxy,
    mut out: Outbound,
    reader: &mut MessageReader<R>,
    body_state: &mut BodyState,
    w: &mut W,
    mut recording: Option<&mut Recording>,
) -> Result<Done, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let balancer = &proxy.balancer;
    let no_upstream = || ProxyError::bad_gateway("no upstream");
    let mut index = balancer.pick().ok_or_else(no_upstream)?;
    let mut retried = false;
    loop {
        let upstream = balancer.target(index).ok_or_else(no_upstream)?;
        let can_retry = out.replayable() && !retried && balancer.len() > 1;
        let upstream_host = proxy.cfg.upstream_host;
        let request = out.prepare(upstream, upstream_host, can_retry, recording.as_deref_mut());
        let attempt = Attempt { upstream, request };
        let err = match send(&proxy.engine, attempt, reader, body_state, w).await {
            Ok(done) => return Ok(done),
            Err((err, false)) => return Err(err),
            Err((err, true)) => err,
        };
        balancer.mark_down(index);
        match balancer.pick_other(index).filter(|_| can_retry) {
            Some(next) => {
                tracing::debug!("retrying on another upstream: {}", err.reason());
                index = next;
                retried = true;
            }
            None => return Err(err),
        }
    }
}

/// Sends `out` to the upstream `--map-remote` named: one attempt, no health bookkeeping.
pub(crate) async fn mapped<R, W>(
    proxy: &ReverseProxy,
    upstream: &UpstreamTarget,
    mut out: Outbound,
    reader: &mut MessageReader<R>,
    body_state: &mut BodyState,
    w: &mut W,
    recording: Option<&mut Recording>,
) -> Result<Done, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let request = out.prepare(upstream, false, false, recording);
    let attempt = Attempt { upstream, request };
    let sent = send(&proxy.engine, attempt, reader, body_state, w).await;
    sent.map_err(|(err, _)| err)
}

/// A request ready for one upstream.
struct Attempt<'a, 'r> {
    upstream: &'a UpstreamTarget,
    request: Prepared<'r>,
}

/// Sends one attempt. The flag in an error says whether the upstream refused or timed
/// out on connect: it is then marked down, and an idempotent request may go elsewhere.
async fn send<R, W>(
    engine: &Engine,
    attempt: Attempt<'_, '_>,
    reader: &mut MessageReader<R>,
    body_state: &mut BodyState,
    w: &mut W,
) -> Result<Done, (ProxyError, bool)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Attempt { upstream, request } = attempt;
    let (host, port) = (upstream.host(), upstream.port());
    let limit = engine.cfg.connect_timeout;
    let refused = &AtomicBool::new(false);
    let result = if upstream.is_https() {
        let tunnel = &TunnelTarget {
            host: host.to_string(),
            port,
            tls: true,
            server_name: host.to_string(),
            first_tcp: Mutex::new(None),
            client_tls: None,
            opened: Mutex::new(None),
        };
        // ALPN is read on new connections only: pooled ones are HTTP/1.1.
        let h1_only = request.upgrade;
        let connect = move || async move {
            if let Some(sender) = cached_h2(engine, tunnel, h1_only) {
                return Ok(Opened::H2(sender));
            }
            let tcp = dial(host, port, limit, refused).await?;
            if let Ok(mut first) = tunnel.first_tcp.lock() {
                *first = Some(tcp);
            }
            upstream_tls::open(engine, tunnel, h1_only).await
        };
        let pool = &engine.tls_pool;
        // Boxed: TLS (and HTTP/2) futures are large, and would size every connection's task.
        let sending = send_via(
            engine,
            pool,
            connect,
            Some(tunnel),
            request,
            reader,
            body_state,
            w,
        );
        Box::pin(sending).await
    } else {
        let connect = move || async move { dial(host, port, limit, refused).await.map(Opened::H1) };
        let pool = &engine.pool;
        send_via(engine, pool, connect, None, request, reader, body_state, w).await
    };
    result.map_err(|err| (err, refused.load(Ordering::Relaxed)))
}

/// Connects to the upstream, noting in `refused` when it refused or timed out.
async fn dial(
    host: &str,
    port: u16,
    limit: std::time::Duration,
    refused: &AtomicBool,
) -> Result<TcpStream, ProxyError> {
    dial_classified(host, port, limit)
        .await
        .map_err(|(err, why)| {
            refused.store(why != DialFailure::Other, Ordering::Relaxed);
            err
        })
}
