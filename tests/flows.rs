//! `--flows`, `--har`, `--filter`, `--capture-max-body` as a user runs them: the binary
//! intercepts curl's HTTPS over HTTP/1.1 and HTTP/2, and the files it leaves hold the
//! exchanges that passed: JSON lines that parse and match the traffic, a HAR that
//! validates against the HAR 1.2 schema, and only what the filter selects.

mod support;

use std::path::Path;

use interpose::flow::jsonl::read_flows;
use interpose::flow::record::Flow;
use support::binary::{bundle, start, start_mitm, stop};
use support::har_check::{har_validator, node_tools, validate};
use support::proto::{pattern, sha256_hex, Proto, ProtoOrigin};
use support::*;

fn flows_in(path: &Path) -> Vec<Flow> {
    let file = std::fs::File::open(path).unwrap();
    read_flows(std::io::BufReader::new(file))
        .map(|f| f.unwrap())
        .collect()
}

async fn curl_via(proxy: &str, ca: &Path, extra: &[&str], url: &str) -> String {
    let mut args = vec!["-sS", "-x", proxy, "--cacert", ca.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(url);
    let (ok, out, err) = curl(&args).await;
    assert!(ok, "curl {url}: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_and_har_record_http1_and_http2_exchanges_as_they_happened() {
    let dir = TempDir::new("flows");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let h2 = ProtoOrigin::start(Proto::Http2).await;
    let origin_ca = bundle(dir.path(), &[&h1, &h2]);
    let flows_path = dir.path().join("out.jsonl");
    let har_path = dir.path().join("out.har");
    let (child, addr) = start_mitm(
        dir.path(),
        &origin_ca,
        &[
            "--flows",
            flows_path.to_str().unwrap(),
            "--har",
            har_path.to_str().unwrap(),
        ],
    )
    .await;
    let proxy = format!("http://{addr}");
    let ca = dir.path().join("ca/ca.pem");

    let out = curl_via(
        &proxy,
        &ca,
        &["--http1.1", "-H", "x-test: one"],
        &h1.url("/echo"),
    )
    .await;
    assert!(out.contains("x-test=one"), "{out}");
    let out = curl_via(
        &proxy,
        &ca,
        &["--http2", "-H", "x-test: two"],
        &h2.url("/echo"),
    )
    .await;
    assert!(out.contains("x-test=two"), "{out}");
    let upload = pattern(100_000);
    let upload_file = dir.path().join("upload.bin");
    std::fs::write(&upload_file, &upload).unwrap();
    let data_arg = format!("@{}", upload_file.display());
    let out = curl_via(
        &proxy,
        &ca,
        &["--http2", "--data-binary", &data_arg],
        &h1.url("/sum"),
    )
    .await;
    assert!(out.contains(&sha256_hex(&upload)), "{out}");
    stop(child).await;

    let flows = flows_in(&flows_path);
    assert_eq!(flows.len(), 3, "{flows:#?}");
    let first = &flows[0];
    assert_eq!(first.request.method, "GET");
    assert_eq!(first.request.url, h1.url("/echo"));
    assert_eq!(first.request.http_version, "HTTP/1.1");
    assert_eq!(first.request.header("x-test"), Some("one"));
    let resp = first.response.as_ref().expect("a response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.text().unwrap(), out_of(&resp.body));
    assert!(resp.body.text().unwrap().contains("x-test=one"));
    let tls = first.tls.as_ref().expect("TLS facts");
    assert!(tls.intercepted);
    assert_eq!(tls.sni.as_deref(), Some("localhost"));
    assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(tls.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(first.server.map(|s| s.port()), Some(h1.addr.port()));
    let t = &first.timings;
    assert!(
        t.tls.is_some() && t.first_byte.is_some() && t.done.is_some(),
        "{t:?}"
    );
    assert!(t.first_byte <= t.done, "{t:?}");
    assert!(first.error.is_none());
    // Every flow knows when its request was all sent, bodiless ones (and HTTP/2's) too.
    for flow in &flows {
        let t = &flow.timings;
        assert!(
            t.request_sent.is_some(),
            "{} {} {t:?}",
            flow.request.http_version,
            flow.request.url
        );
        assert!(t.request_sent <= t.first_byte, "{t:?}");
    }

    let second = &flows[1];
    assert_eq!(second.request.http_version, "HTTP/2.0");
    assert_eq!(second.request.url, h2.url("/echo"));
    assert_eq!(second.tls.as_ref().unwrap().alpn.as_deref(), Some("h2"));
    let resp = second.response.as_ref().unwrap();
    assert_eq!(resp.http_version, "HTTP/2.0");
    assert!(resp.body.text().unwrap().contains("x-test=two"));
    assert_ne!(first.connection_id, second.connection_id);

    // An HTTP/2 client's upload to an HTTP/1.1 origin: the body as sent, whole.
    let third = &flows[2];
    assert_eq!(third.request.method, "POST");
    assert_eq!(third.request.body.bytes, upload);
    assert_eq!(
        (third.request.body.size, third.request.body.truncated),
        (100_000, false)
    );
    assert!(third.timings.request_sent.is_some(), "{:?}", third.timings);

    let ids: Vec<u64> = flows.iter().map(|f| f.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let har: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&har_path).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["request"]["url"], h1.url("/echo"));
    assert!(entries[1]["response"]["content"]["text"]
        .as_str()
        .unwrap()
        .contains("x-test=two"));
    if node_tools().is_none() {
        println!("SKIPPED the schema check: node/npm not found (scripts/test.sh installs npm)");
        return;
    }
    validate(&har_validator(), &har_path).unwrap_or_else(|e| panic!("invalid HAR: {e}"));
}

/// The text a response body captured, for a readable assertion message.
fn out_of(body: &interpose::flow::record::CapturedBody) -> String {
    String::from_utf8_lossy(&body.bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_selects_what_is_recorded_and_printed() {
    let dir = TempDir::new("flows-filter");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let origin_ca = bundle(dir.path(), &[&h1]);
    let flows_path = dir.path().join("only.jsonl");
    let (child, addr) = start_mitm(
        dir.path(),
        &origin_ca,
        &[
            "--flows",
            flows_path.to_str().unwrap(),
            "--filter",
            "~m POST | ~u /headers",
        ],
    )
    .await;
    let proxy = format!("http://{addr}");
    let ca = dir.path().join("ca/ca.pem");
    curl_via(&proxy, &ca, &[], &h1.url("/echo")).await;
    curl_via(&proxy, &ca, &[], &h1.url("/headers")).await;
    curl_via(&proxy, &ca, &["--data", "x=1"], &h1.url("/sum")).await;
    stop(child).await;
    let urls: Vec<String> = flows_in(&flows_path)
        .into_iter()
        .map(|f| f.request.url)
        .collect();
    assert_eq!(urls, vec![h1.url("/headers"), h1.url("/sum")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_at_start_with_its_position() {
    let out = interpose_cmd(&["forward", "--filter", "~d a.test & (~m GET"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("column"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_is_captured_up_to_the_cap_with_memory_flat() {
    let dir = TempDir::new("flows-big");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let origin_ca = bundle(dir.path(), &[&h1]);
    let flows_path = dir.path().join("big.jsonl");
    let (child, addr) = start_mitm(
        dir.path(),
        &origin_ca,
        &[
            "--flows",
            flows_path.to_str().unwrap(),
            "--capture-max-body",
            "1MiB",
        ],
    )
    .await;
    let pid = child.id().unwrap();
    let proxy = format!("http://{addr}");
    let ca = dir.path().join("ca/ca.pem");
    let n = 100 * 1024 * 1024;
    let out = dir.path().join("big.bin");
    let (ok, _, err) = curl(&[
        "-sS",
        "-x",
        &proxy,
        "--cacert",
        ca.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        &h1.url(&format!("/big?n={n}")),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), n as u64);
    let peak_kib = peak_rss_kib(pid);
    stop(child).await;
    let flows = flows_in(&flows_path);
    assert_eq!(flows.len(), 1);
    let body = &flows[0].response.as_ref().unwrap().body;
    assert_eq!(body.size, n as u64);
    assert!(body.truncated);
    assert_eq!(body.bytes.len(), 1024 * 1024);
    assert_eq!(body.bytes, pattern(1024 * 1024));
    // 100 MiB went through; the proxy's peak stays far below it (1 MiB kept per body).
    assert!(peak_kib < 40 * 1024, "peak RSS {peak_kib} KiB");
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_proxy_records_plain_http_and_failures() {
    let dir = TempDir::new("flows-forward");
    let origin = TestOrigin::echo().await;
    let flows_path = dir.path().join("fwd.jsonl");
    let (child, addr) = start(&[
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--flows",
        flows_path.to_str().unwrap(),
    ])
    .await;
    let proxy = format!("http://{addr}");
    let (ok, _, err) = curl(&["-sS", "-x", &proxy, &origin.url("/plain?a=1")]).await;
    assert!(ok, "{err}");
    // Nothing listens there: a 502, recorded with its error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://127.0.0.1:{}/", closed.local_addr().unwrap().port());
    drop(closed);
    let (_, _, _) = curl(&["-sS", "-x", &proxy, &dead]).await;
    stop(child).await;
    let flows = flows_in(&flows_path);
    assert_eq!(flows.len(), 2, "{flows:#?}");
    assert_eq!(flows[0].request.url, origin.url("/plain?a=1"));
    assert!(flows[0].tls.is_none());
    assert_eq!(flows[0].response.as_ref().unwrap().status, 200);
    assert!(flows[0].timings.connect.is_some());
    assert!(flows[1].response.is_none());
    let error = flows[1].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("refused") || error.contains("connect"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverse_proxy_records_its_exchanges_with_the_client_tls() {
    let dir = TempDir::new("flows-reverse");
    let origin = TestOrigin::echo().await;
    let flows_path = dir.path().join("rev.jsonl");
    let upstream = origin.url("");
    let (child, listening) = start(&[
        "reverse",
        "--listen",
        "127.0.0.1:0",
        "--to",
        upstream.trim_end_matches('/'),
        "--flows",
        flows_path.to_str().unwrap(),
        "--filter",
        "~c 200",
        "--max-body-size",
        "10",
    ])
    .await;
    let base = listening.as_str();
    let (ok, out, err) = curl(&["-sS", "-k", "--http2", &format!("{base}/rev?x=1")]).await;
    assert!(ok, "{err}");
    assert!(out.contains("/rev?x=1"), "{out}");
    // HTTP/1.1 runs on the proxy engine, which also knows the upstream connection.
    let (ok, out, err) = curl(&["-sS", "-k", "--http1.1", &format!("{base}/one")]).await;
    assert!(ok, "{err}");
    assert!(out.contains("/one"), "{out}");
    // Refused with 413 by --max-body-size: not selected by the filter.
    let big = "x".repeat(100);
    let (ok, out, err) = curl(&[
        "-sS",
        "-k",
        "--http1.1",
        "--data",
        &big,
        &format!("{base}/big"),
    ])
    .await;
    assert!(ok && out.contains("too large"), "{out} {err}");
    stop(child).await;
    let flows = flows_in(&flows_path);
    assert_eq!(flows.len(), 2, "only the 200s are selected: {flows:#?}");
    let h1 = flows
        .iter()
        .find(|f| f.request.url.ends_with("/one"))
        .unwrap();
    assert_eq!(h1.request.http_version, "HTTP/1.1");
    assert_eq!(h1.tls.as_ref().unwrap().alpn.as_deref(), Some("http/1.1"));
    assert_eq!(h1.server, Some(origin.addr));
    assert!(h1.timings.done.is_some(), "{h1:#?}");
    for flow in &flows {
        assert!(flow.timings.request_sent.is_some(), "{flow:#?}");
        assert_eq!(flow.server, Some(origin.addr), "{flow:#?}");
    }
    let flow = flows
        .iter()
        .find(|f| f.request.url.contains("/rev?x=1"))
        .unwrap();
    // HTTP/2 and HTTP/1.1 exchanges share the pool: the first opened the connection
    // (and says how long that took), the second reused it.
    assert!(flow.timings.connect.is_some(), "{flow:#?}");
    assert!(h1.timings.connect.is_none(), "{h1:#?}");
    let port = base.rsplit(':').next().unwrap();
    assert_eq!(
        flow.request.url,
        format!("https://127.0.0.1:{port}/rev?x=1")
    );
    assert_eq!(flow.request.http_version, "HTTP/2.0");
    let tls = flow.tls.as_ref().unwrap();
    assert_eq!(tls.alpn.as_deref(), Some("h2"));
    assert!(tls.intercepted);
    let resp = flow.response.as_ref().unwrap();
    assert!(resp.body.text().unwrap().contains("/rev?x=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_passed_through_is_recorded_as_its_connect_with_the_sni_seen() {
    let dir = TempDir::new("flows-blind");
    let h1 = ProtoOrigin::start(Proto::Http1).await;
    let origin_ca = bundle(dir.path(), &[&h1]);
    let flows_path = dir.path().join("blind.jsonl");
    let (child, addr) = start_mitm(
        dir.path(),
        &origin_ca,
        &[
            "--flows",
            flows_path.to_str().unwrap(),
            "--ignore-hosts",
            "^localhost$",
        ],
    )
    .await;
    // The CONNECT names 127.0.0.1, the ClientHello localhost: passed through on the SNI,
    // curl sees the origin's own certificate.
    let proxy = format!("http://{addr}");
    let port = h1.addr.port();
    let connect_to = format!("localhost:{port}:127.0.0.1:{port}");
    let out = curl_via(
        &proxy,
        &origin_ca,
        &["--connect-to", &connect_to],
        &h1.url("/echo"),
    )
    .await;
    assert!(out.contains("version=HTTP/1.1"), "{out}");
    stop(child).await;
    let flows = flows_in(&flows_path);
    assert_eq!(flows.len(), 1, "{flows:#?}");
    let flow = &flows[0];
    assert_eq!(flow.request.method, "CONNECT");
    assert_eq!(flow.request.url, format!("127.0.0.1:{port}"));
    let tls = flow.tls.as_ref().expect("the ClientHello was seen");
    assert!(!tls.intercepted);
    assert_eq!(tls.sni.as_deref(), Some("localhost"));
    let resp = flow.response.as_ref().unwrap();
    assert_eq!(resp.status, 200);
    // Bytes crossed both ways, none of them captured.
    assert!(
        flow.request.body.size > 0 && resp.body.size > 0,
        "{flow:#?}"
    );
    assert!(resp.body.bytes.is_empty());
}
