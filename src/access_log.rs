//! The access line: one per exchange or tunnel, on the `access` target (stdout).
//! The forward and reverse proxies print counters (`200 up=0 down=138 1.9ms`), easy to
//! parse; the intercepting proxy reads as mitmdump does (`-> 200 OK 1.2 kB 38 ms`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether access lines are printed (`--no-access-log` turns them off).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns access lines on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Everything the access line says about one exchange.
pub struct AccessRecord<'a> {
    pub client: SocketAddr,
    pub method: &'a str,
    pub target: &'a str,
    /// The status sent to the client (0 when none could be sent).
    pub status: u16,
    /// Body bytes from the client (request) and to the client (response).
    pub up: u64,
    pub down: u64,
    pub elapsed: Duration,
    /// Why the exchange failed, if it did.
    pub note: Option<&'a str>,
}

/// Emits the record as one line on the `access` target.
pub fn log_access(r: &AccessRecord<'_>) {
    if !enabled() {
        return;
    }
    // Integer arithmetic: float formatting is measurable on the hot path.
    let micros = r.elapsed.as_micros();
    let (ms, tenth) = (micros / 1000, micros / 100 % 10);
    match r.note {
        None => tracing::info!(
            target: "access",
            "{} {} {} {} up={} down={} {}.{}ms",
            r.client, r.method, r.target, r.status, r.up, r.down, ms, tenth
        ),
        Some(note) => tracing::info!(
            target: "access",
            "{} {} {} {} up={} down={} {}.{}ms ({})",
            r.client, r.method, r.target, r.status, r.up, r.down, ms, tenth, note
        ),
    }
}

/// Emits the record as mitmdump prints a flow:
/// `127.0.0.1:51234 GET https://example.org/ -> 200 OK 1.2 kB 38 ms`.
pub fn log_flow(r: &AccessRecord<'_>) {
    if !enabled() {
        return;
    }
    tracing::info!(target: "access", "{}", FlowLine(r));
}

/// The mitmdump-style line; the size is what the client received.
pub struct FlowLine<'a>(pub &'a AccessRecord<'a>);

impl fmt::Display for FlowLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "{} {} {} -> ", r.client, r.method, r.target)?;
        match r.status {
            0 => f.write_str("-")?,
            code => {
                write!(f, "{code}")?;
                let reason = http::StatusCode::from_u16(code)
                    .ok()
                    .and_then(|s| s.canonical_reason());
                if let Some(reason) = reason {
                    write!(f, " {reason}")?;
                }
            }
        }
        write!(f, " {} {}", HumanSize(r.down), HumanDuration(r.elapsed))?;
        if let Some(note) = r.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// A byte count in decimal units with one decimal, by integer arithmetic (`1.2 kB`).
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, scale) in [("GB", 1_000_000_000), ("MB", 1_000_000), ("kB", 1_000)] {
            if n >= scale {
                return write!(f, "{}.{} {unit}", n / scale, n / (scale / 10) % 10);
            }
        }
        write!(f, "{n} B")
    }
}

/// A duration as mitmdump shows it: `0.4 ms`, `38 ms`, `1.2 s`, by integer arithmetic.
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.as_micros();
        let ms = micros / 1000;
        if ms < 10 {
            write!(f, "{ms}.{} ms", micros / 100 % 10)
        } else if ms < 1000 {
            write!(f, "{ms} ms")
        } else {
            write!(f, "{}.{} s", ms / 1000, ms / 100 % 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_and_durations() {
        let size = |n| HumanSize(n).to_string();
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1234), "1.2 kB");
        assert_eq!(size(999_999), "999.9 kB");
        assert_eq!(size(5_300_000), "5.3 MB");
        assert_eq!(size(12_000_000_000), "12.0 GB");
        let dur = |us| HumanDuration(Duration::from_micros(us)).to_string();
        assert_eq!(dur(420), "0.4 ms");
        assert_eq!(dur(9_960), "9.9 ms");
        assert_eq!(dur(38_700), "38 ms");
        assert_eq!(dur(1_234_000), "1.2 s");
    }

    #[test]
    fn flow_line_reads_like_mitmdump() {
        let mut r = AccessRecord {
            client: "127.0.0.1:51234".parse().unwrap(),
            method: "GET",
            target: "https://example.org/",
            status: 200,
            up: 0,
            down: 1234,
            elapsed: Duration::from_millis(38),
            note: None,
        };
        assert_eq!(
            FlowLine(&r).to_string(),
            "127.0.0.1:51234 GET https://example.org/ -> 200 OK 1.2 kB 38 ms"
        );
        r.status = 502;
        r.down = 0;
        r.note = Some("connection to x:443 refused");
        assert_eq!(
            FlowLine(&r).to_string(),
            "127.0.0.1:51234 GET https://example.org/ -> 502 Bad Gateway 0 B 38 ms \
             (connection to x:443 refused)"
        );
        r.status = 0;
        assert!(FlowLine(&r).to_string().contains(" -> - 0 B "));
    }
}
