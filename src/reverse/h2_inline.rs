//! An HTTP/2 stream's bodiless request to a plain `http://` upstream, sent from the
//! stream's own task over a connection of the engine's pool.
//!
//! hyper's pooled client runs each upstream connection as a task of its own and hands
//! every request and response across channels: several task wake-ups per request (the
//! reverse benchmark's HTTP/2 run went from 27k to 37k req/s without them). Here the
//! stream writes the head and parses the answer itself. A response that arrived whole with its head gives its connection back
//! at once; a longer one streams, and gives it back once its end is read.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::{HeaderMap, Method, Response, Version};
use http_body::Frame;
use http_body_util::{BodyExt as _, Either, Full, StreamBody};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::config::UpstreamTarget;
use super::metered::ExchangeLog;
use crate::error::ProxyError;
use crate::h1::head::{Framing, ResponseHead};
use crate::h1::reader::{BodyPiece, BodyState, MessageReader};
use crate::h1::writer::{encode_request_lines, BoxError};
use crate::proxy::connect::{dial_classified, DialFailure};
use crate::proxy::headers::wants_close;
use crate::proxy::round_trip::{read_final_head, TripError};
use crate::proxy::Engine;
use crate::upstream::h2::BoxedBody;

/// A response body from [`send`]: whole, or streaming from the upstream connection.
pub type InlineBody = Either<Full<Bytes>, BoxedBody>;

/// Whether [`send`] can carry a request: no body, to a plain HTTP upstream.
pub fn serves(upstream: &UpstreamTarget, bodiless: bool) -> bool {
    bodiless && !upstream.is_https()
}

/// The request head [`send`] writes: `method`, `path`, `headers` and the header lines
/// `stamp` (the forwarding fields, already encoded), for HTTP/1.1.
pub fn request_head(method: &Method, path: &str, headers: &HeaderMap, stamp: &[u8]) -> BytesMut {
    let mut head = BytesMut::with_capacity(512);
    encode_request_lines(&mut head, method, path, headers);
    head.extend_from_slice(stamp);
    head.extend_from_slice(b"\r\n");
    head
}

/// Sends one bodiless request, its `head` made by [`request_head`]. A pooled connection
/// the upstream had closed is replaced once by a fresh one when the method allows sending
/// it again. The flag in an error says the upstream refused or timed out on connect.
pub async fn send(
    engine: &Arc<Engine>,
    upstream: &UpstreamTarget,
    method: &Method,
    head: &[u8],
    log: &ExchangeLog,
) -> Result<Response<InlineBody>, (ProxyError, bool)> {
    let is_head = *method == Method::HEAD;
    let mut pooled = engine.pool.checkout(&upstream.pool_key);
    loop {
        let reused = pooled.is_some();
        let (stream, peer) = match pooled.take() {
            Some((stream, peer)) => {
                log.with_recording(|r| r.connected(peer, None, None));
                (stream, peer)
            }
            None => {
                let started = Instant::now();
                let limit = engine.cfg.connect_timeout;
                // Boxed: dialing is rare on a warm pool, and its future is large.
                let dialing = Box::pin(dial_classified(upstream.host(), upstream.port(), limit));
                let stream = dialing
                    .await
                    .map_err(|(err, why)| (err, why != DialFailure::Other))?;
                let connect = started.elapsed();
                // Kept with the connection in the pool, for the flows of later exchanges.
                let peer = stream.peer_addr().ok();
                log.with_recording(|r| r.connected(peer, Some(connect), None));
                (stream, peer)
            }
        };
        match exchange(engine, upstream, (stream, peer), head, is_head).await {
            Ok(resp) => return Ok(resp),
            Err(TripError::Upstream { stale: true, .. }) if reused && method.is_idempotent() => {}
            Err(TripError::Upstream { err, .. } | TripError::Client(err)) => {
                return Err((err, false))
            }
        }
    }
}

/// One round trip on `stream` (to `peer`, when known): the head out, the answer's head
/// in, its body whole or streaming.
///
/// A plain function around an `async move` block, so that the future does not keep the
/// connection twice (as an argument, and inside its reader).
#[allow(clippy::manual_async_fn)]
fn exchange<'a>(
    engine: &'a Arc<Engine>,
    upstream: &'a UpstreamTarget,
    (stream, peer): (TcpStream, Option<SocketAddr>),
    head: &'a [u8],
    is_head: bool,
) -> impl Future<Output = Result<Response<InlineBody>, TripError>> + Send + 'a {
    let mut reader = MessageReader::new(stream);
    async move {
        // The head is written and the answer's head read within the response timeout.
        let round_trip = async {
            if let Err(e) = reader.get_mut().write_all(head).await {
                let err = ProxyError::bad_gateway(format!("sending to the upstream failed: {e}"));
                return Err(TripError::Upstream { err, stale: true });
            }
            read_final_head(&mut reader, is_head, false).await
        };
        let limit = engine.cfg.response_timeout;
        let answer = match tokio::time::timeout(limit, round_trip).await {
            Ok(answer) => answer?,
            Err(_) => {
                let err = ProxyError::gateway_timeout(format!(
                    "upstream {} did not answer within {}s",
                    upstream.origin(),
                    limit.as_secs_f64()
                ));
                return Err(TripError::Upstream { err, stale: false });
            }
        };
        let ResponseHead {
            status,
            version,
            headers,
            framing,
        } = answer;
        let reusable = framing != Framing::UntilClose && !wants_close(&headers, version);
        let mut state = BodyState::new(framing);
        let whole = match state {
            BodyState::Done => Some(Bytes::new()),
            BodyState::Length { remaining } if reader.buffered().len() as u64 >= remaining => {
                // All buffered: the read completes without waiting.
                match reader.read_body(&mut state).now_or_never() {
                    Some(Ok(Some(BodyPiece::Data(data)))) => Some(data),
                    _ => None,
                }
            }
            _ => None,
        };
        let body = match whole {
            Some(data) if state.is_done() => {
                give_back(engine, &upstream.pool_key, reusable, reader, peer);
                Either::Left(Full::new(data))
            }
            _ => {
                let streaming = Streaming {
                    reader,
                    state,
                    engine: engine.clone(),
                    key: upstream.pool_key.clone(),
                    reusable,
                    peer,
                };
                Either::Right(streaming.into_body(engine.cfg.idle_timeout))
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.version_mut() = Version::HTTP_11;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

/// A connection whose response has been read goes back to the engine's pool, if the
/// upstream keeps it alive and nothing follows the response on it.
fn give_back(
    engine: &Engine,
    key: &str,
    reusable: bool,
    reader: MessageReader<TcpStream>,
    peer: Option<SocketAddr>,
) {
    if reusable && !reader.has_buffered() {
        engine.pool.checkin(key, reader.into_inner(), peer);
    }
}

/// A response body still being read from its connection.
struct Streaming {
    reader: MessageReader<TcpStream>,
    state: BodyState,
    engine: Arc<Engine>,
    key: String,
    reusable: bool,
    peer: Option<SocketAddr>,
}

impl Streaming {
    /// The body as hyper sends it on: each piece as it is read, the connection given back
    /// after the last. A pause longer than `idle` ends it with an error.
    fn into_body(self, idle: Duration) -> BoxedBody {
        let frames = futures_util::stream::unfold(Some(self), move |body| async move {
            let mut body = body?;
            let read = tokio::time::timeout(idle, body.reader.read_body(&mut body.state)).await;
            match read {
                Ok(Ok(Some(BodyPiece::Data(data)))) => Some((Ok(Frame::data(data)), Some(body))),
                Ok(Ok(Some(BodyPiece::Trailers(trailers)))) => {
                    body.end();
                    Some((Ok(Frame::trailers(trailers)), None))
                }
                Ok(Ok(None)) => {
                    body.end();
                    None
                }
                Ok(Err(e)) => Some((failed(format!("the upstream's body failed: {e}")), None)),
                Err(_) => Some((failed("the upstream's body stalled".into()), None)),
            }
        });
        StreamBody::new(frames).boxed_unsync()
    }

    fn end(self) {
        give_back(
            &self.engine,
            &self.key,
            self.reusable,
            self.reader,
            self.peer,
        );
    }
}

fn failed(why: String) -> Result<Frame<Bytes>, BoxError> {
    Err(why.into())
}
