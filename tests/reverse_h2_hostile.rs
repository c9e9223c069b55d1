//! HTTP/2 against `interpose reverse` and inside `interpose mitm`, written frame by frame
//! over TLS (ALPN h2): invalid frames and pseudo-headers are refused (RST_STREAM, GOAWAY
//! or a 4xx) and never reach the origin; a rapid-reset flood (CVE-2023-44487) and a flood of streams we must reset
//! (MadeYouReset, CVE-2025-8671) end the connection with GOAWAY while a fresh connection
//! is still served; the stream past `--h2-max-streams` is refused.

#[path = "support/hostile_env.rs"]
mod hostile_env;
#[path = "support/recording.rs"]
mod recording;
#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hostile_env::{Env, Mode};
use recording::RecordingOrigin;
use reverse_support::{https_client, tls_connect, TestReverse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const REFUSED_STREAM: u32 = 7;
const ENHANCE_YOUR_CALM: u32 = 11;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK header block of literal fields (not indexed); names and values < 127 bytes.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0x00);
        out.push(n.len() as u8);
        out.extend_from_slice(n.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn get_fields(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "https".into()),
        (":path", path.into()),
        (":authority", "localhost".into()),
    ]
}

fn as_refs<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// What the server said first about our stream or connection.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Reset(u32, u32),
    GoAway(u32),
    /// A response HEADERS block: its first byte (0x88 is `:status 200`).
    Response(u8),
    Closed,
    Silent,
}

struct H2Conn {
    tls: TlsStream<TcpStream>,
}

impl H2Conn {
    /// TLS with ALPN h2, the preface, our empty SETTINGS, and the ACK of the server's.
    async fn open(addr: std::net::SocketAddr) -> H2Conn {
        H2Conn::start(tls_connect(addr, "localhost", &[b"h2"]).await).await
    }

    /// The preface, our empty SETTINGS, and the ACK of the server's, on `tls`.
    async fn start(tls: TlsStream<TcpStream>) -> H2Conn {
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut conn = H2Conn { tls };
        conn.send(&[PREFACE.to_vec(), frame(SETTINGS, 0, 0, &[])].concat())
            .await;
        conn.send(&frame(SETTINGS, 1, 0, &[])).await;
        conn
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.tls.write_all(bytes).await;
        let _ = self.tls.flush().await;
    }

    async fn read_frame(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        self.tls.read_exact(&mut head).await.ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        self.tls.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], stream, payload))
    }

    /// Reads until the server resets a stream, sends GOAWAY, answers, or closes.
    async fn answer(&mut self, wait: Duration) -> Answer {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.read_frame()).await;
            let Ok(next) = next else {
                return Answer::Silent;
            };
            let Some((kind, _, stream, payload)) = next else {
                return Answer::Closed;
            };
            let code = |at: usize| {
                payload
                    .get(at..at + 4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            match kind {
                RST_STREAM => return Answer::Reset(stream, code(0)),
                GOAWAY => return Answer::GoAway(code(4)),
                HEADERS => return Answer::Response(payload.first().copied().unwrap_or(0)),
                _ => {}
            }
        }
    }
}

/// Log output of this test binary, captured to check the line a tripped limit writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .init();
        logs
    })
}

/// Waits up to two seconds for a log line containing `needle` from `client`.
async fn logged(needle: &str, client: std::net::SocketAddr) -> bool {
    for _ in 0..40 {
        let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
        if text
            .lines()
            .any(|l| l.contains(needle) && l.contains(&client.to_string()))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A reverse proxy in front of a recording origin.
async fn start(
    tune: impl FnOnce(&mut interpose::reverse::config::ReverseConfig),
) -> (TestReverse, RecordingOrigin) {
    let origin = RecordingOrigin::start(None).await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], tune).await;
    (proxy, origin)
}

/// A good request over HTTP/2 on a fresh connection gets the origin's 200.
async fn assert_serves_h2(proxy: &TestReverse, after: &str) {
    let pem = proxy.proxy.self_signed().unwrap().cert_pem.clone();
    let resp = https_client(&pem, proxy.addr)
        .get(proxy.url("/good"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("after {after}: {e}"));
    assert_eq!(resp.version(), http::Version::HTTP_2, "after {after}");
    assert_eq!(resp.status(), 200, "after {after}");
}

/// Requests no server may accept: invalid frames and pseudo-headers (each on a fresh
/// connection, after the preface).
fn bad_requests() -> Vec<(&'static str, Vec<u8>)> {
    let with = |extra: &[(&'static str, &'static str)], path: &str| {
        let mut f = get_fields(path);
        f.extend(extra.iter().map(|(n, v)| (*n, v.to_string())));
        f
    };
    let headers = |fields: Vec<(&'static str, String)>| {
        frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &block(&as_refs(&fields)),
        )
    };
    vec![
        (
            "unknown_pseudo",
            headers(with(&[(":foo", "bar")], "/h2bad-1")),
        ),
        ("missing_path", {
            let mut f = get_fields("/h2bad-2");
            f.retain(|(n, _)| *n != ":path");
            headers(f)
        }),
        ("missing_method", {
            let mut f = get_fields("/h2bad-3");
            f.retain(|(n, _)| *n != ":method");
            headers(f)
        }),
        (
            "uppercase_name",
            headers(with(&[("X-Upper", "1")], "/h2bad-4")),
        ),
        (
            "connection_header",
            headers(with(&[("connection", "keep-alive")], "/h2bad-5")),
        ),
        ("te_gzip", headers(with(&[("te", "gzip")], "/h2bad-6"))),
        (
            "transfer_encoding",
            headers(with(&[("transfer-encoding", "chunked")], "/h2bad-7")),
        ),
        (
            "duplicate_path",
            headers(with(&[(":path", "/other")], "/h2bad-8")),
        ),
        ("pseudo_after_regular", {
            let mut f = vec![("x-a", "1".to_string())];
            f.extend(get_fields("/h2bad-9"));
            headers(f)
        }),
        (
            "response_pseudo_in_request",
            headers(with(&[(":status", "200")], "/h2bad-10")),
        ),
        ("empty_path", {
            let mut f = get_fields("/h2bad-11");
            f.retain(|(n, _)| *n != ":path");
            f.push((":path", String::new()));
            headers(f)
        }),
        (
            "upgrade_header",
            headers(with(&[("upgrade", "websocket")], "/h2bad-12")),
        ),
        (
            "headers_on_stream_0",
            frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                0,
                &block(&as_refs(&get_fields("/h2bad-13"))),
            ),
        ),
        (
            "even_stream_id",
            frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                2,
                &block(&as_refs(&get_fields("/h2bad-14"))),
            ),
        ),
        ("data_on_idle_stream", frame(DATA, END_STREAM, 3, b"hello")),
        ("settings_bad_length", frame(SETTINGS, 0, 0, &[0, 3, 0, 0])),
        (
            "window_update_zero",
            [
                frame(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &block(&as_refs(&get_fields("/h2bad-17"))),
                ),
                frame(WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0]),
            ]
            .concat(),
        ),
        (
            "garbage_hpack",
            frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                1,
                &[0xff, 0xff, 0xff, 0xff, 0x7f],
            ),
        ),
    ]
}

/// Where the frames go: the reverse proxy, or an intercepted tunnel (HTTP/2 inside mitm).
enum Target<'a> {
    Reverse(&'a TestReverse),
    Mitm(&'a Env),
}

impl Target<'_> {
    async fn tls(&self) -> TlsStream<TcpStream> {
        match self {
            Target::Reverse(proxy) => tls_connect(proxy.addr, "localhost", &[b"h2"]).await,
            Target::Mitm(env) => env.open_h2().await,
        }
    }

    async fn open(&self) -> H2Conn {
        H2Conn::start(self.tls().await).await
    }

    async fn assert_serves(&self, after: &str) {
        match self {
            Target::Reverse(proxy) => assert_serves_h2(proxy, after).await,
            Target::Mitm(env) => {
                let mut conn = self.open().await;
                let fields = get_fields("/good");
                let get = frame(
                    HEADERS,
                    END_STREAM | END_HEADERS,
                    1,
                    &block(&as_refs(&fields)),
                );
                conn.send(&get).await;
                let answer = conn.answer(Duration::from_secs(5)).await;
                assert_eq!(
                    answer,
                    Answer::Response(0x88),
                    "{:?} after {after}",
                    env.mode
                );
            }
        }
    }
}

/// Sends a bad preface and every bad request: each is refused (a reset with an error,
/// GOAWAY, a close or a 4xx), a good request is served after each, and none reached
/// the origin.
async fn refuses_every_bad_request(target: Target<'_>, origin: &RecordingOrigin) {
    let mut bad = H2Conn {
        tls: target.tls().await,
    };
    bad.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await;
    let answer = bad.answer(Duration::from_secs(5)).await;
    assert!(
        matches!(answer, Answer::GoAway(_) | Answer::Closed),
        "bad preface: {answer:?}"
    );
    target.assert_serves("bad preface").await;
    for (name, bytes) in bad_requests() {
        let mut conn = target.open().await;
        conn.send(&bytes).await;
        let answer = conn.answer(Duration::from_secs(5)).await;
        let refused = match answer {
            Answer::Reset(_, code) => code != 0,
            Answer::GoAway(_) | Answer::Closed => true,
            // A literal or indexed :status other than 200/204/206/304.
            Answer::Response(first) => !(0x88..=0x8b).contains(&first),
            Answer::Silent => false,
        };
        assert!(refused, "{name}: got {answer:?}");
        target.assert_serves(name).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in origin.requests() {
        assert_eq!(
            r.target, "/good",
            "a refused h2 request reached the origin: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_frames_and_pseudo_headers_are_refused() {
    let (proxy, origin) = start(|_| {}).await;
    refuses_every_bad_request(Target::Reverse(&proxy), &origin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_frames_inside_interception_are_refused() {
    let env = Env::start(Mode::MitmTls).await;
    refuses_every_bad_request(Target::Mitm(&env), &env.origin).await;
}

/// 500 streams opened and reset at once (CVE-2023-44487): the connection ends with
/// GOAWAY ENHANCE_YOUR_CALM and a log line naming the client; a new one is served.
async fn rapid_reset_flood_ends_with_goaway(target: Target<'_>, tag: &str) {
    logs();
    let mut conn = target.open().await;
    let client = conn.tls.get_ref().0.local_addr().unwrap();
    let mut flood = Vec::new();
    for i in 0..500u32 {
        let id = 1 + 2 * i;
        let path = format!("/rapid-{tag}-{i}");
        flood.extend(frame(
            HEADERS,
            END_HEADERS,
            id,
            &block(&as_refs(&get_fields(&path))),
        ));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    conn.send(&flood).await;
    let answer = loop {
        match conn.answer(Duration::from_secs(10)).await {
            Answer::Reset(..) | Answer::Response(_) => continue,
            other => break other,
        }
    };
    assert_eq!(answer, Answer::GoAway(ENHANCE_YOUR_CALM));
    drop(conn);
    assert!(
        logged("too many reset streams", client).await,
        "no log line for the tripped limit"
    );
    target.assert_serves(&format!("rapid reset ({tag})")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_flood_ends_the_connection_with_goaway() {
    let (proxy, _origin) = start(|_| {}).await;
    rapid_reset_flood_ends_with_goaway(Target::Reverse(&proxy), "reverse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_flood_inside_interception_ends_with_goaway() {
    let env = Env::start(Mode::MitmTls).await;
    rapid_reset_flood_ends_with_goaway(Target::Mitm(&env), "mitm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_you_reset_flood_ends_the_connection_with_goaway() {
    let (proxy, _origin) = start(|c| c.h2_max_error_resets = 10).await;
    let mut conn = H2Conn::open(proxy.addr).await;
    let mut flood = Vec::new();
    // Each stream's HEADERS carries a connection-specific field: a malformed request,
    // a stream error we must answer with RST_STREAM (a reset the server did not choose).
    for i in 0..200u32 {
        let id = 1 + 2 * i;
        let mut fields = get_fields(&format!("/myr-{i}"));
        fields.push(("connection", "keep-alive".into()));
        flood.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &block(&as_refs(&fields)),
        ));
    }
    conn.send(&flood).await;
    let answer = loop {
        match conn.answer(Duration::from_secs(10)).await {
            Answer::Reset(..) | Answer::Response(_) => continue,
            other => break other,
        }
    };
    assert_eq!(answer, Answer::GoAway(ENHANCE_YOUR_CALM));
    assert_serves_h2(&proxy, "MadeYouReset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_past_the_limit_is_refused() {
    let (proxy, _origin) = start(|c| c.h2_max_streams = 3).await;
    let mut conn = H2Conn::open(proxy.addr).await;
    // Four streams left open (no END_STREAM): the fourth is one too many.
    let mut burst = Vec::new();
    for i in 0..4u32 {
        let path = format!("/open-{i}");
        burst.extend(frame(
            HEADERS,
            END_HEADERS,
            1 + 2 * i,
            &block(&as_refs(&get_fields(&path))),
        ));
    }
    conn.send(&burst).await;
    assert_eq!(
        conn.answer(Duration::from_secs(5)).await,
        Answer::Reset(7, REFUSED_STREAM)
    );
    assert_serves_h2(&proxy, "refused stream").await;
}
