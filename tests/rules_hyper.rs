//! The rewrite rules on the hyper-based paths, as a user runs them: curl speaking HTTP/2
//! to `interpose mitm` (the intercepted HTTP/2 client path) and to `interpose reverse`.
//! Each rule is scoped by a filter to its own URLs, so one proxy serves every case.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flate2::write::GzEncoder;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use interpose::flow::jsonl::read_flows;
use support::binary::{bundle, start, start_mitm, stop};
use support::proto::{pattern, sha256_hex, Proto, ProtoOrigin};
use support::*;

/// What curl got: status, head (lines as received), body, and the body bytes received.
struct Got {
    status: u16,
    head: String,
    body: String,
    size: usize,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The Content-Length said matches the bytes that came.
    fn length_matches(&self) {
        let said: usize = self.header("content-length").unwrap().parse().unwrap();
        assert_eq!(said, self.size, "{}", self.head);
    }
}

async fn fetch(base: &[String], extra: &[&str], url: &str) -> Got {
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend([
        "-i",
        "--suppress-connect-headers",
        "-w",
        "\n%{size_download}",
    ]);
    args.extend_from_slice(extra);
    args.push(url);
    let (ok, out, err) = curl(&args).await;
    assert!(ok, "curl {url}: {err}");
    let (rest, size) = out.rsplit_once('\n').unwrap();
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Got {
        status,
        head: head.to_string(),
        body: body.to_string(),
        size: size.trim().parse().unwrap(),
    }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// A plain-HTTP origin counting its requests: `/gz` answers `hello world` gzip-encoded;
/// any other path echoes the request line, the headers and the body, and sends
/// `x-origin: yes`.
async fn counting_origin(hits: Arc<AtomicUsize>) -> TestOrigin {
    TestOrigin::with_handler(move |req: Request<Incoming>| {
        hits.fetch_add(1, Ordering::Relaxed);
        async move {
            if req.uri().path() == "/gz" {
                let mut resp = Response::new(full(gzip("hello world\n")));
                resp.headers_mut()
                    .insert("content-encoding", "gzip".parse().unwrap());
                resp.headers_mut()
                    .insert("content-type", "text/plain".parse().unwrap());
                return resp;
            }
            let mut text = format!("{} {}\n", req.method(), req.uri());
            for (name, value) in req.headers() {
                text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            text.push_str(&format!("body={}\n", String::from_utf8_lossy(&body)));
            let mut resp = Response::new(full(text));
            resp.headers_mut()
                .insert("x-origin", "yes".parse().unwrap());
            resp
        }
    })
    .await
}

/// `index.html` and `a.txt` in `dir/site`, and `dir/one.txt`.
fn local_files(dir: &std::path::Path) -> (String, String) {
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<p>index</p>\n").unwrap();
    std::fs::write(site.join("a.txt"), "file a\n").unwrap();
    let one = dir.join("one.txt");
    std::fs::write(&one, "one file\n").unwrap();
    (
        site.to_str().unwrap().to_string(),
        one.to_str().unwrap().to_string(),
    )
}

/// Checks `--map-local` on `base_url`: a file, a directory's index and file, a miss.
async fn check_map_local(base: &[String], base_url: &str) {
    let got = fetch(base, &[], &format!("{base_url}/one-file")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "one file\n"));
    got.length_matches();
    let got = fetch(base, &["-I"], &format!("{base_url}/one-file")).await;
    assert_eq!((got.status, got.header("content-length")), (200, Some("9")));
    assert_eq!(got.size, 0);
    let got = fetch(base, &[], &format!("{base_url}/local/")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "<p>index</p>\n"));
    assert!(got.header("content-type").unwrap().starts_with("text/html"));
    let got = fetch(base, &[], &format!("{base_url}/local/a.txt")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "file a\n"));
    let got = fetch(base, &[], &format!("{base_url}/local/missing.txt")).await;
    assert_eq!(got.status, 404, "{}", got.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_apply_to_an_intercepted_http2_client() {
    let dir = TempDir::new("rules-h2");
    let (site, one) = local_files(dir.path());
    let a = ProtoOrigin::start(Proto::Http2).await;
    let b = ProtoOrigin::start(Proto::Http1).await;
    let gz_hits = Arc::new(AtomicUsize::new(0));
    let g = counting_origin(gz_hits.clone()).await;
    let origin_ca = bundle(dir.path(), &[&a, &b]);
    let flows = dir.path().join("flows.jsonl");
    let a_base = a.url("");
    let remote_b = format!("|{a_base}/elsewhere/|{}", b.url("/"));
    let remote_g = format!("|{a_base}/gz|{}", g.url("/gz"));
    let local_dir = format!("|/local/|{site}");
    let local_one = format!("|/one-file$|{one}");
    let (child, addr) = start_mitm(
        dir.path(),
        &origin_ca,
        &[
            "--flows",
            flows.to_str().unwrap(),
            "--modify-max-body",
            "100000",
            "--block",
            "~u /secret",
            "--map-local",
            &local_dir,
            "--map-local",
            &local_one,
            "--map-remote",
            &remote_b,
            "--map-remote",
            &remote_g,
            "--modify-header",
            "|~q|x-test|from-rule",
            "--modify-header",
            "|~q|x-drop|",
            "--modify-header",
            "|~s|x-echo|",
            "--modify-header",
            "|~s|x-added|yes",
            "--modify-body",
            "|~s ~u /echo|from-rule|FROM-BODY-RULE",
            "--modify-body",
            "|~s ~u /gz|hello|HELLO",
            "--modify-body",
            "|~s ~u /big|zzz|y",
            "--modify-body",
            "|~q ~u /sum|abc|xyz",
        ],
    )
    .await;
    let ca = dir.path().join("ca/ca.pem");
    let base: Vec<String> = ["-x", &format!("http://{addr}"), "--cacert"]
        .iter()
        .map(|s| s.to_string())
        .chain([ca.to_str().unwrap().to_string(), "--http2".into()])
        .collect();

    let got = fetch(&base, &[], &a.url("/secret")).await;
    assert_eq!(got.status, 403);
    assert!(
        got.body.contains("blocked by a --block rule"),
        "{}",
        got.body
    );
    check_map_local(&base, &a_base).await;
    assert_eq!(
        a.hits.load(Ordering::Relaxed),
        0,
        "no upstream for block/local"
    );

    let got = fetch(&base, &[], &a.url("/elsewhere/echo")).await;
    let authority = format!("authority=localhost:{}", b.addr.port());
    assert!(got.body.contains(&authority), "{}", got.body);
    assert!(got.body.contains("version=HTTP/1.1"), "{}", got.body);
    assert_eq!(
        (
            a.hits.load(Ordering::Relaxed),
            b.hits.load(Ordering::Relaxed)
        ),
        (0, 1)
    );

    let extra = ["-H", "x-test: client", "-H", "x-drop: 1"];
    let got = fetch(&base, &extra, &a.url("/echo")).await;
    assert!(got.body.contains("x-test=FROM-BODY-RULE"), "{}", got.body);
    assert_eq!(got.header("x-echo"), None, "{}", got.head);
    assert_eq!(got.header("x-added"), Some("yes"), "{}", got.head);
    got.length_matches();
    let got = fetch(&base, &extra, &a.url("/headers")).await;
    assert!(
        got.body.contains("x-test") && !got.body.contains("x-drop"),
        "{}",
        got.body
    );

    // map-remote to a plain-HTTP origin, whose gzip answer is rewritten.
    let got = fetch(&base, &["--compressed"], &a.url("/gz")).await;
    assert_eq!(got.body, "HELLO world\n");
    got.length_matches();
    assert_eq!(gz_hits.load(Ordering::Relaxed), 1);

    let got = fetch(&base, &["--data-binary", "abc abc"], &a.url("/sum")).await;
    let want = format!("sha256={} len=7", sha256_hex(b"xyz xyz"));
    assert!(got.body.contains(&want), "{}", got.body);

    // Over --modify-max-body, both ways: passed on unmodified, whole.
    let big = pattern(300_000);
    let upload = dir.path().join("big.bin");
    std::fs::write(&upload, &big).unwrap();
    let data = format!("@{}", upload.display());
    let got = fetch(&base, &["--data-binary", &data], &a.url("/sum")).await;
    let want = format!("sha256={} len=300000", sha256_hex(&big));
    assert!(got.body.contains(&want), "{}", got.body);
    let saved = dir.path().join("down.bin");
    let (ok, _, err) = curl(&[
        "-x",
        &base[1],
        "--cacert",
        &base[3],
        "--http2",
        "-o",
        saved.to_str().unwrap(),
        &a.url("/big?n=300000"),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        std::fs::read(&saved).unwrap() == big,
        "the big body changed"
    );

    stop(child).await;
    let file = std::io::BufReader::new(std::fs::File::open(&flows).unwrap());
    let flows: Vec<_> = read_flows(file).map(|f| f.unwrap()).collect();
    let blocked = flows.iter().find(|f| f.request.url.ends_with("/secret"));
    let status = blocked.and_then(|f| f.response.as_ref()).map(|r| r.status);
    assert_eq!(status, Some(403));
    let mapped = flows
        .iter()
        .find(|f| f.request.url.ends_with("/gz"))
        .unwrap();
    assert_eq!(
        mapped.request.url,
        g.url("/gz"),
        "the flow shows the mapped URL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_apply_to_the_reverse_proxy() {
    let dir = TempDir::new("rules-rev");
    let (site, one) = local_files(dir.path());
    let hits = Arc::new(AtomicUsize::new(0));
    let origin = counting_origin(hits.clone()).await;
    let other_hits = Arc::new(AtomicUsize::new(0));
    let other = counting_origin(other_hits.clone()).await;
    let remote = format!("|^https://[^/]+/other/|{}", other.url("/"));
    let local_dir = format!("|/local/|{site}");
    let local_one = format!("|/one-file$|{one}");
    let (child, listening) = start(&[
        "reverse",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &origin.url(""),
        "--block",
        "~u /secret",
        "--map-local",
        &local_dir,
        "--map-local",
        &local_one,
        "--map-remote",
        &remote,
        "--modify-header",
        "|~q|x-test|from-rule",
        "--modify-header",
        "|~s|x-origin|",
        "--modify-header",
        "|~s|x-added|yes",
        "--modify-body",
        "|~s ~u /gz|hello|HELLO",
        "--modify-body",
        "|~q|abc|xyz",
    ])
    .await;
    // HTTP/2 runs on hyper, HTTP/1.1 on the proxy engine: the same rules on both.
    for proto in ["--http2", "--http1.1"] {
        let base = vec!["-k".to_string(), proto.to_string()];
        let hits_before = hits.load(Ordering::Relaxed);
        let other_before = other_hits.load(Ordering::Relaxed);

        let got = fetch(&base, &[], &format!("{listening}/secret")).await;
        assert_eq!(got.status, 403, "{proto}");
        assert!(
            got.body.contains("blocked by a --block rule"),
            "{proto}: {}",
            got.body
        );
        check_map_local(&base, &listening).await;
        assert_eq!(
            hits.load(Ordering::Relaxed),
            hits_before,
            "{proto}: no upstream for block/local"
        );

        let got = fetch(&base, &[], &format!("{listening}/other/x?y=1")).await;
        assert!(
            got.body.starts_with("GET /x?y=1\n"),
            "{proto}: {}",
            got.body
        );
        let host = format!("host: {}", other.addr);
        assert!(got.body.contains(&host), "{proto}: {}", got.body);
        assert_eq!(
            (
                hits.load(Ordering::Relaxed),
                other_hits.load(Ordering::Relaxed)
            ),
            (hits_before, other_before + 1),
            "{proto}"
        );

        let got = fetch(&base, &["-H", "x-test: client"], &format!("{listening}/h")).await;
        assert!(
            got.body.contains("x-test: from-rule"),
            "{proto}: {}",
            got.body
        );
        assert_eq!(got.header("x-origin"), None, "{proto}: {}", got.head);
        assert_eq!(got.header("x-added"), Some("yes"), "{proto}: {}", got.head);

        let got = fetch(&base, &["--compressed"], &format!("{listening}/gz")).await;
        assert_eq!(got.body, "HELLO world\n", "{proto}");
        got.length_matches();

        let got = fetch(
            &base,
            &["--data-binary", "abc abc"],
            &format!("{listening}/up"),
        )
        .await;
        assert!(got.body.contains("body=xyz xyz"), "{proto}: {}", got.body);
        assert!(
            got.body.contains("content-length: 7"),
            "{proto}: {}",
            got.body
        );
    }
    stop(child).await;
}
