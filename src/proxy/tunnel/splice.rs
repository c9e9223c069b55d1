//! The Linux copy loop. Small messages (requests and answers inside a keep-alive TLS
//! tunnel) are read into a per-thread buffer and written straight on: two syscalls per
//! message, and a short read tells us the socket is drained, so no third read is made
//! just to learn that. Once a read fills the whole buffer the direction is a bulk
//! transfer, and from then on it moves with splice(2) through a private pipe,
//! socket -> pipe -> socket, without copying through user space.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes asked for per splice call; the pipe is grown to hold this much.
const PIPE_BYTES: usize = 1 << 20;
/// The per-thread read buffer; a read that fills it marks a bulk transfer.
const SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// Moves bytes from `src` to `dst` until `src` reaches end of stream.
pub async fn copy(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    let mut spill = Vec::new();
    loop {
        let (n, bulk) = loop {
            src.readable().await?;
            // Set when a short read drained the socket: the closure then reports
            // WouldBlock so tokio clears the readiness, and the bytes are taken from here.
            let mut drained = None;
            let moved = src.try_io(Interest::READABLE, || {
                let n = read_and_pass_on(src, dst, &mut spill)?;
                if n > 0 && n < SCRATCH_BYTES {
                    drained = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match (moved, drained) {
                (_, Some(n)) => break (n, false),
                (Ok(n), None) => break (n, n == SCRATCH_BYTES),
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (Err(e), None) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(());
        }
        write_spill(dst, &mut spill).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        if bulk {
            return splice_copy(src, dst, count).await;
        }
    }
}

/// One read into the thread's buffer, written on to `dst` as far as it takes it now;
/// what it does not take is kept in `spill`. Returns the bytes read (0 at end of stream).
fn read_and_pass_on(src: &TcpStream, dst: &TcpStream, spill: &mut Vec<u8>) -> io::Result<usize> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        let n = recv(src.as_raw_fd(), &mut buf)?;
        let mut off = 0;
        while off < n {
            match send(dst.as_raw_fd(), &buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        spill.extend_from_slice(&buf[off..n]);
        Ok(n)
    })
}

/// Writes what `dst` could not take at once, waiting for it to drain.
async fn write_spill(dst: &TcpStream, spill: &mut Vec<u8>) -> io::Result<()> {
    let mut off = 0;
    while off < spill.len() {
        dst.writable().await?;
        match dst.try_io(Interest::WRITABLE, || send(dst.as_raw_fd(), &spill[off..])) {
            Ok(m) => off += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    spill.clear();
    Ok(())
}

/// The bulk path: splice through a pipe until `src` reaches end of stream.
async fn splice_copy(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> io::Result<()> {
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

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes and fd is open for the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes and fd is open for the call.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

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
