//! One client connection of the reverse proxy: the TLS handshake (inside the
//! connection task, with a time limit), HTTP/1.1 or HTTP/2 by ALPN, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    let accepted = std::time::Instant::now();
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
    if !h2 && proxy.cfg.rules.is_none() {
        let facts = Arc::new(crate::tls::session_facts(tls.get_ref().1));
        super::h1::serve(&proxy, tls, peer, facts, &shutdown).await;
        return;
    }

    let tunnels = TaskTracker::new();
    let stop_tunnels = CancellationToken::new();
    // Dropped with this task when the grace period ends: upgraded connections stop too.
    let _stop_on_drop = stop_tunnels.clone().drop_guard();
    let ctx = ConnCtx {
        peer,
        tunnels: tunnels.clone(),
        stop_tunnels,
        id: crate::flow::recorder::next_connection_id(),
        tls: Arc::new(crate::tls::session_facts(tls.get_ref().1)),
    };
    let cfg = &proxy.cfg;
    let h2_limits = (
        cfg.h2_max_streams,
        cfg.h2_max_pending_resets,
        cfg.h2_max_error_resets,
    );
    let service = service_fn(move |req| handle(proxy.clone(), ctx.clone(), req));
    let io = TokioIo::new(tls);

    // ALPN already told us the protocol: no sniffing for an h2 preface (hyper-util's
    // auto builder still does, even told http1_only, when serving upgrades).
    let result = if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        // h2 has no header timeout to end a dead connection: ping it when silent.
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(60)))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_concurrent_streams(h2_limits.0)
            .max_pending_accept_reset_streams(h2_limits.1)
            .max_local_error_reset_streams(h2_limits.2);
        let conn = builder.serve_connection(io, service);
        until_shutdown(conn, &shutdown, |c| c.graceful_shutdown()).await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            // The same head limit as the forward engine: larger heads get 431.
            .max_header_size(crate::h1::head::MAX_HEAD_BYTES)
            .max_buf_size(crate::h1::head::MAX_HEAD_BYTES);
        let conn = builder.serve_connection(io, service).with_upgrades();
        until_shutdown(conn, &shutdown, |c| c.graceful_shutdown()).await
    };
    if let Err(e) = result {
        if super::h2_limits::ended_for_resets(&e) {
            tracing::warn!(
                client = %peer,
                "HTTP/2 connection ended with GOAWAY: too many reset streams \
                 (rapid reset / MadeYouReset protection)"
            );
        } else if let Some(status) = refused_head(&e) {
            // hyper answered a request head it could not parse: still an exchange,
            // and it gets its access line.
            crate::access_log::log_access(&crate::access_log::AccessRecord {
                client: peer,
                method: "-",
                target: "-",
                status,
                up: 0,
                down: 0,
                elapsed: accepted.elapsed(),
                note: Some(&format!("malformed request refused: {e}")),
            });
        } else {
            tracing::debug!("connection from {peer}: {e}");
        }
    }
    tunnels.close();
    tunnels.wait().await;
}

/// The status hyper answered a request head it refused with (HTTP/1.1: it writes
/// 431 for a head over the limit, 400 for any other parse error), if that is why the
/// connection ended.
fn refused_head(e: &hyper::Error) -> Option<u16> {
    if e.is_parse_too_large() {
        Some(431)
    } else if e.is_parse() {
        Some(400)
    } else {
        None
    }
}

/// Drives a connection to its end; on shutdown asks it to finish gracefully first.
async fn until_shutdown<C>(
    conn: C,
    shutdown: &CancellationToken,
    graceful: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            graceful(conn.as_mut());
            conn.await
        }
    }
}
