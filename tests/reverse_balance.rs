//! Several upstreams behind `interpose reverse`: round-robin, failover when one is
//! stopped (passive health plus one retry), 502 when none answers, 504 on a slow one.

#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::time::Duration;

use reverse_support::*;
use support::*;

/// GET through the proxy over HTTP/1.1: (status, body).
async fn get(client: &reqwest::Client, proxy: &TestReverse, path: &str) -> (u16, String) {
    let resp = client.get(proxy.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn round_robin_then_failover_when_one_stops() {
    let a = NamedOrigin::start("a").await;
    let b = NamedOrigin::start("b").await;
    let proxy = TestReverse::start(&[a.addr.to_string(), b.addr.to_string()], |_| {}).await;
    let client = https_client(&proxy.proxy.self_signed().unwrap().cert_pem, proxy.addr);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, body) = get(&client, &proxy, "/").await;
        assert_eq!(status, 200);
        seen.push(body);
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);

    // Stop a: the pooled connections to it close and new connects are refused.
    let a_addr = a.addr;
    a.stop().await;
    assert!(tokio::net::TcpStream::connect(a_addr).await.is_err());
    for _ in 0..6 {
        let (status, body) = get(&client, &proxy, "/").await;
        assert_eq!((status, body.as_str()), (200, "b"), "failover to b");
    }
}

#[tokio::test]
async fn bad_gateway_when_all_upstreams_are_down() {
    // Two ports nobody listens on (bound then released).
    let dead: Vec<String> = {
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        vec![
            l1.local_addr().unwrap().to_string(),
            l2.local_addr().unwrap().to_string(),
        ]
    };
    let proxy = TestReverse::start(&dead, |_| {}).await;
    let client = https_client(&proxy.proxy.self_signed().unwrap().cert_pem, proxy.addr);
    for _ in 0..3 {
        let (status, body) = get(&client, &proxy, "/").await;
        assert_eq!(status, 502);
        assert!(body.contains("refused"), "{body}");
        assert!(dead.iter().any(|d| body.contains(d.as_str())), "{body}");
    }
    // A POST is not retried elsewhere, and is answered 502 too.
    let resp = client.post(proxy.url("/")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn gateway_timeout_when_upstream_is_slow() {
    let slow = TestOrigin::with_handler(|_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        http::Response::new(full("late"))
    })
    .await;
    let proxy = TestReverse::start(&[slow.addr.to_string()], |c| {
        c.response_timeout = Duration::from_millis(300);
    })
    .await;
    let client = https_client(&proxy.proxy.self_signed().unwrap().cert_pem, proxy.addr);
    let (status, body) = get(&client, &proxy, "/").await;
    assert_eq!(status, 504);
    assert!(body.contains("did not answer"), "{body}");
    assert!(body.contains(&slow.addr.to_string()), "{body}");
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_exchange_finish() {
    let slow = TestOrigin::with_handler(|_req| async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        http::Response::new(full("finished"))
    })
    .await;
    let mut proxy = TestReverse::start(&[slow.addr.to_string()], |_| {}).await;
    let client = https_client(&proxy.proxy.self_signed().unwrap().cert_pem, proxy.addr);
    let url = proxy.url("/");
    let in_flight = tokio::spawn(async move {
        let resp = client.get(url).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = proxy.begin_shutdown();
    assert_eq!(in_flight.await.unwrap(), (200, "finished".to_string()));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    // The listener is gone: nothing accepts any more.
    assert!(tokio::net::TcpStream::connect(proxy.addr).await.is_err());
}
