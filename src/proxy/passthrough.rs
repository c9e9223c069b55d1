//! `--auto-passthrough`: hosts whose clients refused our certificate (pinned apps, a
//! client that does not trust our CA) are remembered and tunnelled blind from then on.

use std::io;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use rustls::AlertDescription;

/// How many hosts are remembered; the least recently refused are forgotten first.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The hosts to tunnel blind because a client refused our certificate for them.
pub struct PassthroughMemory {
    hosts: Mutex<LruCache<String, ()>>,
}

impl PassthroughMemory {
    /// Remembers at most `capacity` hosts (at least one).
    pub fn new(capacity: usize) -> Self {
        PassthroughMemory {
            hosts: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// Whether `host` is to be tunnelled blind.
    pub fn contains(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.lock().is_ok_and(|hosts| hosts.contains(&host))
    }

    /// Remembers `host`; true when it was not remembered yet.
    pub fn remember(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self.hosts.lock() {
            Ok(mut hosts) => hosts.put(host, ()).is_none(),
            Err(_) => false,
        }
    }
}

/// After a failed handshake with a client for `name` (its SNI, else the CONNECT host):
/// remembers the host if the client refused our certificate, and says so once.
pub fn after_failed_handshake(memory: Option<&PassthroughMemory>, name: &str, err: &io::Error) {
    let Some(memory) = memory else {
        return;
    };
    if client_refused_certificate(err) && memory.remember(name) {
        tracing::info!(
            "auto-passthrough: client rejected our certificate for {name}; \
             tunnelling it blind from now on"
        );
    }
}

/// Whether a failed TLS handshake with a client means it refused our certificate: it
/// sent a certificate alert, or closed the connection in the middle of the handshake.
pub fn client_refused_certificate(err: &io::Error) -> bool {
    if matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    ) {
        return true;
    }
    let alert = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(
        alert,
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::AccessDenied
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_bounded_and_case_blind() {
        let m = PassthroughMemory::new(2);
        assert!(m.remember("A.test"));
        assert!(!m.remember("a.test"), "already remembered");
        assert!(m.contains("a.TEST"));
        m.remember("b.test");
        m.remember("c.test");
        assert!(!m.contains("a.test"), "the oldest is forgotten");
        assert!(m.contains("b.test") && m.contains("c.test"));
    }

    #[test]
    fn certificate_alerts_and_early_closes_count_as_refusals() {
        let alert = |a| io::Error::new(io::ErrorKind::InvalidData, rustls::Error::AlertReceived(a));
        assert!(client_refused_certificate(&alert(
            AlertDescription::UnknownCA
        )));
        assert!(client_refused_certificate(&alert(
            AlertDescription::BadCertificate
        )));
        assert!(client_refused_certificate(&io::Error::from(
            io::ErrorKind::UnexpectedEof
        )));
        assert!(!client_refused_certificate(&alert(
            AlertDescription::ProtocolVersion
        )));
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
        );
        assert!(!client_refused_certificate(&other));
    }
}
