//! `interpose ca` and `interpose mitm` as a user runs them: the CA is created once with
//! a private key file, reused on the next run, and curl trusting it sees origins
//! through the interception.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Starts `interpose mitm ARGS` and returns it with its listening address and CA line.
async fn start_mitm(args: &[&str]) -> (Child, String, String) {
    let mut full = vec!["mitm", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    let mut child = interpose_cmd(&full).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (first, addr) = support::binary::read_listening(&mut stdout).await;
    tokio::spawn(async move {
        let mut line = String::new();
        while stdout.read_line(&mut line).await.unwrap_or(0) > 0 {
            line.clear();
        }
    });
    (child, addr, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mitm_creates_its_ca_once_and_intercepts_with_it() {
    let dir = TempDir::new("mitm-cli");
    let ca_dir = dir.path().join("ca");
    let ca_dir_s = ca_dir.to_str().unwrap();
    let origin = TlsOrigin::start().await;
    let origin_ca = origin.cert_file(dir.path());

    let (mut child, addr, first) = start_mitm(&[
        "--ca-dir",
        ca_dir_s,
        "--upstream-ca",
        origin_ca.to_str().unwrap(),
    ])
    .await;
    let key_mode = std::fs::metadata(ca_dir.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "the CA key is private");
    let ca_pem = ca_dir.join("ca.pem");
    let url = format!("https://localhost:{}/through", origin.addr.port());
    let (ok, out, err) = curl(&[
        "-i",
        "-x",
        &format!("http://{addr}"),
        "--cacert",
        ca_pem.to_str().unwrap(),
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("tls echo GET /through"), "{out}");
    assert!(out.to_lowercase().contains("via: 1.1 interpose-"), "{out}");
    // Without trusting our CA, curl refuses the minted certificate.
    let (ok, _, _) = curl(&["-x", &format!("http://{addr}"), &url]).await;
    assert!(!ok, "a client that does not trust the CA must fail");
    child.kill().await.unwrap();

    // A second run reuses the same CA: same fingerprint, same files.
    let (mut again, _, first_again) = start_mitm(&[
        "--ca-dir",
        ca_dir_s,
        "--upstream-ca",
        origin_ca.to_str().unwrap(),
    ])
    .await;
    let fingerprint = |line: &str| line.split("SHA-256 ").nth(1).map(str::to_string);
    assert!(fingerprint(&first).is_some(), "{first}");
    assert_eq!(fingerprint(&first), fingerprint(&first_again));
    again.kill().await.unwrap();

    // `ca path` and `ca export` show the same CA.
    let out = interpose_cmd(&["ca", "path", "--ca-dir", ca_dir_s])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ca_pem.to_str().unwrap()
    );
    let out = interpose_cmd(&["ca", "export", "--ca-dir", ca_dir_s])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&ca_pem).unwrap()
    );
}

#[tokio::test]
async fn an_untrusted_upstream_is_refused_unless_insecure() {
    let dir = TempDir::new("mitm-insecure");
    let ca_dir = dir.path().join("ca");
    let origin = TlsOrigin::start().await;
    let url = format!("https://localhost:{}/x", origin.addr.port());
    let (mut child, addr, _) = start_mitm(&["--ca-dir", ca_dir.to_str().unwrap()]).await;
    let ca_pem = ca_dir.join("ca.pem");
    let (_, out, _) = curl(&[
        "-x",
        &format!("http://{addr}"),
        "--cacert",
        ca_pem.to_str().unwrap(),
        "-w",
        "\n%{http_code}",
        &url,
    ])
    .await;
    assert!(
        out.ends_with("\n502") && out.contains("not trusted: UnknownIssuer"),
        "{out}"
    );
    child.kill().await.unwrap();

    let (mut child, addr, _) =
        start_mitm(&["--ca-dir", ca_dir.to_str().unwrap(), "--insecure-upstream"]).await;
    let (ok, out, err) = curl(&[
        "-x",
        &format!("http://{addr}"),
        "--cacert",
        ca_pem.to_str().unwrap(),
        &url,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("tls echo GET /x"), "{out}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn bad_ca_files_are_one_line_errors() {
    let dir = TempDir::new("mitm-badca");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let out = interpose_cmd(&[
        "mitm",
        "--listen",
        "127.0.0.1:0",
        "--ca-cert",
        junk.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("junk.pem"), "{stderr}");
}
