//! An executor for hyper's HTTP/2 server that runs a connection's streams inside the
//! connection's own task, instead of spawning a runtime task for each stream.
//!
//! A spawned task costs an aligned allocation (slow in glibc's allocator), a
//! registration with the runtime and a hand-off between tasks for every stream; here a
//! stream costs one node in the connection's set. The streams of one connection share
//! its task, and so its core, as they do in nginx and HAProxy.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::task::AtomicWaker;

/// A stream's future (hyper runs two kinds: request streams and upgraded ones).
type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where hyper hands the streams of one connection; [`drive`] runs them.
#[derive(Clone, Default)]
pub struct StreamSet {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Streams handed over since the last pass of [`drive`].
    queued: Mutex<Vec<Stream>>,
    /// The connection's task, woken when a stream is handed over.
    waker: AtomicWaker,
}

impl StreamSet {
    pub fn new() -> Self {
        Self::default()
    }

    fn take_queued(&self) -> Vec<Stream> {
        self.shared
            .queued
            .lock()
            .map(|mut queued| std::mem::take(&mut *queued))
            .unwrap_or_default()
    }
}

impl<F> hyper::rt::Executor<F> for StreamSet
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        if let Ok(mut queued) = self.shared.queued.lock() {
            queued.push(Box::pin(stream));
        }
        self.shared.waker.wake();
    }
}

/// Drives `conn` and the streams it hands to `set`; ends with the connection's result
/// once the connection and every stream it started are done.
pub async fn drive<C: Future>(conn: C, set: StreamSet) -> C::Output {
    let mut conn = pin!(conn);
    let mut running = FuturesUnordered::new();
    let mut result = None;
    std::future::poll_fn(|cx| {
        set.shared.waker.register(cx.waker());
        if result.is_none() {
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                result = Some(r);
            }
        }
        running.extend(set.take_queued());
        // Runs every stream that can progress; the set yields by itself when busy.
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
        if running.is_empty() {
            if let Some(r) = result.take() {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn streams_handed_over_run_and_the_connection_waits_for_them() {
        let set = StreamSet::new();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let conn = {
            let (set, done) = (set.clone(), done.clone());
            async move {
                let d = done.clone();
                set.execute(async move {
                    // Runs past the connection's own end.
                    let _ = rx.await;
                    d.fetch_add(1, Ordering::SeqCst);
                });
                let d = done.clone();
                set.execute(async move {
                    d.fetch_add(1, Ordering::SeqCst);
                });
                tokio::task::yield_now().await;
                "closed"
            }
        };
        let driving = tokio::spawn(drive(conn, set));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert!(!driving.is_finished(), "a stream is still running");
        tx.send(()).unwrap();
        assert_eq!(driving.await.unwrap(), "closed");
        assert_eq!(done.load(Ordering::SeqCst), 2);
    }
}
