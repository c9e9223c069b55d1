//! Undoing and redoing a body's `Content-Encoding` around `--modify-body`.
//!
//! Decoding is the `--dump` decoder (gzip/x-gzip, deflate zlib-or-raw, br, zstd), bounded:
//! it stops one read past the cap, so a decompression bomb costs at most the cap.
//! Re-encoding: gzip, x-gzip, deflate (zlib, as the standard says) and br are encoded
//! again, so the body keeps its `Content-Encoding`; a chain holding any other coding
//! (zstd: no full encoder in pure Rust here) is sent decoded, `Content-Encoding` removed.

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use http::header::{HeaderMap, CONTENT_ENCODING};

use crate::proxy::dump_body::{self, End};

/// Brotli quality for re-encoding: fast, still well compressed (11 is far too slow for MiBs).
const BROTLI_QUALITY: u32 = 5;
/// Brotli window (log2), the encoder's usual default.
const BROTLI_WINDOW: u32 = 22;

/// A body decoded for rewriting.
pub(super) enum Decoded {
    /// The plain bytes, and the codings to redo (in the order they were applied).
    Plain(Vec<u8>, Vec<String>),
    /// Decoded, it would exceed the cap.
    TooLarge,
    /// The coding is unknown or the bytes are corrupt.
    Failed(String),
}

/// Decodes `wire` per the `Content-Encoding` fields of `headers`, keeping at most `max` bytes.
pub(super) fn decode(headers: &HeaderMap, wire: &[u8], max: usize) -> Decoded {
    let mut value = String::new();
    for field in headers.get_all(CONTENT_ENCODING) {
        let Ok(text) = field.to_str() else {
            return Decoded::Failed("Content-Encoding is not text".to_string());
        };
        if !value.is_empty() {
            value.push(',');
        }
        value.push_str(text);
    }
    let codings = dump_body::codings(Some(&value));
    if codings.is_empty() {
        return if wire.len() > max {
            Decoded::TooLarge
        } else {
            Decoded::Plain(wire.to_vec(), codings)
        };
    }
    let decoded = dump_body::decode(wire, &codings, max);
    match decoded.end {
        End::Complete => Decoded::Plain(decoded.bytes, codings),
        End::Capped => Decoded::TooLarge,
        End::Failed(why) => Decoded::Failed(why),
    }
}

/// A rewritten body ready to send.
pub(super) struct Encoded {
    pub body: Vec<u8>,
    /// The codings could not all be redone: the body is plain, drop `Content-Encoding`.
    pub sent_decoded: bool,
}

/// Applies `codings` again, in order; when one cannot be redone the body goes plain.
pub(super) fn encode(plain: Vec<u8>, codings: &[String]) -> Encoded {
    if codings.is_empty() {
        return Encoded {
            body: plain,
            sent_decoded: false,
        };
    }
    match redo(&plain, codings) {
        Some(body) => Encoded {
            body,
            sent_decoded: false,
        },
        None => Encoded {
            body: plain,
            sent_decoded: true,
        },
    }
}

/// `plain` encoded with every coding of the chain, or `None` if one cannot be.
fn redo(plain: &[u8], codings: &[String]) -> Option<Vec<u8>> {
    let mut body: Option<Vec<u8>> = None;
    for coding in codings {
        let input = body.as_deref().unwrap_or(plain);
        body = Some(match coding.as_str() {
            "gzip" | "x-gzip" => gzip(input)?,
            "deflate" => zlib(input)?,
            "br" => brotli(input)?,
            _ => return None,
        });
    }
    body
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

fn zlib(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

fn brotli(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder =
        brotli::CompressorWriter::new(Vec::new(), 4096, BROTLI_QUALITY, BROTLI_WINDOW);
    encoder.write_all(data).ok()?;
    encoder.flush().ok()?;
    Some(encoder.into_inner())
}
