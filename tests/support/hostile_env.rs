//! The proxies the hostile tests run against, one per mode, each in front of its own
//! recording origin: forward; mitm with plain HTTP or TLS inside CONNECT (a test CA
//! signs the leaf the client sees and the origin's); reverse over TLS. Plus a client
//! connection ready for requests in each mode and a reader of how the proxy answered.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use interpose::config::ForwardConfig;
use interpose::proxy::conn::serve_connection;
use interpose::proxy::intercept::Policy;
use interpose::proxy::Engine;
use interpose::server::serve;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::recording::RecordingOrigin;
use crate::reverse_support::{tls_connect, TestReverse};
use crate::support::TestProxy;

/// How long a read may wait before the proxy counts as silent.
pub const READ_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    MitmPlain,
    MitmTls,
    Reverse,
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A proxy in one mode in front of its own recording origin.
pub struct Env {
    pub mode: Mode,
    pub proxy: SocketAddr,
    pub origin: RecordingOrigin,
    client_tls: tokio_rustls::TlsConnector,
    client_h2: tokio_rustls::TlsConnector,
    _keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// A CA, a leaf for localhost/127.0.0.1 it signed, and both TLS ends built on them.
pub struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl Pki {
    /// The same server end offering HTTP/2 as well: what mitm presents to its clients.
    fn server_h2(&self) -> Arc<rustls::ServerConfig> {
        let mut config = self.server.as_ref().clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// The client end offering only HTTP/2.
    fn client_h2(&self) -> Arc<rustls::ClientConfig> {
        let mut config = self.client.as_ref().clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}

pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = interpose::tls::provider();
    let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Pki {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

impl Env {
    pub async fn start(mode: Mode) -> Env {
        let pki = pki();
        let client_tls = tokio_rustls::TlsConnector::from(pki.client.clone());
        let client_h2 = tokio_rustls::TlsConnector::from(pki.client_h2());
        let origin_tls =
            (mode == Mode::MitmTls).then(|| tokio_rustls::TlsAcceptor::from(pki.server.clone()));
        let origin = RecordingOrigin::start(origin_tls).await;
        let mut keep: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        let proxy = match mode {
            Mode::Forward => {
                let p = TestProxy::start().await;
                let addr = p.addr;
                keep.push(Box::new(p));
                addr
            }
            Mode::MitmPlain | Mode::MitmTls => {
                let (addr, token) = start_mitm(&pki).await;
                keep.push(Box::new(token.drop_guard()));
                addr
            }
            Mode::Reverse => {
                let r = TestReverse::start(&[origin.addr.to_string()], |_| {}).await;
                let addr = r.addr;
                keep.push(Box::new(r));
                addr
            }
        };
        Env {
            mode,
            proxy,
            origin,
            client_tls,
            client_h2,
            _keep: keep,
        }
    }

    /// `{T}` and `{H}` for this mode.
    pub fn target_and_host(&self) -> (String, String) {
        let host = format!("127.0.0.1:{}", self.origin.addr.port());
        match self.mode {
            Mode::Forward => (format!("http://{host}"), host),
            Mode::MitmPlain | Mode::MitmTls => (String::new(), host),
            Mode::Reverse => (String::new(), "localhost".into()),
        }
    }

    /// A client connection ready for requests in this mode.
    pub async fn open(&self) -> Box<dyn Io> {
        match self.mode {
            Mode::Forward => Box::new(TcpStream::connect(self.proxy).await.unwrap()),
            Mode::MitmPlain | Mode::MitmTls => {
                let mut tcp = TcpStream::connect(self.proxy).await.unwrap();
                let connect = format!(
                    "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
                    self.origin.addr.port()
                );
                tcp.write_all(connect.as_bytes()).await.unwrap();
                let head = read_head(&mut tcp).await;
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                if self.mode == Mode::MitmPlain {
                    return Box::new(tcp);
                }
                let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                Box::new(self.client_tls.connect(name, tcp).await.unwrap())
            }
            Mode::Reverse => Box::new(tls_connect(self.proxy, "localhost", &[b"http/1.1"]).await),
        }
    }

    /// In `MitmTls` mode: a CONNECT to the origin and TLS inside it with ALPN `h2` only,
    /// ready for the HTTP/2 preface.
    pub async fn open_h2(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        assert_eq!(self.mode, Mode::MitmTls);
        let mut tcp = TcpStream::connect(self.proxy).await.unwrap();
        let connect = format!(
            "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
            self.origin.addr.port()
        );
        tcp.write_all(connect.as_bytes()).await.unwrap();
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = self.client_h2.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls
    }

    /// A good request on a fresh connection must get the origin's 200.
    pub async fn assert_serves(&self, after: &str) {
        let (target, host) = self.target_and_host();
        let mut conn = self.open().await;
        let req =
            format!("GET {target}/good HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let outcome = read_outcome(&mut conn).await;
        assert_eq!(
            outcome,
            Outcome::Status(200),
            "{:?}: good request after {after}",
            self.mode
        );
    }
}

/// Starts an intercepting engine whose leaf and upstream trust come from `pki`.
pub async fn start_mitm(pki: &Pki) -> (SocketAddr, CancellationToken) {
    let policy = Policy {
        client_tls: Arc::new(pki.server_h2()),
        ignore_hosts: Vec::new(),
        auto_passthrough: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(pki.client.clone());
    let engine = Engine::with_interception(ForwardConfig::new(addr), Some((policy, connector)));
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

/// Reads a response head byte by byte (so nothing after it is consumed).
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(READ_WAIT, s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed inside a head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// How the proxy answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status (its body read when it has a length).
    Status(u16),
    /// Closed (or reset) without a response.
    Closed,
    /// Nothing for `READ_WAIT`.
    Silent,
}

impl Outcome {
    pub fn is_refusal(&self) -> bool {
        match self {
            Outcome::Status(s) => (400..500).contains(s),
            Outcome::Closed => true,
            Outcome::Silent => false,
        }
    }
}

pub async fn read_outcome(conn: &mut Box<dyn Io>) -> Outcome {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if status == 100 {
                buf.drain(..end + 4);
                continue;
            }
            return Outcome::Status(status);
        }
        match tokio::time::timeout(READ_WAIT, conn.read(&mut chunk)).await {
            Err(_) => return Outcome::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return if buf.is_empty() {
                    Outcome::Closed
                } else {
                    Outcome::Status(0)
                }
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
