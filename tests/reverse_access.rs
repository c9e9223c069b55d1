//! `interpose reverse` writes an access line for every exchange, including a request
//! head its HTTP/1.1 parser refused, and none with `--no-access-log`.

mod support;

use std::time::Duration;

use support::binary::{start_capturing, stop};
use support::*;

/// `interpose reverse` in front of `origin`, its stdout captured.
async fn start_reverse(
    origin: &TestOrigin,
    extra: &[&str],
) -> (
    tokio::process::Child,
    String,
    tokio::task::JoinHandle<String>,
) {
    let upstream = origin.url("");
    let mut args = vec![
        "reverse",
        "--listen",
        "127.0.0.1:0",
        "--to",
        upstream.trim_end_matches('/'),
    ];
    args.extend_from_slice(extra);
    start_capturing(&args).await
}

/// A space inside a header name: no valid HTTP/1.1 head, answered 400.
async fn send_a_refused_head(base: &str) {
    let (ok, code, err) = curl(&[
        "-sk",
        "--http1.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Bad Header: x",
        &format!("{base}/refused"),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(code, "400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_the_parser_refuses_still_gets_its_access_line() {
    let origin = TestOrigin::echo().await;
    let (child, base, stdout) = start_reverse(&origin, &[]).await;
    send_a_refused_head(&base).await;
    let (ok, _, err) = curl(&["-sk", &format!("{base}/fine")]).await;
    assert!(ok, "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(child).await;
    let printed = stdout.await.unwrap();
    let refused: Vec<&str> = printed.lines().filter(|l| l.contains(" 400 ")).collect();
    assert_eq!(refused.len(), 1, "{printed}");
    assert!(
        refused[0].contains("bad request: invalid header name"),
        "{printed}"
    );
    assert!(
        printed.lines().any(|l| l.contains("GET /fine 200")),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_access_log_prints_no_line_and_changes_nothing_else() {
    let origin = TestOrigin::echo().await;
    let (child, base, stdout) = start_reverse(&origin, &["--no-access-log"]).await;
    for version in ["--http1.1", "--http2"] {
        let (ok, out, err) = curl(&["-sk", version, &format!("{base}/quiet")]).await;
        assert!(ok, "{err}");
        assert!(out.contains("/quiet"), "{out}");
    }
    send_a_refused_head(&base).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(child).await;
    let printed = stdout.await.unwrap();
    assert_eq!(printed.trim(), "", "no access lines expected");
}
