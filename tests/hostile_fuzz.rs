//! Random bytes at every mode's listening socket (issue 6, item 4): a fixed seed, 300
//! connections per mode, half pure noise and half a valid chunked request with random
//! edits; afterwards the proxy must still serve a good request, and (except through a
//! blind tunnel) everything it relayed must have been well-framed.

#[path = "support/hostile_env.rs"]
mod hostile_env;
#[path = "support/recording.rs"]
mod recording;
#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use hostile_env::{Env, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections per mode in the random-bytes run.
const FUZZ_CONNECTIONS: usize = 300;

/// xorshift64*: a fixed seed gives the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes, or a valid request with a few random edits (the bytes parsers trip on).
fn fuzz_payload(rng: &mut Rng, valid: &[u8], i: usize) -> Vec<u8> {
    if i.is_multiple_of(2) {
        let len = 1 + rng.below(1500);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    const SHARP: &[u8] = b"\r\n\0 \t:;,0fF-+\"\x0b\x7f\xff";
    let mut out = valid.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(out.len().max(1));
        match rng.below(3) {
            0 => out.insert(at, SHARP[rng.below(SHARP.len())]),
            1 if out.len() > 1 => {
                out.remove(at);
            }
            _ => {
                if let Some(b) = out.get_mut(at) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
    out
}

async fn run_fuzz(mode: Mode, seed: u64) {
    let env = Arc::new(Env::start(mode).await);
    let (target, host) = env.target_and_host();
    let valid = format!(
        "POST {target}/fuzz HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    );
    let mut rng = Rng(seed);
    for batch in 0..FUZZ_CONNECTIONS / 25 {
        let mut tasks = tokio::task::JoinSet::new();
        for j in 0..25 {
            let i = batch * 25 + j;
            let payload = fuzz_payload(&mut rng, valid.as_bytes(), i);
            // Against reverse, every third connection skips TLS: raw bytes on the socket.
            let raw_socket = mode == Mode::Reverse && i % 3 == 0;
            let env = env.clone();
            tasks.spawn(async move {
                let mut chunk = [0u8; 4096];
                if raw_socket {
                    let mut s = TcpStream::connect(env.proxy).await.unwrap();
                    let _ = s.write_all(&payload).await;
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), s.read(&mut chunk)).await;
                    return;
                }
                let mut conn = env.open().await;
                let _ = conn.write_all(&payload).await;
                let _ = conn.flush().await;
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), conn.read(&mut chunk)).await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    }
    env.assert_serves("random bytes").await;
    if mode != Mode::MitmPlain {
        // Whatever the proxy relayed, it relayed as well-framed requests.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for c in env.origin.snapshot() {
            assert!(
                !c.invalid,
                "{mode:?}: relayed unparseable bytes: {:?}",
                String::from_utf8_lossy(&c.bytes)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_forward() {
    run_fuzz(Mode::Forward, 0x5eed_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_mitm_plain() {
    run_fuzz(Mode::MitmPlain, 0x5eed_0002).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_mitm_tls() {
    run_fuzz(Mode::MitmTls, 0x5eed_0003).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_against_reverse() {
    run_fuzz(Mode::Reverse, 0x5eed_0004).await;
}
