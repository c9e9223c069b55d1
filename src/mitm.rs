//! Setting up the `mitm` mode: the CA (loaded or created), the leaf cache, upstream TLS
//! verification, and the forward engine with an interception policy.

use std::path::PathBuf;
use std::sync::Arc;

use regex::Regex;

use crate::ca::{self, CaError, CaStore, LeafCache, MitmTls};
use crate::config::{ConfigError, ForwardConfig};
use crate::proxy::intercept::Policy;
use crate::proxy::passthrough::{self, PassthroughMemory};
use crate::proxy::Engine;
use crate::tls::pem::CertError;

/// Where the interception CA comes from.
#[derive(Debug, Clone)]
pub enum CaSource {
    /// Our own store (created on first use).
    Store(CaStore),
    /// A certificate and key in two files (mkcert's `rootCA.pem` + `rootCA-key.pem`).
    Pair { cert: PathBuf, key: PathBuf },
    /// Certificate and key in one file (mitmproxy's `mitmproxy-ca.pem`).
    Combined(PathBuf),
}

/// Everything `mitm` needs besides the forward settings.
#[derive(Debug, Clone)]
pub struct MitmSettings {
    pub ca: CaSource,
    pub leaf_cache: usize,
    pub ignore_hosts: Vec<Regex>,
    /// Tunnel blind the hosts whose clients refused our certificate.
    pub auto_passthrough: bool,
    pub upstream_ca: Option<PathBuf>,
    pub insecure_upstream: bool,
}

/// Why `mitm` could not start.
#[derive(Debug, thiserror::Error)]
pub enum MitmError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Tls(#[from] CertError),
}

/// The started engine and what the user should be told.
pub struct Mitm {
    pub engine: Arc<Engine>,
    /// The CA certificate file (for `curl --cacert`), when it is one file of its own.
    pub ca_cert_path: Option<PathBuf>,
    pub ca_subject: String,
    pub ca_fingerprint: String,
    /// The CA was created just now: the user must be told how to trust it.
    pub created: bool,
}

/// Loads or creates the CA and builds the intercepting engine.
pub fn build(cfg: ForwardConfig, settings: MitmSettings) -> Result<Mitm, MitmError> {
    let (ca, created, path) = match &settings.ca {
        CaSource::Store(store) => {
            let (ca, created) = store.load_or_init()?;
            (ca, created, Some(store.cert_path()))
        }
        CaSource::Pair { cert, key } => {
            (ca::load::load_pair(cert, key)?, false, Some(cert.clone()))
        }
        CaSource::Combined(file) => (ca::load::load_combined(file)?, false, None),
    };
    let (ca_subject, ca_fingerprint) = (ca.subject().to_string(), ca.fingerprint());
    let leaves = Arc::new(LeafCache::new(Arc::new(ca), settings.leaf_cache));
    // Both sides are offered h2 and http/1.1 (`MitmTls::new` does for clients); each
    // exchange is translated when the two sides chose differently.
    let client_tls = MitmTls::new(leaves)?;
    let mut upstream = crate::tls::client::upstream_client_config(
        settings.upstream_ca.as_deref(),
        settings.insecure_upstream,
        crate::tls::provider(),
    )?;
    upstream.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let policy = Policy {
        client_tls: Arc::new(client_tls),
        ignore_hosts: settings.ignore_hosts,
        auto_passthrough: settings
            .auto_passthrough
            .then(|| PassthroughMemory::new(passthrough::DEFAULT_CAPACITY)),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(upstream));
    Ok(Mitm {
        engine: Engine::with_interception(cfg, Some((policy, connector))),
        ca_cert_path: path,
        ca_subject,
        ca_fingerprint,
        created,
    })
}
