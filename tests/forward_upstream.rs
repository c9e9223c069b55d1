//! The forward engine's own upstream side, against scripted raw origins: keep-alive
//! reuse, stale pooled connections, strict response parsing, interim answers, and
//! responses cut off mid-body.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a scripted origin does with the n-th request on a connection.
#[derive(Clone, Copy)]
enum Step {
    /// Write these bytes and keep the connection.
    Answer(&'static str),
    /// Write these bytes and close.
    AnswerClose(&'static str),
    /// Close without answering.
    Hangup,
}

/// What the origin does, given (connection index, request index on it).
type Script = fn(usize, usize) -> Step;

/// A raw origin: per connection, reads request heads (skipping any Content-Length body)
/// and follows `script(connection_index, request_index)`. Counts connections.
struct ScriptedOrigin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl ScriptedOrigin {
    async fn start(script: Script) -> ScriptedOrigin {
        let (addr, connections) =
            counting_origin(move |stream, index| serve_script(stream, index, script)).await;
        ScriptedOrigin { addr, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve_script(mut stream: TcpStream, conn_index: usize, script: Script) {
    let mut buf = Vec::new();
    let mut request_index = 0;
    loop {
        let Some(end) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        while buf.len() < end + body_len {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + body_len);
        match script(conn_index, request_index) {
            Step::Answer(bytes) => {
                if stream.write_all(bytes.as_bytes()).await.is_err() {
                    return;
                }
            }
            Step::AnswerClose(bytes) => {
                let _ = stream.write_all(bytes.as_bytes()).await;
                return;
            }
            Step::Hangup => return,
        }
        request_index += 1;
    }
}

/// Reads until a full head is buffered; returns its length including the blank line.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(pos + 4);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

const OK_HELLO: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[tokio::test]
async fn keep_alive_upstream_connections_are_reused() {
    let origin = ScriptedOrigin::start(|_, _| Step::Answer(OK_HELLO)).await;
    let proxy = TestProxy::start().await;
    for _ in 0..3 {
        // A new client connection each time: only the upstream side can be shared.
        let (ok, out, err) = curl(&["-x", &proxy.url(), &origin.url("/")]).await;
        assert!(ok, "{err}");
        assert_eq!(out, "hello");
    }
    assert_eq!(
        origin.connections(),
        1,
        "one upstream connection served all three"
    );
}

#[tokio::test]
async fn upstream_connection_close_is_not_reused() {
    let origin = ScriptedOrigin::start(|_, _| {
        Step::AnswerClose("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
    })
    .await;
    let proxy = TestProxy::start().await;
    for _ in 0..2 {
        let (ok, out, err) = curl(&["-x", &proxy.url(), &origin.url("/")]).await;
        assert!(ok, "{err}");
        assert_eq!(out, "hello");
    }
    assert_eq!(origin.connections(), 2);
}

/// The classic keep-alive race: the origin drops a pooled connection just as the next
/// request is sent on it. A GET is replayed once on a fresh connection; a POST is not.
#[tokio::test]
async fn a_stale_pooled_connection_is_retried_for_idempotent_requests_only() {
    // First connection: answers once, then hangs up on the next request.
    let origin = ScriptedOrigin::start(|conn, req| match (conn, req) {
        (0, 0) => Step::Answer(OK_HELLO),
        (0, _) => Step::Hangup,
        (_, _) => Step::Answer(OK_HELLO),
    })
    .await;
    let proxy = TestProxy::start().await;
    let (ok, out, _) = curl(&["-x", &proxy.url(), &origin.url("/one")]).await;
    assert!(ok && out == "hello");
    let (ok, out, err) = curl(&["-x", &proxy.url(), &origin.url("/two")]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "hello", "the GET was replayed on a new connection");
    assert_eq!(origin.connections(), 2);

    let origin = ScriptedOrigin::start(|conn, req| match (conn, req) {
        (0, 0) => Step::Answer(OK_HELLO),
        (0, _) => Step::Hangup,
        (_, _) => Step::Answer(OK_HELLO),
    })
    .await;
    let (ok, _, _) = curl(&["-x", &proxy.url(), &origin.url("/one")]).await;
    assert!(ok);
    let (_, out, _) = curl(&[
        "-x",
        &proxy.url(),
        "-w",
        "%{http_code}",
        "-d",
        "payload",
        &origin.url("/post"),
    ])
    .await;
    assert!(out.ends_with("502"), "a POST is never replayed: {out}");
    assert!(out.contains("without answering"), "{out}");
    assert_eq!(origin.connections(), 1);
}

#[tokio::test]
async fn ambiguous_or_malformed_responses_are_502() {
    let proxy = TestProxy::start().await;
    let cases: [(&str, Script); 4] = [
        ("both Content-Length and Transfer-Encoding", |_, _| {
            Step::Answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        }),
        ("conflicting Content-Length", |_, _| {
            Step::Answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        }),
        ("invalid", |_, _| {
            Step::AnswerClose("HTTP/1.1 2000 Odd\r\n\r\n")
        }),
        ("unsupported Transfer-Encoding", |_, _| {
            Step::Answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")
        }),
    ];
    for (reason, script) in cases {
        let origin = ScriptedOrigin::start(script).await;
        let (_, out, _) =
            curl(&["-x", &proxy.url(), "-w", "\n%{http_code}", &origin.url("/")]).await;
        assert!(out.ends_with("\n502"), "{reason}: {out}");
        assert!(
            out.contains("malformed response") && out.contains(reason),
            "{reason}: {out}"
        );
    }
}

#[tokio::test]
async fn close_delimited_and_interim_responses() {
    let proxy = TestProxy::start().await;
    let origin =
        ScriptedOrigin::start(|_, _| Step::AnswerClose("HTTP/1.0 200 OK\r\n\r\nuntil the end"))
            .await;
    let (ok, out, err) = curl(&["-x", &proxy.url(), &origin.url("/")]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "until the end");

    let origin = ScriptedOrigin::start(|_, _| {
        Step::Answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    })
    .await;
    let (ok, out, err) = curl(&[
        "-x",
        &proxy.url(),
        "-w",
        " %{http_code}",
        "-d",
        "x",
        &origin.url("/"),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "ok 201");
}

/// A response cut off mid-body must reach the client as an error, never as a complete
/// shorter body.
#[tokio::test]
async fn a_response_cut_off_mid_body_is_not_passed_off_as_complete() {
    let proxy = TestProxy::start().await;
    for script in [
        (|_, _| Step::AnswerClose("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"))
            as Script,
        |_, _| {
            Step::AnswerClose(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nonly part\r\n",
            )
        },
    ] {
        let origin = ScriptedOrigin::start(script).await;
        let (ok, out, _) = curl(&["-x", &proxy.url(), &origin.url("/")]).await;
        assert!(!ok, "curl must see a broken transfer, got {out:?}");
        let client = client_via(&proxy);
        let body = async { client.get(origin.url("/")).send().await?.bytes().await };
        assert!(body.await.is_err(), "reqwest must see a broken body");
    }
    // And the proxy still serves.
    let origin = ScriptedOrigin::start(|_, _| Step::Answer(OK_HELLO)).await;
    let (ok, out, _) = curl(&["-x", &proxy.url(), &origin.url("/")]).await;
    assert!(ok && out == "hello");
    tokio::time::sleep(Duration::from_millis(1)).await;
}
