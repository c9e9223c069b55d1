//! One client connection: read a request, serve it, repeat while keep-alive allows;
//! timeouts between and within requests; a CONNECT turns the connection into a tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::{access, connect, forward, Engine};
use crate::access_log::{log_access, AccessRecord};
use crate::error::ProxyError;
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
    let client_refused = access::check_client(&engine.cfg, peer.ip()).err();
    let (read, mut write) = stream.split();
    let mut reader = MessageReader::new(read);
    loop {
        // Between requests: wait for the first byte, bounded by the idle timeout and shutdown.
        let waiting = timeout(engine.cfg.idle_timeout, reader.wait_for_data());
        let has_data = tokio::select! {
            r = waiting => matches!(r, Ok(Ok(true))),
            _ = shutdown.cancelled() => false,
        };
        if !has_data {
            return;
        }
        let started = Instant::now();
        // A head still arriving when shutdown begins is not an exchange in flight: drop it.
        let reading = timeout(engine.cfg.header_timeout, reader.read_request_head());
        let read = tokio::select! {
            r = reading => r,
            _ = shutdown.cancelled() => return,
        };
        let head = match read {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                let err = ProxyError::from(e);
                answer_error(&mut write, &err, false).await;
                log_failure(peer, "-", "-", &err, started);
                return;
            }
            Err(_) => {
                let err = ProxyError::from(crate::error::ErrorKind::RequestTimeout);
                answer_error(&mut write, &err, false).await;
                log_failure(peer, "-", "-", &err, started);
                return;
            }
        };
        if let Some(err) = &client_refused {
            answer_error(&mut write, err, false).await;
            log_failure(peer, head.method.as_str(), &head.target, err, started);
            return;
        }
        if head.method == Method::CONNECT {
            if connect::serve_connect(&engine, &mut reader, &mut write, head, peer, started).await {
                continue;
            }
            return;
        }
        let keep_alive = forward::serve_exchange(
            &engine,
            &mut reader,
            &mut write,
            head,
            peer,
            started,
            shutdown.is_cancelled(),
        )
        .await;
        if !keep_alive {
            let _ = write.shutdown().await;
            return;
        }
    }
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
    peer: SocketAddr,
    method: &str,
    target: &str,
    err: &ProxyError,
    started: Instant,
) {
    log_access(&AccessRecord {
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
