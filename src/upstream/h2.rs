//! HTTP/2 connections to origins: the handshake over a stream that negotiated `h2`,
//! and a small cache of live connections per origin, so exchanges multiplex on one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::ProxyError;
use crate::h1::writer::BoxError;

/// The request body type hyper client connections to origins carry.
pub type BoxedBody = UnsyncBoxBody<Bytes, BoxError>;
/// A handle to send requests on one HTTP/2 upstream connection (cheap to clone).
pub type H2Sender = http2::SendRequest<BoxedBody>;

/// Origins with a cached connection; beyond it new connections serve one exchange only.
const MAX_ORIGINS: usize = 256;

struct Entry {
    sender: H2Sender,
    used: Instant,
}

/// Live HTTP/2 connections to origins, one per key, shared by every client connection.
pub struct H2Pool {
    conns: Mutex<HashMap<String, Entry>>,
    idle_timeout: Duration,
}

impl H2Pool {
    /// A cache that forgets connections unused for `idle_timeout`.
    pub fn new(idle_timeout: Duration) -> H2Pool {
        H2Pool {
            conns: Mutex::new(HashMap::new()),
            idle_timeout,
        }
    }

    /// A handle on the live connection for `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<H2Sender> {
        let mut map = self.conns.lock().ok()?;
        let entry = map.get_mut(key)?;
        if entry.sender.is_closed() || entry.used.elapsed() > self.idle_timeout {
            map.remove(key);
            return None;
        }
        entry.used = Instant::now();
        Some(entry.sender.clone())
    }

    /// Keeps `sender` as the connection for `key` (dead and idle entries are dropped first).
    pub fn insert(&self, key: String, sender: H2Sender) {
        let Ok(mut map) = self.conns.lock() else {
            return;
        };
        self.drop_stale(&mut map);
        if map.len() < MAX_ORIGINS || map.contains_key(&key) {
            map.insert(
                key,
                Entry {
                    sender,
                    used: Instant::now(),
                },
            );
        }
    }
}

impl H2Pool {
    /// Forgets the connections that closed or were unused too long (the last handle
    /// dropped ends a connection's task).
    pub fn sweep(&self) {
        if let Ok(mut map) = self.conns.lock() {
            self.drop_stale(&mut map);
        }
    }

    fn drop_stale(&self, map: &mut HashMap<String, Entry>) {
        let idle = self.idle_timeout;
        map.retain(|_, e| !e.sender.is_closed() && e.used.elapsed() <= idle);
    }
}

/// Starts HTTP/2 on `io` (ALPN said `h2`); the connection is driven by its own task
/// and ends when every handle is dropped or the origin closes it.
pub async fn handshake<T>(io: T, origin: &str) -> Result<H2Sender, ProxyError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    // Pings find a dead origin when nothing else would.
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20));
    let (sender, conn) = builder
        .handshake::<_, BoxedBody>(TokioIo::new(io))
        .await
        .map_err(|e| {
            ProxyError::bad_gateway(format!("HTTP/2 handshake with {origin} failed: {e}"))
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("HTTP/2 upstream connection ended: {e}");
        }
    });
    Ok(sender)
}
