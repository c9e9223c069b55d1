//! Body wrappers that count bytes for the access line, and the exchange record that
//! writes that line once both bodies are gone (so the line has the real sizes and time).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::access_log::{log_access, AccessRecord};

/// What the access line says about one exchange; written when the last holder drops it.
pub struct ExchangeLog {
    client: SocketAddr,
    method: Method,
    target: String,
    started: Instant,
    status: AtomicU16,
    up: AtomicU64,
    down: AtomicU64,
    note: OnceLock<String>,
    /// Reading the client's request body failed (malformed framing, or cut off).
    client_body_failed: AtomicBool,
}

impl ExchangeLog {
    /// Starts the clock for one exchange.
    pub fn new(client: SocketAddr, method: Method, target: String) -> Arc<Self> {
        Arc::new(ExchangeLog {
            client,
            method,
            target,
            started: Instant::now(),
            status: AtomicU16::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            note: OnceLock::new(),
            client_body_failed: AtomicBool::new(false),
        })
    }

    /// The status sent to the client.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Whether the client's request body failed while it was being relayed.
    pub fn client_body_failed(&self) -> bool {
        self.client_body_failed.load(Ordering::Relaxed)
    }

    /// Why the exchange failed; the first reason given wins.
    pub fn set_note(&self, note: String) {
        let _ = self.note.set(note);
    }
}

impl Drop for ExchangeLog {
    fn drop(&mut self) {
        log_access(&AccessRecord {
            client: self.client,
            method: self.method.as_str(),
            target: &self.target,
            status: self.status.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
            note: self.note.get().map(String::as_str),
        });
    }
}

pin_project! {
    /// A body passed through unchanged while its data bytes are added to the record.
    pub struct Metered<B> {
        #[pin]
        inner: B,
        log: Arc<ExchangeLog>,
        upload: bool,
    }
}

impl<B> Metered<B> {
    /// Counts the client's request body.
    pub fn upload(inner: B, log: Arc<ExchangeLog>) -> Self {
        Metered {
            inner,
            log,
            upload: true,
        }
    }

    /// Counts the response body sent to the client.
    pub fn download(inner: B, log: Arc<ExchangeLog>) -> Self {
        Metered {
            inner,
            log,
            upload: false,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if *this.upload && matches!(polled, Poll::Ready(Some(Err(_)))) {
            this.log.client_body_failed.store(true, Ordering::Relaxed);
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let counter = if *this.upload {
                    &this.log.up
                } else {
                    &this.log.down
                };
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
