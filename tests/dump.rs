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
    let mut child = interpose_cmd(&["forward", "--listen", "127.0.0.1:0", "--dump", "headers"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first.strip_prefix("listening on ").unwrap().to_string();
    let (ok, _, err) = curl(&[
        "-x",
        &format!("http://{addr}"),
        "-H",
        "Authorization: Bearer top-secret",
        &origin.url("/dumped?q=1"),
    ])
    .await;
    assert!(ok, "{err}");
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(" 200 up=")) {
        let line = timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("access line")
            .unwrap()
            .unwrap();
        seen.push(line);
    }
    let text = seen.join("\n");
    assert!(text.contains("> GET /dumped?q=1 HTTP/1.1"), "{text}");
    assert!(text.contains("> authorization: <redacted>"), "{text}");
    assert!(text.contains("> via: 1.1 interpose-"), "{text}");
    assert!(text.contains("< HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("< content-type: text/plain"), "{text}");
    assert!(!text.contains("top-secret"), "{text}");
}
