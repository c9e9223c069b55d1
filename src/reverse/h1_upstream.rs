//! One attempt of a reverse-proxy HTTP/1.1 exchange at one upstream, on the engine's
//! pools: plain TCP for `http://` upstreams; verified TLS for `https://` ones, carrying
//! the exchange as HTTP/2 when the upstream chooses it by ALPN.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use http::uri::Scheme;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::config::UpstreamTarget;
use crate::error::ProxyError;
use crate::h1::reader::{BodyState, MessageReader};
use crate::proxy::connect::{dial_classified, DialFailure};
use crate::proxy::forward::{send_via, Done, Prepared};
use crate::proxy::target::TunnelTarget;
use crate::proxy::upstream_tls::{self, cached_h2, Opened};
use crate::proxy::Engine;

/// A request ready for one upstream.
pub(crate) struct Attempt<'a, 'r> {
    pub(crate) upstream: &'a UpstreamTarget,
    /// Its `key` is set here, from the upstream.
    pub(crate) request: Prepared<'r>,
}

/// Sends one attempt. The flag in an error says whether the upstream refused or timed
/// out on connect: it is then marked down, and an idempotent request may go elsewhere.
pub(crate) async fn send<R, W>(
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
    let Attempt {
        upstream,
        mut request,
    } = attempt;
    let authority = &upstream.authority;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let https = upstream.scheme == Scheme::HTTPS;
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let limit = engine.cfg.connect_timeout;
    let refused = &AtomicBool::new(false);
    let result = if https {
        let tunnel = &TunnelTarget {
            host: host.to_string(),
            port,
            tls: true,
            server_name: host.to_string(),
            first_tcp: Mutex::new(None),
            client_tls: None,
            opened: Mutex::new(None),
        };
        request.key = format!("{}@{}", tunnel.server_name, tunnel.authority());
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
        request.key = format!("{host}:{port}");
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
