//! The request body handed to the upstream client: fed frame by frame from the
//! client connection through a small bounded channel, so memory stays flat.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// How many frames may wait between the client reader and the upstream writer.
const DEPTH: usize = 4;

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
#[error("request body aborted: {0}")]
pub struct BodyAborted(pub String);

/// A streaming request body with the length the client declared, if any.
pub enum RequestBody {
    Empty,
    Streamed {
        rx: mpsc::Receiver<Frame<Bytes>>,
        hint: SizeHint,
        finished: Arc<AtomicBool>,
    },
}

/// The writing end of a [`RequestBody`]. Dropping it without [`BodySender::finish`]
/// aborts the body, so a cut-off upload never looks complete to the origin.
pub struct BodySender {
    tx: mpsc::Sender<Frame<Bytes>>,
    finished: Arc<AtomicBool>,
}

impl BodySender {
    /// Sends one frame; false when the upstream no longer wants the body.
    pub async fn send(&self, frame: Frame<Bytes>) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    /// Marks the body complete: the receiver then ends cleanly.
    pub fn finish(self) {
        self.finished.store(true, Ordering::Release);
    }
}

impl RequestBody {
    /// A streamed body; `length` is the declared Content-Length, None for chunked.
    pub fn channel(length: Option<u64>) -> (BodySender, RequestBody) {
        let (tx, rx) = mpsc::channel(DEPTH);
        let hint = match length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        };
        let finished = Arc::new(AtomicBool::new(false));
        let sender = BodySender {
            tx,
            finished: finished.clone(),
        };
        (sender, RequestBody::Streamed { rx, hint, finished })
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Streamed { rx, finished, .. } => match rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) if finished.load(Ordering::Acquire) => Poll::Ready(None),
                Poll::Ready(None) => Poll::Ready(Some(Err(BodyAborted(
                    "client request body ended early".into(),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Streamed { hint, .. } => hint.exact() == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Streamed { hint, .. } => *hint,
        }
    }
}
