//! HTTP/2 streams to a plain HTTP/1.1 upstream, which the reverse proxy sends from the
//! stream's own task over its pooled connections: a long chunked body streams whole and
//! gives its connection back, HEAD has no body, a pooled connection the upstream closed
//! is replaced, and an upstream that never answers gets the 504.

#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use reverse_support::TestReverse;
use support::{counting_origin, curl};

/// What the scripted origin does with one request.
enum Reply {
    /// These pieces, written one after another with a pause between them; then the
    /// connection stays open for the next request, or is closed.
    Pieces(Vec<Vec<u8>>, bool),
    /// Nothing, ever.
    Silence,
}

/// An origin that answers each request head (bodiless requests only) by `script`, given
/// the request line. Counts the connections it accepted.
async fn scripted_origin(script: fn(&str) -> Reply) -> (SocketAddr, Arc<AtomicUsize>) {
    counting_origin(move |stream, _| serve(stream, script)).await
}

async fn serve(mut stream: TcpStream, script: fn(&str) -> Reply) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let line = head.lines().next().unwrap_or_default().to_string();
        match script(&line) {
            Reply::Silence => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Reply::Pieces(pieces, close) => {
                for piece in pieces {
                    if stream.write_all(&piece).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if close {
                    return;
                }
            }
        }
    }
}

/// curl over HTTP/2 to the proxy: (ok, body, stderr).
async fn get(proxy: &TestReverse, extra: &[&str], path: &str) -> (bool, String, String) {
    let resolve = proxy.resolve();
    let url = proxy.url(path);
    let mut args = vec!["-k", "--http2", "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args).await
}

/// 64 chunks of 4 KiB, each of one repeated letter.
fn chunked_body() -> Vec<Vec<u8>> {
    let mut pieces =
        vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-done\r\n\r\n".to_vec()];
    for i in 0..64u8 {
        let mut chunk = b"1000\r\n".to_vec();
        chunk.extend(std::iter::repeat_n(b'a' + i % 26, 4096));
        chunk.extend_from_slice(b"\r\n");
        pieces.push(chunk);
    }
    pieces.push(b"0\r\nx-done: yes\r\n\r\n".to_vec());
    pieces
}

#[tokio::test]
async fn a_long_chunked_body_streams_whole_and_gives_its_connection_back() {
    let (origin, accepted) = scripted_origin(|_| Reply::Pieces(chunked_body(), false)).await;
    let proxy = TestReverse::start(&[origin.to_string()], |_| {}).await;
    let expected: Vec<u8> = (0..64u8)
        .flat_map(|i| std::iter::repeat_n(b'a' + i % 26, 4096))
        .collect();
    for _ in 0..2 {
        let (ok, body, err) = get(&proxy, &[], "/long").await;
        assert!(ok, "{err}");
        assert_eq!(body.len(), expected.len());
        assert!(body.as_bytes() == expected.as_slice(), "the body differs");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn head_has_no_body_and_a_whole_answer_reuses_its_connection() {
    let (origin, accepted) = scripted_origin(|line| {
        let answer: &[u8] = if line.starts_with("HEAD ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Kind: head\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"
        };
        Reply::Pieces(vec![answer.to_vec()], false)
    })
    .await;
    let proxy = TestReverse::start(&[origin.to_string()], |_| {}).await;
    let (ok, head, err) = get(&proxy, &["-I"], "/h").await;
    assert!(ok, "{err}");
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(head.contains("content-length: 1000"), "{head}");
    assert!(head.contains("x-kind: head"), "{head}");
    let (ok, body, err) = get(&proxy, &[], "/g").await;
    assert!(ok, "{err}");
    assert_eq!(body, "hello\n");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced() {
    // Each answer says keep-alive, then the origin closes the connection anyway.
    let (origin, accepted) = scripted_origin(|_| {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".to_vec();
        Reply::Pieces(vec![answer], true)
    })
    .await;
    let proxy = TestReverse::start(&[origin.to_string()], |_| {}).await;
    for _ in 0..3 {
        let (ok, body, err) = get(&proxy, &[], "/again").await;
        assert!(ok, "{err}");
        assert_eq!(body, "ok\n");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    proxy.stop().await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_the_504() {
    let (origin, _) = scripted_origin(|_| Reply::Silence).await;
    let proxy = TestReverse::start(&[origin.to_string()], |c| {
        c.response_timeout = Duration::from_millis(500);
    })
    .await;
    let (ok, out, err) = get(&proxy, &["-w", "\n%{http_code}"], "/silent").await;
    assert!(ok, "{err}");
    assert!(out.ends_with("\n504"), "{out}");
    assert!(out.contains("did not answer within 0.5s"), "{out}");
    proxy.stop().await;
}
