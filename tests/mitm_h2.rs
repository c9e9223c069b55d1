//! HTTP/2 inside interception, as a user runs it: `interpose mitm` offers h2 and
//! http/1.1 to clients and to origins, and translates when the two sides differ.
//! curl (`--http2`, `--http1.1`) and reqwest go through it to in-process TLS origins
//! that speak only HTTP/1.1 or only HTTP/2 and report what they saw.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::proto::{pattern, sha256_hex, Proto, ProtoOrigin};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::time::timeout;

/// `interpose mitm` on 127.0.0.1:0, its CA under `dir`, trusting `origins`' certificates.
struct Mitm {
    child: Child,
    addr: String,
    ca_pem: std::path::PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Mitm {
    async fn start(dir: &TempDir, origins: &[&ProtoOrigin], extra: &[&str]) -> Mitm {
        let ca_dir = dir.path().join("ca");
        let trusted = dir.path().join("origins.pem");
        let pems: Vec<&str> = origins.iter().map(|o| o.cert_pem.as_str()).collect();
        std::fs::write(&trusted, pems.concat()).unwrap();
        let mut args = vec![
            "mitm",
            "--listen",
            "127.0.0.1:0",
            "--ca-dir",
            ca_dir.to_str().unwrap(),
        ];
        if !origins.is_empty() {
            args.extend(["--upstream-ca", trusted.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        let mut child = interpose_cmd(&args).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (_, addr) = support::binary::read_listening(&mut stdout).await;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut line = String::new();
            while stdout.read_line(&mut line).await.unwrap_or(0) > 0 {
                sink.lock().unwrap().push(std::mem::take(&mut line));
            }
        });
        Mitm {
            child,
            addr,
            ca_pem: ca_dir.join("ca.pem"),
            lines,
        }
    }

    fn proxy(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A CONNECT to `authority` (a localhost name) and TLS inside it, trusting the
    /// proxy's CA and offering `alpn`.
    async fn tls_tunnel(
        &self,
        authority: &str,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        use rustls_pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        tcp.write_all(connect.as_bytes()).await.unwrap();
        let mut buf = [0u8; 256];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(&self.ca_pem).unwrap();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut client = rustls::ClientConfig::builder_with_provider(interpose::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap()
    }

    /// curl through the proxy trusting its CA; returns (ok, stdout, stderr).
    async fn curl(&self, args: &[&str]) -> (bool, String, String) {
        let proxy = self.proxy();
        let mut all = vec![
            "--suppress-connect-headers",
            "-x",
            &proxy,
            "--cacert",
            self.ca_pem.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        curl(&all).await
    }

    /// Waits until an output line contains `needle` (access lines follow the exchange).
    async fn wait_line(&self, needle: &str) -> String {
        for _ in 0..100 {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no line with {needle:?} in {:?}",
            self.lines.lock().unwrap()
        );
    }

    /// How many output lines so far contain `needle`.
    fn count_lines(&self, needle: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// A reqwest client through the proxy trusting its CA (HTTP/2 when the proxy offers it).
    fn reqwest(&self) -> reqwest::Client {
        let ca = std::fs::read(&self.ca_pem).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .proxy(reqwest::Proxy::all(self.proxy()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }
}

/// Splits curl `-i … -w '\n%{http_version}'` output into (head, body, version).
fn split(out: &str) -> (String, String, String) {
    let (rest, version) = out.rsplit_once('\n').unwrap_or((out, ""));
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (head.to_lowercase(), body.to_string(), version.to_string())
}

/// A file of `n` bytes for uploads, and its checksum.
fn upload_file(dir: &TempDir, n: usize) -> (std::path::PathBuf, String) {
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
    let path = dir.path().join(format!("upload-{n}.bin"));
    std::fs::write(&path, &data).unwrap();
    (path, sha256_hex(&data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h2_and_h1_clients_reach_h1_and_h2_origins() {
    let dir = TempDir::new("mitm-h2");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mut mitm = Mitm::start(&dir, &[&h1, &h2], &[]).await;
    let (file, sum) = upload_file(&dir, 1 << 20);
    let cases = [
        ("--http2", "2", &h1, "HTTP/1.1", "1.1"),
        ("--http2", "2", &h2, "HTTP/2.0", "2"),
        ("--http1.1", "1.1", &h2, "HTTP/2.0", "2"),
        ("--http1.1", "1.1", &h1, "HTTP/1.1", "1.1"),
    ];
    for (i, (flag, client_version, origin, origin_saw, via)) in cases.into_iter().enumerate() {
        let case = format!("{flag} to an origin speaking {origin_saw}");
        let authority = format!("localhost:{}", origin.addr.port());
        let (ok, out, err) = mitm
            .curl(&[
                flag,
                "-i",
                "-H",
                "x-test: round trip",
                "-w",
                "\n%{http_version}",
                &origin.url(&format!("/echo?case={i}")),
            ])
            .await;
        assert!(ok, "{case}: {err}");
        let (head, body, version) = split(&out);
        assert_eq!(version, client_version, "{case}: the client's protocol");
        assert_eq!(
            body,
            format!("version={origin_saw} authority={authority} x-test=round trip\n"),
            "{case}: what the origin saw"
        );
        assert!(head.contains("x-echo: round trip"), "{case}: {head}");
        assert!(
            head.contains(&format!("via: {via} interpose-")),
            "{case}: {head}"
        );
        assert!(!head.contains("transfer-encoding") || client_version == "1.1");

        // An upload with a length keeps its length.
        let data = format!("@{}", file.display());
        let (ok, out, err) = mitm
            .curl(&[
                flag,
                "--data-binary",
                &data,
                &origin.url(&format!("/sum?case={i}")),
            ])
            .await;
        assert!(ok, "{case}: {err}");
        assert_eq!(
            out,
            format!("sha256={sum} len=1048576 framing=1048576 version={origin_saw}\n"),
            "{case}"
        );

        // A streamed response without a length arrives whole.
        let n = 3 * 1024 * 1024 + 17;
        let url = origin.url(&format!("/big?n={n}"));
        let saved = dir.path().join("big.bin");
        let (ok, out, err) = mitm
            .curl(&[
                flag,
                "-o",
                saved.to_str().unwrap(),
                "-w",
                "%{http_version}",
                &url,
            ])
            .await;
        assert!(ok, "{case}: {err}");
        assert_eq!(out, client_version, "{case}");
        let body = std::fs::read(&saved).unwrap();
        assert_eq!(body.len(), n, "{case}");
        assert!(body == pattern(n), "{case}: the body differs");

        // One access line per exchange, with the full URL and the body sizes.
        // The intercepting proxy's line reads as mitmdump's.
        let get = format!("GET https://{authority}/echo?case={i} -> 200 OK ");
        mitm.wait_line(&get).await;
        let post = format!("POST https://{authority}/sum?case={i} -> 200 OK ");
        mitm.wait_line(&post).await;
        assert_eq!(mitm.count_lines(&format!("/echo?case={i} ")), 1, "{case}");
        assert_eq!(mitm.count_lines(&format!("/sum?case={i} ")), 1, "{case}");
    }
    mitm.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_h1_upload_reaches_an_h2_origin_without_a_length() {
    let dir = TempDir::new("mitm-h2-chunked");
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mut mitm = Mitm::start(&dir, &[&h2], &[]).await;
    let (file, sum) = upload_file(&dir, 300_000);
    let (ok, out, err) = mitm
        .curl(&[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", file.display()),
            &h2.url("/sum"),
        ])
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!("sha256={sum} len=300000 framing=none version=HTTP/2.0\n")
    );
    mitm.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_multiplexes_h2_streams_through_the_interception() {
    use futures_util::future::join_all;
    let dir = TempDir::new("mitm-h2-reqwest");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mut mitm = Mitm::start(&dir, &[&h1, &h2], &[]).await;
    let client = mitm.reqwest();
    for (origin, saw) in [(&h1, "HTTP/1.1"), (&h2, "HTTP/2.0")] {
        // Concurrent streams on the one client connection.
        let gets = (0..16).map(|i| {
            let client = client.clone();
            let url = origin.url("/echo");
            async move {
                let resp = client
                    .get(url)
                    .header("x-test", format!("n{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.version(), reqwest::Version::HTTP_2);
                assert_eq!(resp.headers()["x-echo"], format!("n{i}").as_str());
                resp.text().await.unwrap()
            }
        });
        for (i, body) in join_all(gets).await.into_iter().enumerate() {
            assert!(body.starts_with(&format!("version={saw} ")), "{body}");
            assert!(body.ends_with(&format!("x-test=n{i}\n")), "{body}");
        }
        // A streamed upload has no length: an HTTP/1.1 origin gets it chunked.
        let data = pattern(200_000);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            data.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let resp = client
            .post(origin.url("/sum"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let framing = if saw == "HTTP/1.1" { "chunked" } else { "none" };
        assert_eq!(
            resp.text().await.unwrap(),
            format!(
                "sha256={} len=200000 framing={framing} version={saw}\n",
                sha256_hex(&data)
            )
        );
    }
    mitm.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_origin_is_a_502_over_h2_too() {
    let dir = TempDir::new("mitm-h2-untrusted");
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mut mitm = Mitm::start(&dir, &[], &[]).await;
    let (_, out, _) = mitm
        .curl(&[
            "--http2",
            "-w",
            "\n%{http_code} %{http_version}",
            &h2.url("/echo"),
        ])
        .await;
    assert!(out.ends_with("\n502 2"), "{out}");
    assert!(
        out.contains("certificate for localhost not trusted: UnknownIssuer"),
        "{out}"
    );
    mitm.wait_line(" 502 ").await;
    mitm.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_headers_shows_h2_exchanges() {
    let dir = TempDir::new("mitm-h2-dump");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let mut mitm = Mitm::start(&dir, &[&h1], &["--dump", "headers"]).await;
    let (ok, _, err) = mitm
        .curl(&["--http2", "-H", "x-test: dumped", &h1.url("/echo")])
        .await;
    assert!(ok, "{err}");
    mitm.wait_line(&format!("> GET /echo HTTP/2    ({})", h1.url("/echo")))
        .await;
    mitm.wait_line("x-test: dumped").await;
    mitm.wait_line("< HTTP/1.1 200").await;
    mitm.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_is_a_504_in_every_combination() {
    let dir = TempDir::new("mitm-h2-slow");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mut mitm = Mitm::start(&dir, &[&h1, &h2], &["--response-timeout", "1s"]).await;
    for (flag, origin) in [("--http2", &h1), ("--http2", &h2), ("--http1.1", &h2)] {
        let (_, out, _) = mitm
            .curl(&[flag, "-w", "\n%{http_code}", &origin.url("/slow?ms=4000")])
            .await;
        assert!(out.ends_with("\n504"), "{flag}: {out}");
        assert!(out.contains("did not answer within 1s"), "{flag}: {out}");
    }
    mitm.child.kill().await.unwrap();
}

/// A TLS WebSocket echo origin that also offers h2 by ALPN: an upgrade must reach it
/// over HTTP/1.1 (HTTP/2 cannot carry one).
async fn wss_origin_offering_h2() -> (std::net::SocketAddr, String) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key =
        rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(interpose::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(Message::Text(t))) = ws.next().await {
                    let echo = Message::text(format!("echo: {}", t.as_str()));
                    if ws.send(echo).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, certified.cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reaches_an_origin_that_prefers_h2_over_http1() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = TempDir::new("mitm-h2-wss");
    let (origin, origin_pem) = wss_origin_offering_h2().await;
    let trusted = dir.path().join("wss.pem");
    std::fs::write(&trusted, origin_pem).unwrap();
    let mut mitm = Mitm::start(&dir, &[], &["--upstream-ca", trusted.to_str().unwrap()]).await;

    let authority = format!("localhost:{}", origin.port());
    let tls = mitm.tls_tunnel(&authority, b"http/1.1").await;
    let (mut ws, response) = tokio_tungstenite::client_async(format!("wss://{authority}/ws"), tls)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("via").is_some());
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("echo: hello")
    );
    mitm.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_specific_headers_stay_on_their_hop() {
    let dir = TempDir::new("mitm-h2-hop");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mut mitm = Mitm::start(&dir, &[&h1, &h2], &[]).await;
    // HTTP/1.1 client, HTTP/2 origin: no Host (it is :authority), no connection fields.
    let (ok, out, err) = mitm
        .curl(&[
            "--http1.1",
            "-H",
            "Connection: keep-alive, X-Drop",
            "-H",
            "X-Drop: 1",
            "-H",
            "Keep-Alive: timeout=5",
            "-H",
            "Proxy-Connection: keep-alive",
            "-H",
            "TE: trailers",
            "-H",
            "X-Keep: 1",
            &h2.url("/headers"),
        ])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out, "accept,te,user-agent,via,x-keep\n");
    // HTTP/2 client, HTTP/1.1 origin: Host is built from :authority.
    let (ok, out, err) = mitm
        .curl(&["--http2", "-H", "X-Keep: 1", &h1.url("/headers")])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out, "accept,host,user-agent,via,x-keep\n");
    mitm.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_client_connection_is_closed() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let dir = TempDir::new("mitm-h2-idle");
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mut mitm = Mitm::start(&dir, &[&h2], &["--idle-timeout", "1s"]).await;

    let authority = format!("localhost:{}", h2.addr.port());
    let tls = mitm.tls_tunnel(&authority, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = conn.await;
        let _ = closed_tx.send(());
    });
    let req = http::Request::get(h2.url("/echo"))
        .header("x-test", "raw")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        format!("version=HTTP/2.0 authority={authority} x-test=raw\n").as_bytes()
    );
    timeout(Duration::from_secs(15), closed)
        .await
        .expect("the proxy closes an HTTP/2 connection left idle")
        .unwrap();
    mitm.child.kill().await.unwrap();
}

/// `--max-body-size` holds on the HTTP/2 path too: a declared length over it is a 413
/// before the origin is contacted; a body within it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_request_bodies_over_max_body_size_get_413() {
    let dir = TempDir::new("mitm-h2-max-body");
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let mitm = Mitm::start(&dir, &[&h2], &["--max-body-size", "16"]).await;
    let code = |body: &'static str| {
        let url = h2.url("/sum");
        let mitm = &mitm;
        async move {
            let args = [
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ];
            let mut all = args.to_vec();
            all.extend(["--data-binary", body, &url]);
            let (ok, out, err) = mitm.curl(&all).await;
            assert!(ok, "{err}");
            out
        }
    };
    assert_eq!(code("0123456789abcdefXYZ").await, "413 2");
    assert_eq!(code("0123456789").await, "200 2");
    mitm.wait_line("POST https://").await;
    assert!(mitm.wait_line(" 413 ").await.contains("request body"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_are_recorded_on_their_flow() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = TempDir::new("mitm-ws-flows");
    let (origin, origin_pem) = wss_origin_offering_h2().await;
    let trusted = dir.path().join("wss.pem");
    std::fs::write(&trusted, origin_pem).unwrap();
    let flows = dir.path().join("ws.jsonl");
    let extra = [
        "--upstream-ca",
        trusted.to_str().unwrap(),
        "--flows",
        flows.to_str().unwrap(),
    ];
    let mut mitm = Mitm::start(&dir, &[], &extra).await;
    let authority = format!("localhost:{}", origin.port());
    let tls = mitm.tls_tunnel(&authority, b"http/1.1").await;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{authority}/ws"), tls)
        .await
        .unwrap();
    let long = "x".repeat(70_000);
    for text in ["hello", long.as_str()] {
        ws.send(Message::text(text)).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo, Message::text(format!("echo: {text}")));
    }
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    // The flow is written when the upgraded connection has ended both ways: the
    // client's side ends when its stream is dropped.
    drop(ws);
    let mut recorded = String::new();
    for _ in 0..100 {
        recorded = std::fs::read_to_string(&flows).unwrap_or_default();
        if !recorded.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mitm.child.kill().await.unwrap();
    let flow: interpose::flow::record::Flow = serde_json::from_str(recorded.trim()).unwrap();
    assert_eq!(flow.response.as_ref().unwrap().status, 101);
    let seen: Vec<(interpose::flow::record::Direction, u8, u64)> = flow
        .websocket
        .iter()
        .map(|m| (m.direction, m.opcode, m.payload.size))
        .collect();
    use interpose::flow::record::Direction::{ClientToServer as Up, ServerToClient as Down};
    assert_eq!(
        &seen[..4],
        &[
            (Up, 1, 5),
            (Down, 1, 11),
            (Up, 1, 70_000),
            (Down, 1, 70_006)
        ],
        "{seen:?}"
    );
    assert_eq!(flow.websocket[0].payload.text(), Some("hello"));
    assert_eq!(flow.websocket[1].payload.text(), Some("echo: hello"));
    // The close handshake, both ways.
    assert!(
        seen[4..].iter().any(|&(d, op, _)| d == Up && op == 8),
        "{seen:?}"
    );
}
