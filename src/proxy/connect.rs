//! CONNECT: check the target, dial it, answer 200 only once the upstream is open,
//! then relay bytes blind until both sides are done.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use http::uri::Authority;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::conn::{answer_error, Conn};
use super::intercept;
use super::recording::Asked;
use super::tunnel::{relay, TunnelEnd};
use super::{access, Engine};
use crate::access_log::AccessRecord;
use crate::error::{ErrorKind, ProxyError};
use crate::h1::head::{Framing, RequestHead};
use crate::h1::reader::MessageReader;

/// Serves a CONNECT request; returns whether the client connection may carry another
/// request (only after a refusal that left the connection in a clean state).
pub async fn serve_connect(
    engine: &Arc<Engine>,
    reader: &mut MessageReader<ReadHalf<'_>>,
    w: &mut WriteHalf<'_>,
    head: RequestHead,
    peer: SocketAddr,
    started: Instant,
    shutdown: &CancellationToken,
) -> bool {
    let upstream = match open_upstream(engine, &head).await {
        Ok(upstream) => upstream,
        Err(err) => {
            let keep_alive = !err.closes_connection() && head.framing == Framing::Empty;
            answer_error(w, &err, keep_alive).await;
            super::conn::log_failure(engine, peer, "CONNECT", &head.target, &err, started);
            return keep_alive;
        }
    };
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    if w.write_all(established).await.is_err() {
        return false;
    }
    if let Some(policy) = engine.intercept.as_ref() {
        let conn = Conn {
            engine,
            peer,
            shutdown,
            id: crate::flow::recorder::next_connection_id(),
        };
        // Boxed: interception's futures (TLS, HTTP/2) are large, and an unboxed one would
        // make every connection's task that large, tunnelling or not.
        let serving = intercept::serve_tunnel(conn, policy, reader, w, &head.target, upstream);
        let upstream = match Box::pin(serving).await {
            intercept::Outcome::Served => return false,
            intercept::Outcome::Blind(upstream, tls) => (upstream, tls),
        };
        relay_blind(engine, reader, w, upstream, &head, peer, started).await;
        return false;
    }
    relay_blind(engine, reader, w, (upstream, None), &head, peer, started).await;
    false
}

/// Relays the tunnel's bytes unseen (after any the client already sent), then logs it
/// (and records it as a flow: the CONNECT, with what was seen of the client's TLS).
async fn relay_blind(
    engine: &Engine,
    reader: &mut MessageReader<ReadHalf<'_>>,
    w: &mut WriteHalf<'_>,
    (upstream, tls): (TcpStream, Option<crate::flow::record::TlsFacts>),
    head: &RequestHead,
    peer: SocketAddr,
    started: Instant,
) {
    let recording = engine.record.recorder.as_ref().and_then(|_| {
        engine.record.begin(Asked {
            client: peer,
            connection_id: crate::flow::recorder::next_connection_id(),
            method: &head.method,
            url: &head.target,
            version: head.version,
            headers: &head.headers,
            tls,
        })
    });
    let mut note = None;
    // Bytes the client sent right behind its CONNECT (e.g. an eager ClientHello).
    if reader.has_buffered() {
        let early = reader.take_buffered();
        if let Err(e) = (&upstream).write_all_early(&early).await {
            note = Some(format!("upstream write failed: {e}"));
        }
    }
    let (stats, end) = if note.is_none() {
        relay(w.as_ref(), &upstream, engine.cfg.idle_timeout).await
    } else {
        (Default::default(), TunnelEnd::Failed)
    };
    match end {
        TunnelEnd::Closed => {}
        TunnelEnd::Idle => note = Some("closed after idle timeout".into()),
        TunnelEnd::Failed => note = note.or(Some("a side reset the tunnel".into())),
    }
    let access = AccessRecord {
        client: peer,
        method: "CONNECT",
        target: &head.target,
        status: 200,
        up: stats.up,
        down: stats.down,
        elapsed: started.elapsed(),
        note: note.as_deref(),
    };
    match recording {
        Some(mut recording) => {
            recording.tunnel_relayed(upstream.peer_addr().ok(), stats.up, stats.down);
            recording.finish(&access, note.as_deref(), engine.access_line());
        }
        None => engine.log_access(&access),
    }
}

/// Applies the access rules and dials the target.
async fn open_upstream(engine: &Engine, head: &RequestHead) -> Result<TcpStream, ProxyError> {
    access::check_proxy_auth(engine.cfg.auth.as_ref(), &head.headers)?;
    if engine.via.seen_in(&head.headers) {
        return Err(ErrorKind::Loop.into());
    }
    let (host, port) = parse_connect_target(&head.target)?;
    if !engine.cfg.connect_ports.allows(port) {
        return Err(ProxyError::forbidden(format!(
            "CONNECT to port {port} is not allowed (allowed: {})",
            engine.cfg.connect_ports
        )));
    }
    dial(&host, port, engine.cfg.connect_timeout).await
}

/// Resolves and connects, trying each address in turn, within `limit` overall.
pub async fn dial(
    host: &str,
    port: u16,
    limit: std::time::Duration,
) -> Result<TcpStream, ProxyError> {
    dial_classified(host, port, limit).await.map_err(|(e, _)| e)
}

/// Why a dial failed, for a caller that keeps upstream health (the reverse proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialFailure {
    /// The upstream refused the connection.
    Refused,
    /// Connecting took longer than the limit.
    TimedOut,
    /// The name did not resolve, or another error.
    Other,
}

/// [`dial`], also saying why it failed.
pub async fn dial_classified(
    host: &str,
    port: u16,
    limit: std::time::Duration,
) -> Result<TcpStream, (ProxyError, DialFailure)> {
    let name = format!("{host}:{port}");
    let attempt = async {
        let addrs = tokio::net::lookup_host((host, port)).await.map_err(|_| {
            let err = ProxyError::bad_gateway(format!("cannot resolve host {host}"));
            (err, DialFailure::Other)
        })?;
        let mut last: Option<io::Error> = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => (
                ProxyError::bad_gateway(format!("connection to {name} refused")),
                DialFailure::Refused,
            ),
            Some(e) if e.kind() == io::ErrorKind::TimedOut => (
                ProxyError::bad_gateway(format!("cannot connect to {name}: {e}")),
                DialFailure::TimedOut,
            ),
            Some(e) => (
                ProxyError::bad_gateway(format!("cannot connect to {name}: {e}")),
                DialFailure::Other,
            ),
            None => (
                ProxyError::bad_gateway(format!("cannot resolve host {host}")),
                DialFailure::Other,
            ),
        })
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err((
            ProxyError::gateway_timeout(format!(
                "connecting to {name} timed out after {}s",
                limit.as_secs_f64()
            )),
            DialFailure::TimedOut,
        )),
    }
}

/// Parses an authority-form target `host:port` (IPv6 in brackets); the port is required.
pub fn parse_connect_target(target: &str) -> Result<(String, u16), ProxyError> {
    let bad =
        |why: &str| ProxyError::bad_request(format!("invalid CONNECT target {target:?}: {why}"));
    if target.contains('/') || target.contains('@') || target.contains('?') {
        return Err(bad("expected host:port"));
    }
    let authority: Authority = target.parse().map_err(|_| bad("expected host:port"))?;
    let port = authority
        .port_u16()
        .ok_or_else(|| bad("a port is required"))?;
    // Brackets off first: `[]:443` has an empty host too.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if port == 0 || host.is_empty() {
        return Err(bad("expected host:port"));
    }
    Ok((host.to_string(), port))
}

/// Writing to a shared `&TcpStream` (tokio implements AsyncWrite only for owned streams).
trait WriteAllEarly {
    async fn write_all_early(self, data: &[u8]) -> io::Result<()>;
}

impl WriteAllEarly for &TcpStream {
    async fn write_all_early(self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.writable().await?;
            match self.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets() {
        assert_eq!(
            parse_connect_target("example.org:443").unwrap(),
            ("example.org".into(), 443)
        );
        assert_eq!(
            parse_connect_target("[::1]:8443").unwrap(),
            ("::1".into(), 8443)
        );
        assert_eq!(
            parse_connect_target("127.0.0.1:22").unwrap(),
            ("127.0.0.1".into(), 22)
        );
        for bad in [
            "example.org",
            "example.org:0",
            "example.org:443/path",
            "u@example.org:443",
            ":443",
            "a:b",
            "http://x:1",
            // Found by the connect_target fuzz target: empty brackets gave an empty host.
            "[]:443",
        ] {
            assert!(parse_connect_target(bad).is_err(), "{bad}");
        }
    }
}
