//! Idle keep-alive connections to origins, keyed by `host:port`, reused newest first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use futures_util::FutureExt;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::stream::UpstreamIo;

/// Idle connections kept per origin; beyond it the oldest is closed. As many as a busy
/// client side may have in flight at once (an HTTP/2 client with 100 streams on each of a
/// few connections): fewer, and every burst closes connections to open them again.
const MAX_IDLE_PER_HOST: usize = 1024;

struct Idle<S> {
    stream: S,
    /// The upstream's address, if the caller knew it (flows record it).
    peer: Option<std::net::SocketAddr>,
    since: Instant,
}

/// The pool of idle upstream connections shared by every client connection.
pub struct Pool<S> {
    /// foldhash, seeded at random per pool: SipHash showed in profiles, and the keys an
    /// attacker could choose are few (each needs an idle connection of its own).
    idle: Mutex<HashMap<String, VecDeque<Idle<S>>, RandomState>>,
    idle_timeout: Duration,
}

impl<S: UpstreamIo> Pool<S> {
    /// A pool that closes connections idle longer than `idle_timeout`.
    pub fn new(idle_timeout: Duration) -> Pool<S> {
        Pool {
            idle: Mutex::new(HashMap::default()),
            idle_timeout,
        }
    }

    /// An idle connection to `key` that still looks usable, if there is one, with the
    /// upstream address it was checked in with.
    pub fn checkout(&self, key: &str) -> Option<(S, Option<std::net::SocketAddr>)> {
        let mut map = self.idle.lock().ok()?;
        let list = map.get_mut(key)?;
        while let Some(idle) = list.pop_back() {
            if self.usable(&idle) {
                return Some((idle.stream, idle.peer));
            }
        }
        None
    }

    /// Not idle too long, and not closed by the origin.
    fn usable(&self, idle: &Idle<S>) -> bool {
        idle.since.elapsed() < self.idle_timeout && is_quiet(idle.stream.tcp())
    }

    /// Returns a connection whose last exchange ended cleanly (and, if known, the
    /// upstream's address, so that reusing it needs no system call to learn it).
    pub fn checkin(&self, key: &str, stream: S, peer: Option<std::net::SocketAddr>) {
        let Ok(mut map) = self.idle.lock() else {
            return;
        };
        let idle = Idle {
            stream,
            peer,
            since: Instant::now(),
        };
        match map.get_mut(key) {
            Some(list) => {
                // The oldest, least likely to be reused, go once closed or idle too long,
                // rather than hold their descriptors until a burst reaches them.
                while list.front().is_some_and(|old| !self.usable(old)) {
                    list.pop_front();
                }
                if list.len() >= MAX_IDLE_PER_HOST {
                    list.pop_front();
                }
                list.push_back(idle);
            }
            None => {
                map.insert(key.to_string(), VecDeque::from([idle]));
            }
        }
    }

    /// Closes the idle connections the origin closed or that were idle too long, so
    /// that they do not hold descriptors (in CLOSE_WAIT) until traffic comes back.
    pub fn sweep(&self) {
        let Ok(mut map) = self.idle.lock() else {
            return;
        };
        map.retain(|_, list| {
            list.retain(|idle| self.usable(idle));
            !list.is_empty()
        });
    }

    /// Idle connections currently held (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .map(|m| m.values().map(VecDeque::len).sum())
            .unwrap_or(0)
    }
}

/// An idle connection should have nothing to read: read readiness means the origin
/// closed it (or sent bytes nobody asked for). Checked without a syscall: tokio clears
/// read readiness after the short read that ended the last response.
fn is_quiet(stream: &TcpStream) -> bool {
    match stream.ready(Interest::READABLE).now_or_never() {
        None => true,
        Some(Ok(ready)) => !(ready.is_readable() || ready.is_read_closed()),
        Some(Err(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A listener on loopback, for the origin's side.
    async fn origin() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    /// A connection to `origin`: our end and the origin's.
    async fn connect(origin: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(origin.local_addr().unwrap())
            .await
            .unwrap();
        let server = origin.accept().await.unwrap().0;
        (client, server)
    }

    #[tokio::test]
    async fn reuses_live_and_drops_closed_connections() {
        let listener = origin().await;
        let pool: Pool<TcpStream> = Pool::new(Duration::from_secs(60));

        let (client, mut server) = connect(&listener).await;
        pool.checkin("a:80", client, None);
        let (mut client, _) = pool.checkout("a:80").expect("a live connection is reused");
        client.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).await.unwrap();

        pool.checkin("a:80", client, None);
        drop(server);
        // Let the reactor see the FIN.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            pool.checkout("a:80").is_none(),
            "a closed connection is not reused"
        );
        assert_eq!(pool.idle_count(), 0);
        assert!(pool.checkout("b:80").is_none());
    }

    #[tokio::test]
    async fn the_oldest_closed_connections_go_when_another_is_checked_in() {
        let listener = origin().await;
        let pool: Pool<TcpStream> = Pool::new(Duration::from_secs(60));
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (client, server) = connect(&listener).await;
            servers.push(server);
            pool.checkin("a:80", client, None);
        }
        // The origin closes the two oldest.
        drop(servers.drain(..2));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (client, _server) = connect(&listener).await;
        pool.checkin("a:80", client, None);
        assert_eq!(pool.idle_count(), 2, "the closed ones were dropped");
        assert!(pool.checkout("a:80").is_some());
        assert!(pool.checkout("a:80").is_some());
        assert!(pool.checkout("a:80").is_none());
    }

    #[tokio::test]
    async fn a_sweep_closes_what_the_origin_closed_and_keeps_the_rest() {
        let listener = origin().await;
        let pool: Pool<TcpStream> = Pool::new(Duration::from_secs(60));
        let mut servers = Vec::new();
        for key in ["a:80", "a:80", "b:80"] {
            let (client, server) = connect(&listener).await;
            servers.push(server);
            pool.checkin(key, client, None);
        }
        // The origin closes one of a's and b's only one.
        servers.remove(2);
        servers.remove(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.sweep();
        assert_eq!(pool.idle_count(), 1);
        assert!(pool.checkout("b:80").is_none());
        assert!(pool.checkout("a:80").is_some());
    }

    #[tokio::test]
    async fn a_sweep_closes_connections_idle_too_long() {
        let listener = origin().await;
        let pool: Pool<TcpStream> = Pool::new(Duration::from_millis(20));
        let (client, _server) = connect(&listener).await;
        pool.checkin("a:80", client, None);
        pool.sweep();
        assert_eq!(pool.idle_count(), 1, "not idle long enough yet");
        tokio::time::sleep(Duration::from_millis(40)).await;
        pool.sweep();
        assert_eq!(pool.idle_count(), 0);
    }
}
