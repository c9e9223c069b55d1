//! Test builders: a proxy, plain and TLS origins on 127.0.0.1:0, raw and real clients.
//! Everything started here stops when its handle is stopped or dropped.

#![allow(dead_code)]

pub mod binary;
pub mod har_check;
pub mod proto;
pub mod raw;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use interpose::config::ForwardConfig;
use interpose::proxy::{conn::serve_connection, Engine};
use interpose::server::{serve, serve_limited};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A body type test origins can answer with (full, streamed, empty).
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A forward proxy running in this process.
pub struct TestProxy {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// A proxy with default settings on 127.0.0.1:0.
    pub async fn start() -> TestProxy {
        TestProxy::start_with(|_| {}).await
    }

    /// A proxy whose config `tune` adjusts (timeouts, auth, ports...).
    pub async fn start_with(tune: impl FnOnce(&mut ForwardConfig)) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cfg = ForwardConfig::new(addr);
        tune(&mut cfg);
        let (grace, max) = (cfg.grace, cfg.max_connections);
        let engine = Engine::new(cfg);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            serve_limited(listener, token, grace, max, move |s, p, t| {
                serve_connection(engine.clone(), s, p, t)
            })
            .await;
        });
        TestProxy {
            addr,
            shutdown,
            handle: Some(handle),
        }
    }

    /// `http://127.0.0.1:PORT`, for `-x` and reqwest proxies.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts graceful shutdown without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Graceful shutdown; resolves when the server task returned (after the grace period at most).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    /// The join handle, to observe when the server has finished shutting down.
    pub fn take_handle(&mut self) -> JoinHandle<()> {
        self.handle.take().unwrap()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP/1.1 origin server on 127.0.0.1:0 answering with a handler.
pub struct TestOrigin {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl TestOrigin {
    /// interpose's own echo server as the origin.
    pub async fn echo() -> TestOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(serve(
            listener,
            token,
            Duration::from_secs(1),
            interpose::echo::serve_echo_connection,
        ));
        TestOrigin { addr, shutdown }
    }

    /// An origin whose every request is answered by `handler`.
    pub async fn with_handler<F, Fut>(handler: F) -> TestOrigin
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        TestOrigin { addr, shutdown }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A full body for handler responses.
pub fn full(data: impl Into<Bytes>) -> TestBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A TLS origin (self-signed for localhost and 127.0.0.1) serving interpose's echo over HTTP/1.1.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The certificate in PEM, to trust it from clients (curl --cacert, reqwest).
    pub cert_pem: String,
    shutdown: CancellationToken,
}

impl TlsOrigin {
    pub async fn start() -> TlsOrigin {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let cert_pem = certified.cert.pem();
        let cert_der = certified.cert.der().clone();
        let key_der =
            rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (addr, shutdown) = tls_listener(config, |tls, peer| async move {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let text = format!("tls echo {} {} from {peer}\n", req.method(), req.uri());
                Ok::<_, Infallible>(Response::new(full(text)))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        })
        .await;
        TlsOrigin {
            addr,
            cert_pem,
            shutdown,
        }
    }

    /// Writes the certificate to a temp file for curl's --cacert; returns its path.
    pub fn cert_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join(format!("origin-{}.pem", self.addr.port()));
        std::fs::write(&path, &self.cert_pem).unwrap();
        path
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A reqwest client that sends everything through `proxy`.
pub fn client_via(proxy: &TestProxy) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends raw bytes to `addr`, half-closes nothing, and reads until the server closes
/// or `wait` passes with no new bytes. Returns everything read as (lossy) text.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_until_quiet(&mut stream, wait).await
}

/// Reads from `stream` until EOF or `wait` passes with nothing new.
pub async fn read_until_quiet(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "interpose-test-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs curl with `args` and returns (exit status ok, stdout, stderr).
pub async fn curl(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The built `interpose` binary with `args`: no RUST_LOG, stdin closed, stdout and
/// stderr piped, killed when the handle is dropped.
pub fn interpose_cmd(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_interpose"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Accepts TLS connections with `config` on 127.0.0.1 and hands each, with its peer
/// address, to `serve` (in a task of its own) until the returned token is cancelled.
pub async fn tls_listener<F, Fut>(
    config: rustls::ServerConfig,
    serve: F,
) -> (SocketAddr, CancellationToken)
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = token.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve(tls, peer).await;
                }
            });
        }
    });
    (addr, shutdown)
}

/// A raw origin on 127.0.0.1:0: each accepted connection goes, with its index (0, 1, ...),
/// to `serve` on a task of its own. Returns the address and the count of connections
/// accepted so far.
pub async fn counting_origin<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let index = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, index));
        }
    });
    (addr, accepted)
}
