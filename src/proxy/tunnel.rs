//! Byte relay for CONNECT tunnels: both directions at once, each end's shutdown passed
//! on while the other direction keeps flowing, an idle timeout, and on Linux splice(2)
//! so tunnel bytes never get copied through user space.

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
mod splice {
    //! splice(2) through a private pipe: socket -> pipe -> socket, in the kernel.

    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    /// Bytes asked for per splice call; the pipe is grown to hold this much.
    const PIPE_BYTES: usize = 1 << 20;

    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
    }

    impl Pipe {
        fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: fds has room for the two descriptors pipe2 writes.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both descriptors are open and owned by us alone.
            let pipe = unsafe {
                Pipe {
                    read: OwnedFd::from_raw_fd(fds[0]),
                    write: OwnedFd::from_raw_fd(fds[1]),
                }
            };
            // A bigger pipe means fewer syscalls; failing to grow it (limits) is fine.
            // SAFETY: plain fcntl on a descriptor we own.
            unsafe {
                libc::fcntl(
                    pipe.write.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    PIPE_BYTES as libc::c_int,
                )
            };
            Ok(pipe)
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the duration of the call; null offsets
        // mean "use the file position", as required for sockets and pipes.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Moves bytes from `src` to `dst` until `src` reaches end of stream.
    pub async fn copy(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> io::Result<()> {
        let pipe = Pipe::new()?;
        loop {
            let n = loop {
                src.readable().await?;
                match src.try_io(Interest::READABLE, || {
                    splice(src.as_raw_fd(), pipe.write.as_raw_fd(), PIPE_BYTES)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Ok(());
            }
            let mut left = n;
            while left > 0 {
                dst.writable().await?;
                match dst.try_io(Interest::WRITABLE, || {
                    splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), left)
                }) {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
