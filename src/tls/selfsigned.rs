//! The certificate served when the user gives none: self-signed for localhost and
//! 127.0.0.1, minted once at start, short-lived, announced with its fingerprint.

use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::pem::{certified_key, CertError};

/// A freshly minted self-signed certificate and what a user needs to trust it.
pub struct SelfSigned {
    pub key: Arc<CertifiedKey>,
    /// The certificate in PEM, e.g. to hand to `curl --cacert`.
    pub cert_pem: String,
    /// SHA-256 of the DER certificate as colon-separated hex.
    pub fingerprint: String,
}

/// Mints a certificate for `localhost` (DNS) and `127.0.0.1` (IP), valid for 30 days.
pub fn mint_localhost(provider: &CryptoProvider) -> Result<SelfSigned, CertError> {
    let fail = |e: rcgen::Error| CertError(format!("cannot mint a self-signed certificate: {e}"));
    // rcgen puts a name that parses as an address in an IP SAN, never a DNS SAN.
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(fail)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "interpose self-signed localhost");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
    let key_pair = KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key_pair).map_err(fail)?;
    let der: CertificateDer<'static> = cert.der().clone();
    let fingerprint = sha256_fingerprint(&der);
    let key = PrivateKeyDer::try_from(key_pair.serialize_der())
        .map_err(|e| CertError(format!("cannot use the minted key: {e}")))?;
    let key = certified_key(vec![der], key, provider, "self-signed certificate")?;
    Ok(SelfSigned {
        key,
        cert_pem: cert.pem(),
        fingerprint,
    })
}

/// `AB:CD:...`: the form browsers and `openssl x509 -fingerprint -sha256` show.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_a_usable_localhost_cert() {
        let minted = mint_localhost(&crate::tls::provider()).unwrap();
        assert!(minted.cert_pem.contains("BEGIN CERTIFICATE"));
        assert_eq!(minted.fingerprint.len(), 32 * 3 - 1);
        assert!(minted.key.keys_match().is_ok());
    }
}
