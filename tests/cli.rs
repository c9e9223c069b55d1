//! The `interpose` binary itself: refusing bad configurations with one clear line,
//! help text, startup output, serving, and a clean exit on SIGTERM.

mod support;

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Upper bound used only to turn a hang into a failure.
const HANG: Duration = Duration::from_secs(20);

/// Runs a command that is expected to exit by itself; (status, stdout, stderr).
async fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let out = timeout(HANG, interpose_cmd(args).output())
        .await
        .unwrap_or_else(|_| panic!("interpose {args:?} did not exit"))
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn non_empty_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// A running `interpose` server, killed if the test ends early.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// The rest of stdout, drained so the child never blocks on a full pipe.
    stdout_rest: JoinHandle<String>,
}

impl Running {
    /// Starts `args`, waits for `listening on ADDR` on stdout.
    async fn start(args: &[&str]) -> Running {
        let mut child = interpose_cmd(args).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        timeout(HANG, stdout.read_line(&mut first))
            .await
            .expect("no startup line")
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        let stdout_rest = tokio::spawn(async move {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest).await;
            rest
        });
        Running {
            child,
            addr,
            stdout_rest,
        }
    }

    /// Sends SIGTERM and waits for the exit; (status, rest of stdout).
    async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = timeout(HANG, self.child.wait())
            .await
            .expect("no exit after SIGTERM")
            .unwrap();
        let rest = timeout(HANG, self.stdout_rest).await.unwrap().unwrap();
        (status, rest)
    }
}

#[tokio::test]
async fn listening_off_loopback_without_guard_is_refused_as_an_open_proxy() {
    let (status, stdout, stderr) = run_to_exit(&["forward", "--listen", "0.0.0.0:0"]).await;
    assert!(!status.success());
    let lines = non_empty_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("open proxy"), "{stderr}");
    assert!(!stdout.contains("listening"), "{stdout}");
}

#[tokio::test]
async fn bad_connect_port_is_one_clear_error() {
    let (status, stdout, stderr) = run_to_exit(&[
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--allow-connect-port",
        "70000",
    ])
    .await;
    assert!(!status.success());
    assert!(!stdout.contains("listening"), "{stdout}");
    let lines = non_empty_lines(&stderr);
    // One line says what is wrong; clap may add its standard pointer to --help.
    let first = lines.first().copied().unwrap_or_default();
    assert!(
        first.contains("70000") && first.contains("--allow-connect-port"),
        "{stderr}"
    );
    assert!(first.contains("1-65535"), "{stderr}");
    assert!(
        lines[1..].iter().all(|l| l.contains("--help")),
        "more than one line of explanation: {stderr}"
    );
}

#[tokio::test]
async fn forward_help_mentions_every_flag() {
    let (status, stdout, _) = run_to_exit(&["forward", "--help"]).await;
    assert!(status.success());
    for flag in [
        "--listen",
        "--allow-connect-port",
        "--auth",
        "--allow-client",
        "--allow-open",
        "--connect-timeout",
        "--response-timeout",
        "--idle-timeout",
        "--header-timeout",
        "--grace",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from help:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_serves_then_exits_cleanly_on_sigterm() {
    let origin = TestOrigin::echo().await;
    let proxy = Running::start(&["forward", "--listen", "127.0.0.1:0"]).await;
    assert!(proxy.addr.ip().is_loopback() && proxy.addr.port() != 0);
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", proxy.addr)).unwrap())
        .timeout(HANG)
        .build()
        .unwrap();
    let body = client
        .get(origin.url("/through-binary"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("GET /through-binary HTTP/1.1"), "{body}");
    drop(client);
    let (status, stdout) = proxy.terminate().await;
    assert!(status.success(), "{status:?}");
    // The access line for the exchange was flushed before exit.
    assert!(stdout.contains("/through-binary 200"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_tunnel_open_exits_after_the_grace_period() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let held = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let proxy = Running::start(&["forward", "--listen", "127.0.0.1:0", "--grace", "300ms"]).await;
    let mut tunnel = TcpStream::connect(proxy.addr).await.unwrap();
    tunnel
        .write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut head = [0u8; 39];
    timeout(HANG, tunnel.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&head),
        String::from_utf8_lossy(established)
    );
    let _upstream = held.await.unwrap().unwrap();
    let (status, _) = proxy.terminate().await;
    assert!(status.success(), "{status:?}");
    // The process is gone, and the tunnel with it.
    let mut rest = Vec::new();
    let ended = timeout(HANG, tunnel.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "tunnel still open after the process exited");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_lists_the_request_line_and_headers() {
    let echo = Running::start(&["echo", "--listen", "127.0.0.1:0"]).await;
    let answer = raw_exchange(
        echo.addr,
        format!(
            "GET /probe?x=1 HTTP/1.1\r\nHost: {}\r\nX-Probe: forty-two\r\nConnection: close\r\n\r\n",
            echo.addr
        )
        .as_bytes(),
        HANG,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert!(body.starts_with("GET /probe?x=1 HTTP/1.1"), "{body}");
    assert!(body.contains("x-probe: forty-two"), "{body}");
    assert!(body.contains(&format!("host: {}", echo.addr)), "{body}");
    let (status, _) = echo.terminate().await;
    assert!(status.success(), "{status:?}");
}
