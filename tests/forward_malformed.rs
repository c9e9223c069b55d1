//! Malformed and ambiguous requests sent as raw bytes to the forward proxy: each one
//! must get a 400 (431 for an oversize head) whose body names the reason, the proxy
//! must close the connection, nothing complete may reach the origin, and the proxy
//! must keep serving new connections afterwards.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound used only to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(10);

/// What the origin saw of one request, keyed by path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The request head arrived.
    Arrived(String),
    /// The whole body arrived (this many bytes).
    Complete(String, usize),
    /// The body broke off before it was complete.
    Aborted(String),
}

/// An origin that records every request head and whether its body completed.
async fn recording_origin() -> (TestOrigin, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let origin = TestOrigin::with_handler(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_string();
            log.lock().unwrap().push(Seen::Arrived(path.clone()));
            let event = match req.into_body().collect().await {
                Ok(body) => Seen::Complete(path, body.to_bytes().len()),
                Err(_) => Seen::Aborted(path),
            };
            log.lock().unwrap().push(event);
            Response::new(full("ok\n"))
        }
    })
    .await;
    (origin, seen)
}

fn events_for(seen: &Mutex<Vec<Seen>>, path: &str) -> Vec<Seen> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|e| match e {
            Seen::Arrived(p) | Seen::Complete(p, _) | Seen::Aborted(p) => p == path,
        })
        .cloned()
        .collect()
}

/// How reading the proxy's answer ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The proxy closed the connection (FIN).
    Eof,
    /// The connection was reset.
    Reset,
    /// Nothing more arrived for `HANG`: the proxy left the connection open.
    StillOpen,
}

/// Sends `parts` (pausing `pause` between them) and reads until the proxy closes.
async fn exchange(proxy: SocketAddr, parts: &[Vec<u8>], pause: Duration) -> (String, End) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        // The proxy may answer and close before it has read everything (oversize head):
        // a failed write is fine, the answer is what matters.
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        match tokio::time::timeout(HANG, stream.read(&mut buf)).await {
            Err(_) => break End::StillOpen,
            Ok(Ok(0)) => break End::Eof,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break End::Reset,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), end)
}

/// When the request is refused: from its head alone, or only once its body turns bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Head,
    Body,
}

struct Case {
    name: &'static str,
    /// Written in order with a pause between them (so a good head can go upstream first).
    parts: Vec<Vec<u8>>,
    status: u16,
    /// Lower-case text the answer's body must contain.
    reason: &'static str,
    stage: Stage,
}

/// Where the client pauses, so the part before can go upstream before the rest is sent.
const PAUSE: &str = "<pause>";

/// The table: name, request template, status, text the answer's body must contain.
/// In templates `{url}` is `http://ORIGIN/bad/NAME`, `{o}` the origin, `{huge}` 70 KiB of
/// `a`, `{many}` 300 header lines; [`PAUSE`] splits the request into two writes.
const CASES: &[(&str, &str, u16, &str)] = &[
    (
        "content_length_then_transfer_encoding",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "content-length and transfer-encoding",
    ),
    (
        "transfer_encoding_then_content_length",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
        "content-length and transfer-encoding",
    ),
    (
        "duplicate_content_length_differing",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        "content-length",
    ),
    (
        "content_length_plus_sign",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nContent-Length: +5\r\n\r\nhello",
        400,
        "content-length",
    ),
    (
        "content_length_minus_sign",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nContent-Length: -5\r\n\r\nhello",
        400,
        "content-length",
    ),
    (
        "content_length_inner_space",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nContent-Length: 1 0\r\n\r\n0123456789",
        400,
        "content-length",
    ),
    (
        "content_length_trailing_space",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5 \r\n\r\nhello",
        400,
        "content-length",
    ),
    (
        "transfer_encoding_trailing_tab",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
        400,
        "transfer-encoding",
    ),
    (
        "transfer_encoding_gzip_chunked",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
        "transfer-encoding",
    ),
    (
        "transfer_encoding_chunked_gzip",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
        "transfer-encoding",
    ),
    (
        "transfer_encoding_xchunked",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        400,
        "transfer-encoding",
    ),
    (
        "chunk_size_not_hex",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n<pause>zz\r\nhello\r\n0\r\n\r\n",
        400,
        "invalid chunk size",
    ),
    (
        "chunk_size_overflows",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n<pause>10000000000000000\r\nhello\r\n",
        400,
        "chunk size overflows",
    ),
    (
        "chunk_size_leading_space",
        "POST {url} HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n<pause> 5\r\nhello\r\n0\r\n\r\n",
        400,
        "invalid chunk size",
    ),
    (
        "obs_fold",
        "GET {url} HTTP/1.1\r\nHost: {o}\r\nX-Folded: first\r\n second\r\n\r\n",
        400,
        "header",
    ),
    (
        "whitespace_before_colon",
        "GET {url} HTTP/1.1\r\nHost: {o}\r\nX-Spaced : value\r\n\r\n",
        400,
        "header name",
    ),
    (
        "bare_cr_in_value",
        "GET {url} HTTP/1.1\r\nHost: {o}\r\nX-Cr: a\rb\r\n\r\n",
        400,
        "header value",
    ),
    (
        "nul_in_value",
        "GET {url} HTTP/1.1\r\nHost: {o}\r\nX-Nul: a\0b\r\n\r\n",
        400,
        "header value",
    ),
    (
        "head_over_64k",
        "GET {url} HTTP/1.1\r\nHost: {o}\r\nX-Huge: {huge}\r\n\r\n",
        431,
        "too large",
    ),
    (
        "too_many_header_lines",
        "GET {url} HTTP/1.1\r\nHost: {o}\r\n{many}\r\n",
        431,
        "too large",
    ),
    (
        "no_host_http11",
        "GET {url} HTTP/1.1\r\n\r\n",
        400,
        "host",
    ),
    (
        "two_hosts",
        "GET {url} HTTP/1.1\r\nHost: {o}\r\nHost: {o}\r\n\r\n",
        400,
        "host",
    ),
    (
        "origin_form_to_proxy",
        "GET /bad/origin_form_to_proxy HTTP/1.1\r\nHost: {o}\r\n\r\n",
        400,
        "absolute url",
    ),
    (
        "https_absolute_url",
        "GET https://{o}/bad/https_absolute_url HTTP/1.1\r\nHost: {o}\r\n\r\n",
        400,
        "connect",
    ),
    (
        "userinfo_in_url",
        "GET http://user:pw@{o}/bad/userinfo_in_url HTTP/1.1\r\nHost: {o}\r\n\r\n",
        400,
        "user information",
    ),
];

fn cases(origin: SocketAddr) -> Vec<Case> {
    let huge = "a".repeat(70 * 1024);
    let many: String = (0..300).map(|i| format!("X-F{i}: v\r\n")).collect();
    CASES
        .iter()
        .map(|&(name, template, status, reason)| {
            let text = template
                .replace("{url}", &format!("http://{origin}/bad/{name}"))
                .replace("{o}", &origin.to_string())
                .replace("{huge}", &huge)
                .replace("{many}", &many);
            let parts: Vec<Vec<u8>> = text.split(PAUSE).map(|p| p.as_bytes().to_vec()).collect();
            let stage = if parts.len() > 1 {
                Stage::Body
            } else {
                Stage::Head
            };
            Case {
                name,
                parts,
                status,
                reason,
                stage,
            }
        })
        .collect()
}

/// Checks one case; returns a description of every way it went wrong.
async fn check(
    proxy: &TestProxy,
    origin: &TestOrigin,
    seen: &Mutex<Vec<Seen>>,
    case: &Case,
) -> Vec<String> {
    let mut problems = Vec::new();
    let path = format!("/bad/{}", case.name);
    let (answer, end) = exchange(proxy.addr, &case.parts, Duration::from_millis(150)).await;

    // A bad chunk line may arrive after the answer could no longer be a 400: then a bare close is fine.
    let may_be_silent = case.stage == Stage::Body && answer.is_empty();
    if !may_be_silent {
        let want = format!("HTTP/1.1 {} ", case.status);
        if !answer.starts_with(&want) {
            problems.push(format!("expected a {want:?} status line, got {answer:?}"));
        }
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_ascii_lowercase())
            .unwrap_or_default();
        if !body.contains(case.reason) {
            problems.push(format!(
                "body should name the reason ({:?}): {body:?}",
                case.reason
            ));
        }
    }
    if end != End::Eof {
        problems.push(format!("proxy should close the connection, got {end:?}"));
    }

    match case.stage {
        Stage::Head => {
            let events = events_for(seen, &path);
            if !events.is_empty() {
                problems.push(format!("origin must receive nothing, saw {events:?}"));
            }
        }
        Stage::Body => {
            // If the head went upstream, the origin must see the body break off, never complete.
            let deadline = tokio::time::Instant::now() + HANG;
            loop {
                let events = events_for(seen, &path);
                if events.iter().any(|e| matches!(e, Seen::Complete(..))) {
                    problems.push(format!("origin received a complete body: {events:?}"));
                    break;
                }
                let arrived = events.iter().any(|e| matches!(e, Seen::Arrived(_)));
                let aborted = events.iter().any(|e| matches!(e, Seen::Aborted(_)));
                if !arrived || aborted {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    problems.push(format!("origin still waiting for the body: {events:?}"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    // A fresh connection through the same proxy is served normally.
    let good = format!("/good/{}", case.name);
    match client_via(proxy).get(origin.url(&good)).send().await {
        Ok(resp) if resp.status() == 200 => {}
        Ok(resp) => problems.push(format!("follow-up request got {}", resp.status())),
        Err(e) => problems.push(format!("follow-up request failed: {e}")),
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_never_reach_the_origin() {
    let (origin, seen) = recording_origin().await;
    let proxy = TestProxy::start().await;
    let mut failures = Vec::new();
    for case in cases(origin.addr) {
        for problem in check(&proxy, &origin, &seen, &case).await {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_variants_of_the_same_shapes_are_served() {
    // The strictness above must not refuse the legitimate neighbours of each bad shape.
    let (origin, seen) = recording_origin().await;
    let proxy = TestProxy::start().await;
    let o = origin.addr;
    let good: Vec<(&str, String)> = vec![
        (
            "/ok/equal_duplicate_lengths",
            format!(
                "POST http://{o}/ok/equal_duplicate_lengths HTTP/1.1\r\nHost: {o}\r\n\
                 Connection: close\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
            ),
        ),
        (
            "/ok/chunked_with_extension",
            format!(
                "POST http://{o}/ok/chunked_with_extension HTTP/1.1\r\nHost: {o}\r\n\
                 Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n"
            ),
        ),
        (
            "/ok/uppercase_chunked",
            format!(
                "POST http://{o}/ok/uppercase_chunked HTTP/1.1\r\nHost: {o}\r\n\
                 Connection: close\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
        ),
        (
            "/ok/http10_without_host",
            format!("GET http://{o}/ok/http10_without_host HTTP/1.0\r\n\r\n"),
        ),
    ];
    for (path, request) in good {
        let (answer, _) = exchange(proxy.addr, &[request.into_bytes()], Duration::ZERO).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{path}: {answer:?}");
        let events = events_for(&seen, path);
        let want = if path.contains("http10") { 0 } else { 5 };
        assert_eq!(
            events,
            vec![
                Seen::Arrived(path.into()),
                Seen::Complete(path.into(), want)
            ],
            "{path}"
        );
    }
}
