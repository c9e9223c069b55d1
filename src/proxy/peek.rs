//! What a client sends first inside a CONNECT tunnel: a TLS ClientHello (and the SNI
//! name in it), plain HTTP, or something else. Pure functions over the peeked bytes,
//! bounded and panic-free on any input (a fuzz target).

/// What the first bytes of a tunnel look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS handshake record carrying a ClientHello; `sni` if it names a server.
    TlsClientHello { sni: Option<String> },
    /// An HTTP/1 request line starting with a method token.
    PlainHttp,
    /// Anything else: tunnel it blind.
    Other,
    /// Too few bytes to tell yet.
    NeedMore,
}

/// Classifies the bytes a client sent first after `200 Connection established`.
pub fn classify(buf: &[u8]) -> FirstBytes {
    match buf.first() {
        None => FirstBytes::NeedMore,
        Some(0x16) => match client_hello_sni(buf) {
            Ok(sni) => FirstBytes::TlsClientHello { sni },
            Err(Incomplete) => FirstBytes::NeedMore,
            Err(Invalid) => FirstBytes::Other,
        },
        Some(_) => classify_http(buf),
    }
}

/// An HTTP method token (uppercase letters) followed by a space.
fn classify_http(buf: &[u8]) -> FirstBytes {
    let token_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match buf.get(token_len) {
        Some(b' ') if token_len > 0 && token_len <= 16 => FirstBytes::PlainHttp,
        // Up to 16 letters and nothing after them yet: the space may still come.
        None if token_len == buf.len() && token_len <= 16 => FirstBytes::NeedMore,
        _ => FirstBytes::Other,
    }
}

/// Why a ClientHello could not be read.
#[derive(Debug, PartialEq, Eq)]
enum ParseFail {
    Incomplete,
    Invalid,
}
use ParseFail::{Incomplete, Invalid};

/// A cursor over a byte slice that never panics.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseFail> {
        let end = self.pos.checked_add(n).ok_or(Invalid)?;
        let out = self.buf.get(self.pos..end).ok_or(Incomplete)?;
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<usize, ParseFail> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, ParseFail> {
        let b = self.take(2)?;
        Ok(usize::from(b[0]) << 8 | usize::from(b[1]))
    }
    fn u24(&mut self) -> Result<usize, ParseFail> {
        let b = self.take(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

/// Reads the server_name extension from a ClientHello in the first TLS record.
/// Only the first record is read: a ClientHello split over records yields `Invalid`
/// for the SNI lookup only when the extensions lie beyond it (then no name is given).
fn client_hello_sni(buf: &[u8]) -> Result<Option<String>, ParseFail> {
    let mut rec = Reader { buf, pos: 0 };
    if rec.u8()? != 0x16 {
        return Err(Invalid);
    }
    let major = rec.u8()?;
    let _minor = rec.u8()?;
    if major != 3 {
        return Err(Invalid);
    }
    let record_len = rec.u16()?;
    if record_len == 0 || record_len > 16_384 + 2048 {
        return Err(Invalid);
    }
    let record = rec.take(record_len)?;
    let mut hs = Reader {
        buf: record,
        pos: 0,
    };
    if hs.u8().map_err(|_| Invalid)? != 0x01 {
        return Err(Invalid); // not a ClientHello
    }
    let body_len = hs.u24().map_err(|_| Invalid)?;
    // The handshake may continue in a later record; read what this one holds.
    let available = record.len().saturating_sub(hs.pos).min(body_len);
    let body = hs.take(available).map_err(|_| Invalid)?;
    let mut ch = Reader { buf: body, pos: 0 };
    let parsed = (|| -> Result<Option<String>, ParseFail> {
        ch.take(2)?; // legacy_version
        ch.take(32)?; // random
        let sid = ch.u8()?;
        ch.take(sid)?;
        let suites = ch.u16()?;
        ch.take(suites)?;
        let comp = ch.u8()?;
        ch.take(comp)?;
        if ch.pos == body.len() {
            return Ok(None); // no extensions
        }
        let ext_len = ch.u16()?;
        let exts = ch.take(ext_len)?;
        let mut ex = Reader { buf: exts, pos: 0 };
        while ex.pos < exts.len() {
            let kind = ex.u16()?;
            let len = ex.u16()?;
            let data = ex.take(len)?;
            if kind == 0 {
                return server_name(data).map(Some);
            }
        }
        Ok(None)
    })();
    match parsed {
        Ok(sni) => Ok(sni),
        // Cut off inside this record: a hello split across records; no name found here.
        Err(Incomplete) if body_len > available => Ok(None),
        Err(_) => Err(Invalid),
    }
}

/// The host_name entry of a server_name extension, checked to be a plausible DNS name.
fn server_name(data: &[u8]) -> Result<String, ParseFail> {
    let mut r = Reader { buf: data, pos: 0 };
    let list_len = r.u16().map_err(|_| Invalid)?;
    let list = r.take(list_len).map_err(|_| Invalid)?;
    let mut names = Reader { buf: list, pos: 0 };
    while names.pos < list.len() {
        let kind = names.u8().map_err(|_| Invalid)?;
        let len = names.u16().map_err(|_| Invalid)?;
        let name = names.take(len).map_err(|_| Invalid)?;
        if kind == 0 {
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            return if valid {
                Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
            } else {
                Err(Invalid)
            };
        }
    }
    Err(Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls sends it, captured in-process.
    fn rustls_client_hello(sni: &str) -> Vec<u8> {
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_sni_from_a_real_client_hello() {
        let hello = rustls_client_hello("Example.ORG");
        assert_eq!(
            classify(&hello),
            FirstBytes::TlsClientHello {
                sni: Some("example.org".into())
            }
        );
        for cut in [1, 5, 20, hello.len() - 1] {
            assert_eq!(
                classify(&hello[..cut]),
                FirstBytes::NeedMore,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn ip_literal_has_no_sni() {
        let hello = rustls_client_hello("127.0.0.1");
        assert_eq!(classify(&hello), FirstBytes::TlsClientHello { sni: None });
    }

    #[test]
    fn plain_http_and_other() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::PlainHttp);
        assert_eq!(classify(b"OPTIONS * HTTP/1.1\r\n"), FirstBytes::PlainHttp);
        assert_eq!(classify(b"GE"), FirstBytes::NeedMore);
        assert_eq!(classify(b""), FirstBytes::NeedMore);
        // Found by the peek fuzz target: 16 letters said Other, 16 letters and a space
        // PlainHttp, so the answer depended on how the bytes were split into reads.
        assert_eq!(classify(b"ABCDEFGHIJKLMNOP"), FirstBytes::NeedMore);
        assert_eq!(classify(b"ABCDEFGHIJKLMNOP /"), FirstBytes::PlainHttp);
        assert_eq!(classify(b"ABCDEFGHIJKLMNOPQ"), FirstBytes::Other);
        assert_eq!(classify(b"SSH-2.0-OpenSSH\r\n"), FirstBytes::Other);
        assert_eq!(classify(b"\x00\x01binary"), FirstBytes::Other);
        assert_eq!(classify(b"\x16\x02\x00\x00"), FirstBytes::Other);
        assert_eq!(
            classify(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00"),
            FirstBytes::Other
        );
    }

    #[test]
    fn never_panics_on_mangled_hellos() {
        let hello = rustls_client_hello("a.test");
        let mut state = 0x2545_f491_u32;
        for _ in 0..20_000 {
            let mut m = hello.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let i = state as usize % m.len();
                m[i] = (state >> 8) as u8;
            }
            let cut = (state as usize >> 3) % (m.len() + 1);
            let _ = classify(&m[..cut]);
        }
    }
}
