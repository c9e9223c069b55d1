//! `--dump headers`: the binary prints each request head as sent upstream and each
//! response head as received, on stdout after the startup lines, credentials redacted.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_headers_shows_both_heads_with_secrets_redacted() {
    let origin = TestOrigin::echo().await;
    let (_child, mut lines, addr) =
        start(&["forward", "--listen", "127.0.0.1:0", "--dump", "headers"]).await;
    let (ok, _, err) = curl(&[
        "-x",
        &format!("http://{addr}"),
        "-H",
        "Authorization: Bearer top-secret",
        &origin.url("/dumped?q=1"),
    ])
    .await;
    assert!(ok, "{err}");
    let text = read_until(&mut lines, " 200 up=").await;
    assert!(text.contains("> GET /dumped?q=1 HTTP/1.1"), "{text}");
    assert!(text.contains("> authorization: <redacted>"), "{text}");
    assert!(text.contains("> via: 1.1 interpose-"), "{text}");
    assert!(text.contains("< HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("< content-type: text/plain"), "{text}");
    assert!(!text.contains("top-secret"), "{text}");
}

/// Starts the binary with `args` and returns it with the lines of its stdout after the
/// startup line, and the listening address.
async fn start(
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    String,
) {
    let mut child = interpose_cmd(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    (child, lines, addr)
}

/// Collects stdout lines until one contains `until`.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    until: &str,
) -> String {
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(until)) {
        let line = timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {until:?} in:\n{}", seen.join("\n")))
            .unwrap()
            .unwrap();
        seen.push(line);
    }
    seen.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_bodies_shows_decoded_capped_bodies_while_they_pass_untouched() {
    use std::io::Write as _;
    let text: String = (0..2000)
        .map(|i| format!("line {i} of the page\n"))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = bytes::Bytes::from(gz.finish().unwrap());
    let wire = gz.clone();
    let origin = TestOrigin::with_handler(move |_req| {
        let wire = wire.clone();
        async move {
            http::Response::builder()
                .header("content-type", "text/plain")
                .header("content-encoding", "gzip")
                .body(full(wire))
                .unwrap()
        }
    })
    .await;
    let (_child, mut lines, addr) = start(&[
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--dump",
        "bodies",
        "--dump-max-body",
        "1k",
    ])
    .await;
    let (ok, out, err) = curl(&[
        "-x",
        &format!("http://{addr}"),
        "--compressed",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Cookie: session=top-secret",
        "--data",
        r#"{"user":"alice"}"#,
        &origin.url("/form"),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, text, "the body reaches the client untouched");
    let dump = read_until(&mut lines, " 200 up=").await;
    assert!(dump.contains("> POST /form HTTP/1.1"), "{dump}");
    assert!(dump.contains("> cookie: <redacted>"), "{dump}");
    assert!(!dump.contains("top-secret"), "{dump}");
    assert!(
        dump.contains("\n>\n> {\"user\":\"alice\"}\n< HTTP/1.1 200 OK"),
        "{dump}"
    );
    assert!(dump.contains("< content-encoding: gzip"), "{dump}");
    assert!(
        dump.contains("\n<\n< line 0 of the page\n< line 1 of the page"),
        "{dump}"
    );
    let note = format!(
        "< … (1024 decoded bytes shown, from {} of {} gzip bytes)",
        gz.len().min(1024),
        gz.len()
    );
    assert!(dump.contains(&note), "{dump}");
    assert!(!dump.contains("line 1000 of the page"), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_bodies_works_inside_interception() {
    let dir = TempDir::new("dump-mitm");
    let origin = TlsOrigin::start().await;
    let origin_ca = origin.cert_file(dir.path());
    let ca_dir = dir.path().join("ca");
    let (_child, mut lines, addr) = start(&[
        "mitm",
        "--listen",
        "127.0.0.1:0",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--upstream-ca",
        origin_ca.to_str().unwrap(),
        "--dump",
        "bodies",
    ])
    .await;
    // The startup hint line.
    read_until(&mut lines, "try:").await;
    let url = format!("https://localhost:{}/inside", origin.addr.port());
    let (ok, out, err) = curl(&[
        "-x",
        &format!("http://{addr}"),
        "--cacert",
        ca_dir.join("ca.pem").to_str().unwrap(),
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("tls echo GET /inside"), "{out}");
    let dump = read_until(&mut lines, "GET https://localhost").await;
    // curl offers h2, which the interception now serves.
    assert!(
        dump.contains("> GET /inside HTTP/2") || dump.contains("> GET /inside HTTP/1.1"),
        "{dump}"
    );
    assert!(
        dump.contains("\n<\n< tls echo GET /inside from 127.0.0.1:"),
        "{dump}"
    );
    // The intercepting proxy's access line reads as mitmdump's: status, reason, size, time.
    let access = dump.lines().last().unwrap();
    let expected = format!(" GET {url} -> 200 OK {} B ", out.len());
    assert!(access.contains(&expected), "{access}");
    assert!(access.ends_with(" ms"), "{access}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_secrets_shows_credentials_but_not_proxy_authorization() {
    let origin = TestOrigin::with_handler(|_req| async {
        http::Response::builder()
            .header("set-cookie", "id=visible-cookie")
            .body(full("ok\n"))
            .unwrap()
    })
    .await;
    let (_child, mut lines, addr) = start(&[
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "user:proxy-pass",
        "--dump",
        "headers",
        "--dump-secrets",
    ])
    .await;
    let (ok, _, err) = curl(&[
        "-x",
        &format!("http://user:proxy-pass@{addr}"),
        "-H",
        "Authorization: Bearer shown-token",
        "-H",
        "Cookie: session=shown-session",
        &origin.url("/secrets"),
    ])
    .await;
    assert!(ok, "{err}");
    let text = read_until(&mut lines, " 200 up=").await;
    assert!(
        text.contains("> authorization: Bearer shown-token"),
        "{text}"
    );
    assert!(text.contains("> cookie: session=shown-session"), "{text}");
    assert!(text.contains("< set-cookie: id=visible-cookie"), "{text}");
    // The proxy's own credentials are consumed here, never forwarded nor shown.
    assert!(!text.contains("proxy-pass"), "{text}");
    assert!(!text.contains("dXNlcjpwcm94eS1wYXNz"), "{text}");
}
