//! A raw HTTP/1 client for tests: writes exact bytes and parses responses by hand, so
//! tests see framing, trailers and connection closes exactly as the proxy sent them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw read may wait before the test calls the peer stuck. A hang guard only:
/// every passing run gets its bytes long before it.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// One response as read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields, names lowercased.
    pub trailers: Vec<(String, String)>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Every value of `name`, comma-separated lists split into elements.
    pub fn elements(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(',').map(|e| e.trim().to_string()))
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that writes exact bytes and parses responses itself.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn open(addr: SocketAddr) -> RawConn {
        RawConn::from_stream(TcpStream::connect(addr).await.unwrap())
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> RawConn {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Reads more bytes; false at end of stream.
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(HANG_GUARD, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "peer silent for {HANG_GUARD:?}; buffered: {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            })
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    pub async fn read_line(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return line;
            }
            assert!(
                self.fill().await,
                "EOF inside a line: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "EOF inside a body");
        }
        self.buf.drain(..n).collect()
    }

    pub async fn read_to_eof(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// Reads one response; `bodiless` for the answer to a HEAD.
    pub async fn read_response(&mut self, bodiless: bool) -> RawResponse {
        let status_line = self.read_line().await;
        let mut head = status_line.clone();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await;
            if line.is_empty() {
                break;
            }
            head.push('\n');
            head.push_str(&line);
            let (name, value) = line.split_once(':').expect("header line without colon");
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut resp = RawResponse {
            status,
            head,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        if bodiless || status < 200 || status == 204 || status == 304 {
            return resp;
        }
        if let Some(te) = resp.header("transfer-encoding") {
            assert!(te.eq_ignore_ascii_case("chunked"), "{}", resp.head);
            loop {
                let line = self.read_line().await;
                let size_text = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .unwrap_or_else(|_| panic!("bad chunk line {line:?}"));
                if size == 0 {
                    loop {
                        let t = self.read_line().await;
                        if t.is_empty() {
                            break;
                        }
                        let (n, v) = t.split_once(':').expect("trailer without colon");
                        resp.trailers
                            .push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    break;
                }
                let data = self.take(size).await;
                resp.body.extend_from_slice(&data);
                assert_eq!(self.read_line().await, "", "chunk not ended by CRLF");
            }
        } else if let Some(len) = resp.header("content-length") {
            let n: usize = len.parse().expect("content-length");
            resp.body = self.take(n).await;
        } else {
            resp.body = self.read_to_eof().await;
        }
        resp
    }

    /// Asserts the peer closes the connection and sent nothing beyond what was parsed.
    pub async fn expect_closed(&mut self) {
        let rest = self.read_to_eof().await;
        assert!(
            rest.is_empty(),
            "bytes after the response: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}
