//! The accept loop shared by every mode: takes a bound listener and a shutdown token,
//! spawns one task per connection, and shuts down in phases (stop accepting, let
//! in-flight work finish for the grace period, then return).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Open connections allowed by default (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long a connection over the limit waits for a slot before it is closed.
const SLOT_WAIT: Duration = Duration::from_millis(250);

/// Accepts connections until `shutdown` fires, then waits up to `grace` for them,
/// with at most [`DEFAULT_MAX_CONNECTIONS`] open at once.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
    on_conn: F,
) where
    F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_limited(listener, shutdown, grace, DEFAULT_MAX_CONNECTIONS, on_conn).await
}

/// [`serve`] with at most `max_connections` open at once: beyond it a new connection
/// waits briefly for a slot, then is closed (and the log says so, once a second).
pub async fn serve_limited<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
    max_connections: usize,
    on_conn: F,
) where
    F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut refusals = Refusals::default();
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
                let Some(slot) = take_slot(&slots).await else {
                    refusals.note(peer, max_connections);
                    drop(stream);
                    continue;
                };
                let span = tracing::debug_span!("conn", client = %peer);
                let conn = on_conn(stream, peer, shutdown.clone());
                let kill = kill.clone();
                tracker.spawn(
                    async move {
                        let _slot = slot;
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

/// A connection slot, waiting up to [`SLOT_WAIT`] when all are taken.
async fn take_slot(slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    match tokio::time::timeout(SLOT_WAIT, slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => Some(slot),
        _ => None,
    }
}

/// Counts connections refused at the limit and logs them at most once a second.
#[derive(Default)]
struct Refusals {
    since_last_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, peer: SocketAddr, max: usize) {
        self.since_last_log += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                "connection limit ({max}) reached: closed {} new connection(s), the last from {peer}",
                self.since_last_log
            );
            self.since_last_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime does), so
/// `--max-connections`, not the descriptor limit, is what bounds connections.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
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
