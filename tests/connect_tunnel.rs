//! CONNECT tunnels end to end: real clients (curl, reqwest) to a TLS origin, and raw
//! tunnels to raw TCP origins for half-close, bulk data, idle timeout, bytes pipelined
//! behind the CONNECT, and shutdown while a tunnel is open.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Upper bound used only to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(20);

/// A raw TCP origin on 127.0.0.1:0 running `serve` for every accepted connection.
async fn raw_origin<F, Fut>(serve: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    (addr, task)
}

/// An origin that sends back every byte it receives and closes after the client's EOF.
async fn echo_origin() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    raw_origin(|mut stream| async move {
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// Reads a response head byte by byte so no tunnel byte behind it is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout(HANG, stream.read(&mut byte))
            .await
            .expect("no answer to CONNECT in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Opens a tunnel to `target`, sending `early` in the same write as the CONNECT request.
async fn open_tunnel(proxy: SocketAddr, target: SocketAddr, early: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
    request.extend_from_slice(early);
    stream.write_all(&request).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 200 "),
        "CONNECT answer: {head:?}"
    );
    stream
}

/// Reads until EOF (bounded); the bytes read.
async fn read_to_eof<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(HANG, r.read_to_end(&mut out))
        .await
        .expect("no EOF in time")
        .expect("read failed");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_answers_200_only_once_the_upstream_is_open() {
    // An upstream whose connect hangs (full accept queue): the client must get no 200, only the 504.
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let hole = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = timeout(Duration::from_millis(200), TcpStream::connect(hole)).await {
            fillers.push(s);
        }
    }
    let proxy = TestProxy::start_with(|c| c.connect_timeout = Duration::from_millis(500)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(format!("CONNECT {hole} HTTP/1.1\r\nHost: {hole}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 504 "), "{answer:?}");

    // An upstream that greets on accept: after the 200 its first bytes are already flowing.
    let (greeter, _task) = raw_origin(|mut s| async move {
        let _ = s.write_all(b"hello from origin\n").await;
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    })
    .await;
    let mut tunnel = open_tunnel(proxy.addr, greeter, b"").await;
    let mut greeting = [0u8; 18];
    timeout(HANG, tunnel.read_exact(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&greeting, b"hello from origin\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_tunnels_https_with_p_x() {
    let tls = TlsOrigin::start().await;
    let proxy = TestProxy::start().await;
    let dir = TempDir::new("tunnel-curl");
    let ca = tls.cert_file(dir.path());
    let port = tls.addr.port();
    let url = format!("https://localhost:{port}/via-p-x");
    let (ok, out, err) = curl(&[
        "-v",
        "-p",
        "-x",
        &proxy.url(),
        "--cacert",
        ca.to_str().unwrap(),
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("tls echo GET /via-p-x"), "{out}");
    assert!(err.contains(&format!("CONNECT localhost:{port}")), "{err}");
    assert!(err.contains("200 Connection established"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_tunnels_https_with_https_proxy_env() {
    let tls = TlsOrigin::start().await;
    let proxy = TestProxy::start().await;
    let dir = TempDir::new("tunnel-env");
    let ca = tls.cert_file(dir.path());
    let port = tls.addr.port();
    let url = format!("https://localhost:{port}/via-env");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "60", "--cacert"])
        .arg(&ca)
        .arg(&url)
        .env("https_proxy", proxy.url())
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("tls echo GET /via-env"), "{stdout}");
    assert!(
        stderr.contains(&format!("CONNECT localhost:{port}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_https_through_the_proxy() {
    let tls = TlsOrigin::start().await;
    let url = format!("https://localhost:{}/via-reqwest", tls.addr.port());
    let client_for = |proxy: &TestProxy| {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::https(proxy.url()).unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(tls.cert_pem.as_bytes()).unwrap())
            .timeout(HANG)
            .build()
            .unwrap()
    };
    let proxy = TestProxy::start().await;
    let body = client_for(&proxy)
        .get(&url)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("tls echo GET /via-reqwest"), "{body}");

    // The same client through a proxy refusing that port fails: the request really went via CONNECT.
    let strict = TestProxy::start_with(|c| c.connect_ports = "1".parse().unwrap()).await;
    assert!(client_for(&strict).get(&url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_passes_eof_and_the_other_direction_keeps_flowing() {
    let (origin_saw, saw) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let origin_saw = std::sync::Mutex::new(Some(origin_saw));
    let (origin, _task) = raw_origin(move |mut s| {
        let report = origin_saw.lock().unwrap().take();
        async move {
            // Read the client's whole stream: ends only when the proxy passes the client's FIN on.
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            if let Some(report) = report {
                let _ = report.send(got);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.write_all(b"reply after your EOF").await.unwrap();
            s.shutdown().await.unwrap();
        }
    })
    .await;
    let proxy = TestProxy::start().await;
    let mut tunnel = open_tunnel(proxy.addr, origin, b"").await;
    tunnel.write_all(b"request then FIN").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let got = timeout(HANG, saw)
        .await
        .expect("origin never saw EOF")
        .unwrap();
    assert_eq!(got, b"request then FIN");
    assert_eq!(read_to_eof(&mut tunnel).await, b"reply after your EOF");
}

/// A deterministic byte stream of `blocks` MiB: a pseudo-random block with its index in
/// its first 8 bytes, so lost, repeated or reordered data all show up as a mismatch.
struct Pattern {
    base: Vec<u8>,
    blocks: u64,
}

const BLOCK: usize = 1 << 20;

impl Pattern {
    fn new(seed: u64, blocks: u64) -> Pattern {
        let mut x = seed | 1;
        let mut base = Vec::with_capacity(BLOCK);
        while base.len() < BLOCK {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base.extend_from_slice(&x.to_le_bytes());
        }
        Pattern { base, blocks }
    }

    fn len(&self) -> u64 {
        self.blocks * BLOCK as u64
    }

    async fn send<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<()> {
        for i in 0..self.blocks {
            w.write_all(&i.to_le_bytes()).await?;
            w.write_all(&self.base[8..]).await?;
        }
        w.shutdown().await
    }

    /// Reads to EOF, comparing every byte with the pattern.
    async fn verify<R: AsyncRead + Unpin>(&self, r: &mut R) -> Result<u64, String> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut offset = 0u64;
        loop {
            let n = r.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return if offset == self.len() {
                    Ok(offset)
                } else {
                    Err(format!("stream ended at {offset} of {}", self.len()))
                };
            }
            let mut data = &buf[..n];
            while !data.is_empty() {
                let block = offset / BLOCK as u64;
                let within = (offset % BLOCK as u64) as usize;
                if block >= self.blocks {
                    return Err(format!("more data than sent, at {offset}"));
                }
                let index = block.to_le_bytes();
                let expected: &[u8] = if within < 8 {
                    &index[within..]
                } else {
                    &self.base[within..]
                };
                let take = expected.len().min(data.len());
                if data[..take] != expected[..take] {
                    return Err(format!("data differs near byte {offset}"));
                }
                data = &data[take..];
                offset += take as u64;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_data_both_ways_at_once_arrives_intact() {
    const MIB: u64 = 64;
    let up = std::sync::Arc::new(Pattern::new(0x1234_5678, MIB));
    let down = std::sync::Arc::new(Pattern::new(0x9abc_def0, MIB));
    let (result_tx, result_rx) = tokio::sync::oneshot::channel::<Result<u64, String>>();
    let result_tx = std::sync::Mutex::new(Some(result_tx));
    let (up2, down2) = (up.clone(), down.clone());
    let (origin, _task) = raw_origin(move |s| {
        let report = result_tx.lock().unwrap().take();
        let (up, down) = (up2.clone(), down2.clone());
        async move {
            let (mut r, mut w) = s.into_split();
            let (received, sent) = tokio::join!(up.verify(&mut r), down.send(&mut w));
            let result = received.and_then(|n| sent.map(|_| n).map_err(|e| e.to_string()));
            if let Some(report) = report {
                let _ = report.send(result);
            }
        }
    })
    .await;
    let proxy = TestProxy::start().await;
    let tunnel = open_tunnel(proxy.addr, origin, b"").await;
    let (mut r, mut w) = tunnel.into_split();
    let both = async {
        let (sent, received) = tokio::join!(up.send(&mut w), down.verify(&mut r));
        sent.unwrap();
        received
    };
    let received = timeout(HANG, both).await.expect("transfer hung");
    assert_eq!(received, Ok(down.len()), "origin to client");
    let at_origin = timeout(HANG, result_rx).await.unwrap().unwrap();
    assert_eq!(at_origin, Ok(up.len()), "client to origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnel_is_closed_but_a_busy_one_is_not() {
    let (origin_eof_tx, origin_eof) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let (origin, _task) = raw_origin(move |mut s| {
        let report = origin_eof_tx.clone();
        async move {
            // Echo until the proxy closes the upstream side, then report what came.
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        seen.extend_from_slice(&buf[..n]);
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = report.send(seen);
        }
    })
    .await;
    let mut origin_eof = origin_eof;
    let proxy = TestProxy::start_with(|c| c.idle_timeout = Duration::from_millis(300)).await;

    // Busy: a message every 100 ms for well over the idle timeout keeps it open.
    let mut busy = open_tunnel(proxy.addr, origin, b"").await;
    for i in 0..8u8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy.write_all(&[b'a' + i]).await.unwrap();
        let mut back = [0u8; 1];
        timeout(HANG, busy.read_exact(&mut back))
            .await
            .unwrap()
            .expect("busy tunnel was closed");
        assert_eq!(back[0], b'a' + i);
    }

    // Idle: after one exchange nothing moves; the proxy closes both sides.
    let mut idle = open_tunnel(proxy.addr, origin, b"").await;
    idle.write_all(b"x").await.unwrap();
    let mut back = [0u8; 1];
    idle.read_exact(&mut back).await.unwrap();
    let rest = read_to_eof(&mut idle).await;
    assert!(rest.is_empty(), "{rest:?}");
    // (The busy tunnel, idle by now, is closed too: pick the idle tunnel's report.)
    let idle_report = async {
        loop {
            let seen = origin_eof.recv().await.unwrap();
            if seen.first() == Some(&b'x') {
                return seen;
            }
        }
    };
    let seen = timeout(HANG, idle_report)
        .await
        .expect("origin side of the idle tunnel never closed");
    assert_eq!(seen, b"x");
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pipelined_behind_connect_reach_the_origin() {
    let early: Vec<u8> = b"EARLY:"
        .iter()
        .copied()
        .chain((0..2000u32).map(|i| b'a' + (i % 26) as u8))
        .collect();
    let expected_len = early.len() + b"LATER".len();
    let (origin, _task) = raw_origin(move |mut s| async move {
        let mut got = vec![0u8; expected_len];
        if s.read_exact(&mut got).await.is_ok() {
            let _ = s.write_all(b"origin got ").await;
            let _ = s.write_all(&got).await;
        }
        let _ = s.shutdown().await;
    })
    .await;
    let proxy = TestProxy::start().await;
    let mut tunnel = open_tunnel(proxy.addr, origin, &early).await;
    tunnel.write_all(b"LATER").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let back = read_to_eof(&mut tunnel).await;
    let mut want = b"origin got ".to_vec();
    want.extend_from_slice(&early);
    want.extend_from_slice(b"LATER");
    assert_eq!(
        String::from_utf8_lossy(&back),
        String::from_utf8_lossy(&want)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_in_flight_keeps_working_through_shutdown() {
    let (origin, _task) = echo_origin().await;
    let mut proxy = TestProxy::start_with(|c| c.grace = Duration::from_secs(30)).await;
    let mut tunnel = open_tunnel(proxy.addr, origin, b"").await;
    tunnel.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"before");

    proxy.begin_shutdown();
    for i in 0..5u8 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let msg = [b'0' + i; 4];
        tunnel.write_all(&msg).await.unwrap();
        let mut back = [0u8; 4];
        timeout(HANG, tunnel.read_exact(&mut back))
            .await
            .unwrap()
            .expect("tunnel cut by shutdown");
        assert_eq!(back, msg);
    }
    // New tunnels are not accepted any more.
    if let Ok(mut late) = TcpStream::connect(proxy.addr).await {
        let _ = late
            .write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
            .await;
        let answer = read_until_quiet(&mut late, HANG).await;
        assert!(
            answer.is_empty(),
            "tunnel opened after shutdown: {answer:?}"
        );
    }
    tunnel.shutdown().await.unwrap();
    assert!(read_to_eof(&mut tunnel).await.is_empty());
    timeout(HANG, proxy.take_handle())
        .await
        .expect("server still running after its last tunnel closed")
        .unwrap();
}

/// When the grace period ends, `server::serve` drops every connection still open:
/// a tunnel stops relaying once the server has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_still_open_when_the_grace_period_ends_is_closed() {
    let (origin, _task) = echo_origin().await;
    let mut proxy = TestProxy::start_with(|c| c.grace = Duration::from_millis(300)).await;
    let mut tunnel = open_tunnel(proxy.addr, origin, b"").await;
    tunnel.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tunnel.read_exact(&mut buf).await.unwrap();
    proxy.begin_shutdown();
    timeout(HANG, proxy.take_handle())
        .await
        .expect("server did not stop at the end of the grace period")
        .unwrap();
    // The server has returned: nothing it started may keep relaying.
    let rest = read_to_eof(&mut tunnel).await;
    assert!(rest.is_empty(), "{rest:?}");
}
