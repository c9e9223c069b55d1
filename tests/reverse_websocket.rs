//! WebSocket through `interpose reverse`: the upgrade passes after the upstream's 101
//! and messages then flow both ways over the TLS client connection.

#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use futures_util::{SinkExt, StreamExt};
use reverse_support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let origin = WsEcho::start().await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |_| {}).await;
    // http/1.1 only: WebSocket upgrades are an HTTP/1.1 mechanism.
    let tls = tls_connect(proxy.addr, "localhost", &[b"http/1.1"]).await;
    let url = format!("wss://localhost:{}/chat", proxy.addr.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(format!("echo: hello {i}")));
    }
    let big = vec![42u8; 200_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.into_data().as_ref(), &big[..]);
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn websocket_messages_are_recorded_on_the_reverse_flow() {
    let dir = support::TempDir::new("reverse-ws-flows");
    let flows = dir.path().join("ws.jsonl");
    let origin = WsEcho::start().await;
    let path = flows.clone();
    let proxy = TestReverse::start(&[origin.addr.to_string()], move |cfg| {
        cfg.record.flows = Some(path);
        cfg.open_recorder().unwrap();
    })
    .await;
    let tls = tls_connect(proxy.addr, "localhost", &[b"http/1.1"]).await;
    let url = format!("wss://localhost:{}/chat", proxy.addr.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::text("echo: hello"));
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    // The flow is written when the upgraded connection has ended both ways.
    drop(ws);
    let mut recorded = String::new();
    for _ in 0..100 {
        recorded = std::fs::read_to_string(&flows).unwrap_or_default();
        if !recorded.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let flow: interpose::flow::record::Flow = serde_json::from_str(recorded.trim()).unwrap();
    assert_eq!(flow.response.as_ref().unwrap().status, 101);
    let texts: Vec<Option<&str>> = flow.websocket.iter().map(|m| m.payload.text()).collect();
    assert_eq!(
        &texts[..2],
        &[Some("hello"), Some("echo: hello")],
        "{texts:?}"
    );
}
