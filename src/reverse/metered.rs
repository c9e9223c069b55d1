//! Body wrappers that count bytes for the access line, and the exchange record that
//! writes that line once both bodies are gone (so the line has the real sizes and time).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::access_log::{log_access, log_flow, AccessRecord};
use crate::proxy::recording::Recording;

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
    /// Written as mitmdump writes it (the intercepting proxy's line).
    flow_line: bool,
    /// Dumps and flows: heads and capped bodies, kept until the exchange ends. Boxed:
    /// inline it made every exchange's log 1.4 KiB, recorded or not.
    recording: OnceLock<Box<Mutex<Recording>>>,
    /// Reading the client's request body failed (malformed framing, or cut off).
    client_body_failed: AtomicBool,
    /// The client's request body crossed `--max-body-size`.
    body_too_large: AtomicBool,
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
            flow_line: false,
            recording: OnceLock::new(),
            client_body_failed: AtomicBool::new(false),
            body_too_large: AtomicBool::new(false),
        })
    }

    /// The same, for an intercepted exchange: the line reads as mitmdump's.
    pub fn new_flow(client: SocketAddr, method: Method, target: String) -> Arc<Self> {
        let mut log = ExchangeLog::new(client, method, target);
        if let Some(log) = Arc::get_mut(&mut log) {
            log.flow_line = true;
        }
        log
    }

    /// Keeps the exchange's recording: bodies are copied into it as they pass, and it
    /// is finished (dump printed, flow recorded, filter applied) with the access line.
    pub fn start_recording(&self, recording: Box<Recording>) {
        let _ = self.recording.set(Box::new(Mutex::new(*recording)));
    }

    /// Runs `f` on the recording, if there is one; `None` otherwise.
    pub fn with_recording<T>(&self, f: impl FnOnce(&mut Recording) -> T) -> Option<T> {
        let mut recording = self.recording.get()?.lock().ok()?;
        Some(f(&mut recording))
    }

    fn observe(&self, upload: bool, data: &[u8]) {
        if let Some(Ok(mut recording)) = self.recording.get().map(|r| r.lock()) {
            if upload {
                recording.request_body.observe(data);
            } else {
                recording.response_body.observe(data);
            }
        }
    }

    /// The status sent to the client.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Whether the client's request body failed while it was being relayed.
    pub fn client_body_failed(&self) -> bool {
        self.client_body_failed.load(Ordering::Relaxed)
    }

    /// Whether the client's request body crossed `--max-body-size`.
    pub fn body_too_large(&self) -> bool {
        self.body_too_large.load(Ordering::Relaxed)
    }

    /// Why the exchange failed; the first reason given wins.
    pub fn set_note(&self, note: String) {
        let _ = self.note.set(note);
    }
}

impl Drop for ExchangeLog {
    fn drop(&mut self) {
        let record = AccessRecord {
            client: self.client,
            method: self.method.as_str(),
            target: &self.target,
            status: self.status.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
            note: self.note.get().map(String::as_str),
        };
        let line = if self.flow_line { log_flow } else { log_access };
        match self.recording.take().and_then(|r| r.into_inner().ok()) {
            Some(recording) => recording.finish(&record, record.note, line),
            None => line(&record),
        }
    }
}

/// A body error of ours (the request body limit), or the inner body's.
pub use crate::h1::writer::BoxError;

pin_project! {
    /// A body passed through unchanged while its data bytes are added to the record;
    /// an upload crossing its limit ends in an error (so the upstream request aborts).
    pub struct Metered<B> {
        #[pin]
        inner: B,
        log: Arc<ExchangeLog>,
        upload: bool,
        limit: Option<u64>,
        seen: u64,
    }
}

impl<B> Metered<B> {
    /// Counts the client's request body, which may carry at most `limit` bytes.
    pub fn upload(inner: B, log: Arc<ExchangeLog>, limit: Option<u64>) -> Self {
        Metered {
            inner,
            log,
            upload: true,
            limit,
            seen: 0,
        }
    }

    /// Counts the response body sent to the client.
    pub fn download(inner: B, log: Arc<ExchangeLog>) -> Self {
        Metered {
            inner,
            log,
            upload: false,
            limit: None,
            seen: 0,
        }
    }
}

impl<B> Body for Metered<B>
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
        let polled = match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                if *this.upload {
                    this.log.client_body_failed.store(true, Ordering::Relaxed);
                }
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(None) => {
                if *this.upload {
                    this.log.with_recording(Recording::request_sent);
                }
                return Poll::Ready(None);
            }
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = polled.data_ref() {
            let n = data.len() as u64;
            let counter = if *this.upload {
                &this.log.up
            } else {
                &this.log.down
            };
            counter.fetch_add(n, Ordering::Relaxed);
            this.log.observe(*this.upload, data);
            *this.seen += n;
            if let Some(max) = this.limit.filter(|&max| *this.seen > max) {
                this.log.body_too_large.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(format!(
                    "request body over --max-body-size {max} bytes"
                )
                .into())));
            }
        }
        if *this.upload && this.inner.as_ref().get_ref().is_end_stream() {
            // The last frame: hyper may not poll again for the end.
            this.log.with_recording(Recording::request_sent);
        }
        Poll::Ready(Some(Ok(polled)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
