//! Faults on either side never pass for success: a client that goes away mid-upload
//! takes the upstream request down with it, and an upstream that dies mid-response
//! reaches an HTTP/2 client as a stream error (and an HTTP/1.1 one as a cut-off body),
//! never as a complete but truncated answer.

mod support;

use std::time::Duration;

use support::binary::{start, stop};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin that reads one request and reports how many body bytes arrived before the
/// connection ended (and whether it ended, rather than went quiet).
async fn counting_origin() -> (std::net::SocketAddr, tokio::task::JoinHandle<(usize, bool)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                Err(_) => {
                    let body = body_len(&seen);
                    return (body, false);
                }
            }
        }
        (body_len(&seen), true)
    });
    (addr, task)
}

fn body_len(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |end| raw.len() - end - 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_upload_aborts_the_upstream_request() {
    let (origin, seen) = counting_origin().await;
    let proxy = TestProxy::start().await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST http://{origin}/up HTTP/1.1\r\nHost: {origin}\r\nContent-Length: 100000\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&[b'x'; 1000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(client);
    let (body, ended) = seen.await.unwrap();
    assert!(ended, "the upstream connection was left open");
    assert!(body < 100_000, "the upstream got a whole body: {body}");
}

/// An origin that answers every request with a 100,000-byte length and dies after
/// 1,000 bytes of it.
async fn dying_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&[b'y'; 1000]).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_dying_mid_response_is_an_error_for_h2_and_h1_clients() {
    let origin = dying_origin().await;
    let to = format!("http://{origin}");
    let (child, base) = start(&["reverse", "--listen", "127.0.0.1:0", "--to", &to]).await;
    for proto in ["--http2", "--http1.1"] {
        let (ok, out, err) = curl(&["-sS", "-k", proto, &format!("{base}/dies")]).await;
        assert!(!ok, "{proto}: curl took a cut-off body for a whole one");
        assert!(out.len() < 100_000, "{proto}: {} bytes", out.len());
        // curl names the stream error (HTTP/2) or the short transfer (HTTP/1.1).
        assert!(
            err.contains("stream")
                || err.contains("INTERNAL_ERROR")
                || err.contains("transfer closed"),
            "{proto}: {err}"
        );
    }
    stop(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_is_502_naming_it() {
    // A 70-character label: the resolver refuses it on the spot, with no query sent
    // anywhere (checked with strace), so the test stays on this machine.
    let host = format!("{}.invalid", "a".repeat(70));
    let proxy = TestProxy::start().await;
    for request in [
        format!("GET http://{host}/x HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n"),
    ] {
        let answer = raw_exchange(proxy.addr, request.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(
            answer.contains(&format!("cannot resolve host {host}")),
            "{answer}"
        );
    }
}
