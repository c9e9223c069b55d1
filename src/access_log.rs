//! The access line: one per exchange or tunnel, on the `access` target (stdout).

use std::net::SocketAddr;
use std::time::Duration;

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
