//! End-to-end tests of absolute-form forwarding: origin-form rewrite, hop-by-hop headers,
//! Via and loops, Max-Forwards, HTTP/1.0 and keep-alive, bodiless answers, proxy
//! authentication and client lists. Real clients (reqwest, curl, raw sockets) against
//! origins on 127.0.0.1:0.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::raw::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An absolute-form GET for `origin` with extra header lines (each ending in CRLF).
fn get(origin: SocketAddr, path: &str, extra: &str) -> String {
    format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n{extra}\r\n")
}

// ---------------------------------------------------------------------------------------
// Origins that record what reached them.
// ---------------------------------------------------------------------------------------

/// A raw origin that records each request head byte for byte and answers with `response`.
struct RawOrigin {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl RawOrigin {
    async fn start(response: &'static str) -> RawOrigin {
        RawOrigin::start_inner(response, false).await
    }

    /// Like `start`, but closes each connection after answering (close-delimited bodies).
    async fn start_closing(response: &'static str) -> RawOrigin {
        RawOrigin::start_inner(response, true).await
    }

    async fn start_inner(response: &'static str, close: bool) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(serve_raw_origin(stream, seen, response, close));
            }
        });
        RawOrigin { addr, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves bodiless requests on one connection until the peer closes.
async fn serve_raw_origin(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<String>>>,
    response: &str,
    close: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head: Vec<u8> = buf.drain(..end).collect();
        seen.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&head).into_owned());
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// What a recording origin saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
}

/// A hyper origin that records every request and answers 200 "origin ok".
async fn recording_origin() -> (TestOrigin, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let origin = TestOrigin::with_handler(move |req: Request<Incoming>| {
        log.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        async move { Response::new(full("origin ok")) }
    })
    .await;
    (origin, seen)
}

fn box_err(e: std::io::Error) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// The `interpose-xxxx` token in a Via element, checked for shape.
fn interpose_token(element: &str) -> Option<String> {
    let by = element.split_whitespace().nth(1)?;
    let hex = by.strip_prefix("interpose-")?;
    (hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| by.to_string())
}

/// The Via elements of a reqwest response, in order.
fn via_elements(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all("via")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(',').map(|e| e.trim().to_string()))
        .collect::<Vec<_>>()
}

/// Learns a proxy's own Via token from the element it adds to a response.
async fn token_of(proxy: &TestProxy, origin: &TestOrigin) -> String {
    let resp = client_via(proxy)
        .get(origin.url("/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let elements = via_elements(resp.headers());
    assert_eq!(elements.len(), 1, "{elements:?}");
    assert!(elements[0].starts_with("1.1 "), "{elements:?}");
    interpose_token(&elements[0]).unwrap_or_else(|| panic!("not an interpose Via: {elements:?}"))
}

/// interpose has no parent-proxy setting, so chaining A -> B needs a hop that turns A's
/// origin-form request back into an absolute-form request through `parent`: this relay
/// forwards every request it receives to `origin` through `parent`, headers (Via included)
/// and all, and relays the answer back.
async fn relay_through(parent: &TestProxy, origin: SocketAddr) -> TestOrigin {
    let client = client_via(parent);
    TestOrigin::with_handler(move |req: Request<Incoming>| {
        let client = client.clone();
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let mut out = client.request(req.method().clone(), format!("http://{origin}{path}"));
            for (name, value) in req.headers() {
                if name != http::header::HOST
                    && name != http::header::CONTENT_LENGTH
                    && name != http::header::TRANSFER_ENCODING
                {
                    out = out.header(name, value);
                }
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let resp = match out.body(body).send().await {
                Ok(r) => r,
                Err(e) => {
                    let mut r = Response::new(full(format!("relay failed: {e}")));
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    return r;
                }
            };
            let mut builder = Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                if name != http::header::CONTENT_LENGTH
                    && name != http::header::TRANSFER_ENCODING
                    && name != http::header::CONNECTION
                {
                    builder = builder.header(name, value);
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            builder.body(full(bytes)).unwrap()
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Request line, Host, hop-by-hop headers, Via.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn origin_gets_origin_form_with_host_from_the_url() {
    let origin = RawOrigin::start("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    // The Host header disagrees with the URL: the URL wins (RFC 9112 3.2.2).
    conn.send(format!(
        "GET http://{}/path/to?q=1&r=%20x HTTP/1.1\r\nHost: not-the-origin.invalid\r\n\r\n",
        origin.addr
    ))
    .await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.body, b"ok");

    let heads = origin.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let mut lines = heads[0].split("\r\n");
    assert_eq!(lines.next(), Some("GET /path/to?q=1&r=%20x HTTP/1.1"));
    let hosts: Vec<&str> = heads[0]
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim())
        .collect();
    assert_eq!(hosts, [origin.addr.to_string()], "{}", heads[0]);
}

#[tokio::test]
async fn hop_by_hop_request_headers_never_reach_the_origin() {
    let origin = RawOrigin::start("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(get(
        origin.addr,
        "/hop",
        "Connection: keep-alive, X-Listed-One, x-listed-two, Via, Host\r\n\
         X-Listed-One: 1\r\n\
         X-Listed-Two: 2\r\n\
         Keep-Alive: timeout=5, max=100\r\n\
         Proxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic dTpw\r\n\
         TE: deflate;q=0.5\r\n\
         Trailer: X-Checksum\r\n\
         Upgrade: websocket\r\n\
         X-End-To-End: kept\r\n",
    ))
    .await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);

    let heads = origin.heads();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    let names: Vec<&str> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
        .collect();
    for gone in [
        "connection",
        "x-listed-one",
        "x-listed-two",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(!names.contains(&gone), "{gone} reached the origin:\n{head}");
    }
    assert!(names.contains(&"x-end-to-end"), "{head}");
    // `Connection: Via, Host` must not remove what the proxy itself adds.
    assert!(
        head.contains(&format!("\r\nhost: {}\r\n", origin.addr)),
        "{head}"
    );
    let via: Vec<&str> = head
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("via:"))
        .map(str::trim)
        .collect();
    assert_eq!(via.len(), 1, "{head}");
    assert!(interpose_token(via[0]).is_some(), "{head}");
    assert!(via[0].starts_with("1.1 "), "{head}");
}

#[tokio::test]
async fn hop_by_hop_response_headers_never_reach_the_client() {
    let origin = RawOrigin::start(
        "HTTP/1.1 200 OK\r\n\
         Content-Length: 2\r\n\
         Connection: X-Resp-Listed, Via\r\n\
         X-Resp-Listed: secret\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\n\
         Proxy-Authenticate: Basic realm=\"origin\"\r\n\
         Trailer: X-Checksum\r\n\
         Upgrade: h2c\r\n\
         Via: 1.1 origin-gateway\r\n\
         X-Resp-Kept: yes\r\n\
         \r\n\
         ok",
    )
    .await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(get(origin.addr, "/resp", "")).await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.body, b"ok");
    for gone in [
        "x-resp-listed",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(!resp.has(gone), "{gone} reached the client:\n{}", resp.head);
    }
    if let Some(c) = resp.header("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-resp-listed"),
            "{}",
            resp.head
        );
    }
    assert_eq!(resp.header("x-resp-kept"), Some("yes"));
    let via = resp.elements("via");
    assert_eq!(via.len(), 2, "{}", resp.head);
    assert_eq!(via[0], "1.1 origin-gateway");
    assert!(interpose_token(&via[1]).is_some(), "{}", resp.head);
}

#[tokio::test]
async fn via_names_this_instance_at_the_origin_and_on_the_response() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start().await;
    let resp = client_via(&proxy)
        .get(origin.url("/via"))
        .header("via", "1.0 fred")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let response_via = via_elements(resp.headers());
    assert_eq!(response_via.len(), 1, "{response_via:?}");
    let token = interpose_token(&response_via[0]).expect("interpose Via on the response");
    assert_eq!(response_via[0], format!("1.1 {token}"));

    let echo = resp.text().await.unwrap();
    let at_origin: Vec<&str> = echo
        .lines()
        .filter_map(|l| l.strip_prefix("via: "))
        .collect();
    // The earlier element stays first; ours is appended after it.
    assert_eq!(at_origin, ["1.0 fred", &format!("1.1 {token}")], "{echo}");
}

// ---------------------------------------------------------------------------------------
// Chains and loops.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_proxies_both_add_via_and_a_loop_gets_508() {
    let origin = TestOrigin::echo().await;
    let a = TestProxy::start().await;
    let token_a = token_of(&a, &origin).await;
    // Tokens are random per instance; make sure the two differ (1 in 65536 they would not).
    let (b, token_b) = loop {
        let b = TestProxy::start().await;
        let t = token_of(&b, &origin).await;
        if t != token_a {
            break (b, t);
        }
    };

    // A -> relay -> B -> origin.
    let relay = relay_through(&b, origin.addr).await;
    let resp = client_via(&a)
        .get(relay.url("/chain?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        via_elements(resp.headers()),
        [format!("1.1 {token_b}"), format!("1.1 {token_a}")]
    );
    let echo = resp.text().await.unwrap();
    assert!(echo.starts_with("GET /chain?x=1 HTTP/1.1"), "{echo}");
    let at_origin: Vec<&str> = echo
        .lines()
        .filter_map(|l| l.strip_prefix("via: "))
        .collect();
    assert_eq!(
        at_origin,
        [format!("1.1 {token_a}"), format!("1.1 {token_b}")],
        "{echo}"
    );

    // A request that already carries A's token is a loop, in any position and case.
    for via in [
        format!("1.1 {token_a}"),
        format!("1.0 someone, 1.1 {}", token_a.to_ascii_uppercase()),
        format!("1.1 {token_a} (interpose)"),
    ] {
        let resp = client_via(&a)
            .get(origin.url("/loop"))
            .header("via", via.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 508, "Via: {via}");
    }
    // Another instance's token is not a loop.
    let resp = client_via(&a)
        .get(origin.url("/not-a-loop"))
        .header("via", format!("1.1 {token_b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_forwarding_loop_ends_in_508_without_reaching_the_origin() {
    let (origin, seen) = recording_origin().await;
    let a = TestProxy::start().await;
    // A forwards to a relay that sends the request back through A.
    let relay = relay_through(&a, origin.addr).await;
    let resp = client_via(&a)
        .get(relay.url("/round"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 508);
    assert!(
        resp.text().await.unwrap().contains("loop"),
        "the 508 says why"
    );
    assert!(seen.lock().unwrap().is_empty(), "the origin was contacted");
}

// ---------------------------------------------------------------------------------------
// Max-Forwards.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn options_with_max_forwards_zero_is_answered_by_the_proxy() {
    let (origin, seen) = recording_origin().await;
    let proxy = TestProxy::start().await;
    let client = client_via(&proxy);
    let resp = client
        .request(reqwest::Method::OPTIONS, origin.url("/mf"))
        .header("max-forwards", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let allow = resp
        .headers()
        .get("allow")
        .expect("Allow header")
        .to_str()
        .unwrap()
        .to_string();
    for method in ["GET", "OPTIONS"] {
        assert!(allow.split(", ").any(|m| m == method), "Allow: {allow}");
    }
    assert!(seen.lock().unwrap().is_empty(), "origin was contacted");

    // The same request with room left does reach the origin: the counter is live.
    let resp = client
        .request(reqwest::Method::OPTIONS, origin.url("/mf"))
        .header("max-forwards", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "origin ok");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "OPTIONS");
    assert_eq!(seen[0].headers["max-forwards"], "0");
}

#[tokio::test]
async fn max_forwards_is_decremented_on_options_and_left_alone_otherwise() {
    let (origin, seen) = recording_origin().await;
    let proxy = TestProxy::start().await;
    let client = client_via(&proxy);
    let resp = client
        .request(reqwest::Method::OPTIONS, origin.url("/five"))
        .header("max-forwards", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Max-Forwards is defined for OPTIONS and TRACE only (RFC 9110 7.6.2).
    let resp = client
        .get(origin.url("/get"))
        .header("max-forwards", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .request(reqwest::Method::OPTIONS, origin.url("/bad"))
        .header("max-forwards", "minus one")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        ("OPTIONS", "/five")
    );
    assert_eq!(seen[0].headers["max-forwards"], "4");
    assert_eq!(
        (seen[1].method.as_str(), seen[1].uri.as_str()),
        ("GET", "/get")
    );
    assert_eq!(seen[1].headers["max-forwards"], "0");
}

#[tokio::test]
async fn options_with_max_forwards_zero_and_a_body_is_not_forwarded() {
    let (origin, seen) = recording_origin().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(format!(
        "OPTIONS http://{0}/mf-body HTTP/1.1\r\nHost: {0}\r\nMax-Forwards: 0\r\n\
         Content-Length: 4\r\n\r\nping",
        origin.addr
    ))
    .await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        resp.has("allow"),
        "not answered by the proxy:\n{}",
        resp.head
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "forwarded with Max-Forwards 0"
    );
}

// ---------------------------------------------------------------------------------------
// HTTP/1.0, keep-alive, bodiless answers.
// ---------------------------------------------------------------------------------------

/// An origin with a fixed-length resource, a streamed one of unknown length, and
/// bodiless answers; it records the Via it was sent.
async fn resource_origin() -> (TestOrigin, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let origin = TestOrigin::with_handler(move |req: Request<Incoming>| {
        log.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        let path = req.uri().path().to_string();
        async move {
            match path.as_str() {
                "/fixed" => Response::new(full("hello world")),
                "/stream" => {
                    let frames = ["first ", "second ", "third"]
                        .map(|s| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(s))));
                    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
                    Response::new(body.map_err(box_err).boxed())
                }
                "/nocontent" => {
                    let mut r = Response::new(full(""));
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                "/notmodified" => {
                    let mut r = Response::new(full(""));
                    *r.status_mut() = StatusCode::NOT_MODIFIED;
                    r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                    r
                }
                _ => {
                    let mut r = Response::new(full("no such resource"));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                }
            }
        }
    })
    .await;
    (origin, seen)
}

#[tokio::test]
async fn http10_client_gets_a_length_delimited_answer_and_the_connection_closes() {
    let (origin, seen) = resource_origin().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(format!("GET http://{}/fixed HTTP/1.0\r\n\r\n", origin.addr))
        .await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        !resp.has("transfer-encoding"),
        "chunked to 1.0:\n{}",
        resp.head
    );
    assert_eq!(resp.header("content-length"), Some("11"));
    assert_eq!(resp.text(), "hello world");
    conn.expect_closed().await;

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    // Via names the protocol the proxy received: 1.0.
    let via = seen[0].headers["via"].to_str().unwrap();
    assert!(via.starts_with("1.0 interpose-"), "{via}");
    assert_eq!(seen[0].headers["host"], origin.addr.to_string().as_str());
}

#[tokio::test]
async fn http10_client_gets_a_close_delimited_answer_for_a_body_of_unknown_length() {
    let (origin, _) = resource_origin().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(format!(
        "GET http://{}/stream HTTP/1.0\r\nUser-Agent: raw-1.0\r\n\r\n",
        origin.addr
    ))
    .await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        !resp.has("transfer-encoding"),
        "chunked to 1.0:\n{}",
        resp.head
    );
    assert!(!resp.has("content-length"), "{}", resp.head);
    // read_response read to end of stream: the close delimits the body.
    assert_eq!(resp.text(), "first second third");
}

#[tokio::test]
async fn http10_keep_alive_is_announced_when_honoured() {
    let (origin, _) = resource_origin().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    let req = format!(
        "GET http://{}/fixed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        origin.addr
    );
    conn.send(&req).await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.text(), "hello world");
    // An HTTP/1.0 client only keeps the connection if the answer says keep-alive.
    let connection = resp.header("connection").unwrap_or("").to_ascii_lowercase();
    if connection.contains("close") {
        conn.expect_closed().await;
    } else {
        assert!(connection.contains("keep-alive"), "{}", resp.head);
        conn.send(&req).await;
        assert_eq!(conn.read_response(false).await.text(), "hello world");
    }
}

#[tokio::test]
async fn http11_keep_alive_serves_sequential_and_pipelined_requests_on_one_connection() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    let mut upstream_peers = Vec::new();
    for i in 0..5 {
        conn.send(get(origin.addr, &format!("/seq/{i}"), "")).await;
        let resp = conn.read_response(false).await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        let connection = resp.header("connection").unwrap_or("").to_ascii_lowercase();
        assert!(!connection.contains("close"), "{}", resp.head);
        let text = resp.text();
        assert!(
            text.starts_with(&format!("GET /seq/{i} HTTP/1.1")),
            "{text}"
        );
        let peer = text
            .lines()
            .find_map(|l| l.strip_prefix("peer: "))
            .unwrap()
            .to_string();
        upstream_peers.push(peer);
    }
    // Upstream connections are pooled: five requests did not need five connections.
    upstream_peers.sort();
    upstream_peers.dedup();
    assert!(
        upstream_peers.len() < 5,
        "no upstream reuse: {upstream_peers:?}"
    );

    // Two requests in one write are answered in order.
    conn.send(format!(
        "{}{}",
        get(origin.addr, "/pipe/a", ""),
        get(origin.addr, "/pipe/b", "Connection: close\r\n")
    ))
    .await;
    let a = conn.read_response(false).await;
    assert!(a.text().starts_with("GET /pipe/a "), "{}", a.text());
    let b = conn.read_response(false).await;
    assert!(b.text().starts_with("GET /pipe/b "), "{}", b.text());
    assert_eq!(b.header("connection"), Some("close"));
    conn.expect_closed().await;
}

#[tokio::test]
async fn head_204_and_304_carry_no_body_and_the_connection_stays_usable() {
    let (origin, _) = resource_origin().await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    let o = origin.addr;

    conn.send(format!(
        "HEAD http://{o}/fixed HTTP/1.1\r\nHost: {o}\r\n\r\n"
    ))
    .await;
    let head = conn.read_response(true).await;
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(head.header("content-length"), Some("11"), "{}", head.head);
    assert!(!head.has("transfer-encoding"), "{}", head.head);

    conn.send(get(o, "/nocontent", "")).await;
    let nc = conn.read_response(false).await;
    assert_eq!(nc.status, 204, "{}", nc.head);
    assert!(!nc.has("transfer-encoding"), "{}", nc.head);

    conn.send(get(o, "/notmodified", "If-None-Match: \"v1\"\r\n"))
        .await;
    let nm = conn.read_response(false).await;
    assert_eq!(nm.status, 304, "{}", nm.head);
    assert_eq!(nm.header("etag"), Some("\"v1\""));
    assert!(!nm.has("transfer-encoding"), "{}", nm.head);

    // Any stray body byte above would corrupt this response.
    conn.send(get(o, "/fixed", "Connection: close\r\n")).await;
    let ok = conn.read_response(false).await;
    assert_eq!(ok.status, 200, "{}", ok.head);
    assert_eq!(ok.text(), "hello world");
    conn.expect_closed().await;
}

#[tokio::test]
async fn head_through_curl_and_reqwest_has_no_body() {
    let (origin, seen) = resource_origin().await;
    let proxy = TestProxy::start().await;
    let resp = client_via(&proxy)
        .head(origin.url("/fixed"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "11");
    assert!(resp.bytes().await.unwrap().is_empty());
    // curl -I fails if a body follows the head of a HEAD answer on a reused connection.
    let url = origin.url("/fixed");
    let (ok, out, err) = curl(&[
        "-x",
        &proxy.url(),
        "-I",
        &url,
        "--next",
        "-x",
        &proxy.url(),
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("200"), "{out}");
    assert!(out.ends_with("hello world"), "{out}");
    let methods: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.method.clone())
        .collect();
    assert_eq!(methods, ["HEAD", "HEAD", "GET"]);
}

#[tokio::test]
async fn a_close_delimited_origin_body_is_rechunked_for_an_http11_client() {
    // An HTTP/1.0 origin: no length, the body ends when it closes.
    let origin =
        RawOrigin::start_closing("HTTP/1.0 200 OK\r\nX-Old: yes\r\n\r\nold-school body").await;
    let proxy = TestProxy::start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(get(origin.addr, "/old", "")).await;
    let resp = conn.read_response(false).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(
        resp.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        resp.head
    );
    assert_eq!(resp.text(), "old-school body");
    assert_eq!(resp.header("x-old"), Some("yes"));
    // Via names the protocol the proxy received the response in.
    let via = resp.elements("via");
    assert_eq!(via.len(), 1, "{}", resp.head);
    assert!(via[0].starts_with("1.0 interpose-"), "{}", resp.head);
    // The client connection outlives the origin's.
    conn.send(get(origin.addr, "/old-again", "Connection: close\r\n"))
        .await;
    assert_eq!(conn.read_response(false).await.text(), "old-school body");
    conn.expect_closed().await;
    assert_eq!(origin.heads().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Many idle connections.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_connections_do_not_block_a_real_request() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start().await;
    let mut idle = Vec::with_capacity(200);
    for _ in 0..200 {
        idle.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    let body = client_via(&proxy)
        .get(origin.url("/busy"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("GET /busy HTTP/1.1"), "{body}");
    // The idle connections were accepted and are served too, first and last alike.
    let first = idle.remove(0);
    let last = idle.pop().unwrap();
    for stream in [first, last] {
        let mut conn = RawConn::from_stream(stream);
        conn.send(get(origin.addr, "/late", "Connection: close\r\n"))
            .await;
        let resp = conn.read_response(false).await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert!(resp.text().starts_with("GET /late "));
    }
    drop(idle);
}

// ---------------------------------------------------------------------------------------
// Proxy authentication and client lists.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn proxy_auth_challenges_accepts_and_strips_credentials() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start_with(|c| c.auth = Some("u:p".parse().unwrap())).await;

    // No credentials: 407 with the Basic challenge.
    let resp = client_via(&proxy)
        .get(origin.url("/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 407);
    assert_eq!(
        resp.headers()["proxy-authenticate"],
        "Basic realm=\"interpose\""
    );

    // reqwest with the right credentials.
    let good = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(proxy.url())
                .unwrap()
                .basic_auth("u", "p"),
        )
        .build()
        .unwrap();
    let resp = good.get(origin.url("/reqwest")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo = resp.text().await.unwrap();
    assert!(echo.starts_with("GET /reqwest HTTP/1.1"), "{echo}");
    assert!(
        !echo.to_ascii_lowercase().contains("proxy-authorization"),
        "{echo}"
    );

    // reqwest with the wrong password.
    let bad = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(proxy.url())
                .unwrap()
                .basic_auth("u", "nope"),
        )
        .build()
        .unwrap();
    let resp = bad.get(origin.url("/wrong")).send().await.unwrap();
    assert_eq!(resp.status(), 407);

    // curl -U with the right and the wrong credentials.
    let url = origin.url("/curl");
    let (ok, out, err) = curl(&["-x", &proxy.url(), "-U", "u:p", &url]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("GET /curl HTTP/1.1"), "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("proxy-authorization"),
        "{out}"
    );
    let (ok, out, err) = curl(&[
        "-x",
        &proxy.url(),
        "-U",
        "u:wrong",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "407");
    let (ok, out, err) = curl(&["-x", &proxy.url(), "-D", "-", "-o", "/dev/null", &url]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/1.1 407"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"interpose\""),
        "{out}"
    );
}

#[tokio::test]
async fn after_a_407_the_same_connection_can_retry_with_credentials() {
    let (origin, seen) = recording_origin().await;
    let proxy = TestProxy::start_with(|c| c.auth = Some("u:p".parse().unwrap())).await;
    let mut conn = RawConn::open(proxy.addr).await;
    conn.send(get(origin.addr, "/first", "")).await;
    let denied = conn.read_response(false).await;
    assert_eq!(denied.status, 407, "{}", denied.head);
    assert_eq!(
        denied.header("proxy-authenticate"),
        Some("Basic realm=\"interpose\"")
    );
    assert!(seen.lock().unwrap().is_empty());
    // base64("u:p") = dTpw
    conn.send(get(
        origin.addr,
        "/second",
        "Proxy-Authorization: Basic dTpw\r\n",
    ))
    .await;
    let ok = conn.read_response(false).await;
    assert_eq!(ok.status, 200, "{}", ok.head);
    assert_eq!(ok.text(), "origin ok");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/second");
    assert!(seen[0].headers.get("proxy-authorization").is_none());
}

#[tokio::test]
async fn a_client_outside_allow_client_gets_403() {
    let (origin, seen) = recording_origin().await;
    let proxy =
        TestProxy::start_with(|c| c.allow_clients = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let resp = client_via(&proxy)
        .get(origin.url("/no"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let text = resp.text().await.unwrap();
    assert!(text.contains("127.0.0.1"), "{text}");
    let (ok, out, err) = curl(&[
        "-x",
        &proxy.url(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &origin.url("/no"),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "403");
    assert!(seen.lock().unwrap().is_empty(), "the origin was contacted");

    // The same proxy setup admitting loopback serves the request: the 403 was the list.
    let open =
        TestProxy::start_with(|c| c.allow_clients = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let resp = client_via(&open)
        .get(origin.url("/yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 1);
}
