//! `interpose echo`: a debugging origin that answers every request with a plain-text
//! description of it (request line, peer address, headers, body size).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Serves one connection of the echo server (HTTP/1.1 and h2c prior knowledge).
pub async fn serve_echo_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |req| echo(req, peer));
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("echo connection: {e}"); } }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn echo(
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut text = String::new();
    let _ = writeln!(text, "{} {} {:?}", req.method(), req.uri(), req.version());
    let _ = writeln!(text, "peer: {peer}");
    for (name, value) in req.headers() {
        let _ = writeln!(
            text,
            "{}: {}",
            name,
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    let mut body = req.into_body();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => size += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => {
                let _ = writeln!(text, "body error: {e}");
                break;
            }
        }
    }
    let _ = writeln!(text, "body: {size} bytes");
    let response = Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default();
    Ok(response)
}
