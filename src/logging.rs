//! Log setup: access lines (target `access`) go to stdout, diagnostics to stderr under
//! `RUST_LOG` (default `info`). Access lines are appended to an in-memory buffer that a
//! small thread writes out every few milliseconds, so a busy proxy spends neither a
//! syscall nor a thread wake-up per line.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How often buffered access lines reach stdout.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A buffer this large is written at once rather than waiting for the timer.
const FLUSH_AT: usize = 256 * 1024;

/// Shared buffer of access lines waiting for stdout.
#[derive(Clone, Default)]
pub struct AccessSink {
    pending: Arc<Mutex<Vec<u8>>>,
}

impl AccessSink {
    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        let bytes = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if !bytes.is_empty() {
            let mut out = io::stdout().lock();
            let _ = out.write_all(&bytes);
            let _ = out.flush();
        }
    }

    fn start_flusher(&self) {
        let sink = self.clone();
        let _ = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                sink.flush();
            });
    }
}

/// One event's worth of writing into the sink.
pub struct SinkWriter<'a>(&'a AccessSink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let full = match self.0.pending.lock() {
            Ok(mut pending) => {
                pending.extend_from_slice(buf);
                pending.len() >= FLUSH_AT
            }
            Err(_) => false,
        };
        if full {
            self.0.flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for AccessSink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter(self)
    }
}

/// Flushes buffered access lines when dropped (keep it alive for the whole run).
pub struct LogGuard(AccessSink);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// Installs the subscriber and starts the access-line flusher.
pub fn init() -> LogGuard {
    let sink = AccessSink::default();
    sink.start_flusher();
    let access = tracing_subscriber::fmt::layer()
        .with_writer(sink.clone())
        .with_ansi(false)
        .with_target(false)
        .with_level(false)
        .with_filter(Targets::new().with_target("access", tracing::Level::INFO));
    let diagnostics_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_filter(diagnostics_filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() != "access"
        }));
    let _ = tracing_subscriber::registry()
        .with(access)
        .with(diagnostics)
        .try_init();
    LogGuard(sink)
}
