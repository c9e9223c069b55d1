//! The built binary as a user runs it: started with its flags, its listening address
//! read from its first line, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::interpose_cmd;
use super::proto::ProtoOrigin;

const HANG: Duration = Duration::from_secs(30);

/// Starts the binary; returns it and its listening address (stdout drained after; a
/// reverse proxy's `https://ADDR,` is given as `https://ADDR`).
pub async fn start(args: &[&str]) -> (Child, String) {
    let (child, addr, _) = start_capturing(args).await;
    (child, addr)
}

/// The same, and what the binary prints on stdout after its first line (read until it
/// exits, so the pipe never fills).
pub async fn start_capturing(args: &[&str]) -> (Child, String, JoinHandle<String>) {
    let mut child = interpose_cmd(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (_, addr) = read_listening(&mut stdout).await;
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest).await;
        rest
    });
    (child, addr, rest)
}

/// Reads the binary's startup line (`listening on ADDR ...`): the line and the address.
pub async fn read_listening(stdout: &mut BufReader<ChildStdout>) -> (String, String) {
    let mut first = String::new();
    timeout(HANG, stdout.read_line(&mut first))
        .await
        .expect("no startup line")
        .unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .trim_end_matches(',')
        .to_string();
    (first, addr)
}

/// `interpose mitm` with a fresh CA in `dir/ca`, trusting `origin_ca` upstream.
pub async fn start_mitm(dir: &Path, origin_ca: &Path, extra: &[&str]) -> (Child, String) {
    let ca_dir = dir.join("ca");
    let mut args = vec![
        "mitm",
        "--listen",
        "127.0.0.1:0",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--upstream-ca",
        origin_ca.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    start(&args).await
}

/// SIGTERM, and a clean exit.
pub async fn stop(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = timeout(HANG, child.wait()).await.expect("no exit").unwrap();
    assert!(status.success(), "{status}");
}

/// The origins' certificates in one bundle, for `--upstream-ca`.
pub fn bundle(dir: &Path, origins: &[&ProtoOrigin]) -> PathBuf {
    let path = dir.join("origins.pem");
    let pems: Vec<&str> = origins.iter().map(|o| o.cert_pem.as_str()).collect();
    std::fs::write(&path, pems.join("\n")).unwrap();
    path
}
