//! Hostile input end to end (issue 6, item 4): the malformed and smuggling-style corpus
//! of `support/hostile_cases.rs` against every mode (forward; mitm with plain HTTP and
//! with TLS inside CONNECT; reverse over TLS), each case followed by a good request on a
//! fresh connection. A recording origin shows exactly what each proxy relayed.
//! (Random bytes: `hostile_fuzz.rs`; HTTP/2 frames: `reverse_h2_hostile.rs`.)

#[path = "support/hostile_cases.rs"]
mod hostile_cases;
#[path = "support/hostile_env.rs"]
mod hostile_env;
#[path = "support/recording.rs"]
mod recording;
#[path = "support/reverse.rs"]
mod reverse_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use hostile_cases::{corpus, Case, Expect, Want};
use hostile_env::{read_outcome, Env, Mode, Outcome};
use interpose::proxy::peek::{classify, FirstBytes};
use recording::{ConnRecord, SeenRequest};
use tokio::io::AsyncWriteExt;

/// Runs one case; returns whether it went through a blind tunnel.
async fn run_case(env: &Env, index: usize, case: &Case) -> bool {
    let path = format!("/k{index:03}z");
    let (target, host) = env.target_and_host();
    let bytes = case.render(&target, &host, &path);
    let blind = env.mode == Mode::MitmPlain && classify(&bytes) != FirstBytes::PlainHttp;
    let conns_before = env.origin.snapshot().len();
    let mut conn = env.open().await;
    let _ = conn.write_all(&bytes).await;
    let _ = conn.flush().await;
    let name = format!("{:?} case {index} {}", env.mode, case.name);
    let expect = case.expect(
        matches!(env.mode, Mode::MitmPlain | Mode::MitmTls),
        env.mode == Mode::Reverse,
    );
    let outcome = read_outcome(&mut conn).await;
    if blind {
        // Not HTTP-looking: a blind tunnel, by design. The origin gets the very bytes.
        drop(conn);
        let got = wait_for(|| {
            let conns = env.origin.snapshot();
            conns[conns_before..].iter().any(|c| c.bytes == bytes)
        })
        .await;
        assert!(
            got,
            "{name}: blind tunnel did not carry the bytes unchanged"
        );
        return true;
    }
    let marker = |r: &SeenRequest| r.target.contains(&path);
    match expect {
        Expect::Reject => {
            assert!(
                outcome.is_refusal(),
                "{name}: expected 4xx or close, got {outcome:?}"
            );
            assert!(
                !env.origin.saw_bytes(path.as_bytes()),
                "{name}: bytes reached the origin: {:?}",
                env.origin.snapshot().last()
            );
        }
        Expect::RejectBody => {
            assert!(
                outcome.is_refusal(),
                "{name}: expected 4xx or close, got {outcome:?}"
            );
            let complete = env.origin.requests().into_iter().filter(marker).count();
            assert_eq!(complete, 0, "{name}: a complete request reached the origin");
        }
        Expect::Accept(want) => {
            assert_eq!(outcome, Outcome::Status(200), "{name}: expected acceptance");
            let seen: Vec<SeenRequest> = env.origin.requests().into_iter().filter(marker).collect();
            assert_eq!(seen.len(), 1, "{name}: origin saw {seen:#?}");
            check_want(&name, &seen[0], &want);
        }
    }
    false
}

fn check_want(name: &str, seen: &SeenRequest, want: &Want) {
    assert_eq!(seen.method, want.method, "{name}");
    assert_eq!(seen.body, want.body, "{name}: body");
    for (n, v) in want.has {
        assert_eq!(seen.values(n), vec![*v], "{name}: header {n}");
    }
    for n in want.absent {
        assert!(seen.values(n).is_empty(), "{name}: {n} arrived: {seen:?}");
    }
    for needle in want.absent_raw {
        let raw = String::from_utf8_lossy(&seen.raw);
        assert!(
            !raw.contains(needle),
            "{name}: {needle:?} arrived in {raw:?}"
        );
    }
    for n in want.absent_trailers {
        assert!(
            !seen.trailers.iter().any(|(t, _)| t == n),
            "{name}: trailer {n} arrived: {:?}",
            seen.trailers
        );
    }
}

/// Polls `f` for up to two seconds.
async fn wait_for(f: impl Fn() -> bool) -> bool {
    for _ in 0..40 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// No upstream connection carried unparseable bytes or leftovers, except blind tunnels.
async fn assert_origin_clean(env: &Env, blind: &[Vec<u8>]) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, c) in env.origin.snapshot().iter().enumerate() {
        if blind.iter().any(|b| c.bytes.starts_with(b)) {
            continue;
        }
        let ConnRecord {
            invalid, closed, ..
        } = c;
        assert!(
            !invalid,
            "{:?}: origin conn {i} got unparseable bytes: {:?}",
            env.mode,
            String::from_utf8_lossy(&c.bytes)
        );
        for r in &c.requests {
            assert!(
                r.target.starts_with("/k") || r.target == "/good",
                "{:?}: a request nobody sent reached the origin: {r:?}",
                env.mode
            );
        }
        assert!(
            c.leftover() == 0 || *closed,
            "{:?}: origin conn {i} holds {} unframed bytes and stays open",
            env.mode,
            c.leftover()
        );
    }
}

async fn run_corpus(mode: Mode) {
    let env = Arc::new(Env::start(mode).await);
    env.assert_serves("start").await;
    let cases = Arc::new(corpus());
    assert!(cases.len() >= 60, "corpus has {} cases", cases.len());
    let (mut blind, mut failed) = (Vec::new(), Vec::new());
    for i in 0..cases.len() {
        // Each case in its own task, so one failure still shows all the others.
        let (e, c) = (env.clone(), cases.clone());
        match tokio::spawn(async move { run_case(&e, i, &c[i]).await }).await {
            Ok(true) => {
                let (t, h) = env.target_and_host();
                blind.push(cases[i].render(&t, &h, &format!("/k{i:03}z")));
            }
            Ok(false) => {}
            Err(_) => failed.push(cases[i].name),
        }
        env.assert_serves(cases[i].name).await;
    }
    assert!(failed.is_empty(), "{mode:?}: failed cases {failed:?}");
    assert_origin_clean(&env, &blind).await;
    eprintln!("{mode:?}: {} cases, {} blind", cases.len(), blind.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_forward() {
    run_corpus(Mode::Forward).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_mitm_plain_inside_connect() {
    run_corpus(Mode::MitmPlain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_mitm_tls_inside_connect() {
    run_corpus(Mode::MitmTls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_against_reverse_tls_h1() {
    run_corpus(Mode::Reverse).await;
}
