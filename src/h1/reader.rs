//! Buffered reading of HTTP/1 messages from a client: heads, then bodies decoded
//! frame by frame (Content-Length or chunked), never more than one buffer at a time.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::head::{parse_request_head, Framing, HeadError, RequestHead};

/// Largest piece of body handed on at once; keeps memory flat for any body size.
const READ_CHUNK: usize = 64 * 1024;
/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer section limit, as for heads.
const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// Why reading from the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("client closed the connection in the middle of a message")]
    UnexpectedEof,
    #[error("reading from client: {0}")]
    Io(#[from] io::Error),
}

/// One piece of a decoded request body.
#[derive(Debug)]
pub enum BodyPiece {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy)]
pub enum BodyState {
    Length { remaining: u64 },
    ChunkStart,
    ChunkData { remaining: u64 },
    Done,
}

impl BodyState {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyState::Done,
            Framing::Length(n) => BodyState::Length { remaining: n },
            Framing::Chunked => BodyState::ChunkStart,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }
}

/// The read side of a client connection with its buffer.
pub struct ClientReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> ClientReader<R> {
    pub fn new(io: R) -> Self {
        ClientReader {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The underlying reader (for splicing once the connection becomes a tunnel).
    pub fn get_ref(&self) -> &R {
        &self.io
    }

    /// Bytes read from the client but not consumed yet (pipelined data after a CONNECT).
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

    /// Waits until at least one byte is buffered; false when the client closed cleanly.
    pub async fn wait_for_data(&mut self) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(true);
        }
        Ok(self.fill().await? > 0)
    }

    /// Reads the next request head. `Ok(None)`: the client closed between requests.
    pub async fn read_head(&mut self) -> Result<Option<RequestHead>, ReadError> {
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
                        (_, 0) => {
                            self.expect_crlf().await?;
                            BodyState::ChunkStart
                        }
                        (_, _) => BodyState::ChunkData { remaining: left },
                    };
                    return Ok(Some(BodyPiece::Data(data)));
                }
                BodyState::ChunkStart => {
                    let line = self.read_line(MAX_CHUNK_LINE).await?;
                    let size = parse_chunk_size(&line)?;
                    if size == 0 {
                        *state = BodyState::Done;
                        let trailers = self.read_trailers().await?;
                        return Ok(trailers.map(BodyPiece::Trailers));
                    }
                    *state = BodyState::ChunkData { remaining: size };
                }
            }
        }
    }

    /// Reads and drops the rest of a body (so the connection can carry the next request).
    pub async fn discard_body(&mut self, state: &mut BodyState) -> Result<(), ReadError> {
        while self.read_body(state).await?.is_some() {}
        Ok(())
    }

    async fn expect_crlf(&mut self) -> Result<(), ReadError> {
        while self.buf.len() < 2 {
            if self.fill().await? == 0 {
                return Err(ReadError::UnexpectedEof);
            }
        }
        if &self.buf[..2] != b"\r\n" {
            return Err(ReadError::Chunked("chunk data not followed by CRLF"));
        }
        self.buf.advance(2);
        Ok(())
    }

    /// One CRLF-terminated line, without its CRLF. A bare CR or LF is an error.
    async fn read_line(&mut self, max: usize) -> Result<Bytes, ReadError> {
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

    /// Trailer fields after the last chunk; `None` when there are none.
    async fn read_trailers(&mut self) -> Result<Option<HeaderMap>, ReadError> {
        let mut trailers = HeaderMap::new();
        let mut total = 0;
        loop {
            let line = self.read_line(MAX_TRAILER_BYTES).await?;
            if line.is_empty() {
                return Ok((!trailers.is_empty()).then_some(trailers));
            }
            total += line.len() + 2;
            if total > MAX_TRAILER_BYTES {
                return Err(ReadError::Chunked("trailer section too large"));
            }
            let (name, value) = parse_field_line(&line)?;
            trailers.append(name, value);
        }
    }
}

/// `1*HEXDIG [ chunk-ext ]`, with overflow refused.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits_end == 0 {
        return Err(ReadError::Chunked("invalid chunk size"));
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
        return Err(ReadError::Chunked("invalid chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits_end])
        .map_err(|_| ReadError::Chunked("invalid chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| ReadError::Chunked("chunk size overflows"))
}

fn parse_field_line(line: &[u8]) -> Result<(http::HeaderName, http::HeaderValue), ReadError> {
    let bad = ReadError::Chunked("malformed trailer field");
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ReadError::Chunked("malformed trailer field"))?;
    let name = http::HeaderName::from_bytes(&line[..colon])
        .map_err(|_| ReadError::Chunked("malformed trailer field"))?;
    let value = line[colon + 1..].trim_ascii();
    let value = http::HeaderValue::from_bytes(value).map_err(|_| bad)?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(
        raw: &[u8],
        framing: Framing,
    ) -> Result<(Vec<u8>, Option<HeaderMap>), ReadError> {
        let mut reader = ClientReader::new(raw);
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
        let raw = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n";
        let (body, trailers) = decode(raw, Framing::Chunked).await.unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "42");
    }

    #[tokio::test]
    async fn content_length_body() {
        let (body, _) = decode(b"abcdefXYZ", Framing::Length(6)).await.unwrap();
        assert_eq!(body, b"abcdef");
        assert!(matches!(
            decode(b"abc", Framing::Length(6)).await,
            Err(ReadError::UnexpectedEof)
        ));
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
        let mut reader = ClientReader::new(raw);
        assert_eq!(
            reader.read_head().await.unwrap().unwrap().target,
            "http://a/"
        );
        assert_eq!(
            reader.read_head().await.unwrap().unwrap().target,
            "http://b/"
        );
        assert!(reader.read_head().await.unwrap().is_none());
    }
}
