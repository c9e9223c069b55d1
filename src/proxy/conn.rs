//! One client connection: read a request, serve it, repeat while keep-alive allows;
//! timeouts between and within requests; a CONNECT turns the connection into a tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::target::Scope;
use super::{access, connect, forward, Engine};
use crate::access_log::AccessRecord;
use crate::error::ProxyError;
use crate::h1::head::RequestHead;
use crate::h1::reader::MessageReader;
use crate::h1::writer::simple_response;

/// Serves every request on one client connection until it closes.
pub async fn serve_connection(
    engine: Arc<Engine>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    if let Err(err) = access::check_client(&engine.cfg, peer.ip()) {
        refuse_client(&engine, &mut stream, peer, &err).await;
        return;
    }
    let (read, mut write) = stream.split();
    let mut reader = MessageReader::new(read);
    let id = crate::flow::recorder::next_connection_id();
    loop {
        let conn = Conn {
            engine: &engine,
            peer,
            shutdown: &shutdown,
            id,
        };
        // Boxed: the request loop's state (kilobytes) would size every connection's
        // task, an open CONNECT tunnel's too, which is done with it.
        let serving = serve_requests(conn, &mut reader, &mut write, &Scope::Forward);
        match Box::pin(serving).await {
            LoopEnd::Closed => return,
            LoopEnd::Connect(head, started) => {
                if !connect::serve_connect(
                    &engine,
                    &mut reader,
                    &mut write,
                    head,
                    peer,
                    started,
                    &shutdown,
                )
                .await
                {
                    return;
                }
            }
        }
    }
}

/// What a request loop needs to know about its connection.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    pub engine: &'a Arc<Engine>,
    pub peer: SocketAddr,
    pub shutdown: &'a CancellationToken,
    /// Numbers the connection in flows.
    pub id: u64,
}

/// Why a request loop returned.
pub enum LoopEnd {
    /// The connection is done (closed, failed, timed out or shutting down).
    Closed,
    /// A CONNECT request, for the caller (only on forward-proxy connections).
    Connect(RequestHead, Instant),
}

/// Reads and serves requests until the connection ends or a CONNECT arrives.
/// Generic over the stream, so tunnels that are intercepted reuse it.
pub async fn serve_requests<R, W>(
    conn: Conn<'_>,
    reader: &mut MessageReader<R>,
    write: &mut W,
    scope: &Scope,
) -> LoopEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Conn { engine, peer, .. } = conn;
    loop {
        let Some((head, started)) = next_request(conn, reader, write).await else {
            return LoopEnd::Closed;
        };
        if head.method == Method::CONNECT {
            if let Scope::Forward = scope {
                return LoopEnd::Connect(head, started);
            }
            let err = ProxyError::bad_request("CONNECT inside a tunnel");
            answer_error(write, &err, false).await;
            log_failure(engine, peer, "CONNECT", &head.target, &err, started);
            return LoopEnd::Closed;
        }
        let keep_alive = forward::serve_exchange(conn, reader, write, head, started, scope).await;
        if !keep_alive {
            let _ = write.shutdown().await;
            return LoopEnd::Closed;
        }
    }
}

/// Waits for the connection's next request head, within the idle timeout (between
/// requests) and the header timeout (while it arrives). `None` when the connection is
/// done: closed, timed out, shutting down, or its head refused (answered and logged).
pub async fn next_request<R, W>(
    conn: Conn<'_>,
    reader: &mut MessageReader<R>,
    write: &mut W,
) -> Option<(RequestHead, Instant)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Conn {
        engine,
        peer,
        shutdown,
        ..
    } = conn;
    let waiting = timeout(engine.cfg.idle_timeout, reader.wait_for_data());
    let has_data = tokio::select! {
        r = waiting => matches!(r, Ok(Ok(true))),
        _ = shutdown.cancelled() => false,
    };
    if !has_data {
        return None;
    }
    let started = Instant::now();
    // A head still arriving when shutdown begins is not an exchange in flight: drop it.
    let reading = timeout(engine.cfg.header_timeout, reader.read_request_head());
    let read = tokio::select! {
        r = reading => r,
        _ = shutdown.cancelled() => return None,
    };
    let err = match read {
        Ok(Ok(Some(head))) => return Some((head, started)),
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => ProxyError::from(e),
        Err(_) => ProxyError::from(crate::error::ErrorKind::RequestTimeout),
    };
    answer_error(write, &err, false).await;
    log_failure(engine, peer, "-", "-", &err, started);
    None
}

/// A client outside `--allow-client`: its first request is answered 403, then it is closed.
async fn refuse_client(
    engine: &Engine,
    stream: &mut TcpStream,
    peer: SocketAddr,
    err: &ProxyError,
) {
    let limit = engine.cfg.header_timeout;
    let started = Instant::now();
    let (read, mut write) = stream.split();
    let mut reader = MessageReader::new(read);
    let head = timeout(limit, reader.read_request_head()).await;
    let (method, target) = match &head {
        Ok(Ok(Some(h))) => (h.method.to_string(), h.target.clone()),
        _ => ("-".to_string(), "-".to_string()),
    };
    answer_error(&mut write, err, false).await;
    log_failure(engine, peer, &method, &target, err, started);
}

/// Writes a proxy-generated error answer; failures to write are the client's loss.
pub async fn answer_error<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    err: &ProxyError,
    keep_alive: bool,
) {
    let bytes = simple_response(
        err.status(),
        &err.extra_headers(),
        &format!("{}\n", err.reason()),
        keep_alive,
    );
    let _ = w.write_all(&bytes).await;
    let _ = w.flush().await;
}

/// The access line for an exchange that ended in an error answer.
pub fn log_failure(
    engine: &Engine,
    peer: SocketAddr,
    method: &str,
    target: &str,
    err: &ProxyError,
    started: Instant,
) {
    engine.log_access(&AccessRecord {
        client: peer,
        method,
        target,
        status: err.status().as_u16(),
        up: 0,
        down: 0,
        elapsed: started.elapsed(),
        note: Some(&err.reason()),
    });
}
