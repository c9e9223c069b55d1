//! The server side of TLS: a certificate store that picks a certificate by SNI, can be
//! reloaded from disk while connections stay open, and the rustls `ServerConfig`
//! (versions, ALPN) built around it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::pem::{load_certified_key, CertError, CertSource};
use super::selfsigned::{mint_localhost, SelfSigned};

/// The lowest TLS version a server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinTls {
    V12,
    V13,
}

/// Where the certificates come from: a default pair (None: self-signed) and SNI pairs.
#[derive(Debug, Clone, Default)]
pub struct CertSources {
    /// The certificate for clients whose SNI matches no other (None: self-signed).
    pub default: Option<CertSource>,
    /// `(server name, pair)`; a name may be `*.example.org`.
    pub by_name: Vec<(String, CertSource)>,
}

/// One loaded generation of certificates.
struct CertSet {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// Certificates chosen by SNI, swappable as a whole by [`CertStore::reload`].
pub struct CertStore {
    sources: CertSources,
    provider: Arc<CryptoProvider>,
    /// Kept across reloads so the fingerprint printed at start stays true.
    self_signed: Option<SelfSigned>,
    current: RwLock<Arc<CertSet>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads every certificate (minting the default if none is given); any bad file fails.
    pub fn load(
        sources: CertSources,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, CertError> {
        let self_signed = match sources.default {
            None => Some(mint_localhost(&provider)?),
            Some(_) => None,
        };
        let fallback = self_signed.as_ref().map(|s| s.key.clone());
        let set = load_set(&sources, &provider, fallback)?;
        Ok(Arc::new(CertStore {
            sources,
            provider,
            self_signed,
            current: RwLock::new(Arc::new(set)),
        }))
    }

    /// Re-reads every certificate from disk. On any failure the old ones stay in use.
    /// Open connections are unaffected: they finished their handshake already.
    pub fn reload(&self) -> Result<usize, CertError> {
        let fallback = self.self_signed.as_ref().map(|s| s.key.clone());
        let set = load_set(&self.sources, &self.provider, fallback)?;
        let count = 1 + set.by_name.len();
        match self.current.write() {
            Ok(mut cur) => *cur = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        Ok(count)
    }

    /// The minted certificate, when no `--cert` was given.
    pub fn self_signed(&self) -> Option<&SelfSigned> {
        self.self_signed.as_ref()
    }

    /// The certificate for a server name: exact match, then `*.parent`, then the default.
    pub fn lookup(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let set = match self.current.read() {
            Ok(cur) => cur.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = set.by_name.get(&name) {
                return k.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = set.by_name.get(&format!("*.{parent}")) {
                    return k.clone();
                }
            }
        }
        set.default.clone()
    }
}

fn load_set(
    sources: &CertSources,
    provider: &CryptoProvider,
    fallback: Option<Arc<CertifiedKey>>,
) -> Result<CertSet, CertError> {
    let default = match (&sources.default, fallback) {
        (Some(src), _) => load_certified_key(src, provider)?,
        (None, Some(k)) => k,
        (None, None) => return Err(CertError("no default certificate".into())),
    };
    let mut by_name = HashMap::new();
    for (name, src) in &sources.by_name {
        let key = load_certified_key(src, provider)?;
        by_name.insert(name.trim_end_matches('.').to_ascii_lowercase(), key);
    }
    Ok(CertSet { default, by_name })
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

/// A server config offering h2 and http/1.1 with certificates from `store`.
pub fn server_config(
    store: Arc<CertStore>,
    min_tls: MinTls,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, CertError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min_tls {
        MinTls::V12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTls::V13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| CertError(format!("TLS configuration: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_lookup_exact_wildcard_default() {
        let provider = crate::tls::provider();
        let dir = std::env::temp_dir().join(format!("interpose-sni-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |tag: &str| {
            let ck = rcgen::generate_simple_self_signed(vec![format!("{tag}.test")]).unwrap();
            let cert = dir.join(format!("{tag}.pem"));
            let key = dir.join(format!("{tag}.key"));
            std::fs::write(&cert, ck.cert.pem()).unwrap();
            std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
            (CertSource { cert, key }, ck.cert.der().clone())
        };
        let (a, a_der) = write("a");
        let (w, w_der) = write("w");
        let sources = CertSources {
            default: None,
            by_name: vec![("A.test".into(), a), ("*.w.test".into(), w)],
        };
        let store = CertStore::load(sources, provider).unwrap();
        assert_eq!(store.lookup(Some("a.test")).cert[0], a_der);
        assert_eq!(store.lookup(Some("x.w.test")).cert[0], w_der);
        let default = store.lookup(None);
        assert_ne!(default.cert[0], a_der);
        assert_eq!(store.lookup(Some("other.test")).cert[0], default.cert[0]);
        // A reload after a file vanished fails and keeps the old set.
        std::fs::remove_file(dir.join("a.pem")).unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.lookup(Some("a.test")).cert[0], a_der);
        let _ = std::fs::remove_dir_all(dir);
    }
}
