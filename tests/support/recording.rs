//! A raw recording origin for hostile-input tests: a TCP (optionally TLS) listener on
//! 127.0.0.1:0 that keeps every byte each connection sent, parses what it can into
//! well-framed HTTP/1.1 requests, and answers each complete one `200 ok`. What it saw
//! is the evidence of what a proxy really relayed.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The fixed answer to every complete request.
pub const OK_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// One request the origin parsed, framing removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    /// Header names lowercased, values as received, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields (lowercased names), if the body was chunked.
    pub trailers: Vec<(String, String)>,
    /// The request exactly as it arrived.
    pub raw: Vec<u8>,
}

impl SeenRequest {
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Everything one upstream connection carried.
#[derive(Debug, Default, Clone)]
pub struct ConnRecord {
    pub bytes: Vec<u8>,
    pub requests: Vec<SeenRequest>,
    /// Bytes that could not be parsed as a request (only a blind tunnel may cause it).
    pub invalid: bool,
    /// The peer closed the connection.
    pub closed: bool,
}

impl ConnRecord {
    /// Bytes after the last complete request: a request cut off, or smuggled residue.
    pub fn leftover(&self) -> usize {
        self.bytes.len() - self.requests.iter().map(|r| r.raw.len()).sum::<usize>()
    }
}

/// The running origin and its records.
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    pub conns: Arc<Mutex<Vec<ConnRecord>>>,
    shutdown: CancellationToken,
}

impl RecordingOrigin {
    /// Plain TCP; with `tls`, TLS terminated first (records the decrypted bytes).
    pub async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> RecordingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<ConnRecord>>> = Arc::default();
        let shutdown = CancellationToken::new();
        let (token, records) = (shutdown.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let index = {
                    let mut all = records.lock().unwrap();
                    all.push(ConnRecord::default());
                    all.len() - 1
                };
                let (records, tls) = (records.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                record_connection(s, records, index).await;
                            }
                        }
                        None => record_connection(stream, records, index).await,
                    }
                });
            }
        });
        RecordingOrigin {
            addr,
            conns,
            shutdown,
        }
    }

    /// Every complete request seen so far, on any connection.
    pub fn requests(&self) -> Vec<SeenRequest> {
        let all = self.conns.lock().unwrap();
        all.iter().flat_map(|c| c.requests.clone()).collect()
    }

    /// Whether `needle` appears in any byte received so far.
    pub fn saw_bytes(&self, needle: &[u8]) -> bool {
        let all = self.conns.lock().unwrap();
        all.iter()
            .any(|c| c.bytes.windows(needle.len()).any(|w| w == needle))
    }

    pub fn snapshot(&self) -> Vec<ConnRecord> {
        self.conns.lock().unwrap().clone()
    }
}

impl Drop for RecordingOrigin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn record_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    records: Arc<Mutex<Vec<ConnRecord>>>,
    index: usize,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        let mut answers = 0;
        let mut invalid = false;
        {
            let mut all = records.lock().unwrap();
            let rec = &mut all[index];
            if n == 0 {
                rec.closed = true;
                return;
            }
            rec.bytes.extend_from_slice(&chunk[..n]);
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match parse_request(&buf) {
                    Parsed::Complete(req) => {
                        buf.drain(..req.raw.len());
                        rec.requests.push(req);
                        answers += 1;
                    }
                    Parsed::Incomplete => break,
                    Parsed::Invalid => {
                        rec.invalid = true;
                        invalid = true;
                        break;
                    }
                }
            }
        }
        for _ in 0..answers {
            if s.write_all(OK_RESPONSE).await.is_err() {
                return;
            }
        }
        if invalid {
            let _ = s.shutdown().await;
            return;
        }
    }
}

/// What the start of a buffer holds.
pub enum Parsed {
    Complete(SeenRequest),
    Incomplete,
    Invalid,
}

/// Strictly parses one HTTP/1.1 request (Content-Length or chunked body).
pub fn parse_request(buf: &[u8]) -> Parsed {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(_) => return Parsed::Invalid,
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let get = |name: &str| headers.iter().filter(|(n, _)| n == name).count();
    let te = headers.iter().find(|(n, _)| n == "transfer-encoding");
    let cl = headers.iter().find(|(n, _)| n == "content-length");
    if get("content-length") > 1 || get("transfer-encoding") > 1 || (te.is_some() && cl.is_some()) {
        return Parsed::Invalid;
    }
    let mut seen = SeenRequest {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        headers: headers.clone(),
        body: Vec::new(),
        trailers: Vec::new(),
        raw: Vec::new(),
    };
    let rest = &buf[head_len..];
    let body_len = match (te, cl) {
        (Some((_, v)), _) if v == "chunked" => match dechunk(rest, &mut seen) {
            Some(Ok(n)) => n,
            Some(Err(())) => return Parsed::Invalid,
            None => return Parsed::Incomplete,
        },
        (Some(_), _) => return Parsed::Invalid,
        (None, Some((_, v))) => {
            let Ok(n) = v.parse::<usize>() else {
                return Parsed::Invalid;
            };
            if rest.len() < n {
                return Parsed::Incomplete;
            }
            seen.body = rest[..n].to_vec();
            n
        }
        (None, None) => 0,
    };
    seen.raw = buf[..head_len + body_len].to_vec();
    Parsed::Complete(seen)
}

/// Decodes a chunked body; `None` while incomplete, the bytes it used once complete.
fn dechunk(mut rest: &[u8], seen: &mut SeenRequest) -> Option<Result<usize, ()>> {
    let start = rest.len();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let Ok(line) = std::str::from_utf8(&rest[..line_end]) else {
            return Some(Err(()));
        };
        let size_text = line.split(';').next().unwrap_or("");
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Some(Err(()));
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            loop {
                let end = rest.windows(2).position(|w| w == b"\r\n")?;
                let line = String::from_utf8_lossy(&rest[..end]).into_owned();
                rest = &rest[end + 2..];
                if line.is_empty() {
                    return Some(Ok(start - rest.len()));
                }
                let Some((n, v)) = line.split_once(':') else {
                    return Some(Err(()));
                };
                seen.trailers
                    .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if rest.len() < size + 2 {
            return None;
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Some(Err(()));
        }
        seen.body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
