//! `--config FILE.toml` and `check-config` through the built binary: a file behaves as the
//! same flags, the command line wins, and a bad file is one line and exit status 2.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use support::*;
use tokio::process::Child;
use tokio::time::timeout;

/// Upper bound used only to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(20);

/// Two distinct ports free a moment ago on 127.0.0.1, for tests that name listen addresses.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn write_config(dir: &TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("interpose.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a command expected to exit by itself; (status, stdout, stderr).
async fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let out = timeout(HANG, interpose_cmd(args).output())
        .await
        .unwrap_or_else(|_| panic!("interpose {args:?} did not exit"))
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status, text(&out.stdout), text(&out.stderr))
}

/// Starts `args` and waits for `listening on ADDR`; the child is killed when dropped.
async fn start(args: &[&str]) -> (Child, SocketAddr) {
    let (child, addr) = support::binary::start(args).await;
    (child, addr.parse().unwrap())
}

/// The status lines a forward proxy with auth alice:secret and CONNECT port 443 gives.
async fn guarded_answers(addr: SocketAddr) -> (String, String) {
    let wait = Duration::from_secs(2);
    let no_auth =
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: close\r\n\r\n";
    // "alice:secret" in base64.
    let port_80 = "CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\
                   Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\nConnection: close\r\n\r\n";
    let first_line = |s: String| s.lines().next().unwrap_or_default().to_string();
    (
        first_line(raw_exchange(addr, no_auth.as_bytes(), wait).await),
        first_line(raw_exchange(addr, port_80.as_bytes(), wait).await),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_behaves_as_the_same_flags() {
    let dir = TempDir::new("config-equivalence");
    let (file_port, flag_port) = free_ports();
    let config = write_config(
        &dir,
        &format!(
            "[forward]\nlisten = \"127.0.0.1:{file_port}\"\nauth = \"alice:secret\"\n\
             allow-connect-port = \"443\"\n"
        ),
    );
    let (_from_file, file_addr) = start(&["forward", "--config", config.to_str().unwrap()]).await;
    let listen = format!("127.0.0.1:{flag_port}");
    let (_from_flags, flag_addr) = start(&[
        "forward",
        "--listen",
        &listen,
        "--auth",
        "alice:secret",
        "--allow-connect-port",
        "443",
    ])
    .await;
    assert_eq!(file_addr, format!("127.0.0.1:{file_port}").parse().unwrap());
    assert_eq!(flag_addr, listen.parse().unwrap());
    let from_file = guarded_answers(file_addr).await;
    assert!(from_file.0.starts_with("HTTP/1.1 407"), "{from_file:?}");
    assert!(from_file.1.starts_with("HTTP/1.1 403"), "{from_file:?}");
    assert_eq!(from_file, guarded_answers(flag_addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_overrides_the_file() {
    let dir = TempDir::new("config-override");
    let (file_port, flag_port) = free_ports();
    let config = write_config(
        &dir,
        &format!("[echo]\nlisten = \"127.0.0.1:{file_port}\"\n"),
    );
    let listen = format!("127.0.0.1:{flag_port}");
    let path = config.to_str().unwrap();
    let (_echo, addr) = start(&["echo", "--config", path, "--listen", &listen]).await;
    assert_eq!(addr, listen.parse().unwrap());
}

#[tokio::test]
async fn an_unknown_key_is_one_line_naming_it_and_exit_2() {
    let dir = TempDir::new("config-unknown-key");
    let config = write_config(&dir, "[mitm]\nlissten = \"127.0.0.1:0\"\n");
    let path = config.to_str().unwrap();
    let (status, stdout, stderr) = run_to_exit(&["mitm", "--config", path]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "interpose: config {path}: unknown key \"mitm.lissten\" (did you mean \"listen\"?)"
        )
    );
}

#[tokio::test]
async fn an_invalid_value_in_the_file_names_the_key() {
    let dir = TempDir::new("config-bad-value");
    let config = write_config(&dir, "[forward]\nallow-connect-port = \"70000\"\n");
    let path = config.to_str().unwrap();
    let (status, _, stderr) = run_to_exit(&["forward", "--config", path]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let want = format!("interpose: config {path}: key \"forward.allow-connect-port\": ");
    assert!(
        stderr.starts_with(&want) && stderr.contains("70000"),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_config_accepts_a_good_file_and_names_its_modes() {
    let dir = TempDir::new("check-config-ok");
    let config = write_config(
        &dir,
        "[forward]\nlisten = \"127.0.0.1:0\"\nallow-client = [\"127.0.0.1/32\"]\n\
         [reverse]\nlisten = \"127.0.0.1:0\"\nto = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n",
    );
    let path = config.to_str().unwrap();
    let (status, stdout, stderr) = run_to_exit(&["check-config", path]).await;
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stdout.trim_end(),
        format!("config {path}: ok (forward, reverse)")
    );
}

#[tokio::test]
async fn check_config_refuses_a_bad_file_with_one_line_and_exit_2() {
    let dir = TempDir::new("check-config-bad");
    for (text, says) in [
        ("[forward]\nlisten = \"0.0.0.0:0\"\n", "open proxy"),
        ("[reverse]\nlisten = \"127.0.0.1:0\"\n", "--to"),
        (
            "[revers]\nto = \"127.0.0.1:9\"\n",
            "unknown table \"revers\"",
        ),
        ("[forward]\nlisten = \n", ":2:"),
    ] {
        let config = write_config(&dir, text);
        let path = config.to_str().unwrap();
        let (status, stdout, stderr) = run_to_exit(&["check-config", path]).await;
        assert_eq!(status.code(), Some(2), "{text}: {stderr}");
        assert!(stdout.is_empty(), "{text}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{text}: {stderr}");
        assert!(stderr.starts_with("interpose: "), "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
    }
    let (status, _, stderr) = run_to_exit(&["check-config", "/nonexistent/interpose.toml"]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("interpose: cannot read config /nonexistent/interpose.toml: "),
        "{stderr}"
    );
}
