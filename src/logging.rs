//! Log setup: access lines (target `access`) go to stdout, diagnostics to stderr under
//! `RUST_LOG` (default `info`). Access lines are appended to an in-memory buffer that a
//! small thread writes out every few milliseconds, so a busy proxy spends neither a
//! syscall nor a thread wake-up per line.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Condvar};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::line_batch::LineBatch;

/// How often buffered access lines reach stdout.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A buffer this large is written at once rather than waiting for the timer.
const FLUSH_AT: usize = 256 * 1024;

/// Shared buffer of access lines waiting for stdout.
#[derive(Clone, Default)]
pub struct AccessSink {
    pending: Arc<LineBatch>,
    /// Signalled when a line lands in an empty buffer, so an idle proxy never wakes.
    arrived: Arc<Condvar>,
}

impl AccessSink {
    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        self.pending.write_with(|bytes| {
            let mut out = io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        });
    }

    fn start_flusher(&self) {
        let sink = self.clone();
        let _ = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || loop {
                sink.wait_for_lines();
                // Let a batch gather: one write for many lines.
                std::thread::sleep(FLUSH_EVERY);
                sink.flush();
            });
    }

    /// Blocks until something is buffered.
    fn wait_for_lines(&self) {
        let Ok(mut pending) = self.pending.pending().lock() else {
            return;
        };
        while pending.is_empty() {
            pending = match self.arrived.wait(pending) {
                Ok(pending) => pending,
                Err(_) => return,
            };
        }
    }
}

/// One event's worth of writing into the sink.
pub struct SinkWriter<'a>(&'a AccessSink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let full = match self.0.pending.append(buf) {
            Some((len, first)) => {
                if first {
                    self.0.arrived.notify_one();
                }
                len >= FLUSH_AT
            }
            None => false,
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
        .event_format(AccessFormat)
        .with_filter(Targets::new().with_target("access", tracing::Level::INFO));
    // Access lines never go to stderr. Said inside the EnvFilter (not as a separate
    // filter function, which would make every callsite "sometimes enabled" and cost
    // span bookkeeping on each poll of hyper's and h2's instrumented futures).
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let diagnostics_filter = EnvFilter::try_new(format!("{spec},access=off"))
        .unwrap_or_else(|_| EnvFilter::new("info,access=off"));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_filter(diagnostics_filter);
    let _ = tracing_subscriber::registry()
        .with(access)
        .with(diagnostics)
        .try_init();
    LogGuard(sink)
}

/// The access line format: an RFC 3339 UTC timestamp with milliseconds, then the message
/// as written, with none of the generic formatter's field escaping (it is the hot path).
struct AccessFormat;

impl<S, N> FormatEvent<S, N> for AccessFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut w, SystemTime::now())?;
        let mut visitor = MessageOnly {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        w.write_char('\n')
    }
}

struct MessageOnly<'a, 'b> {
    w: &'a mut Writer<'b>,
    result: fmt::Result,
}

impl Visit for MessageOnly<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.result = write!(self.w, "{value:?}");
        }
    }
}

/// `2026-11-27T13:16:23.300Z `, computed without a time-zone library.
fn write_timestamp(w: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    write!(
        w,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z ",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_419), (2025, 11, 27));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn timestamp_format() {
        let mut s = String::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_764_249_383_300);
        write_timestamp(&mut Writer::new(&mut s), t).unwrap();
        assert_eq!(s, "2025-11-27T13:16:23.300Z ");
    }
}
