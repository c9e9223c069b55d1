//! The accept loop shared by every mode: takes a bound listener and a shutdown token,
//! spawns one task per connection, and shuts down in phases (stop accepting, let
//! in-flight work finish for the grace period, then return).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Accepts connections until `shutdown` fires, then waits up to `grace` for them.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
    on_conn: F,
) where
    F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    // Fired when the grace period is over: every connection still open is dropped.
    let kill = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let span = tracing::debug_span!("conn", client = %peer);
                let conn = on_conn(stream, peer, shutdown.clone());
                let kill = kill.clone();
                tracker.spawn(
                    async move {
                        tokio::select! {
                            _ = conn => {}
                            _ = kill.cancelled() => {}
                        }
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                // Out of descriptors or a connection reset before accept: back off briefly.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    let open = tracker.len();
    if open > 0 {
        tracing::info!(
            "shutting down: waiting up to {}s for {open} open connections",
            grace.as_secs_f64()
        );
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("grace period over: closing {} connections", tracker.len());
        kill.cancel();
        tracker.wait().await;
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
