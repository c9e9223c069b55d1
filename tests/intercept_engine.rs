//! The engine with an interception policy, in-process: TLS inside CONNECT terminated
//! with a leaf from a test CA and re-encrypted towards a verified origin; plain HTTP
//! inside CONNECT served as HTTP; ignored hosts and unknown bytes tunnelled blind.
//! (The `mitm` command, with its own CA store and per-host minting, wires this up.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use interpose::config::ForwardConfig;
use interpose::proxy::conn::serve_connection;
use interpose::proxy::intercept::Policy;
use interpose::proxy::Engine;
use interpose::server::serve;
use support::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A test CA and a leaf for localhost/127.0.0.1 signed by it.
struct TestCa {
    ca_pem: String,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
}

fn test_ca() -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "interpose test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    TestCa {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    }
}

/// Starts an intercepting engine trusting `upstream_ca` (PEM file) for origins.
async fn start_mitm(
    ca: &TestCa,
    upstream_ca: Option<&std::path::Path>,
    ignore: &[&str],
) -> (std::net::SocketAddr, CancellationToken) {
    let provider = interpose::tls::provider();
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(ca.chain.clone(), ca.key.clone_key())
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut client =
        interpose::tls::client::upstream_client_config(upstream_ca, false, provider).unwrap();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let policy = Policy {
        client_tls: Arc::new(Arc::new(server)),
        ignore_hosts: ignore
            .iter()
            .map(|r| regex::Regex::new(r).unwrap())
            .collect(),
        auto_passthrough: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = Engine::with_interception(
        ForwardConfig::new(addr),
        Some((policy, tokio_rustls::TlsConnector::from(Arc::new(client)))),
    );
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        serve(listener, t, Duration::from_secs(1), move |s, p, t| {
            serve_connection(engine.clone(), s, p, t)
        })
        .await;
    });
    (addr, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_inside_connect_is_intercepted_and_reencrypted() {
    let origin = TlsOrigin::start().await;
    let dir = TempDir::new("mitm");
    let origin_ca = origin.cert_file(dir.path());
    let ca = test_ca();
    let ca_file = dir.path().join("test-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let (proxy, _stop) = start_mitm(&ca, Some(&origin_ca), &[]).await;
    let url = format!("https://localhost:{}/seen", origin.addr.port());
    for _ in 0..2 {
        let (ok, out, err) = curl(&[
            "-i",
            "-x",
            &format!("http://{proxy}"),
            "--cacert",
            ca_file.to_str().unwrap(),
            &url,
        ])
        .await;
        assert!(ok, "{err}");
        // The client trusted our CA, not the origin's, and our Via shows we saw the exchange.
        assert!(out.to_lowercase().contains("via: 1.1 interpose-"), "{out}");
        assert!(out.contains("tls echo GET /seen"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_origin_is_a_502_that_says_why() {
    let origin = TlsOrigin::start().await;
    let dir = TempDir::new("mitm-untrusted");
    let ca = test_ca();
    let ca_file = dir.path().join("test-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let (proxy, _stop) = start_mitm(&ca, None, &[]).await;
    let url = format!("https://localhost:{}/", origin.addr.port());
    let (_, out, _) = curl(&[
        "-x",
        &format!("http://{proxy}"),
        "--cacert",
        ca_file.to_str().unwrap(),
        "-w",
        "\n%{http_code}",
        &url,
    ])
    .await;
    assert!(out.ends_with("\n502"), "{out}");
    assert!(
        out.contains("certificate for localhost not trusted: UnknownIssuer"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_hosts_and_plain_http_inside_connect() {
    let origin = TlsOrigin::start().await;
    let dir = TempDir::new("mitm-ignore");
    let origin_ca = origin.cert_file(dir.path());
    let ca = test_ca();
    let (proxy, _stop) = start_mitm(&ca, Some(&origin_ca), &["^local"]).await;
    // Ignored: the client must trust the origin's own certificate, and no Via appears.
    let url = format!("https://localhost:{}/blind", origin.addr.port());
    let (ok, out, err) = curl(&[
        "-i",
        "-x",
        &format!("http://{proxy}"),
        "--cacert",
        origin_ca.to_str().unwrap(),
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("tls echo GET /blind"), "{out}");
    assert!(!out.to_lowercase().contains("via:"), "{out}");

    // Plain HTTP inside a CONNECT tunnel is served as HTTP: visible, with our Via.
    let plain = TestOrigin::echo().await;
    let (ok, out, err) = curl(&[
        "-p",
        "-x",
        &format!("http://{proxy}"),
        &plain.url("/inside"),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("GET /inside HTTP/1.1"), "{out}");
    assert!(out.contains("via: 1.1 interpose-"), "{out}");
}

/// A TLS WebSocket origin (self-signed for localhost) echoing text messages.
async fn wss_echo() -> (std::net::SocketAddr, String) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key =
        rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(interpose::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
                    if ws
                        .send(Message::text(format!("echo: {}", t.as_str())))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    (addr, cert_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_inside_an_intercepted_tunnel() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    let (origin, origin_pem) = wss_echo().await;
    let dir = TempDir::new("mitm-wss");
    let origin_ca = dir.path().join("wss-origin.pem");
    std::fs::write(&origin_ca, origin_pem).unwrap();
    let ca = test_ca();
    let (proxy, _stop) = start_mitm(&ca, Some(&origin_ca), &[]).await;

    let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let authority = format!("localhost:{}", origin.port());
    tcp.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The client trusts only the interception CA: the TLS it sees is ours.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.chain[1].clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(interpose::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    let url = format!("wss://{authority}/ws");
    let (mut ws, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(
        response.headers().get("via").is_some(),
        "the upgrade went through the proxy's HTTP engine"
    );
    for text in ["one", "two"] {
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("echo: {text}"))
        );
    }
}

/// A server that speaks first (an SMTP-style banner) is tunnelled blind at once: the
/// client is not left waiting for the peek to time out.
#[tokio::test]
async fn a_server_that_speaks_first_is_not_kept_waiting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = test_ca();
    let (proxy, token) = start_mitm(&ca, None, &[]).await;
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_addr = origin.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = origin.accept().await.unwrap();
        s.write_all(b"220 origin ready\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
    });
    let mut c = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {origin_addr} HTTP/1.1\r\nHost: {origin_addr}\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&got).contains("220 origin ready\r\n") {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let got = tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .expect("the banner arrives without waiting for the 10 s peek");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    c.write_all(b"HELO me\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"HELO me\r\n");
    token.cancel();
}
