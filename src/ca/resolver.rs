//! Serving minted leaves to rustls: the certificate for an intercepted connection is
//! chosen from the client's SNI, or the CONNECT host when the client sends none
//! (clients never send SNI for an IP literal).

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::ServerConfig;

use super::{CaError, Leaf, LeafCache};

/// A rustls `ResolvesServerCert` that mints (once, via the cache) a leaf for the SNI
/// name, falling back to the host given at construction.
#[derive(Debug)]
pub struct LeafResolver {
    cache: Arc<LeafCache>,
    fallback: Option<String>,
}

impl LeafResolver {
    /// A resolver for one intercepted connection; `fallback` is the CONNECT host.
    pub fn new(cache: Arc<LeafCache>, fallback: Option<String>) -> Self {
        Self { cache, fallback }
    }

    /// The name a leaf is minted for: SNI first, else the fallback.
    pub fn host_for<'a>(&'a self, sni: Option<&'a str>) -> Option<&'a str> {
        sni.or(self.fallback.as_deref())
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Leaf> {
        let host = self.host_for(client_hello.server_name())?;
        match self.cache.leaf(host) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                tracing::warn!(error = %e, "no certificate for the intercepted connection");
                None
            }
        }
    }
}

/// A rustls server config (aws-lc-rs, TLS 1.2 and 1.3, ALPN h2 then http/1.1) that
/// presents leaves from `resolver`.
pub fn mitm_server_config(resolver: Arc<LeafResolver>) -> Result<ServerConfig, CaError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Mint {
            host: String::new(),
            msg: format!("cannot build the TLS server config: {e}"),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
