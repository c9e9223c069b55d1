//! Loading an existing CA: `--ca-cert` + `--ca-key` (mkcert's `rootCA.pem` +
//! `rootCA-key.pem`, our own `ca.pem` + `ca-key.pem`) or one combined PEM file
//! (mitmproxy's `mitmproxy-ca.pem`). Keys may be PKCS#8, SEC1 or PKCS#1.
//!
//! Checks, each a one-line error naming the file: the key file is not readable by
//! others, the certificate is a CA, the key belongs to it, it has not expired, and a
//! probe leaf signed with it names it as issuer byte for byte and verifies.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::certificate::X509Certificate;

use super::{Ca, CaError, LeafKey};

/// Signature algorithms a CA key may use, tried in turn against the certificate's key.
static CA_ALGORITHMS: &[&SignatureAlgorithm] = &[
    &rcgen::PKCS_ECDSA_P256_SHA256,
    &rcgen::PKCS_ECDSA_P384_SHA384,
    &rcgen::PKCS_ECDSA_P521_SHA512,
    &rcgen::PKCS_RSA_SHA256,
    &rcgen::PKCS_ED25519,
];

/// Loads a CA whose certificate and key are in two files.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Ca, CaError> {
    let cert_bytes = read(cert_path)?;
    let key_bytes = read_private(key_path)?;
    build(&cert_bytes, cert_path, &key_bytes, key_path)
}

/// Loads a CA whose key and certificate are in one PEM file, in either order.
pub fn load_combined(path: &Path) -> Result<Ca, CaError> {
    let bytes = read_private(path)?;
    build(&bytes, path, &bytes, path)
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    std::fs::read(path).map_err(|e| CaError::Io {
        path: path.to_path_buf(),
        msg: format!("cannot read: {e}"),
    })
}

/// Reads a file holding a private key, refusing it if group or others may access it.
fn read_private(path: &Path) -> Result<Vec<u8>, CaError> {
    let meta = std::fs::metadata(path).map_err(|e| CaError::Io {
        path: path.to_path_buf(),
        msg: format!("cannot read: {e}"),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    read(path)
}

fn build(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<Ca, CaError> {
    let pem_err = |path: &Path, msg: String| CaError::Pem {
        path: path.to_path_buf(),
        msg,
    };
    let cert_der = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .ok_or_else(|| pem_err(cert_path, "no PEM \"BEGIN CERTIFICATE\" found".into()))?
        .map_err(|e| pem_err(cert_path, format!("bad PEM certificate: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        pem_err(
            key_path,
            format!("no usable private key (expected PEM PKCS#8, SEC1 or PKCS#1): {e}"),
        )
    })?;
    let unusable = |msg: String| CaError::Unusable {
        path: cert_path.to_path_buf(),
        msg,
    };
    let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| pem_err(cert_path, format!("not an X.509 certificate: {e}")))?;
    let subject = x509.subject().to_string();
    let is_ca = x509
        .basic_constraints()
        .map_err(|e| unusable(format!("bad basicConstraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(CaError::NotCa {
            path: cert_path.to_path_buf(),
            subject,
        });
    }
    if !x509.validity().is_valid() {
        return Err(unusable(format!(
            "CA certificate \"{subject}\" is not valid now (valid {} to {})",
            x509.validity().not_before,
            x509.validity().not_after
        )));
    }
    let key = matching_key(&x509, &key_der).ok_or_else(|| CaError::KeyMismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
    })?;
    let params = CertificateParams::from_ca_cert_der(&cert_der)
        .map_err(|e| unusable(format!("cannot sign with CA \"{subject}\": {e}")))?;
    let has_ski = x509.iter_extensions().any(|ext| {
        matches!(
            ext.parsed_extension(),
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(_)
        )
    });
    // rcgen 0.13 issues from a `Certificate`; re-signing the parsed params gives one
    // whose subject and key identifier are the original's. Only its params are used.
    let issuer = params
        .self_signed(&key)
        .map_err(|e| unusable(format!("cannot sign with CA \"{subject}\": {e}")))?;
    let ca = Ca {
        cert_pem: super::pem_encode("CERTIFICATE", &cert_der),
        cert_der: cert_der.clone(),
        subject,
        cert_path: Some(cert_path.to_path_buf()),
        issuer,
        key,
        has_ski,
        not_after: x509.validity().not_after.to_datetime(),
        leaf_key: new_leaf_key()?,
    };
    probe(&ca, &x509).map_err(unusable)?;
    Ok(ca)
}

/// The key as an rcgen signer, if its public half is the certificate's.
///
/// Trying each algorithm both finds how to sign with the key and proves the match:
/// only the algorithm of the right key type parses it, and the public key it yields
/// must equal the certificate's SubjectPublicKeyInfo key bits.
fn matching_key(x509: &X509Certificate<'_>, key: &PrivateKeyDer<'_>) -> Option<KeyPair> {
    let cert_key = x509.public_key().subject_public_key.data.as_ref();
    CA_ALGORITHMS.iter().find_map(|alg| {
        let pair = match key {
            // rcgen reads Ed25519 only from PKCS#8; the others from any of the three forms.
            PrivateKeyDer::Pkcs8(der) if *alg == &rcgen::PKCS_ED25519 => {
                KeyPair::from_pkcs8_der_and_sign_algo(der, alg).ok()?
            }
            _ if *alg == &rcgen::PKCS_ED25519 => return None,
            _ => KeyPair::from_der_and_sign_algo(key, alg).ok()?,
        };
        (pair.public_key_raw() == cert_key).then_some(pair)
    })
}

/// Generates the P-256 key pair shared by every leaf this CA mints.
pub(super) fn new_leaf_key() -> Result<LeafKey, CaError> {
    let fail = |msg: String| CaError::Mint {
        host: "(leaf key)".into(),
        msg,
    };
    let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(format!("cannot generate the leaf key: {e}")))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| fail(format!("rustls cannot use the leaf key: {e}")))?;
    Ok(LeafKey { pair, signer })
}

/// Mints one leaf and checks it chains to the CA as a verifier will see it.
///
/// rcgen rebuilds the issuer name from the parsed subject; a name it cannot reproduce
/// exactly (e.g. a repeated attribute type) would make every leaf fail to chain.
fn probe(ca: &Ca, ca_x509: &X509Certificate<'_>) -> Result<(), String> {
    let leaf = super::mint::mint_leaf(ca, "probe.interpose.invalid").map_err(|e| e.to_string())?;
    let der: &CertificateDer<'_> = leaf
        .cert
        .first()
        .ok_or_else(|| "the probe leaf has no certificate".to_string())?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the probe leaf does not parse: {e}"))?;
    if parsed.issuer().as_raw() != ca_x509.subject().as_raw() {
        return Err(format!(
            "cannot reproduce the CA subject \"{}\" as leaf issuer; use a CA with a simpler name",
            ca_x509.subject()
        ));
    }
    parsed
        .verify_signature(Some(ca_x509.public_key()))
        .map_err(|e| format!("a leaf signed with this key does not verify: {e}"))?;
    Ok(())
}
