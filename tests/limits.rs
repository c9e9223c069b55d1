//! Connection limits: beyond `max_connections` a new connection is closed after a
//! short wait, and served again once a slot frees up.

mod support;

use std::time::Duration;

use support::raw::*;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn get(origin: std::net::SocketAddr) -> String {
    format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_until_a_slot_frees() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start_with(|c| c.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = RawConn::open(proxy.addr).await;
        conn.send(get(origin.addr)).await;
        assert_eq!(conn.read_response(false).await.status, 200);
        held.push(conn);
    }
    // A third connection gets no slot: it is closed without an answer.
    let mut third = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("the extra connection must be closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");

    // One held connection closes: a new one is served.
    drop(held.pop());
    let mut served = None;
    for _ in 0..50 {
        let mut conn = RawConn::open(proxy.addr).await;
        conn.send(get(origin.addr)).await;
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(2), conn.stream.peek(&mut probe)).await {
            Ok(Ok(1)) => {
                served = Some(conn.read_response(false).await.status);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(served, Some(200));
}
