//! Rewrite rules on HTTP/1.1 clients, as a user runs them: `--block`, `--map-local`,
//! `--map-remote`, `--modify-header` and `--modify-body` through `interpose mitm` (to
//! HTTP/1.1 and HTTP/2 origins) and `interpose forward` (plain HTTP, a gzip body).

mod support;

use std::io::Write as _;
use std::path::Path;

use support::binary::{bundle, start, start_mitm};
use support::proto::{sha256_hex, Proto, ProtoOrigin};
use support::*;
use tokio::process::Child;

/// `interpose mitm` trusting `origins`, with `rules`.
async fn mitm(dir: &Path, origins: &[&ProtoOrigin], rules: &[&str]) -> (Child, String) {
    start_mitm(dir, &bundle(dir, origins), rules).await
}

/// curl through the proxy (HTTP/1.1 to it), trusting its CA: (status line, headers, body).
async fn get(dir: &Path, proxy: &str, extra: &[&str], url: &str) -> (String, String, String) {
    let ca = dir.join("ca/ca.pem");
    let mut args = vec![
        "-sS",
        "-i",
        "--suppress-connect-headers",
        "--http1.1",
        "-x",
        proxy,
        "--cacert",
        ca.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let (ok, out, err) = curl(&args).await;
    assert!(ok, "curl {url}: {err}");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_string(),
        headers.to_ascii_lowercase(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_map_local_and_header_rules_through_mitm() {
    let dir = TempDir::new("rules-h1");
    let origin = ProtoOrigin::start(Proto::Http1).await;
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>local</h1>").unwrap();
    std::fs::write(site.join("css/a.css"), "body{}").unwrap();
    let map_local = format!("|/static/|{}", site.display());
    let (mut child, addr) = mitm(
        dir.path(),
        &[&origin],
        &[
            "--block",
            "~u /blocked",
            "--map-local",
            &map_local,
            "--modify-header",
            "/~q/x-test/injected",
            "--modify-header",
            "/~s/x-echo/",
            "--modify-header",
            "/~s/x-added/yes",
        ],
    )
    .await;
    let proxy = format!("http://{addr}");
    let p = dir.path();

    let (status, _, body) = get(p, &proxy, &[], &origin.url("/blocked")).await;
    assert!(status.contains(" 403"), "{status}");
    assert!(body.contains("blocked by a --block rule"), "{body}");

    let (status, headers, body) = get(p, &proxy, &[], &origin.url("/static/css/a.css")).await;
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(body, "body{}");
    assert!(headers.contains("content-type: text/css"), "{headers}");
    let (_, _, body) = get(p, &proxy, &[], &origin.url("/static/")).await;
    assert_eq!(body, "<h1>local</h1>");
    for path in [
        "/static/../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let url = origin.url(path);
        let (status, _, body) = get(p, &proxy, &["--path-as-is"], &url).await;
        assert!(status.contains(" 404"), "{path}: {status}");
        assert!(body.contains("--map-local"), "{path}: {body}");
    }
    let (status, _, body) = get(p, &proxy, &[], &origin.url("/static/missing.txt")).await;
    assert!(
        status.contains(" 404") && body.contains("--map-local"),
        "{status} {body}"
    );

    // The origin sees the rule's header; the client sees the response rules' work.
    let (status, headers, body) =
        get(p, &proxy, &["-H", "x-test: original"], &origin.url("/echo")).await;
    assert!(status.contains(" 200"), "{status}");
    assert!(body.contains("x-test=injected"), "{body}");
    assert!(!headers.contains("x-echo:"), "{headers}");
    assert!(headers.contains("x-added: yes"), "{headers}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_rules_rewrite_both_ways_to_http1_and_http2_origins() {
    let dir = TempDir::new("rules-h1-body");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let (mut child, addr) = mitm(
        dir.path(),
        &[&h1, &h2],
        &[
            "--modify-body",
            "|~s & ~u /echo|authority=|AUTH=",
            "--modify-body",
            "|~q & ~u /sum|hello|HELLO there",
        ],
    )
    .await;
    let proxy = format!("http://{addr}");
    let p = dir.path();
    for origin in [&h1, &h2] {
        let (_, headers, body) = get(p, &proxy, &[], &origin.url("/echo")).await;
        assert!(
            body.starts_with("version=") && body.contains(" AUTH=localhost:"),
            "{body}"
        );
        let length = format!("content-length: {}", body.len());
        assert!(headers.contains(&length), "{headers}\n{body}");

        let (_, _, body) = get(
            p,
            &proxy,
            &["--data-binary", "hello world"],
            &origin.url("/sum"),
        )
        .await;
        let want = sha256_hex(b"HELLO there world");
        assert!(
            body.contains(&format!("sha256={want} len=17 framing=17")),
            "{body}"
        );
    }
    child.kill().await.unwrap();
}

/// A plain-HTTP origin answering every request with a gzip body.
async fn gzip_origin(text: &'static str) -> TestOrigin {
    TestOrigin::with_handler(move |_req| async move {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let body = gz.finish().unwrap();
        let mut resp = http::Response::new(full(body));
        resp.headers_mut()
            .insert("content-encoding", "gzip".parse().unwrap());
        resp.headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
        resp
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_proxy_rewrites_a_gzip_body_and_maps_remote() {
    let gz = gzip_origin("the quick brown fox").await;
    let other = TestOrigin::echo().await;
    let map_remote = format!("|{}|{}", regex::escape(&gz.url("/old")), other.url("/new"));
    let (mut child, addr) = start(&[
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--modify-body",
        "|~s|brown|red",
        "--map-remote",
        &map_remote,
    ])
    .await;
    let proxy = format!("http://{addr}");
    let (ok, out, err) = curl(&["-sS", "--compressed", "-x", &proxy, &gz.url("/any")]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "the quick red fox");
    // Still gzip on the wire, with a length that fits.
    let (ok, raw, _) = curl(&[
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-x",
        &proxy,
        &gz.url("/"),
    ])
    .await;
    assert!(ok);
    assert!(
        raw.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{raw}"
    );

    let (ok, out, err) = curl(&["-sS", "-x", &proxy, &gz.url("/old?q=1")]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("/new?q=1"),
        "map-remote to the echo origin: {out}"
    );
    child.kill().await.unwrap();
}
