//! TLS towards an intercepted origin, and what its ALPN answer means: an origin that
//! chose `h2` gets one multiplexed HTTP/2 connection (cached in the engine), any other
//! gets HTTP/1.1 on the stream. ALPN is read once per new connection, never per request.

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::connect::dial;
use super::target::TunnelTarget;
use super::Engine;
use crate::error::ProxyError;
use crate::upstream::h2::{handshake, H2Sender};

/// A connection ready for one exchange: an HTTP/1.1 stream, or a handle on HTTP/2.
pub enum Opened<S> {
    H1(S),
    H2(H2Sender),
}

/// The HTTP/2 connection to the tunnel's origin if one is live, else a new connection
/// (HTTP/2 if the origin chose it). `h1_only` offers HTTP/1.1 alone (upgrades).
pub async fn open(
    engine: &Engine,
    tunnel: &TunnelTarget,
    h1_only: bool,
) -> Result<Opened<TlsStream<TcpStream>>, ProxyError> {
    if let Some(sender) = cached_h2(engine, tunnel, h1_only) {
        return Ok(Opened::H2(sender));
    }
    let connector = if h1_only {
        engine.upstream_tls_h1.as_ref()
    } else {
        engine.upstream_tls.as_ref()
    };
    let Some(connector) = connector else {
        return Err(ProxyError::bad_gateway(
            "TLS towards upstreams is not configured",
        ));
    };
    let stream = connect_tls(engine, connector, tunnel).await?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(Opened::H1(stream));
    }
    let sender = handshake(stream, &tunnel.server_name).await?;
    engine.h2_pool.insert(h2_key(tunnel), sender.clone());
    Ok(Opened::H2(sender))
}

/// The live HTTP/2 connection to the tunnel's origin, if there is one and HTTP/2 may
/// carry the exchange (`h1_only` is false).
pub fn cached_h2(engine: &Engine, tunnel: &TunnelTarget, h1_only: bool) -> Option<H2Sender> {
    if h1_only {
        return None;
    }
    engine.h2_pool.get(&h2_key(tunnel))
}

/// The verified name is part of the key: a connection checked for one name never
/// carries requests for another.
fn h2_key(tunnel: &TunnelTarget) -> String {
    format!("{}@{}", tunnel.server_name, tunnel.authority())
}

/// Opens a verified TLS connection to the tunnel's origin (the tunnel's own TCP
/// connection first, if still unused).
pub async fn connect_tls(
    engine: &Engine,
    tls: &tokio_rustls::TlsConnector,
    tunnel: &TunnelTarget,
) -> Result<TlsStream<TcpStream>, ProxyError> {
    let started = std::time::Instant::now();
    let (tcp, tcp_time) = match tunnel.take_first_tcp() {
        Some(tcp) => (tcp, None),
        None => {
            let tcp = dial(&tunnel.host, tunnel.port, engine.cfg.connect_timeout).await?;
            (tcp, Some(started.elapsed()))
        }
    };
    let server = tcp.peer_addr().ok();
    let tls_started = std::time::Instant::now();
    let name =
        rustls_pki_types::ServerName::try_from(tunnel.server_name.clone()).map_err(|_| {
            ProxyError::bad_gateway(format!("invalid server name {:?}", tunnel.server_name))
        })?;
    let handshake = tls.connect(name, tcp);
    match tokio::time::timeout(engine.cfg.connect_timeout, handshake).await {
        Ok(Ok(stream)) => {
            tunnel.note_opened(super::target::Opened {
                server,
                tcp: tcp_time,
                tls: tls_started.elapsed(),
            });
            Ok(stream)
        }
        Ok(Err(e)) => Err(crate::upstream::classify_tls(&e, &tunnel.server_name)),
        Err(_) => Err(ProxyError::gateway_timeout(format!(
            "TLS handshake with {} timed out",
            tunnel.server_name
        ))),
    }
}
