//! `--max-body-size`: a declared length over the limit gets 413 before any upstream is
//! contacted; a chunked body crossing it mid-way gets 413 too, and the upstream request
//! is aborted (its connection closed, never reused, no complete request at the origin).
//! In forward, mitm (plain HTTP inside CONNECT, the same engine) and reverse.

#[path = "support/recording.rs"]
mod recording;
#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::time::Duration;

use recording::RecordingOrigin;
use reverse_support::{tls_connect, TestReverse};
use support::TestProxy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: u64 = 10;

/// Sends `request` and returns the status line and whether the proxy then closed.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, request: &str) -> (String, bool) {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&buf).into_owned();
    (text.lines().next().unwrap_or_default().to_string(), closed)
}

fn requests(target: &str, host: &str) -> [(String, u16); 3] {
    let post = |extra: &str, body: &str| {
        format!("POST {target}/limited HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n{body}")
    };
    [
        (post("Content-Length: 11\r\n", "hello world"), 413),
        (post("Content-Length: 10\r\n", "helloworld"), 200),
        (
            post(
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n8\r\n, world!\r\n0\r\n\r\n",
            ),
            413,
        ),
    ]
}

/// The origin got exactly one complete request (the one at the limit); every other
/// connection ended without a complete request.
async fn assert_origin_saw_only_the_allowed(origin: &RecordingOrigin) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let complete = origin.requests();
    assert_eq!(complete.len(), 1, "{complete:?}");
    assert_eq!(complete[0].body, b"helloworld");
    for c in origin.snapshot() {
        assert!(
            c.requests.len() == 1 || c.closed,
            "an aborted upstream connection stayed open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_refuses_bodies_over_the_limit() {
    let origin = RecordingOrigin::start(None).await;
    let proxy = TestProxy::start_with(|c| c.max_body_size = Some(LIMIT)).await;
    let host = origin.addr.to_string();
    for (request, status) in requests(&format!("http://{host}"), &host) {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let (line, closed) = send(&mut s, &request).await;
        assert!(line.contains(&format!(" {status} ")), "{line}");
        assert!(closed);
        if status == 413 {
            assert!(line.contains("Payload Too Large"), "{line}");
        }
    }
    assert_origin_saw_only_the_allowed(&origin).await;
}

/// The intercepting engine, as `mitm` runs it: plain HTTP inside CONNECT is parsed
/// and served through the same exchange code as TLS inside CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mitm_refuses_bodies_over_the_limit_inside_connect() {
    use std::sync::Arc;
    let origin = RecordingOrigin::start(None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let provider = interpose::tls::provider();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let client = interpose::tls::client::upstream_client_config(None, false, provider).unwrap();
    let policy = interpose::proxy::intercept::Policy {
        client_tls: Arc::new(Arc::new(server)),
        ignore_hosts: Vec::new(),
        auto_passthrough: None,
    };
    let mut cfg = interpose::config::ForwardConfig::new(addr);
    cfg.max_body_size = Some(LIMIT);
    let engine = interpose::proxy::Engine::with_interception(
        cfg,
        Some((policy, tokio_rustls::TlsConnector::from(Arc::new(client)))),
    );
    let token = tokio_util::sync::CancellationToken::new();
    let _stop = token.clone().drop_guard();
    tokio::spawn(interpose::server::serve(
        listener,
        token,
        Duration::from_secs(1),
        move |s, p, t| interpose::proxy::conn::serve_connection(engine.clone(), s, p, t),
    ));
    let host = origin.addr.to_string();
    for (request, status) in requests("", &host) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let connect = format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        s.write_all(connect.as_bytes()).await.unwrap();
        let mut head = [0u8; 39];
        s.read_exact(&mut head).await.unwrap();
        assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
        let (line, closed) = send(&mut s, &request).await;
        assert!(line.contains(&format!(" {status} ")), "{line}");
        assert!(closed);
    }
    assert_origin_saw_only_the_allowed(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_refuses_bodies_over_the_limit() {
    let origin = RecordingOrigin::start(None).await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.max_body_size = Some(LIMIT)
    })
    .await;
    for (request, status) in requests("", "localhost") {
        let mut s = tls_connect(proxy.addr, "localhost", &[b"http/1.1"]).await;
        let (line, closed) = send(&mut s, &request).await;
        assert!(line.contains(&format!(" {status} ")), "{line}");
        assert!(closed);
    }
    assert_origin_saw_only_the_allowed(&origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_refuses_bodies_over_the_limit_over_h2() {
    let origin = RecordingOrigin::start(None).await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.max_body_size = Some(LIMIT)
    })
    .await;
    let pem = proxy.proxy.self_signed().unwrap().cert_pem.clone();
    let client = reverse_support::https_client(&pem, proxy.addr);
    // A declared length (reqwest sends content-length for a full body).
    let resp = client
        .post(proxy.url("/limited"))
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 413);
    // A streamed body of unknown length crossing the limit.
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("hello"), Ok(", world!")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = client
        .post(proxy.url("/limited"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_closes_the_connection_when_the_answer_had_started() {
    use http_body_util::BodyExt;
    // The origin answers at once with a body that never ends, before reading the request's.
    let origin = support::TestOrigin::with_handler(|_req| async {
        let never = futures_util::stream::pending::<
            Result<hyper::body::Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>,
        >();
        http::Response::new(http_body_util::StreamBody::new(never).boxed())
    })
    .await;
    let proxy = TestProxy::start_with(|c| c.max_body_size = Some(LIMIT)).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST http://{0}/streaming HTTP/1.1\r\nHost: {0}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        origin.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Now the body crosses the limit: the answer cannot change any more, the connection ends.
    s.write_all(b"8\r\n, world!\r\n").await.unwrap();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => continue,
            Err(_) => break false,
        }
    };
    assert!(ended, "the connection stayed open past the limit");
}
