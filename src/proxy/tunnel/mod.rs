//! Byte relay for CONNECT tunnels: both directions at once, each end's shutdown passed
//! on while the other direction keeps flowing, an idle timeout, and on Linux splice(2)
//! so bulk tunnel bytes never get copied through user space.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

/// Bytes moved through a tunnel, for the access line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    /// Client to upstream.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides shut down their writing half.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A side reset the connection or another I/O error ended it.
    Failed,
}

/// Counters shared by the two directions and the idle watcher.
#[derive(Default)]
struct Progress {
    up: AtomicU64,
    down: AtomicU64,
}

impl Progress {
    fn total(&self) -> u64 {
        self.up.load(Ordering::Relaxed) + self.down.load(Ordering::Relaxed)
    }
    fn stats(&self) -> TunnelStats {
        TunnelStats {
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
        }
    }
}

/// Relays bytes between `client` and `upstream` until both directions are done.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
) -> (TunnelStats, TunnelEnd) {
    let progress = Progress::default();
    let both = async {
        tokio::try_join!(
            one_way(client, upstream, &progress.up),
            one_way(upstream, client, &progress.down)
        )
    };
    let end = tokio::select! {
        res = both => if res.is_ok() { TunnelEnd::Closed } else { TunnelEnd::Failed },
        _ = idle_watch(&progress, idle) => TunnelEnd::Idle,
    };
    (progress.stats(), end)
}

/// Resolves once no byte moved for a whole `idle` period.
async fn idle_watch(progress: &Progress, idle: Duration) {
    let mut last = progress.total();
    loop {
        tokio::time::sleep(idle).await;
        let now = progress.total();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Copies `src` to `dst` until `src` ends, then shuts down `dst`'s writing half.
async fn one_way(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    copy(src, dst, count).await?;
    // The peer may already be gone; the other direction decides the outcome then.
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
    Ok(())
}

#[cfg(target_os = "linux")]
use splice::copy;

#[cfg(not(target_os = "linux"))]
async fn copy(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(target_os = "linux")]
mod splice;
