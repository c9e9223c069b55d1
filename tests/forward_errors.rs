//! Answers the proxy makes itself: 403/502/504/400/408 with short text bodies naming
//! the cause, bad clients that must not disturb others, and graceful shutdown of a
//! download in flight.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Upper bound used only to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(10);

/// A response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head, then a Content-Length body) without reading past it.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = timeout(HANG, stream.read(&mut byte))
            .await
            .expect("no response in time")
            .expect("read failed");
        assert!(
            n == 1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut fields);
    assert!(parsed.parse(&buf).unwrap().is_complete());
    let status = parsed.code.unwrap();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut response = RawResponse {
        status,
        headers,
        body: String::new(),
    };
    let len: usize = response
        .header("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    timeout(HANG, stream.read_exact(&mut body))
        .await
        .expect("body not received in time")
        .unwrap();
    response.body = String::from_utf8_lossy(&body).into_owned();
    response
}

/// Whether the peer closed `stream` (EOF or reset) rather than leaving it open or sending more.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        timeout(HANG, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Sends `request` on a new connection and reads the answer.
async fn ask(proxy: SocketAddr, request: &str) -> (RawResponse, TcpStream) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    (response, stream)
}

/// A loopback port with nothing listening on it.
async fn refused_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A raw TCP listener that counts accepted connections and never answers.
async fn silent_origin() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted, task)
}

/// A listener whose accept queue is full, so further connection attempts hang in SYN-SENT.
/// Returns the address and what must stay alive for that to hold.
async fn blackhole() -> (SocketAddr, socket2::Socket, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            fillers.push(s);
        }
    }
    let probe = timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
    assert!(
        probe.is_err(),
        "this kernel still completes connections to a full accept queue ({} fillers); \
         the connect-timeout tests need another way to hang a connect",
        fillers.len()
    );
    (addr, socket, fillers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_port_not_allowed_is_403_and_never_dialed() {
    let (target, accepted, _task) = silent_origin().await;
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start_with(|c| c.connect_ports = "443".parse().unwrap()).await;
    let (resp, mut stream) = ask(
        proxy.addr,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert!(resp.body.contains("port"), "{resp:?}");
    assert!(resp.body.contains(&target.port().to_string()), "{resp:?}");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // The refusal left the connection clean: it still carries a forwarded request.
    let o = origin.addr;
    stream
        .write_all(format!("GET http://{o}/after HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let next = read_response(&mut stream).await;
    assert_eq!(next.status, 200, "{next:?}");
    assert!(next.body.starts_with("GET /after HTTP/1.1"), "{next:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the target was dialed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_a_refused_port_is_502() {
    let dead = refused_port().await;
    let proxy = TestProxy::start().await;
    let resp = client_via(&proxy)
        .get(format!("http://{dead}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("refused"), "{body}");
    assert!(body.contains(&dead.port().to_string()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_refused_port_is_502() {
    let dead = refused_port().await;
    let proxy = TestProxy::start().await;
    let (resp, _stream) = ask(
        proxy.addr,
        &format!("CONNECT {dead} HTTP/1.1\r\nHost: {dead}\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 502, "{resp:?}");
    assert!(resp.body.contains("refused"), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_never_answers_is_504() {
    let (silent, accepted, _task) = silent_origin().await;
    let proxy = TestProxy::start_with(|c| c.response_timeout = Duration::from_millis(300)).await;
    let resp = timeout(
        HANG,
        client_via(&proxy)
            .get(format!("http://{silent}/slow"))
            .send(),
    )
    .await
    .expect("the proxy did not give up on a silent upstream")
    .unwrap();
    assert_eq!(resp.status(), 504);
    let body = resp.text().await.unwrap();
    assert!(body.contains("did not answer"), "{body}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connect_that_hangs_is_504_for_forward_and_connect() {
    let (hole, _socket, _fillers) = blackhole().await;
    let proxy = TestProxy::start_with(|c| c.connect_timeout = Duration::from_millis(300)).await;

    let resp = timeout(
        HANG,
        client_via(&proxy).get(format!("http://{hole}/x")).send(),
    )
    .await
    .expect("forward: the proxy did not give up connecting")
    .unwrap();
    assert_eq!(resp.status(), 504);
    let body = resp.text().await.unwrap();
    assert!(body.contains("timed out"), "{body}");

    let (resp, _stream) = ask(
        proxy.addr,
        &format!("CONNECT {hole} HTTP/1.1\r\nHost: {hole}\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 504, "{resp:?}");
    assert!(resp.body.contains("timed out"), "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_target_without_port_or_with_path_is_400() {
    let (target, accepted, _task) = silent_origin().await;
    let proxy = TestProxy::start().await;
    let ip = target.ip();
    for bad in [
        format!("{ip}"),
        format!("{target}/path"),
        format!("http://{target}"),
    ] {
        let (resp, mut stream) = ask(
            proxy.addr,
            &format!("CONNECT {bad} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 400, "{bad}: {resp:?}");
        assert!(resp.body.contains("CONNECT target"), "{bad}: {resp:?}");
        assert!(closed_by_peer(&mut stream).await, "{bad}: left open");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_partial_head_is_408_and_closed() {
    let proxy = TestProxy::start_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Par")
        .await
        .unwrap();
    let resp = read_response(&mut stream).await;
    assert_eq!(resp.status, 408, "{resp:?}");
    assert!(resp.body.contains("in time"), "{resp:?}");
    assert!(closed_by_peer(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_do_not_block_others() {
    let origin = TestOrigin::echo().await;
    let proxy = TestProxy::start().await;
    // Some clients hold connections with partial heads, dribbling a byte now and then.
    let mut slow = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(format!("GET http://{}/slow{i} HTTP/1.1\r\nHo", origin.addr).as_bytes())
            .await
            .unwrap();
        slow.push(s);
    }
    // And one that connected and sent nothing at all.
    slow.push(TcpStream::connect(proxy.addr).await.unwrap());
    for round in 0..3 {
        for s in slow.iter_mut().take(20) {
            s.write_all(b"s").await.unwrap();
        }
        let resp = timeout(
            HANG,
            client_via(&proxy)
                .get(origin.url(&format!("/fast{round}")))
                .send(),
        )
        .await
        .expect("a good client waited behind slow ones")
        .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        assert!(
            body.starts_with(&format!("GET /fast{round} HTTP/1.1")),
            "{body}"
        );
    }
    // The slow clients are still connected and have been sent nothing.
    for s in &slow {
        let mut buf = [0u8; 16];
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("slow client was answered or closed early: {other:?}"),
        }
    }
}

/// An origin streaming `chunks` numbered lines with a pause before each after the first.
async fn streaming_origin(chunks: u32, pause: Duration) -> TestOrigin {
    TestOrigin::with_handler(move |_req: Request<Incoming>| async move {
        let stream = futures_util::stream::unfold(0u32, move |i| async move {
            if i == chunks {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            let frame: Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>> =
                Ok(Frame::data(Bytes::from(format!("chunk {i:02}\n"))));
            Some((frame, i + 1))
        });
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    })
    .await
}

fn streamed_body(chunks: u32) -> String {
    (0..chunks).map(|i| format!("chunk {i:02}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_download_finish_and_refuses_new_connections() {
    let origin = streaming_origin(20, Duration::from_millis(50)).await;
    let mut proxy = TestProxy::start_with(|c| c.grace = Duration::from_secs(30)).await;
    let client = client_via(&proxy);
    let mut resp = client.get(origin.url("/download")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    body.extend_from_slice(&resp.chunk().await.unwrap().unwrap());

    proxy.begin_shutdown();
    // Once the download has moved on, the accept loop has surely seen the shutdown.
    body.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    match TcpStream::connect(proxy.addr).await {
        Err(_) => {}
        Ok(mut late) => {
            let o = origin.addr;
            let _ = late
                .write_all(format!("GET http://{o}/late HTTP/1.1\r\nHost: {o}\r\n\r\n").as_bytes())
                .await;
            let answer = read_until_quiet(&mut late, HANG).await;
            assert!(answer.is_empty(), "served after shutdown began: {answer:?}");
        }
    }

    while let Some(chunk) = timeout(HANG, resp.chunk()).await.unwrap().unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(body).unwrap(), streamed_body(20));

    // With the download done, nothing holds the server: it ends well inside the grace period.
    timeout(HANG, proxy.take_handle())
        .await
        .expect("server still running after its last exchange ended")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_refusals_name_their_cause() {
    let origin = TestOrigin::echo().await;
    let o = origin.addr;
    let get = format!("GET http://{o}/x HTTP/1.1\r\nHost: {o}\r\n\r\n");

    // Missing proxy credentials: 407 with a Basic challenge.
    let proxy = TestProxy::start_with(|c| c.auth = Some("alice:s3cret".parse().unwrap())).await;
    let (resp, _s) = ask(proxy.addr, &get).await;
    assert_eq!(resp.status, 407, "{resp:?}");
    assert!(resp.body.contains("authentication"), "{resp:?}");
    assert!(
        resp.header("proxy-authenticate")
            .is_some_and(|v| v.starts_with("Basic ")),
        "{resp:?}"
    );

    // A client outside --allow-client: 403 naming the client.
    let proxy = TestProxy::start_with(|c| {
        c.allow_clients = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (resp, _s) = ask(proxy.addr, &get).await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert!(resp.body.contains("127.0.0.1"), "{resp:?}");

    // A request addressed to the proxy itself comes back round: 508, not an endless loop.
    let proxy = TestProxy::start().await;
    let p = proxy.addr;
    let (resp, _s) = ask(
        proxy.addr,
        &format!("GET http://{p}/self HTTP/1.1\r\nHost: {p}\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 508, "{resp:?}");
    assert!(resp.body.contains("loop"), "{resp:?}");
}
