//! TLS plumbing shared by the modes that terminate TLS: PEM loading, the server-side
//! certificate store (SNI selection, reload, self-signed default) and the crypto
//! provider every rustls config is built with.

pub mod client;
pub mod pem;
pub mod selfsigned;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The aws-lc-rs provider, chosen explicitly: with both aws-lc-rs and ring linked
/// into a build, rustls cannot pick a process-wide default by itself.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
