//! Hostile input end to end (issue 6, item 4): the malformed and smuggling-style corpus
//! of `support/hostile_cases.rs` against every mode (forward; mitm with plain HTTP and
//! with TLS inside CONNECT; reverse over TLS), each case followed by a good request on a
//! fresh connection; then seeded random bytes and mutations of a valid request.
//! A recording origin shows exactly what each proxy relayed.

#[path = "support/hostile_cases.rs"]
mod hostile_cases;
#[path = "support/recording.rs"]
mod recording;
#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hostile_cases::{corpus, Case, Expect, Want};
use interpose::config::ForwardConfig;
use interpose::proxy::conn::serve_connection;
use interpose::proxy::intercept::Policy;
use interpose::proxy::peek::{classify, FirstBytes};
use interpose::proxy::Engine;
use interpose::server::serve;
use recording::{ConnRecord, RecordingOrigin, SeenRequest};
use reverse_support::{tls_connect, TestReverse};
use support::TestProxy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a read may wait before the proxy counts as silent.
const READ_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    MitmPlain,
    MitmTls,
    Reverse,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A proxy in one mode in front of its own recording origin.
struct Env {
    mode: Mode,
    proxy: SocketAddr,
    origin: RecordingOrigin,
    client_tls: tokio_rustls::TlsConnector,
    _keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// A CA, a leaf for localhost/127.0.0.1 it signed, and both TLS ends built on them.
struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn pki() -> Pki {
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
    async fn start(mode: Mode) -> Env {
        let pki = pki();
        let client_tls = tokio_rustls::TlsConnector::from(pki.client.clone());
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
            _keep: keep,
        }
    }

    /// `{T}` and `{H}` for this mode.
    fn target_and_host(&self) -> (String, String) {
        let host = format!("127.0.0.1:{}", self.origin.addr.port());
        match self.mode {
            Mode::Forward => (format!("http://{host}"), host),
            Mode::MitmPlain | Mode::MitmTls => (String::new(), host),
            Mode::Reverse => (String::new(), "localhost".into()),
        }
    }

    /// A client connection ready for requests in this mode.
    async fn open(&self) -> Box<dyn Io> {
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

    /// A good request on a fresh connection must get the origin's 200.
    async fn assert_serves(&self, after: &str) {
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
async fn start_mitm(pki: &Pki) -> (SocketAddr, CancellationToken) {
    let policy = Policy {
        client_tls: Arc::new(pki.server.clone()),
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
async fn read_head(s: &mut TcpStream) -> String {
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
enum Outcome {
    /// A response with this status (its body read when it has a length).
    Status(u16),
    /// Closed (or reset) without a response.
    Closed,
    /// Nothing for `READ_WAIT`.
    Silent,
}

impl Outcome {
    fn is_refusal(&self) -> bool {
        match self {
            Outcome::Status(s) => (400..500).contains(s),
            Outcome::Closed => true,
            Outcome::Silent => false,
        }
    }
}

async fn read_outcome(conn: &mut Box<dyn Io>) -> Outcome {
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

/// Runs one case; returns whether it went through a blind tunnel.
async fn run_case(env: &Env, index: usize, case: &Case) -> bool {
    let path = format!("/k{index:03}z");
    let (target, host) = env.target_and_host();
    let bytes = case.render(&target, &host, &path);
    let blind = env.mode == Mode::MitmPlain && classify(&bytes) != FirstBytes::PlainHttp;
    let conns_before = env.origin.snapshot().len();
    let mut conn = env.open().await;
    let _ = conn.write_all(&bytes).await;
    let _ = conn.flush().await;
    let name = format!("{:?} case {index} {}", env.mode, case.name);
    let expect = case.expect(
        matches!(env.mode, Mode::MitmPlain | Mode::MitmTls),
        env.mode == Mode::Reverse,
    );
    if let Expect::PriorKnowledgeH2 = expect {
        let mut head = [0u8; 9];
        let read = tokio::time::timeout(READ_WAIT, conn.read_exact(&mut head)).await;
        assert!(
            matches!(read, Ok(Ok(_))) && head[3] == 4,
            "{name}: expected the server's h2 SETTINGS, got {head:?}"
        );
        assert!(!env.origin.saw_bytes(path.as_bytes()), "{name}");
        return false;
    }
    let outcome = read_outcome(&mut conn).await;
    if blind {
        // Not HTTP-looking: a blind tunnel, by design. The origin gets the very bytes.
        drop(conn);
        let got = wait_for(|| {
            let conns = env.origin.snapshot();
            conns[conns_before..].iter().any(|c| c.bytes == bytes)
        })
        .await;
        assert!(
            got,
            "{name}: blind tunnel did not carry the bytes unchanged"
        );
        return true;
    }
    let marker = |r: &SeenRequest| r.target.contains(&path);
    match expect {
        Expect::Reject => {
            assert!(
                outcome.is_refusal(),
                "{name}: expected 4xx or close, got {outcome:?}"
            );
            assert!(
                !env.origin.saw_bytes(path.as_bytes()),
                "{name}: bytes reached the origin: {:?}",
                env.origin.snapshot().last()
            );
        }
        Expect::RejectBody => {
            assert!(
                outcome.is_refusal(),
                "{name}: expected 4xx or close, got {outcome:?}"
            );
            let complete = env.origin.requests().into_iter().filter(marker).count();
            assert_eq!(complete, 0, "{name}: a complete request reached the origin");
        }
        Expect::Accept(want) => {
            assert_eq!(outcome, Outcome::Status(200), "{name}: expected acceptance");
            let seen: Vec<SeenRequest> = env.origin.requests().into_iter().filter(marker).collect();
            assert_eq!(seen.len(), 1, "{name}: origin saw {seen:#?}");
            check_want(&name, &seen[0], &want);
        }
        Expect::PriorKnowledgeH2 => unreachable!(),
    }
    false
}

fn check_want(name: &str, seen: &SeenRequest, want: &Want) {
    assert_eq!(seen.method, want.method, "{name}");
    assert_eq!(seen.body, want.body, "{name}: body");
    for (n, v) in want.has {
        assert_eq!(seen.values(n), vec![*v], "{name}: header {n}");
    }
    for n in want.absent {
        assert!(seen.values(n).is_empty(), "{name}: {n} arrived: {seen:?}");
    }
    for needle in want.absent_raw {
        let raw = String::from_utf8_lossy(&seen.raw);
        assert!(
            !raw.contains(needle),
            "{name}: {needle:?} arrived in {raw:?}"
        );
    }
    for n in want.absent_trailers {
        assert!(
            !seen.trailers.iter().any(|(t, _)| t == n),
            "{name}: trailer {n} arrived: {:?}",
            seen.trailers
        );
    }
}

/// Polls `f` for up to two seconds.
async fn wait_for(f: impl Fn() -> bool) -> bool {
    for _ in 0..40 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// No upstream connection carried unparseable bytes or leftovers, except blind tunnels.
async fn assert_origin_clean(env: &Env, blind: &[Vec<u8>]) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, c) in env.origin.snapshot().iter().enumerate() {
        if blind.iter().any(|b| c.bytes.starts_with(b)) {
            continue;
        }
        let ConnRecord {
            invalid, closed, ..
        } = c;
        assert!(
            !invalid,
            "{:?}: origin conn {i} got unparseable bytes: {:?}",
            env.mode,
            String::from_utf8_lossy(&c.bytes)
        );
        for r in &c.requests {
            assert!(
                r.target.starts_with("/k") || r.target == "/good",
                "{:?}: a request nobody sent reached the origin: {r:?}",
                env.mode
            );
        }
        assert!(
            c.leftover() == 0 || *closed,
            "{:?}: origin conn {i} holds {} unframed bytes and stays open",
            env.mode,
            c.leftover()
        );
    }
}

async fn run_corpus(mode: Mode) {
    let env = Arc::new(Env::start(mode).await);
    env.assert_serves("start").await;
    let cases = Arc::new(corpus());
    assert!(cases.len() >= 60, "corpus has {} cases", cases.len());
    let (mut blind, mut failed) = (Vec::new(), Vec::new());
    for i in 0..cases.len() {
        // Each case in its own task, so one failure still shows all the others.
        let (e, c) = (env.clone(), cases.clone());
        match tokio::spawn(async move { run_case(&e, i, &c[i]).await }).await {
            Ok(true) => {
                let (t, h) = env.target_and_host();
                blind.push(cases[i].render(&t, &h, &format!("/k{i:03}z")));
            }
            Ok(false) => {}
            Err(_) => failed.push(cases[i].name),
        }
        env.assert_serves(cases[i].name).await;
    }
    assert!(failed.is_empty(), "{mode:?}: failed cases {failed:?}");
    assert_origin_clean(&env, &blind).await;
    eprintln!("{mode:?}: {} cases, {} blind", cases.len(), blind.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_forward() {
    run_corpus(Mode::Forward).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_mitm_plain_inside_connect() {
    run_corpus(Mode::MitmPlain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_mitm_tls_inside_connect() {
    run_corpus(Mode::MitmTls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_reverse_tls_h1() {
    run_corpus(Mode::Reverse).await;
}

/// Connections per mode in the random-bytes run.
const FUZZ_CONNECTIONS: usize = 300;

/// xorshift64*: a fixed seed gives the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes, or a valid request with a few random edits (the bytes parsers trip on).
fn fuzz_payload(rng: &mut Rng, valid: &[u8], i: usize) -> Vec<u8> {
    if i.is_multiple_of(2) {
        let len = 1 + rng.below(1500);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    const SHARP: &[u8] = b"\r\n\0 \t:;,0fF-+\"\x0b\x7f\xff";
    let mut out = valid.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(out.len().max(1));
        match rng.below(3) {
            0 => out.insert(at, SHARP[rng.below(SHARP.len())]),
            1 if out.len() > 1 => {
                out.remove(at);
            }
            _ => {
                if let Some(b) = out.get_mut(at) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
    out
}

async fn run_fuzz(mode: Mode, seed: u64) {
    let env = Arc::new(Env::start(mode).await);
    let (target, host) = env.target_and_host();
    let valid = format!(
        "POST {target}/fuzz HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    );
    let mut rng = Rng(seed);
    for batch in 0..FUZZ_CONNECTIONS / 25 {
        let mut tasks = tokio::task::JoinSet::new();
        for j in 0..25 {
            let i = batch * 25 + j;
            let payload = fuzz_payload(&mut rng, valid.as_bytes(), i);
            // Against reverse, every third connection skips TLS: raw bytes on the socket.
            let raw_socket = mode == Mode::Reverse && i % 3 == 0;
            let env = env.clone();
            tasks.spawn(async move {
                let mut chunk = [0u8; 4096];
                if raw_socket {
                    let mut s = TcpStream::connect(env.proxy).await.unwrap();
                    let _ = s.write_all(&payload).await;
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), s.read(&mut chunk)).await;
                    return;
                }
                let mut conn = env.open().await;
                let _ = conn.write_all(&payload).await;
                let _ = conn.flush().await;
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), conn.read(&mut chunk)).await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    }
    env.assert_serves("random bytes").await;
    if mode != Mode::MitmPlain {
        // Whatever the proxy relayed, it relayed as well-framed requests.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for c in env.origin.snapshot() {
            assert!(
                !c.invalid,
                "{mode:?}: relayed unparseable bytes: {:?}",
                String::from_utf8_lossy(&c.bytes)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_forward() {
    run_fuzz(Mode::Forward, 0x5eed_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_mitm_plain() {
    run_fuzz(Mode::MitmPlain, 0x5eed_0002).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_mitm_tls() {
    run_fuzz(Mode::MitmTls, 0x5eed_0003).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_reverse() {
    run_fuzz(Mode::Reverse, 0x5eed_0004).await;
}
