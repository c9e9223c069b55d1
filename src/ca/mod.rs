//! The certificate authority of `interpose mitm`: creating and storing our own CA,
//! loading a user's (mkcert, mitmproxy, openssl), minting leaves for intercepted hosts,
//! caching them with single-flight, and serving them to rustls by SNI.
//!
//! How the pieces fit:
//! - [`store::CaStore`]: `~/.local/share/interpose/ca.pem` + `ca-key.pem`, created once.
//! - [`load`]: `--ca-cert/--ca-key` or one combined file, checked (CA? key matches?).
//! - [`Ca`]: the loaded authority plus the one leaf key pair every leaf shares.
//! - [`mint::mint_leaf`]: one signature per host; [`cache::LeafCache`] makes it once per host.
//! - [`resolver::LeafResolver`]: the rustls `ResolvesServerCert` the interception uses.
//! - [`export`]: `interpose ca export|path` and how to trust the CA.

pub mod cache;
pub mod export;
pub mod load;
pub mod mint;
pub mod resolver;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::SigningKey;
use rustls_pki_types::CertificateDer;

pub use cache::{LeafCache, DEFAULT_CAPACITY};
pub use export::{pem_encode, trust_instructions};
pub use mint::mint_leaf;
pub use resolver::{mitm_server_config, LeafResolver, MitmTls};
pub use store::CaStore;

/// A leaf ready for rustls: chain (leaf, CA) plus the shared leaf signing key.
pub type Leaf = Arc<rustls::sign::CertifiedKey>;

/// Why a CA could not be created, loaded or used. `Display` names the file or host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CaError {
    /// Reading, writing or creating a file or directory failed.
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    /// The private key file may be read by other users: refused, as issue 6 asks.
    #[error(
        "{path}: the CA private key is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {path}`"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {msg}")]
    Pem { path: PathBuf, msg: String },
    /// The certificate cannot sign others (no basicConstraints CA:TRUE).
    #[error("{path}: certificate \"{subject}\" is not a CA (basicConstraints CA:TRUE missing)")]
    NotCa { path: PathBuf, subject: String },
    /// The private key is not the one of the certificate.
    #[error("{key}: the private key does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The CA is well-formed but unusable here (expired, unsupported name or key type).
    #[error("{path}: {msg}")]
    Unusable { path: PathBuf, msg: String },
    /// `init` was asked to create a CA where one (or half of one) already is.
    #[error("{path}: already exists; refusing to overwrite a CA")]
    AlreadyExists { path: PathBuf },
    /// Minting a leaf for this host failed (e.g. the name is not a valid DNS name).
    #[error("cannot mint a certificate for {host:?}: {msg}")]
    Mint { host: String, msg: String },
}

/// A loaded certificate authority, ready to mint leaves.
///
/// Holds the CA key; `Debug` deliberately prints only the subject and path.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    subject: String,
    cert_path: Option<PathBuf>,
    /// rcgen's view of the CA (subject, key identifier) used as the issuer.
    issuer: rcgen::Certificate,
    key: rcgen::KeyPair,
    /// Leaves get an authority key identifier only when the CA has a subject key id.
    has_ski: bool,
    not_after: time::OffsetDateTime,
    leaf_key: LeafKey,
}

/// The one P-256 key pair all leaves share, so minting is a single CA signature.
struct LeafKey {
    pair: rcgen::KeyPair,
    signer: Arc<dyn SigningKey>,
}

impl Ca {
    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM (what `interpose ca export` prints).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA subject as text, for log lines.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Where the certificate was loaded from, when it came from a file.
    pub fn cert_path(&self) -> Option<&Path> {
        self.cert_path.as_deref()
    }

    /// SHA-256 fingerprint of the CA certificate, `AB:CD:…` as browsers show it.
    pub fn fingerprint(&self) -> String {
        crate::tls::selfsigned::sha256_fingerprint(&self.cert_der)
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}
