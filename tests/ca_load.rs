//! Loading existing CAs: mkcert (RSA, PKCS#8, two files), mitmproxy (RSA key and
//! certificate in one file, PKCS#1 or PKCS#8), SEC1 EC keys; and clear errors for a
//! certificate that is not a CA, a key that does not match, and files that are not PEM.

#[path = "ca_common.rs"]
mod common;

use std::path::Path;

use common::{chmod, mkcert_ca, openssl, write_leaf, Scratch};
use interpose::ca::{load, mint_leaf, Ca, CaError, CaStore};

/// Mints a leaf with `ca` and has openssl verify it against `ca_pem`.
fn assert_signs_verifiable_leaves(ca: &Ca, dir: &Path, ca_pem: &Path) {
    let leaf = mint_leaf(ca, "example.org").unwrap();
    let leaf_pem = write_leaf(dir, "leaf.pem", &leaf);
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            ca_pem.to_str().unwrap(),
            "-purpose",
            "sslserver",
            leaf_pem.to_str().unwrap(),
        ],
    );
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn mkcert_root_ca_loads_and_signs() {
    let s = Scratch::new("ca-mkcert");
    let (cert, key) = mkcert_ca(&s.0);
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    let ca = load::load_pair(&cert, &key).unwrap();
    assert!(ca.subject().contains("mkcert test"), "{}", ca.subject());
    assert_signs_verifiable_leaves(&ca, &s.0, &cert);
    let text = openssl(&s.0, &["x509", "-noout", "-text", "-in", "leaf.pem"]);
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    assert!(
        text.contains("Issuer: O = mkcert development CA, CN = mkcert test"),
        "{text}"
    );
}

/// mitmproxy's `mitmproxy-ca.pem`: the private key, then the certificate, one file.
fn mitmproxy_ca(dir: &Path, pkcs1: bool) -> std::path::PathBuf {
    let mut genrsa = vec!["genrsa", "-out", "key.pem"];
    if pkcs1 {
        genrsa.push("-traditional");
    }
    genrsa.push("2048");
    openssl(dir, &genrsa);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=mitmproxy/O=mitmproxy",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    let label = if pkcs1 {
        "BEGIN RSA PRIVATE KEY"
    } else {
        "BEGIN PRIVATE KEY"
    };
    assert!(key.contains(label), "{key}");
    let combined = dir.join("mitmproxy-ca.pem");
    let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    std::fs::write(&combined, key + &cert).unwrap();
    chmod(&combined, 0o600);
    combined
}

#[test]
fn mitmproxy_combined_file_with_pkcs1_key_loads() {
    let s = Scratch::new("ca-mitm1");
    let combined = mitmproxy_ca(&s.0, true);
    let ca = load::load_combined(&combined).unwrap();
    assert!(ca.subject().contains("mitmproxy"));
    assert_signs_verifiable_leaves(&ca, &s.0, &combined);
}

#[test]
fn mitmproxy_combined_file_with_pkcs8_key_loads() {
    let s = Scratch::new("ca-mitm8");
    let combined = mitmproxy_ca(&s.0, false);
    let ca = load::load_combined(&combined).unwrap();
    assert_signs_verifiable_leaves(&ca, &s.0, &combined);
}

#[test]
fn sec1_ec_keys_load_for_p256_and_p384() {
    for curve in ["prime256v1", "secp384r1"] {
        let s = Scratch::new("ca-sec1");
        openssl(
            &s.0,
            &[
                "ecparam", "-name", curve, "-genkey", "-noout", "-out", "key.pem",
            ],
        );
        let key_text = std::fs::read_to_string(s.path("key.pem")).unwrap();
        assert!(key_text.contains("BEGIN EC PRIVATE KEY"), "{key_text}");
        openssl(
            &s.0,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "key.pem",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=sec1 test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
        );
        chmod(&s.path("key.pem"), 0o600);
        let ca = load::load_pair(&s.path("ca.pem"), &s.path("key.pem")).unwrap();
        assert_signs_verifiable_leaves(&ca, &s.0, &s.path("ca.pem"));
    }
}

#[test]
fn a_certificate_that_is_not_a_ca_is_refused() {
    let s = Scratch::new("ca-notca");
    // rcgen's simple self-signed certificate has no basicConstraints at all.
    let ck = rcgen::generate_simple_self_signed(vec!["site.test".into()]).unwrap();
    std::fs::write(s.path("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(s.path("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    chmod(&s.path("key.pem"), 0o600);
    let err = load::load_pair(&s.path("cert.pem"), &s.path("key.pem")).unwrap_err();
    assert!(matches!(err, CaError::NotCa { .. }), "{err}");
    assert!(err.to_string().contains("is not a CA"), "{err}");

    // And one that says CA:FALSE explicitly.
    openssl(
        &s.0,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.pem",
        ],
    );
    openssl(
        &s.0,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "30",
            "-subj",
            "/CN=not a ca",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
    chmod(&s.path("k.pem"), 0o600);
    let err = load::load_pair(&s.path("c.pem"), &s.path("k.pem")).unwrap_err();
    assert!(
        err.to_string().contains("\"CN=not a ca\" is not a CA"),
        "{err}"
    );
}

#[test]
fn a_key_that_does_not_match_is_refused() {
    let s = Scratch::new("ca-mismatch");
    let ours = CaStore::new(s.path("ours"));
    ours.init().unwrap();
    let (mk_cert, mk_key) = mkcert_ca(&s.0);
    // Same key type (P-256), different key.
    let other = CaStore::new(s.path("other"));
    other.init().unwrap();
    let err = load::load_pair(&ours.cert_path(), &other.key_path()).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    // Different key type (RSA key for an EC certificate) and the reverse.
    assert!(matches!(
        load::load_pair(&ours.cert_path(), &mk_key),
        Err(CaError::KeyMismatch { .. })
    ));
    assert!(matches!(
        load::load_pair(&mk_cert, &ours.key_path()),
        Err(CaError::KeyMismatch { .. })
    ));
}

#[test]
fn files_that_are_not_pem_are_clear_errors() {
    let s = Scratch::new("ca-garbage");
    let store = CaStore::new(s.path("ca"));
    store.init().unwrap();
    std::fs::write(s.path("junk.pem"), "hello\n").unwrap();
    chmod(&s.path("junk.pem"), 0o600);
    let err = load::load_pair(&s.path("junk.pem"), &store.key_path()).unwrap_err();
    assert!(err.to_string().contains("junk.pem: no PEM"), "{err}");
    let err = load::load_pair(&store.cert_path(), &s.path("junk.pem")).unwrap_err();
    assert!(err.to_string().contains("no usable private key"), "{err}");
    let err = load::load_pair(&s.path("missing.pem"), &store.key_path()).unwrap_err();
    assert!(
        err.to_string().contains("missing.pem: cannot read"),
        "{err}"
    );
    // A combined file without a key names what is missing.
    let only_cert = s.path("only-cert.pem");
    std::fs::copy(store.cert_path(), &only_cert).unwrap();
    chmod(&only_cert, 0o600);
    let err = load::load_combined(&only_cert).unwrap_err();
    assert!(err.to_string().contains("no usable private key"), "{err}");
}
