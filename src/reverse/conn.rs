//! One client connection of the reverse proxy: the TLS handshake (inside the
//! connection task, with a time limit), HTTP/1.1 or HTTP/2 by ALPN, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::{handle, ConnCtx};
use super::ReverseProxy;

/// Serves one accepted connection until it closes or shutdown finishes it.
pub async fn serve_tls_connection(
    proxy: Arc<ReverseProxy>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let header_timeout = proxy.cfg.header_timeout;
    let handshake = tokio::time::timeout(header_timeout, proxy.acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake with {peer} failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake with {peer} timed out");
                return;
            }
        },
        _ = shutdown.cancelled() => return,
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");

    let tunnels = TaskTracker::new();
    let stop_tunnels = CancellationToken::new();
    // Dropped with this task when the grace period ends: upgraded connections stop too.
    let _stop_on_drop = stop_tunnels.clone().drop_guard();
    let ctx = ConnCtx {
        peer,
        tunnels: tunnels.clone(),
        stop_tunnels,
    };
    let h2_limits = (
        proxy.cfg.h2_max_streams,
        proxy.cfg.h2_max_pending_resets,
        proxy.cfg.h2_max_error_resets,
    );
    let service = service_fn(move |req| handle(proxy.clone(), ctx.clone(), req));

    // ALPN already told us the protocol: skip auto-detection.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // The same head limit as the forward engine: larger heads get 431.
        .max_buf_size(crate::h1::head::MAX_HEAD_BYTES);
    // h2 has no header timeout to end a dead connection: ping it when silent.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(h2_limits.0)
        .max_pending_accept_reset_streams(h2_limits.1)
        .max_local_error_reset_streams(h2_limits.2);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if super::h2_limits::ended_for_resets(e.as_ref()) {
            tracing::warn!(
                client = %peer,
                "HTTP/2 connection ended with GOAWAY: too many reset streams \
                 (rapid reset / MadeYouReset protection)"
            );
        } else {
            tracing::debug!("connection from {peer}: {e}");
        }
    }
    tunnels.close();
    tunnels.wait().await;
}
