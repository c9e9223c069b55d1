//! `interpose mitm --auto-passthrough` as a user meets it: a client that does not trust
//! our CA fails once, the host is remembered (said once on stderr), and the next request
//! is tunnelled blind so the client sees, and accepts, the origin's own certificate.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};
use tokio::time::timeout;

const HANG: Duration = Duration::from_secs(20);

/// Starts `interpose mitm ARGS`; returns it, its address and its stderr lines.
async fn start_mitm(args: &[&str]) -> (Child, String, Lines<BufReader<ChildStderr>>) {
    let mut full = vec!["mitm", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    let mut child = interpose_cmd(&full).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = timeout(HANG, stdout.next_line())
        .await
        .expect("no startup line")
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, addr, stderr)
}

/// Reads stderr until a line contains `needle`; returns that line.
async fn wait_for(stderr: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
    let mut seen = Vec::new();
    loop {
        let line = timeout(HANG, stderr.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} on stderr:\n{}", seen.join("\n")))
            .unwrap()
            .unwrap_or_else(|| panic!("stderr ended:\n{}", seen.join("\n")));
        if line.contains(needle) {
            return line;
        }
        seen.push(line);
    }
}

/// curl through `proxy`, trusting only the origin's own certificate.
async fn curl_trusting_origin(proxy: &str, origin_pem: &str, url: &str) -> (bool, String, String) {
    curl(&[
        "-i",
        "-x",
        &format!("http://{proxy}"),
        "--cacert",
        origin_pem,
        url,
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_makes_the_host_blind_from_then_on() {
    let dir = TempDir::new("auto-passthrough");
    let origin = TlsOrigin::start().await;
    let origin_pem = origin.cert_file(dir.path());
    let origin_pem = origin_pem.to_str().unwrap();
    let ca_dir = dir.path().join("ca");
    let (mut child, addr, mut stderr) = start_mitm(&[
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--upstream-ca",
        origin_pem,
        "--auto-passthrough",
    ])
    .await;
    let url = format!("https://localhost:{}/pinned", origin.addr.port());

    let (ok, _, err) = curl_trusting_origin(&addr, origin_pem, &url).await;
    assert!(!ok, "our minted certificate must be refused the first time");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let line = wait_for(&mut stderr, "auto-passthrough:").await;
    assert!(
        line.contains(
            "client rejected our certificate for localhost; tunnelling it blind from now on"
        ),
        "{line}"
    );

    let (ok, out, err) = curl_trusting_origin(&addr, origin_pem, &url).await;
    assert!(ok, "the second request goes through blind: {err}");
    assert!(out.contains("tls echo GET /pinned"), "{out}");
    assert!(
        !out.to_lowercase().contains("via: 1.1 interpose"),
        "not intercepted: {out}"
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_the_host_stays_intercepted() {
    let dir = TempDir::new("no-auto-passthrough");
    let origin = TlsOrigin::start().await;
    let origin_pem = origin.cert_file(dir.path());
    let origin_pem = origin_pem.to_str().unwrap();
    let ca_dir = dir.path().join("ca");
    let (mut child, addr, _stderr) = start_mitm(&[
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--upstream-ca",
        origin_pem,
    ])
    .await;
    let url = format!("https://localhost:{}/pinned", origin.addr.port());
    for attempt in 0..2 {
        let (ok, _, _) = curl_trusting_origin(&addr, origin_pem, &url).await;
        assert!(!ok, "attempt {attempt} must fail: still intercepted");
    }
    // A client that trusts our CA is still served through the interception.
    let ours = ca_dir.join("ca.pem");
    let (ok, out, err) = curl_trusting_origin(&addr, ours.to_str().unwrap(), &url).await;
    assert!(ok, "{err}");
    assert!(out.to_lowercase().contains("via: 1.1 interpose"), "{out}");
    child.kill().await.unwrap();
}
