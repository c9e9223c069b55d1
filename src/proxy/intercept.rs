//! Interception inside a CONNECT tunnel: peek at what the client sends first, then
//! terminate its TLS with a leaf for the requested name and serve the decrypted
//! requests through the same engine (or serve plain HTTP as HTTP); anything else,
//! and hosts the policy leaves alone, go back to a blind tunnel.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use regex::Regex;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::conn::{serve_requests, Conn};
use super::connect::parse_connect_target;
use super::passthrough::{after_failed_handshake, PassthroughMemory};
use super::peek::{classify, FirstBytes};
use super::target::{Scope, TunnelTarget};
use crate::h1::reader::MessageReader;

/// The longest we wait for a client's first bytes before tunnelling blind.
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// A ClientHello larger than this is not waited for.
const PEEK_LIMIT: usize = 20 * 1024;

/// What to intercept and with which certificates.
pub struct Policy {
    /// TLS towards clients: certificates for the names they ask for.
    pub client_tls: Arc<dyn ClientTls>,
    /// Hosts tunnelled blind so the client sees the real certificate.
    pub ignore_hosts: Vec<Regex>,
    /// `--auto-passthrough`: hosts whose clients refused our certificate, tunnelled blind.
    pub auto_passthrough: Option<PassthroughMemory>,
}

/// Where the TLS config for an intercepted client comes from.
pub trait ClientTls: Send + Sync {
    /// The config for a ClientHello naming `sni` (if any) in a tunnel to `connect_host`.
    fn config_for(
        &self,
        sni: Option<&str>,
        connect_host: &str,
    ) -> Result<Arc<ServerConfig>, String>;
}

/// One fixed config (a single certificate, as in tests).
impl ClientTls for Arc<ServerConfig> {
    fn config_for(
        &self,
        _sni: Option<&str>,
        _connect_host: &str,
    ) -> Result<Arc<ServerConfig>, String> {
        Ok(self.clone())
    }
}

impl Policy {
    fn ignores(&self, host: &str) -> bool {
        self.ignore_hosts.iter().any(|re| re.is_match(host))
            || self
                .auto_passthrough
                .as_ref()
                .is_some_and(|memory| memory.contains(host))
    }
}

/// Leaves minted by our CA: the shared config for SNI clients, one falling back to
/// the CONNECT host for the others.
impl ClientTls for crate::ca::MitmTls {
    fn config_for(
        &self,
        sni: Option<&str>,
        connect_host: &str,
    ) -> Result<Arc<ServerConfig>, String> {
        crate::ca::MitmTls::config_for(self, sni, connect_host).map_err(|e| e.to_string())
    }
}

/// How a tunnel was served.
pub enum Outcome {
    /// Intercepted and served to the end.
    Served,
    /// Not intercepted: relay it blind over this upstream connection; what was seen of
    /// the client's TLS, if it spoke TLS (for flows).
    Blind(TcpStream, Option<crate::flow::record::TlsFacts>),
}

/// Decides and, if intercepting, serves a tunnel to `target` whose upstream TCP
/// connection is already open.
pub async fn serve_tunnel(
    conn: Conn<'_>,
    policy: &Policy,
    reader: &mut MessageReader<ReadHalf<'_>>,
    w: &mut WriteHalf<'_>,
    target: &str,
    upstream: TcpStream,
) -> Outcome {
    let Ok((host, port)) = parse_connect_target(target) else {
        return Outcome::Blind(upstream, None);
    };
    if policy.ignores(&host) {
        return Outcome::Blind(upstream, None);
    }
    let first = peek(reader, &upstream).await;
    let tunnel = |tls: bool, sni: Option<String>| TunnelTarget {
        server_name: sni.unwrap_or_else(|| host.clone()),
        host: host.clone(),
        port,
        tls,
        first_tcp: Mutex::new(None),
        client_tls: None,
        opened: Mutex::new(None),
    };
    match first {
        FirstBytes::TlsClientHello { sni } => {
            if sni.as_deref().is_some_and(|name| policy.ignores(name)) {
                let seen = crate::flow::record::TlsFacts {
                    sni,
                    version: None,
                    alpn: None,
                    intercepted: false,
                };
                return Outcome::Blind(upstream, Some(seen));
            }
            let config = match policy.client_tls.config_for(sni.as_deref(), &host) {
                Ok(config) => config,
                Err(e) => {
                    tracing::warn!(client = %conn.peer, "no certificate for {host}: {e}");
                    return Outcome::Served;
                }
            };
            let tunnel = tunnel(true, sni);
            if let Ok(mut slot) = tunnel.first_tcp.lock() {
                *slot = Some(upstream);
            }
            serve_tls(conn, config, reader, w, tunnel).await;
            Outcome::Served
        }
        FirstBytes::PlainHttp => {
            let tunnel = tunnel(false, None);
            if let Ok(mut slot) = tunnel.first_tcp.lock() {
                *slot = Some(upstream);
            }
            serve_requests(conn, reader, w, &Scope::Tunnel(tunnel)).await;
            Outcome::Served
        }
        FirstBytes::Other | FirstBytes::NeedMore => Outcome::Blind(upstream, None),
    }
}

/// Buffers the client's first bytes until they can be classified (or time runs out).
/// A server that speaks first (SMTP, MySQL, an SSH banner) is not waited on: there is
/// nothing to intercept, and the tunnel goes blind at once.
async fn peek(reader: &mut MessageReader<ReadHalf<'_>>, upstream: &TcpStream) -> FirstBytes {
    let waiting = async {
        loop {
            let seen = classify(reader.buffered());
            if seen != FirstBytes::NeedMore || reader.buffered().len() > PEEK_LIMIT {
                return seen;
            }
            match reader.fill_more().await {
                Ok(0) | Err(_) => return FirstBytes::Other,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        biased;
        seen = tokio::time::timeout(PEEK_TIMEOUT, waiting) => seen.unwrap_or(FirstBytes::NeedMore),
        // Readable: bytes, or the end of the connection; either way the relay handles it.
        _ = upstream.readable() => FirstBytes::Other,
    }
}

/// Terminates the client's TLS and serves its requests towards the tunnel's origin:
/// HTTP/1.1 by the engine's own loop, HTTP/2 (if ALPN chose it) by hyper.
async fn serve_tls(
    conn: Conn<'_>,
    config: Arc<ServerConfig>,
    reader: &mut MessageReader<ReadHalf<'_>>,
    w: &mut WriteHalf<'_>,
    mut tunnel: TunnelTarget,
) {
    let prefix = reader.take_buffered();
    let io = Prefixed {
        prefix,
        read: reader.get_mut(),
        write: w,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake = tokio::time::timeout(conn.engine.cfg.header_timeout, acceptor.accept(io));
    let tls = match handshake.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(client = %conn.peer, "TLS handshake for {} failed: {e}", tunnel.server_name);
            let memory = conn.engine.intercept.as_ref();
            let memory = memory.and_then(|p| p.auto_passthrough.as_ref());
            after_failed_handshake(memory, &tunnel.server_name, &e);
            return;
        }
        Err(_) => return,
    };
    tunnel.client_tls = Some(Box::new(crate::tls::session_facts(tls.get_ref().1)));
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        super::intercept_h2::serve(conn, tls, tunnel).await;
        return;
    }
    let (read, mut write) = tokio::io::split(tls);
    let mut reader = MessageReader::new(read);
    serve_requests(conn, &mut reader, &mut write, &Scope::Tunnel(tunnel)).await;
}

/// The client side of a tunnel as one stream: the bytes peeked already, then the socket.
struct Prefixed<'a, R, W> {
    prefix: Bytes,
    read: &'a mut R,
    write: &'a mut W,
}

impl<R: AsyncRead + Unpin, W> AsyncRead for Prefixed<'_, R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *this.read).poll_read(cx, buf)
    }
}

impl<R, W: AsyncWrite + Unpin> AsyncWrite for Prefixed<'_, R, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().write).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().write).poll_shutdown(cx)
    }
}
