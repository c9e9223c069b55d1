//! WebSocket through the forward engine: an absolute-form `Upgrade: websocket` request
//! is passed on, the 101 comes back, then frames flow both ways; h2c upgrades are not.

mod support;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use support::raw::*;
use support::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket origin that answers every text message with `echo: TEXT`.
async fn ws_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let reply = match msg {
                        Message::Text(t) => Message::text(format!("echo: {}", t.as_str())),
                        Message::Binary(b) => Message::Binary(b),
                        _ => break,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn upgrade_request(origin: SocketAddr, protocol: &str) -> String {
    format!(
        "GET http://{origin}/ws HTTP/1.1\r\nHost: {origin}\r\nConnection: Upgrade\r\n\
         Upgrade: {protocol}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_flow_both_ways_through_the_proxy() {
    let origin = ws_echo().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(upgrade_request(origin, "websocket")).await;
    let head = conn.read_response(true).await;
    assert_eq!(head.status, 101, "{}", head.head);
    assert!(
        head.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{}",
        head.head
    );
    assert!(
        head.header("sec-websocket-accept").is_some(),
        "{}",
        head.head
    );
    let mut ws = WebSocketStream::from_raw_socket(conn.stream, Role::Client, None).await;
    for text in ["hello", "through", "the proxy"] {
        ws.send(Message::text(text)).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(format!("echo: {text}")));
    }
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn h2c_upgrades_are_not_passed_on() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(upgrade_request(origin.addr, "h2c")).await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = resp.text().to_lowercase();
    assert!(
        !seen.contains("upgrade:"),
        "the origin saw an upgrade: {seen}"
    );
}
