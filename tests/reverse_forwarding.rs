//! What the origin sees through `interpose reverse`: X-Forwarded-* and Forwarded
//! (replaced from an untrusted peer, extended from a trusted one), Host handling,
//! path prefixes and hop-by-hop removal.

#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use reverse_support::*;
use support::*;

/// Header lines of the echo origin's answer, lower-case `name: value`.
fn header<'a>(echo: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    echo.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

async fn get(proxy: &TestReverse, path: &str, headers: &[&str]) -> String {
    // HTTP/1.1: curl itself drops Connection-listed headers over h2.
    let mut args = vec![
        "--http1.1".to_string(),
        "-k".into(),
        "--resolve".into(),
        proxy.resolve(),
    ];
    for h in headers {
        args.push("-H".into());
        args.push(h.to_string());
    }
    args.push(proxy.url(path));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = curl(&args).await;
    assert!(ok, "{err}");
    out
}

const SPOOF: [&str; 4] = [
    "X-Forwarded-For: 6.6.6.6",
    "X-Forwarded-Proto: http",
    "X-Forwarded-Host: evil.example",
    "Forwarded: for=6.6.6.6;proto=http",
];

#[tokio::test]
async fn spoofed_values_from_untrusted_peer_are_replaced() {
    let origin = TestOrigin::echo().await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |_| {}).await;
    let port = proxy.addr.port();
    let out = get(&proxy, "/", &SPOOF).await;
    assert_eq!(header(&out, "x-forwarded-for"), ["127.0.0.1"], "{out}");
    assert_eq!(header(&out, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        header(&out, "x-forwarded-host"),
        [format!("localhost:{port}")]
    );
    assert_eq!(
        header(&out, "forwarded"),
        [format!(
            "for=127.0.0.1;proto=https;host=\"localhost:{port}\""
        )]
    );
    assert!(!out.contains("6.6.6.6") && !out.contains("evil"), "{out}");
}

#[tokio::test]
async fn values_from_trusted_peer_are_kept_and_extended() {
    let origin = TestOrigin::echo().await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let port = proxy.addr.port();
    let out = get(&proxy, "/", &SPOOF).await;
    assert_eq!(
        header(&out, "x-forwarded-for"),
        ["6.6.6.6, 127.0.0.1"],
        "{out}"
    );
    assert_eq!(header(&out, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(&out, "x-forwarded-host"), ["evil.example"]);
    assert_eq!(
        header(&out, "forwarded"),
        [format!(
            "for=6.6.6.6;proto=http, for=127.0.0.1;proto=https;host=\"localhost:{port}\""
        )]
    );
}

#[tokio::test]
async fn client_host_by_default_upstream_host_on_request() {
    let origin = TestOrigin::echo().await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |_| {}).await;
    let out = get(&proxy, "/", &[]).await;
    assert_eq!(
        header(&out, "host"),
        [format!("localhost:{}", proxy.addr.port())]
    );

    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| c.upstream_host = true).await;
    let out = get(&proxy, "/", &[]).await;
    assert_eq!(header(&out, "host"), [origin.addr.to_string()]);
}

#[tokio::test]
async fn path_prefix_and_hop_by_hop_headers() {
    let origin = TestOrigin::echo().await;
    let proxy = TestReverse::start(&[format!("http://{}/api/", origin.addr)], |_| {}).await;
    let out = get(
        &proxy,
        "/v1/items?q=a%20b",
        &[
            "Connection: X-Secret",
            "X-Secret: 1",
            "Keep-Alive: timeout=5",
            "X-Kept: yes",
        ],
    )
    .await;
    assert!(
        out.starts_with("GET /api/v1/items?q=a%20b HTTP/1.1\n"),
        "{out}"
    );
    assert!(header(&out, "x-secret").is_empty(), "{out}");
    assert!(header(&out, "keep-alive").is_empty(), "{out}");
    assert_eq!(header(&out, "x-kept"), ["yes"]);
}

#[tokio::test]
async fn https_upstream_verified_with_upstream_ca_or_insecure() {
    let origin = TlsOrigin::start().await;
    let dir = TempDir::new("rev-upca");
    let ca = origin.cert_file(dir.path());
    let upstream = format!("https://127.0.0.1:{}", origin.addr.port());

    let proxy = TestReverse::start(std::slice::from_ref(&upstream), |c| {
        c.upstream_ca = Some(ca.clone())
    })
    .await;
    let out = get(&proxy, "/tls", &[]).await;
    assert!(out.starts_with("tls echo GET /tls"), "{out}");

    // Not trusted: 502 naming the upstream.
    let proxy = TestReverse::start(std::slice::from_ref(&upstream), |_| {}).await;
    let (ok, out, _) = curl(&[
        "--http1.1",
        "-k",
        "-i",
        "--resolve",
        &proxy.resolve(),
        &proxy.url("/tls"),
    ])
    .await;
    assert!(ok && out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(out.contains("127.0.0.1"), "{out}");

    let proxy = TestReverse::start(&[upstream], |c| c.insecure_upstream = true).await;
    let out = get(&proxy, "/tls", &[]).await;
    assert!(out.starts_with("tls echo GET /tls"), "{out}");
}

#[tokio::test]
async fn https_upstream_offering_h2_is_spoken_to_in_h2() {
    let dir = TempDir::new("rev-h2up");
    let origin = AlpnOrigin::start(dir.path()).await;
    let upstream = format!("https://localhost:{}", origin.addr.port());
    let ca = origin.cert.src.cert.clone();
    let proxy = TestReverse::start(&[upstream], |c| c.upstream_ca = Some(ca)).await;
    // Both an HTTP/1.1 and an HTTP/2 client end up on h2 upstream.
    let out = get(&proxy, "/one", &[]).await;
    assert_eq!(out, "HTTP/2.0 /one");
    // The forwarding fields go in the HTTP/2 request too, a spoofed one replaced.
    let port = proxy.addr.port();
    let (ok, out, err) = curl(&[
        "--http1.1",
        "-k",
        "-i",
        "-H",
        "Forwarded: for=6.6.6.6",
        "--resolve",
        &proxy.resolve(),
        &proxy.url("/fwd"),
    ])
    .await;
    assert!(ok, "{err}");
    let seen = format!("seen-forwarded: for=127.0.0.1;proto=https;host=\"localhost:{port}\"");
    assert!(out.contains(&seen), "{out}");
    let (ok, out, err) = curl(&[
        "--http2",
        "-k",
        "--resolve",
        &proxy.resolve(),
        &proxy.url("/two"),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "HTTP/2.0 /two");
}

#[tokio::test]
async fn malformed_request_gets_400_and_proxy_keeps_serving() {
    let origin = TestOrigin::echo().await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |_| {}).await;
    let mut tls = tls_connect(proxy.addr, "localhost", &[b"http/1.1"]).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    let out = get(&proxy, "/after", &[]).await;
    assert!(out.starts_with("GET /after"), "{out}");
}

#[tokio::test]
async fn over_http2_each_request_is_stamped_for_its_own_host() {
    let origin = TestOrigin::echo().await;
    let proxy = TestReverse::start(&[origin.addr.to_string()], |_| {}).await;
    let (url, resolve) = (proxy.url("/"), proxy.resolve());
    // Two requests on one HTTP/2 connection, for two hosts, the first with spoofed values.
    let mut args = vec!["--http2", "-k", "--resolve", &resolve];
    args.extend(["-H", "Host: a.example", "-H", SPOOF[0], "-H", SPOOF[3]]);
    args.extend(["-w", "connects=%{num_connects}\n", &url, "--next"]);
    args.extend([
        "--http2",
        "-k",
        "--resolve",
        &resolve,
        "-H",
        "Host: b.example",
    ]);
    args.extend(["-w", "connects=%{num_connects}\n", &url]);
    let (ok, out, err) = curl(&args).await;
    assert!(ok, "{err}");
    let connects: Vec<&str> = out.lines().filter(|l| l.starts_with("connects=")).collect();
    assert_eq!(
        connects,
        ["connects=1", "connects=0"],
        "one connection: {out}"
    );
    assert_eq!(header(&out, "x-forwarded-for"), ["127.0.0.1", "127.0.0.1"]);
    assert_eq!(header(&out, "x-forwarded-host"), ["a.example", "b.example"]);
    assert_eq!(
        header(&out, "forwarded"),
        [
            "for=127.0.0.1;proto=https;host=a.example",
            "for=127.0.0.1;proto=https;host=b.example"
        ]
    );
    assert!(!out.contains("6.6.6.6"), "{out}");
}
