//! Test builders for the reverse proxy: certificates on disk, an in-process
//! `interpose reverse` on 127.0.0.1:0, TLS clients that report what they negotiated,
//! and a WebSocket echo origin. Everything stops when dropped.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use interpose::reverse::config::{parse_upstream, ReverseConfig};
use interpose::reverse::conn::serve_tls_connection;
use interpose::reverse::ReverseProxy;
use interpose::server::serve;
use interpose::tls::pem::CertSource;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// A self-signed certificate for `names` written as `TAG.pem` / `TAG.key` in `dir`.
pub struct TestCert {
    pub src: CertSource,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn write(dir: &Path, tag: &str, names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        let src = CertSource {
            cert: dir.join(format!("{tag}.pem")),
            key: dir.join(format!("{tag}.key")),
        };
        std::fs::write(&src.cert, ck.cert.pem()).unwrap();
        std::fs::write(&src.key, ck.key_pair.serialize_pem()).unwrap();
        TestCert {
            src,
            pem: ck.cert.pem(),
            der: ck.cert.der().clone(),
        }
    }

    pub fn cert_path(&self) -> &str {
        self.src.cert.to_str().unwrap()
    }
}

/// `interpose reverse` running in this process.
pub struct TestReverse {
    pub addr: SocketAddr,
    pub proxy: Arc<ReverseProxy>,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestReverse {
    /// A reverse proxy in front of `upstreams` (`HOST:PORT` or URLs), tuned by `tune`.
    pub async fn start(upstreams: &[String], tune: impl FnOnce(&mut ReverseConfig)) -> TestReverse {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = upstreams
            .iter()
            .map(|u| parse_upstream(u).unwrap())
            .collect();
        let mut cfg = ReverseConfig::new(addr, targets);
        cfg.grace = Duration::from_secs(2);
        tune(&mut cfg);
        let proxy = ReverseProxy::new(cfg).unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let served = proxy.clone();
        let handle = tokio::spawn(async move {
            serve(listener, token, Duration::from_secs(2), move |s, p, t| {
                serve_tls_connection(served.clone(), s, p, t)
            })
            .await;
        });
        TestReverse {
            addr,
            proxy,
            shutdown,
            handle: Some(handle),
        }
    }

    /// `https://localhost:PORT` + path (pair with [`TestReverse::resolve`] for curl).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }

    /// curl's `--resolve` value pinning localhost to 127.0.0.1 for this proxy.
    pub fn resolve(&self) -> String {
        format!("localhost:{}:127.0.0.1", self.addr.port())
    }

    /// The self-signed certificate's PEM written to `dir`, for `--cacert`.
    pub fn self_signed_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("self-{}.pem", self.addr.port()));
        std::fs::write(&path, &self.proxy.self_signed().unwrap().cert_pem).unwrap();
        path
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    /// Starts graceful shutdown; the returned handle finishes when the server has.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        self.shutdown.cancel();
        self.handle.take().unwrap()
    }
}

impl Drop for TestReverse {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A reqwest client trusting `ca_pem`, with localhost pinned to 127.0.0.1:`port`.
pub fn https_client(ca_pem: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Connects with TLS sending SNI `server_name`, accepting any certificate, so a test
/// can look at which certificate and protocol it got.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// The leaf certificate the server presented on `tls`.
pub fn peer_leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Sends one HTTP/1.1 GET on an open TLS connection and returns the whole response text
/// (the request asks for `Connection: keep-alive` and the answer is read by length).
pub async fn get_on(tls: &mut TlsStream<TcpStream>, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text.into_owned();
            }
        }
    }
}

/// A WebSocket origin on 127.0.0.1:0 echoing every message back, prefixed `echo: `.
pub struct WsEcho {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl WsEcho {
    pub async fn start() -> WsEcho {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let reply = match msg {
                            Message::Text(t) => Message::text(format!("echo: {}", t.as_str())),
                            Message::Binary(b) => Message::Binary(b),
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if ws.send(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        WsEcho { addr, shutdown }
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP origin answering every request with its name; stopping it also closes
/// its open keep-alive connections (unlike a plain accept loop), as a real stop does.
pub struct NamedOrigin {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl NamedOrigin {
    pub async fn start(name: &'static str) -> NamedOrigin {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(serve(
            listener,
            token,
            Duration::from_millis(200),
            move |s, _, t| async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(name.as_bytes())),
                    ))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(s), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = t.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            },
        ));
        NamedOrigin {
            addr,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Stops accepting and closes every connection; resolves when all are gone.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for NamedOrigin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A TLS origin offering h2 and http/1.1 by ALPN, answering `VERSION PATH` (e.g.
/// `HTTP/2.0 /x`), so a test can see which protocol the proxy used upstream. The
/// request's Forwarded field comes back in a `seen-forwarded` response field.
pub struct AlpnOrigin {
    pub addr: SocketAddr,
    pub cert: TestCert,
    shutdown: CancellationToken,
}

impl AlpnOrigin {
    pub async fn start(dir: &Path) -> AlpnOrigin {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let cert = TestCert::write(dir, "alpn-origin", &["localhost", "127.0.0.1"]);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.src.key).unwrap()
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der.clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let text = format!("{:?} {}", req.version(), req.uri().path());
                            let mut resp = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(text),
                            ));
                            if let Some(seen) = req.headers().get(http::header::FORWARDED) {
                                resp.headers_mut().insert("seen-forwarded", seen.clone());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        AlpnOrigin {
            addr,
            cert,
            shutdown,
        }
    }
}

impl Drop for AlpnOrigin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
