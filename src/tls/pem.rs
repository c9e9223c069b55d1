//! Reading certificate chains and private keys from PEM files, and pairing them into
//! a rustls `CertifiedKey` only when the key really belongs to the certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key that cannot be used, said in one line naming the file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CertError(pub String);

/// Where one certificate chain and its key live on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSource {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError(format!("cannot read {}: {e}", path.display())))
}

/// Reads every certificate in a PEM file, leaf first.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError(format!("{}: bad PEM: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(CertError(format!(
            "{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\")",
            path.display()
        )));
    }
    Ok(chain)
}

/// Reads the first private key in a PEM file: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        CertError(format!(
            "{}: no usable private key (expected PEM PKCS#8, SEC1 or PKCS#1): {e}",
            path.display()
        ))
    })
}

/// Pairs a chain with its key, refusing a key that does not match the leaf.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
    what: &str,
) -> Result<Arc<CertifiedKey>, CertError> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError(format!("{what}: unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        CertError(format!(
            "{what}: the key does not match the certificate ({e})"
        ))
    })?;
    Ok(Arc::new(certified))
}

/// Loads and checks one certificate/key pair from disk.
pub fn load_certified_key(
    src: &CertSource,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = load_chain(&src.cert)?;
    let key = load_key(&src.key)?;
    let what = format!("{} with {}", src.cert.display(), src.key.display());
    certified_key(chain, key, provider, &what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("interpose-pem-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_matching_pairs_in_every_key_format() {
        let dir = scratch("formats");
        let provider = crate::tls::provider();
        let ck = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let cert = dir.join("a.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        // PKCS#8 as rcgen writes it.
        let key8 = dir.join("a8.key");
        std::fs::write(&key8, ck.key_pair.serialize_pem()).unwrap();
        let src = CertSource {
            cert: cert.clone(),
            key: key8,
        };
        assert!(load_certified_key(&src, &provider).is_ok());
        // A different key is refused.
        let other = rcgen::KeyPair::generate().unwrap();
        let bad = dir.join("other.key");
        std::fs::write(&bad, other.serialize_pem()).unwrap();
        let err = load_certified_key(
            &CertSource {
                cert: cert.clone(),
                key: bad,
            },
            &provider,
        )
        .unwrap_err();
        assert!(err.0.contains("does not match"), "{err}");
        // Missing files and empty PEM name the file.
        let missing = CertSource {
            cert: dir.join("nope.pem"),
            key: dir.join("nope.key"),
        };
        assert!(load_certified_key(&missing, &provider)
            .unwrap_err()
            .0
            .contains("nope.pem"));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        assert!(load_chain(&empty).unwrap_err().0.contains("no certificate"));
        assert!(load_key(&empty).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
