//! Minting a leaf certificate for one intercepted host: one CA signature over the
//! shared leaf key, with the names, validity and usages browsers insist on.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;

use super::{Ca, CaError, Leaf};

/// Leaves start one day back, so a client whose clock lags still accepts them.
const BACKDATE_DAYS: i64 = 1;
/// Chromium rejects leaves valid for more than 398 days and Apple more than 825;
/// 179 keeps us well under the 180 the issue sets, whatever the rounding.
const VALIDITY_DAYS: i64 = 179;
/// X.509 caps a CommonName at 64 characters; longer names go only in the SAN.
const MAX_CN_LEN: usize = 64;

/// The cache key and certificate name for a host as the client named it:
/// lower case, no trailing dot, no brackets around an IPv6 literal.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Mints a leaf for `host` signed by `ca`: DNS SAN for a name, IP SAN for an address
/// literal (never an address in a DNS SAN), CN = host, EKU serverAuth.
pub fn mint_leaf(ca: &Ca, host: &str) -> Result<Leaf, CaError> {
    let host = normalize_host(host);
    let fail = |msg: String| CaError::Mint {
        host: host.clone(),
        msg,
    };
    let san = match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => {
            rustls_pki_types::DnsName::try_from(host.as_str())
                .map_err(|_| fail("not a valid DNS name or IP address".into()))?;
            SanType::DnsName(
                host.clone()
                    .try_into()
                    .map_err(|e| fail(format!("not a valid DNS name: {e}")))?,
            )
        }
    };
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![san];
    let mut dn = DistinguishedName::new();
    if host.len() <= MAX_CN_LEN {
        dn.push(DnType::CommonName, host.as_str());
    }
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(BACKDATE_DAYS);
    params.not_after = (now + time::Duration::days(VALIDITY_DAYS)).min(ca.not_after);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = ca.has_ski;
    params.serial_number = Some(random_serial()?.into());
    let cert = params
        .signed_by(&ca.leaf_key.pair, &ca.issuer, &ca.key)
        .map_err(|e| fail(format!("signing failed: {e}")))?;
    let chain = vec![
        CertificateDer::from(cert.der().to_vec()),
        ca.cert_der.clone(),
    ];
    Ok(Arc::new(CertifiedKey::new(
        chain,
        Arc::clone(&ca.leaf_key.signer),
    )))
}

/// A random positive 128-bit serial. rcgen 0.13 otherwise derives the serial from
/// the subject key, and since every leaf shares one key, every leaf would carry the
/// same issuer and serial, which Firefox rejects (SEC_ERROR_REUSED_ISSUER_AND_SERIAL).
pub(super) fn random_serial() -> Result<Vec<u8>, CaError> {
    let mut serial = vec![0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| CaError::Mint {
        host: String::new(),
        msg: "no randomness for a serial number".into(),
    })?;
    if let Some(first) = serial.first_mut() {
        // Positive and of fixed length: top bit clear, next bit set.
        *first = (*first & 0x7f) | 0x40;
    }
    Ok(serial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Example.ORG."), "example.org");
        assert_eq!(normalize_host("[::1]"), "::1");
        assert_eq!(normalize_host("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn serials_are_positive_and_distinct() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_ne!(a, b);
        assert_eq!(a[0] & 0xc0, 0x40);
    }
}
