//! What the HTTP/2 interception watches on its streams, since hyper's server has no
//! idle or stall limits of its own: bodies that stop moving, and how many streams are
//! open (an HTTP/2 connection with none open for the idle timeout is closed).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::h1::writer::BoxError;

pin_project! {
    /// A body that fails when its source gives nothing for `idle` while it is waited on.
    pub struct StallLimit<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Sleep,
        idle: Duration,
        waiting: bool,
        what: &'static str,
    }
}

impl<B> StallLimit<B> {
    /// Limits `inner`; `what` names it in the error (`request body`, `response`).
    pub fn new(inner: B, idle: Duration, what: &'static str) -> Self {
        StallLimit {
            inner,
            timer: tokio::time::sleep(idle),
            idle,
            waiting: false,
            what,
        }
    }
}

impl<B> Body for StallLimit<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        // The clock runs from when the frame is asked for, not while the reader is slow.
        if !*this.waiting {
            *this.waiting = true;
            let deadline = tokio::time::Instant::now() + *this.idle;
            this.timer.as_mut().reset(deadline);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.waiting = false;
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "{} stalled for {}s",
                    this.what,
                    this.idle.as_secs_f64()
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Streams open on one client connection, and since when none has been.
pub struct Activity {
    open: AtomicUsize,
    quiet_since: Mutex<Option<Instant>>,
}

impl Activity {
    /// A connection with no stream yet, quiet from now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            open: AtomicUsize::new(0),
            quiet_since: Mutex::new(Some(Instant::now())),
        })
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn open_stream(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut since) = self.quiet_since.lock() {
            *since = None;
        }
        StreamGuard(self.clone())
    }

    /// How long no stream has been open (`None` while one is).
    pub fn quiet_for(&self) -> Option<Duration> {
        self.quiet_since.lock().ok()?.map(|since| since.elapsed())
    }
}

/// One open stream; dropped with the response body.
pub struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Ok(mut since) = self.0.quiet_since.lock() {
                *since = Some(Instant::now());
            }
        }
    }
}

pin_project! {
    /// A response body that keeps its stream counted as open until it is dropped.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        guard: StreamGuard,
    }
}

impl<B> Counted<B> {
    pub fn new(inner: B, guard: StreamGuard) -> Self {
        Counted { inner, guard }
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_silent_body_fails_after_the_limit() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let silent = StreamBody::new(tokio_stream_like(rx));
        let mut body = std::pin::pin!(StallLimit::new(
            silent,
            Duration::from_millis(50),
            "response"
        ));
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "response stalled for 0.05s");
    }

    #[test]
    fn quiet_time_counts_from_the_last_stream() {
        let activity = Activity::new();
        assert!(activity.quiet_for().is_some());
        let a = activity.open_stream();
        let b = activity.open_stream();
        assert!(activity.quiet_for().is_none());
        drop(a);
        assert!(activity.quiet_for().is_none());
        drop(b);
        assert!(activity.quiet_for().is_some());
    }

    fn tokio_stream_like<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
