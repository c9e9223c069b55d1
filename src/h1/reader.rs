//! Buffered reading of HTTP/1 messages, from clients and from upstreams alike: heads,
//! then bodies decoded frame by frame (Content-Length, chunked, or until close), never
//! more than one buffer at a time.
//!
//! Every method is cancel-safe: its only await is a read into the buffer, and bytes are
//! consumed only once everything needed is buffered. Callers may therefore poll a read
//! once without waiting (`now_or_never`) and drop it.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::head::{
    parse_request_head, parse_response_head, Framing, HeadError, RequestHead, ResponseHead,
};

/// Largest piece of body handed on at once; keeps memory flat for any body size.
const READ_CHUNK: usize = 64 * 1024;
/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer section limit, as for heads.
const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// Why reading a message failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// One piece of a decoded body.
#[derive(Debug)]
pub enum BodyPiece {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    Length {
        remaining: u64,
    },
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    /// The CRLF that ends a chunk's data.
    ChunkDataEnd,
    Trailers,
    /// A response body delimited by the connection closing.
    UntilClose,
    Done,
}

impl BodyState {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyState::Done,
            Framing::Length(n) => BodyState::Length { remaining: n },
            Framing::Chunked => BodyState::ChunkSize,
            Framing::UntilClose => BodyState::UntilClose,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }
}

/// The read side of a connection with its buffer.
pub struct MessageReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    pub fn new(io: R) -> Self {
        MessageReader {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The stream underneath (its unread bytes stay in the buffer).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// The stream, once nothing buffered is wanted any more.
    pub fn into_inner(self) -> R {
        self.io
    }

    /// The bytes buffered but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads more into the buffer, for callers that peek; 0 at end of stream.
    pub async fn fill_more(&mut self) -> io::Result<usize> {
        self.fill().await
    }

    /// Bytes read but not consumed yet (pipelined data after a CONNECT).
    pub fn take_buffered(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Reads more bytes into the buffer; returns how many (0 at end of stream).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(READ_CHUNK.max(self.buf.len()));
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Waits until at least one byte is buffered; false when the peer closed cleanly.
    pub async fn wait_for_data(&mut self) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(true);
        }
        Ok(self.fill().await? > 0)
    }

    /// Reads the next request head. `Ok(None)`: the client closed between requests.
    pub async fn read_request_head(&mut self) -> Result<Option<RequestHead>, ReadError> {
        loop {
            // Tolerate the CRLF some clients send after a body (RFC 9112 2.2).
            while self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
            }
            if !self.buf.is_empty() {
                if let Some((head, len)) = parse_request_head(&self.buf)? {
                    self.buf.advance(len);
                    return Ok(Some(head));
                }
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::UnexpectedEof)
                };
            }
        }
    }

    /// Reads the next response head (to a HEAD request if `is_head`).
    /// `Ok(None)`: the upstream closed before sending a byte.
    pub async fn read_response_head(
        &mut self,
        is_head: bool,
    ) -> Result<Option<ResponseHead>, ReadError> {
        loop {
            if !self.buf.is_empty() {
                if let Some((head, len)) = parse_response_head(&self.buf, is_head)? {
                    self.buf.advance(len);
                    return Ok(Some(head));
                }
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::UnexpectedEof)
                };
            }
        }
    }

    /// Decodes the next piece of body; `Ok(None)` once the body is complete.
    pub async fn read_body(
        &mut self,
        state: &mut BodyState,
    ) -> Result<Option<BodyPiece>, ReadError> {
        loop {
            match *state {
                BodyState::Done => return Ok(None),
                BodyState::Length { remaining } | BodyState::ChunkData { remaining } => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        return Err(ReadError::UnexpectedEof);
                    }
                    let n = (self.buf.len() as u64).min(remaining) as usize;
                    let data = self.buf.split_to(n).freeze();
                    let left = remaining - n as u64;
                    *state = match (*state, left) {
                        (BodyState::Length { .. }, 0) => BodyState::Done,
                        (BodyState::Length { .. }, _) => BodyState::Length { remaining: left },
                        (_, 0) => BodyState::ChunkDataEnd,
                        (_, _) => BodyState::ChunkData { remaining: left },
                    };
                    return Ok(Some(BodyPiece::Data(data)));
                }
                BodyState::ChunkDataEnd => {
                    while self.buf.len() < 2 {
                        if self.fill().await? == 0 {
                            return Err(ReadError::UnexpectedEof);
                        }
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(ReadError::Chunked("chunk data not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    *state = BodyState::ChunkSize;
                }
                BodyState::ChunkSize => {
                    let line = self.next_line(MAX_CHUNK_LINE).await?;
                    let size = parse_chunk_size(&line)?;
                    *state = if size == 0 {
                        BodyState::Trailers
                    } else {
                        BodyState::ChunkData { remaining: size }
                    };
                }
                BodyState::Trailers => {
                    let trailers = self.trailer_section().await?;
                    *state = BodyState::Done;
                    return Ok(trailers.map(BodyPiece::Trailers));
                }
                BodyState::UntilClose => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        *state = BodyState::Done;
                        return Ok(None);
                    }
                    return Ok(Some(BodyPiece::Data(self.buf.split().freeze())));
                }
            }
        }
    }

    /// Reads and drops the rest of a body (so the connection can carry the next message).
    pub async fn discard_body(&mut self, state: &mut BodyState) -> Result<(), ReadError> {
        while self.read_body(state).await?.is_some() {}
        Ok(())
    }

    /// One CRLF-terminated line, without its CRLF. A bare LF is an error.
    async fn next_line(&mut self, max: usize) -> Result<Bytes, ReadError> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos;
                if end == 0 || self.buf[end - 1] != b'\r' {
                    return Err(ReadError::Chunked("line not ended by CRLF"));
                }
                let line = self.buf.split_to(end + 1).freeze();
                return Ok(line.slice(..end - 1));
            }
            scanned = self.buf.len();
            if scanned > max {
                return Err(ReadError::Chunked("chunk line too long"));
            }
            if self.fill().await? == 0 {
                return Err(ReadError::UnexpectedEof);
            }
        }
    }

    /// The trailer section after the last chunk, consumed only once complete;
    /// `None` when it is empty.
    async fn trailer_section(&mut self) -> Result<Option<HeaderMap>, ReadError> {
        loop {
            if self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
                return Ok(None);
            }
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let section = self.buf.split_to(pos + 4).freeze();
                return parse_trailers(&section[..pos + 2]).map(Some);
            }
            if self.buf.len() > MAX_TRAILER_BYTES {
                return Err(ReadError::Chunked("trailer section too large"));
            }
            if self.fill().await? == 0 {
                return Err(ReadError::UnexpectedEof);
            }
        }
    }
}

/// `1*HEXDIG [ chunk-ext ]`, with overflow refused.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let bad = || ReadError::Chunked("invalid chunk size");
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits_end == 0 {
        return Err(bad());
    }
    if digits_end > 16 {
        return Err(ReadError::Chunked("chunk size overflows"));
    }
    let rest = &line[digits_end..];
    let ext_ok = rest.is_empty()
        || (rest.first() == Some(&b';')
            && rest
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)));
    if !ext_ok {
        return Err(bad());
    }
    let text = std::str::from_utf8(&line[..digits_end]).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| ReadError::Chunked("chunk size overflows"))
}

/// Whether a field may travel in a trailer section. Framing, routing, authentication
/// and content-coding fields may not (RFC 9110 6.5.1): a recipient that merged them
/// into the head would see a different message than we did, so they are dropped.
fn allowed_in_trailers(name: &http::HeaderName) -> bool {
    use http::header::*;
    static FORBIDDEN: [HeaderName; 16] = [
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        HOST,
        TRAILER,
        CONNECTION,
        TE,
        UPGRADE,
        CONTENT_ENCODING,
        CONTENT_TYPE,
        CONTENT_RANGE,
        EXPECT,
        MAX_FORWARDS,
        AUTHORIZATION,
        PROXY_AUTHORIZATION,
        COOKIE,
        SET_COOKIE,
    ];
    !FORBIDDEN.contains(name) && name.as_str() != "keep-alive"
}

/// Trailer field lines, each ending in CRLF; fields not allowed in trailers are dropped.
fn parse_trailers(section: &[u8]) -> Result<HeaderMap, ReadError> {
    let bad = || ReadError::Chunked("malformed trailer field");
    let mut trailers = HeaderMap::new();
    for line in section.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").ok_or_else(bad)?;
        let colon = line.iter().position(|&b| b == b':').ok_or_else(bad)?;
        let name = http::HeaderName::from_bytes(&line[..colon]).map_err(|_| bad())?;
        let value =
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).map_err(|_| bad())?;
        if !allowed_in_trailers(&name) {
            continue;
        }
        trailers.append(name, value);
    }
    Ok(trailers)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(
        raw: &[u8],
        framing: Framing,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), ReadError> {
        let mut reader = MessageReader::new(raw);
        let mut state = BodyState::new(framing);
        let mut body = Vec::new();
        let mut trailers = None;
        while let Some(piece) = reader.read_body(&mut state).await? {
            match piece {
                BodyPiece::Data(d) => body.extend_from_slice(&d),
                BodyPiece::Trailers(t) => trailers = Some(t),
            }
        }
        Ok((body, trailers))
    }

    #[tokio::test]
    async fn chunked_with_extension_and_trailers() {
        let raw = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\nX-B: 1\r\n\r\n";
        let (body, trailers) = decode(raw, Framing::Chunked).await.unwrap();
        assert_eq!(body, b"hello world");
        let trailers = trailers.unwrap();
        assert_eq!(trailers["x-sum"], "42");
        assert_eq!(trailers["x-b"], "1");
    }

    #[tokio::test]
    async fn framing_and_routing_fields_never_come_out_of_trailers() {
        let raw = b"5\r\nhello\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nX-Sum: 1\r\n\r\n";
        let (_, trailers) = decode(raw, Framing::Chunked).await.unwrap();
        let trailers = trailers.unwrap();
        assert_eq!(trailers.len(), 1, "{trailers:?}");
        assert_eq!(trailers["x-sum"], "1");
    }

    #[tokio::test]
    async fn content_length_and_until_close() {
        let (body, _) = decode(b"abcdefXYZ", Framing::Length(6)).await.unwrap();
        assert_eq!(body, b"abcdef");
        assert!(matches!(
            decode(b"abc", Framing::Length(6)).await,
            Err(ReadError::UnexpectedEof)
        ));
        let (body, _) = decode(b"all of it", Framing::UntilClose).await.unwrap();
        assert_eq!(body, b"all of it");
    }

    #[tokio::test]
    async fn bad_chunks_are_refused() {
        for raw in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"fffffffffffffffff\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;a\0\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
            b"5\r\nhello\r\n0\r\n",
        ] {
            assert!(
                decode(raw, Framing::Chunked).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[tokio::test]
    async fn heads_in_sequence() {
        let raw: &[u8] =
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\nGET http://b/ HTTP/1.1\r\nHost: b\r\n\r\n";
        let mut reader = MessageReader::new(raw);
        assert_eq!(
            reader.read_request_head().await.unwrap().unwrap().target,
            "http://a/"
        );
        assert_eq!(
            reader.read_request_head().await.unwrap().unwrap().target,
            "http://b/"
        );
        assert!(reader.read_request_head().await.unwrap().is_none());
    }

    /// Polling once and dropping must lose nothing: resume with a fresh call.
    #[tokio::test]
    async fn reads_are_cancel_safe() {
        use futures_util::FutureExt;
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = MessageReader::new(rx);
        let mut state = BodyState::new(Framing::Chunked);
        let mut body = Vec::new();
        let raw = b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for byte in raw {
            tokio::io::AsyncWriteExt::write_all(&mut tx, &[*byte])
                .await
                .unwrap();
            while let Some(r) = reader.read_body(&mut state).now_or_never() {
                match r.unwrap() {
                    Some(BodyPiece::Data(d)) => body.extend_from_slice(&d),
                    Some(BodyPiece::Trailers(t)) => assert_eq!(t["x-t"], "1"),
                    None => break,
                }
            }
        }
        assert_eq!(body, b"hello world");
        assert!(state.is_done());
    }
}
