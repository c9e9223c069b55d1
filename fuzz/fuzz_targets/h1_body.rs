//! Fuzzes HTTP/1 message reading: a head, then its body decoded frame by frame
//! (Content-Length, chunked with extensions and trailers, or until close).
//!
//! The first byte picks what is read (a request, a response, a response to HEAD, or a
//! bare chunked body) and how the second reading is fed. Each input is read twice over
//! in-memory streams: once from a plain `&[u8]` (always ready), once from a stream that
//! hands out a few bytes at a time and says `Pending` every other poll, where each
//! pending read is dropped and started again, as the proxy does with `now_or_never`. No
//! tokio runtime is needed: neither stream registers with one, so a no-op waker drives
//! both. Invariants: no panic, no endless loop, no more body than input, a complete
//! Content-Length body has its length, and when both readings succeed they agree
//! (the reader claims to be cancel-safe).

#![no_main]

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

use interpose::h1::head::Framing;
use interpose::h1::reader::{BodyPiece, BodyState, MessageReader};

/// Hands out at most `piece` bytes per read and returns `Pending` every other poll.
struct Trickle<'a> {
    data: &'a [u8],
    piece: usize,
    ready: bool,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.ready = !self.ready;
        if !self.ready {
            return Poll::Pending;
        }
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

/// Polls the future `$make` builds until it is ready. With `$retry`, a pending future is
/// dropped and built again (the reader claims to be cancel-safe); without, pending is a
/// bug, as every in-memory read is ready at once. `$budget` bounds the polls.
macro_rules! drive {
    ($retry:expr, $budget:expr, $make:expr) => {{
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            assert!(*$budget > 0, "no progress: endless loop in the reader");
            *$budget -= 1;
            let mut fut = pin!($make);
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(out) => break out,
                Poll::Pending => assert!($retry, "an in-memory read was pending"),
            }
        }
    }};
}

#[derive(Debug, PartialEq, Eq, Default)]
struct Outcome {
    framing: Option<Framing>,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
}

/// Reads one message as `mode` says: a head (unless a bare chunked body), then its body.
fn read_message<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
    mode: u8,
    retry: bool,
    budget: &mut usize,
) -> Result<Outcome, String> {
    let mut out = Outcome::default();
    let framing = match mode % 4 {
        3 => Framing::Chunked,
        0 => match drive!(retry, budget, reader.read_request_head()).map_err(|e| e.to_string())? {
            Some(head) => head.framing,
            None => return Ok(out),
        },
        m => match drive!(retry, budget, reader.read_response_head(m == 2))
            .map_err(|e| e.to_string())?
        {
            Some(head) => head.framing,
            None => return Ok(out),
        },
    };
    out.framing = Some(framing);
    let mut state = BodyState::new(framing);
    while let Some(piece) =
        drive!(retry, budget, reader.read_body(&mut state)).map_err(|e| e.to_string())?
    {
        match piece {
            BodyPiece::Data(d) => {
                assert!(!d.is_empty(), "empty data piece");
                out.body.extend_from_slice(&d);
            }
            BodyPiece::Trailers(t) => {
                for (name, value) in &t {
                    out.trailers
                        .push((name.to_string(), value.as_bytes().to_vec()));
                }
            }
        }
    }
    assert!(state.is_done());
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };

    // The plain reading: every read is ready at once.
    let mut plain = MessageReader::new(input);
    let mut budget = 4 * input.len() + 64;
    let a = read_message(&mut plain, mode, false, &mut budget);
    if let Ok(out) = &a {
        assert!(out.body.len() <= input.len());
        if let Some(Framing::Length(n)) = out.framing {
            assert_eq!(out.body.len() as u64, n);
        }
    }

    // The trickling reading, with pending reads dropped and started again.
    let piece = usize::from(mode >> 2) + 1;
    let mut trickle = MessageReader::new(Trickle {
        data: input,
        piece,
        ready: false,
    });
    let mut budget = 8 * input.len() + 256;
    let b = read_message(&mut trickle, mode, true, &mut budget);

    if let (Ok(a), Ok(b)) = (&a, &b) {
        assert_eq!(a, b, "the trickled reading differs (piece size {piece})");
    }
});
