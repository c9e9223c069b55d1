//! Full TLS handshakes with minted leaves: a tokio-rustls server presenting
//! `LeafResolver` leaves, and curl (trusting only our CA) or a rustls client talking
//! to it by name (SNI) and by address (no SNI: the fallback host).

#[path = "ca_common.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{mkcert_ca, Scratch};
use interpose::ca::{load, mitm_server_config, Ca, CaStore, LeafCache, LeafResolver, MitmTls};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS server on 127.0.0.1:0 answering every request with "hello over TLS" and the
/// negotiated ALPN; it stops when the test's runtime does.
async fn serve(cache: Arc<LeafCache>, fallback: &str) -> SocketAddr {
    let resolver = Arc::new(LeafResolver::new(cache, Some(fallback.to_string())));
    let acceptor = TlsAcceptor::from(Arc::new(mitm_server_config(resolver).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "hello over TLS\n";
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all((head + body).as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn curl(args: &[String]) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn curl_by_name_and_address(ca: Ca, ca_pem: &std::path::Path) {
    let cache = Arc::new(LeafCache::new(Arc::new(ca), 16));
    let addr = serve(Arc::clone(&cache), "127.0.0.1").await;
    let port = addr.port();
    let cacert = ca_pem.display().to_string();

    // By name: curl sends SNI "localhost"; the leaf has DNS:localhost.
    let (ok, out) = curl(&[
        "--cacert".into(),
        cacert.clone(),
        "--resolve".into(),
        format!("localhost:{port}:127.0.0.1"),
        format!("https://localhost:{port}/"),
    ])
    .await;
    assert!(ok, "{out}");
    assert_eq!(out, "hello over TLS\n");

    // By address: no SNI, so the fallback host's leaf (IP:127.0.0.1) is served.
    let (ok, out) = curl(&[
        "--cacert".into(),
        cacert.clone(),
        format!("https://{addr}/"),
    ])
    .await;
    assert!(ok, "{out}");
    assert_eq!(cache.mint_count(), 2);

    // Without our CA, curl refuses the leaf.
    let (ok, out) = curl(&[
        "--cacert".into(),
        "/dev/null".into(),
        "--resolve".into(),
        format!("localhost:{port}:127.0.0.1"),
        format!("https://localhost:{port}/"),
    ])
    .await;
    assert!(!ok, "{out}");
}

#[tokio::test]
async fn curl_trusts_leaves_from_our_ca() {
    let s = Scratch::new("tls-ours");
    let store = CaStore::new(s.path("ca"));
    let ca = store.init().unwrap();
    curl_by_name_and_address(ca, &store.cert_path()).await;
}

#[tokio::test]
async fn curl_trusts_leaves_from_an_rsa_mkcert_ca() {
    let s = Scratch::new("tls-mkcert");
    let (cert, key) = mkcert_ca(&s.0);
    let ca = load::load_pair(&cert, &key).unwrap();
    curl_by_name_and_address(ca, &cert).await;
}

#[tokio::test]
async fn a_rustls_client_trusting_the_ca_negotiates_h2() {
    let s = Scratch::new("tls-rustls");
    let store = CaStore::new(s.path("ca"));
    let ca = store.init().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let cache = Arc::new(LeafCache::new(Arc::new(ca), 16));
    let addr = serve(Arc::clone(&cache), "127.0.0.1").await;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    for name in ["intercepted.example", "127.0.0.1"] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let tls = connector.connect(server_name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    }
    assert_eq!(cache.mint_count(), 2);
    assert!(cache.cached("intercepted.example").is_some());
}

/// The engine's shape: read the ClientHello first (`LazyConfigAcceptor`), then take the
/// shared config when there is SNI and a per-connection one (CONNECT host) when not.
#[tokio::test]
async fn mitm_tls_picks_a_config_from_the_client_hello() {
    let s = Scratch::new("tls-lazy");
    let ca = CaStore::new(s.path("ca")).init().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mitm = MitmTls::new(Arc::new(LeafCache::new(Arc::new(ca), 16))).unwrap();
    let with_sni = mitm.config_for(Some("a.test"), "ignored").unwrap();
    assert!(Arc::ptr_eq(
        &with_sni,
        &mitm.config_for(Some("b.test"), "x").unwrap()
    ));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_mitm = mitm.clone();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
            let start = acceptor.await.unwrap();
            let sni = start.client_hello().server_name().map(str::to_string);
            let config = server_mitm.config_for(sni.as_deref(), "127.0.0.1").unwrap();
            let mut tls = start.into_stream(config).await.unwrap();
            tls.write_all(b"ok").await.unwrap();
            tls.shutdown().await.unwrap();
        }
    });

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    for name in ["named.test", "127.0.0.1"] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let mut tls = connector.connect(server_name, tcp).await.unwrap();
        let mut got = String::new();
        tls.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "ok");
    }
    server.await.unwrap();
    assert_eq!(mitm.leaves().mint_count(), 2);
}
