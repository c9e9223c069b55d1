//! One client connection of the reverse proxy: the TLS handshake (inside the
//! connection task, with a time limit), then HTTP/1.1 on the proxy engine
//! ([`super::h1`]) or HTTP/2 on hyper, by ALPN; graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::forwarded::Forwarder;
use super::handler::{handle, ConnCtx};
use super::ReverseProxy;
use crate::stream_set::{drive, StreamSet};

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
    // Read in a block of its own: a stream borrowed in this scope would keep its slot
    // in the task after it has moved on (1.2 KiB, in every connection's task).
    let (tls, h2) = {
        let tls = tls;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        (tls, h2)
    };
    if !h2 {
        super::h1::serve(&proxy, tls, peer, &shutdown).await;
        return;
    }
    serve_h2(proxy, tls, peer, &shutdown).await;
}

/// HTTP/2 on hyper, its streams run in this task (see [`crate::stream_set`]).
///
/// A plain function around an `async move` block: hyper's connection is made and boxed
/// before the future is, so that the task holds a pointer to it, not the stream it
/// was made from beside it (nor a copy at each level that pins it).
#[allow(clippy::manual_async_fn)]
fn serve_h2(
    proxy: Arc<ReverseProxy>,
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> impl Future<Output = ()> + Send + '_ {
    let ctx = ConnCtx {
        peer,
        id: crate::flow::recorder::next_connection_id(),
        tls: Arc::new(crate::tls::session_facts(tls.get_ref().1)),
        forwarder: Arc::new(Mutex::new(Forwarder::new(
            peer.ip(),
            &proxy.cfg.trusted_proxies,
        ))),
    };
    let cfg = &proxy.cfg;
    let h2_limits = (
        cfg.h2_max_streams,
        cfg.h2_max_pending_resets,
        cfg.h2_max_error_resets,
    );
    let service = service_fn(move |req| handle(proxy.clone(), ctx.clone(), req));
    let io = TokioIo::new(tls);

    // ALPN already told us the protocol: no sniffing for a preface.
    let streams = StreamSet::new();
    let mut builder = http2::Builder::new(streams.clone());
    // h2 has no header timeout to end a dead connection: ping it when silent.
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(h2_limits.0)
        .max_pending_accept_reset_streams(h2_limits.1)
        .max_local_error_reset_streams(h2_limits.2);
    // Boxed: hyper's HTTP/2 connection is large (2.7 KiB), and would size every
    // connection's task.
    let conn = Box::pin(builder.serve_connection(io, service));
    async move {
        let serving = until_shutdown(conn, shutdown, |c| c.graceful_shutdown());
        let result = drive(serving, streams).await;
        if let Err(e) = result {
            if super::h2_limits::ended_for_resets(&e) {
                tracing::warn!(
                    client = %peer,
                    "HTTP/2 connection ended with GOAWAY: too many reset streams \
                     (rapid reset / MadeYouReset protection)"
                );
            } else {
                tracing::debug!("connection from {peer}: {e}");
            }
        }
    }
}

/// Drives a connection to its end; on shutdown asks it to finish gracefully first.
async fn until_shutdown<C>(
    mut conn: Pin<Box<C>>,
    shutdown: &CancellationToken,
    graceful: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            graceful(conn.as_mut());
            conn.await
        }
    }
}
