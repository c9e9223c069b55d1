//! Writes HTTP/1 responses to a client: the head, then the body framed by Content-Length,
//! chunked encoding or connection close, flushing whenever the source would wait.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bodies smaller than this are coalesced with the head into one write.
const COALESCE: usize = 16 * 1024;

/// How a response body is delimited towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    /// No body bytes (HEAD, 1xx, 204, 304, or an empty error answer).
    None,
    /// Content-Length is in the head; bytes are written as they come.
    Length,
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Body ends when the connection closes (HTTP/1.0 client, unknown length).
    Close,
    /// A `101 Switching Protocols` head: no body, the connection changes protocol.
    Upgrade,
}

/// Why writing a response failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing to client: {0}")]
    Client(#[from] io::Error),
    #[error("upstream body failed: {0}")]
    Upstream(Box<dyn std::error::Error + Send + Sync>),
    #[error("no progress for {0:?} (upstream or client stalled)")]
    Stalled(Duration),
}

/// Writes all of `data` unless the client stops reading for `idle`.
async fn put<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    idle: Duration,
) -> Result<(), WriteError> {
    match tokio::time::timeout(idle, w.write_all(data)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(WriteError::Stalled(idle)),
    }
}

/// Chooses the framing for a response, given what the client and upstream said.
pub fn choose_framing(
    status: StatusCode,
    is_head: bool,
    has_length: bool,
    client_version: Version,
) -> OutFraming {
    if is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        OutFraming::None
    } else if has_length {
        OutFraming::Length
    } else if client_version == Version::HTTP_11 {
        OutFraming::Chunked
    } else {
        OutFraming::Close
    }
}

/// Serialises a status line and headers (plus the framing header) into `out`.
pub fn encode_head(
    out: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    framing: OutFraming,
    keep_alive: bool,
) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if framing == OutFraming::Chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if framing == OutFraming::Upgrade {
        out.put_slice(b"connection: upgrade\r\n");
    } else if !keep_alive || framing == OutFraming::Close {
        out.put_slice(b"connection: close\r\n");
    } else {
        // Redundant for HTTP/1.1 clients, required for HTTP/1.0 ones that asked for keep-alive.
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}

/// A boxed error from a body source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where response frames come from: an upstream connection's decoder, or any
/// `http_body::Body`. `next_frame` must be cancel-safe: the writer polls it once
/// without waiting to decide whether to flush first.
pub trait FrameSource {
    fn next_frame(&mut self)
        -> impl Future<Output = Option<Result<Frame<Bytes>, BoxError>>> + Send;
}

/// Adapts an `http_body::Body` (hyper's, or a test's) to [`FrameSource`].
pub struct BodySource<B>(pub B);

impl<B> FrameSource for BodySource<B>
where
    B: Body<Data = Bytes> + Unpin + Send,
    B::Error: Into<BoxError>,
{
    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.0.frame().await.map(|r| r.map_err(Into::into))
    }
}

/// Serialises a request line and headers for an upstream: origin-form `path`, HTTP/1.1,
/// `extra_lines` (header lines already encoded), and `Transfer-Encoding: chunked` when
/// the body is chunked.
pub fn encode_request_head(
    out: &mut BytesMut,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    extra_lines: &[u8],
    chunked: bool,
) {
    encode_request_lines(out, method, path, headers);
    out.put_slice(extra_lines);
    if chunked {
        out.put_slice(b"transfer-encoding: chunked\r\n");
    }
    out.put_slice(b"\r\n");
}

/// The request line and the header lines of a head, without the blank line that ends
/// it: for a caller that adds lines of its own first.
pub fn encode_request_lines(out: &mut BytesMut, method: &Method, path: &str, headers: &HeaderMap) {
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    encode_fields(out, headers);
}

/// `headers` as `name: value\r\n` lines.
pub fn encode_fields(out: &mut impl BufMut, headers: &HeaderMap) {
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// Writes `head` then streams `body` with `framing`; returns the body bytes written.
/// Either side making no progress for `idle` ends the response as an error.
pub async fn write_response<W, S>(
    w: &mut W,
    mut head: BytesMut,
    framing: OutFraming,
    mut body: S,
    idle: Duration,
) -> Result<u64, WriteError>
where
    W: AsyncWrite + Unpin,
    S: FrameSource,
{
    if matches!(framing, OutFraming::None | OutFraming::Upgrade) {
        put(w, &head, idle).await?;
        w.flush().await?;
        return Ok(0);
    }
    let mut pending = std::mem::take(&mut head);
    let mut written = 0u64;
    let mut trailers = None;
    loop {
        // Take what is ready without waiting; flush before any wait, so streams stay live.
        let next = match body.next_frame().now_or_never() {
            Some(frame) => frame,
            None => {
                if !pending.is_empty() {
                    put(w, &pending, idle).await?;
                    pending.clear();
                }
                tokio::time::timeout(idle, body.next_frame())
                    .await
                    .map_err(|_| WriteError::Stalled(idle))?
            }
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(WriteError::Upstream)?;
        let frame = match frame.into_data() {
            Ok(data) => {
                written += data.len() as u64;
                append_data(&mut pending, framing, &data, w, idle).await?;
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(t) = frame.into_trailers() {
            trailers = Some(t);
        }
    }
    if framing == OutFraming::Chunked {
        pending.put_slice(b"0\r\n");
        for (name, value) in trailers.iter().flatten() {
            pending.put_slice(name.as_str().as_bytes());
            pending.put_slice(b": ");
            pending.put_slice(value.as_bytes());
            pending.put_slice(b"\r\n");
        }
        pending.put_slice(b"\r\n");
    }
    if !pending.is_empty() {
        put(w, &pending, idle).await?;
    }
    w.flush().await?;
    Ok(written)
}

/// Adds one data frame: small ones join `pending`, big ones are written straight through.
async fn append_data<W: AsyncWrite + Unpin>(
    pending: &mut BytesMut,
    framing: OutFraming,
    data: &Bytes,
    w: &mut W,
    idle: Duration,
) -> Result<(), WriteError> {
    if data.is_empty() {
        return Ok(());
    }
    if framing == OutFraming::Chunked {
        pending.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
    }
    if pending.len() + data.len() <= COALESCE {
        pending.put_slice(data);
    } else {
        if !pending.is_empty() {
            put(w, pending, idle).await?;
            pending.clear();
        }
        put(w, data, idle).await?;
    }
    if framing == OutFraming::Chunked {
        pending.put_slice(b"\r\n");
    }
    Ok(())
}

/// A complete short answer generated by the proxy itself (errors, OPTIONS at Max-Forwards 0).
pub fn simple_response(
    status: StatusCode,
    extra: &HeaderMap,
    text: &str,
    keep_alive: bool,
) -> BytesMut {
    let mut headers = extra.clone();
    if !text.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from(text.len()));
    let mut out = BytesMut::with_capacity(256 + text.len());
    encode_head(&mut out, status, &headers, OutFraming::Length, keep_alive);
    out.put_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn chunked_with_trailers() {
        let frames = vec![
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from("hello"))),
            Ok(http_body::Frame::trailers({
                let mut t = HeaderMap::new();
                t.insert("x-sum", "1".parse().unwrap());
                t
            })),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let mut head = BytesMut::new();
        encode_head(
            &mut head,
            StatusCode::OK,
            &HeaderMap::new(),
            OutFraming::Chunked,
            true,
        );
        let mut out = Vec::new();
        let n = write_response(
            &mut out,
            head,
            OutFraming::Chunked,
            BodySource(body),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(n, 5);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn length_body_is_raw() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, 3.into());
        let mut head = BytesMut::new();
        encode_head(
            &mut head,
            StatusCode::OK,
            &headers,
            OutFraming::Length,
            false,
        );
        let mut out = Vec::new();
        write_response(
            &mut out,
            head,
            OutFraming::Length,
            BodySource(Full::new(Bytes::from("abc"))),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"
        );
    }

    #[test]
    fn framing_rules() {
        use OutFraming::*;
        assert_eq!(
            choose_framing(StatusCode::OK, true, false, Version::HTTP_11),
            None
        );
        assert_eq!(
            choose_framing(StatusCode::NO_CONTENT, false, false, Version::HTTP_11),
            None
        );
        assert_eq!(
            choose_framing(StatusCode::NOT_MODIFIED, false, true, Version::HTTP_11),
            None
        );
        assert_eq!(
            choose_framing(StatusCode::OK, false, true, Version::HTTP_10),
            Length
        );
        assert_eq!(
            choose_framing(StatusCode::OK, false, false, Version::HTTP_11),
            Chunked
        );
        assert_eq!(
            choose_framing(StatusCode::OK, false, false, Version::HTTP_10),
            Close
        );
    }
}
