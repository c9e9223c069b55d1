//! Certificate reload: in process through `ReverseProxy::reload_certificates` (what
//! SIGHUP calls), and once for real by sending SIGHUP to the built binary; and a key
//! that does not match its certificate refused at start.

#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::process::Stdio;
use std::time::Duration;

use reverse_support::*;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn reload_serves_new_cert_while_old_connection_keeps_working() {
    let origin = TestOrigin::echo().await;
    let dir = TempDir::new("rev-reload");
    let old = TestCert::write(dir.path(), "site", &["localhost"]);
    let proxy = TestReverse::start(&[origin.addr.to_string()], |c| {
        c.certs.default = Some(old.src.clone());
    })
    .await;
    let mut before = tls_connect(proxy.addr, "localhost", &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&before), old.der);
    assert!(get_on(&mut before, "/one").await.contains("GET /one"));

    // Overwrite the files with a new pair and reload.
    let new = TestCert::write(dir.path(), "site", &["localhost"]);
    assert_ne!(new.der, old.der);
    assert_eq!(proxy.proxy.reload_certificates().unwrap(), 1);
    let after = tls_connect(proxy.addr, "localhost", &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&after), new.der);
    // The connection opened before the reload still serves requests.
    assert!(get_on(&mut before, "/two").await.contains("GET /two"));

    // A broken file: the reload fails and the current certificate stays.
    std::fs::write(&new.src.key, "not a key").unwrap();
    let err = proxy.proxy.reload_certificates().unwrap_err();
    assert!(err.to_string().contains("site.key"), "{err}");
    let again = tls_connect(proxy.addr, "localhost", &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&again), new.der);
}

fn binary(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_interpose"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn sighup_to_the_binary_reloads_certificates() {
    let origin = TestOrigin::echo().await;
    let dir = TempDir::new("rev-sighup");
    let old = TestCert::write(dir.path(), "site", &["localhost"]);
    let to = origin.addr.to_string();
    let mut child = binary(&[
        "reverse",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &to,
        "--cert",
        old.cert_path(),
        "--key",
        old.src.key.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut first))
        .await
        .expect("no startup line")
        .unwrap();
    let addr: std::net::SocketAddr = first
        .strip_prefix("listening on https://")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .unwrap();
    let mut before = tls_connect(addr, "localhost", &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&before), old.der);

    let new = TestCert::write(dir.path(), "site", &["localhost"]);
    let pid = child.id().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let mut reloaded = false;
    for _ in 0..100 {
        let tls = tls_connect(addr, "localhost", &[b"http/1.1"]).await;
        if peer_leaf(&tls) == new.der {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "new certificate not served after SIGHUP");
    assert!(get_on(&mut before, "/still").await.contains("GET /still"));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    // One access line per exchange, written by the time the process exits.
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut rest)
        .await
        .unwrap();
    let still: Vec<&str> = rest
        .lines()
        .filter(|l| l.contains(" GET /still 200 "))
        .collect();
    assert_eq!(still.len(), 1, "{rest}");
}

#[tokio::test]
async fn mismatched_key_is_refused_at_start_in_one_line() {
    let dir = TempDir::new("rev-mismatch");
    let a = TestCert::write(dir.path(), "a", &["localhost"]);
    let b = TestCert::write(dir.path(), "b", &["localhost"]);
    let out = binary(&[
        "reverse",
        "--listen",
        "127.0.0.1:0",
        "--to",
        "127.0.0.1:9",
        "--cert",
        a.cert_path(),
        "--key",
        b.src.key.to_str().unwrap(),
    ])
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("interpose: ") && lines[0].contains("does not match"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing listened");

    // An unreadable file is one line too, naming it.
    let out = binary(&[
        "reverse",
        "--to",
        "127.0.0.1:9",
        "--cert",
        "/nonexistent/c.pem",
        "--key",
        "/nonexistent/k.pem",
    ])
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/c.pem"), "{stderr}");
}

#[tokio::test]
async fn missing_or_bad_flags_are_one_line() {
    for (args, needle) in [
        (vec!["reverse"], "--to"),
        (
            vec!["reverse", "--to", "127.0.0.1:9", "--cert", "c.pem"],
            "--key",
        ),
        (
            vec!["reverse", "--to", "ftp://x"],
            "only http:// and https://",
        ),
        (
            vec!["reverse", "--to", "127.0.0.1:9", "--min-tls", "1.1"],
            "1.2 or 1.3",
        ),
    ] {
        let out = binary(&args).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
