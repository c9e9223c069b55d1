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

/// The client-side TLS configs of interception: one shared config for the clients
/// that send SNI (nearly all), and a config built per connection for those that do not
/// (IP literals), whose leaf is then minted for the CONNECT host.
#[derive(Debug, Clone)]
pub struct MitmTls {
    leaves: Arc<LeafCache>,
    shared: Arc<ServerConfig>,
    alpn: Vec<Vec<u8>>,
}

impl MitmTls {
    /// Builds the shared config over `leaves`.
    pub fn new(leaves: Arc<LeafCache>) -> Result<Self, CaError> {
        Self::with_alpn(leaves, vec![b"h2".to_vec(), b"http/1.1".to_vec()])
    }

    /// The same, offering only the `alpn` protocols to clients (for an engine that
    /// serves HTTP/1.1 only inside tunnels).
    pub fn with_alpn(leaves: Arc<LeafCache>, alpn: Vec<Vec<u8>>) -> Result<Self, CaError> {
        let resolver = Arc::new(LeafResolver::new(Arc::clone(&leaves), None));
        let mut shared = mitm_server_config(resolver)?;
        shared.alpn_protocols = alpn.clone();
        Ok(Self {
            leaves,
            shared: Arc::new(shared),
            alpn,
        })
    }

    /// The leaf cache (mint counts, `leaf_async` to mint before the handshake).
    pub fn leaves(&self) -> &Arc<LeafCache> {
        &self.leaves
    }

    /// The config for a connection whose ClientHello carried `sni`, tunnelled with
    /// CONNECT to `connect_host`: the shared one when there is SNI.
    pub fn config_for(
        &self,
        sni: Option<&str>,
        connect_host: &str,
    ) -> Result<Arc<ServerConfig>, CaError> {
        if sni.is_some() {
            return Ok(Arc::clone(&self.shared));
        }
        let resolver = LeafResolver::new(Arc::clone(&self.leaves), Some(connect_host.to_string()));
        let mut config = mitm_server_config(Arc::new(resolver))?;
        config.alpn_protocols = self.alpn.clone();
        Ok(Arc::new(config))
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
