//! Our own CA on disk: created once, key 0600 in a 0700 directory, reused afterwards,
//! refused when the key is readable by others.

#[path = "ca_common.rs"]
mod common;

use common::{chmod, mode, openssl, Scratch};
use interpose::ca::{CaError, CaStore};

#[test]
fn creates_the_ca_once_with_a_private_key() {
    let scratch = Scratch::new("ca-store");
    let dir = scratch.path("nested/interpose");
    let store = CaStore::new(&dir);
    assert!(!store.exists());

    let (ca, created) = store.load_or_init().unwrap();
    assert!(created);
    assert_eq!(mode(&store.key_path()), 0o600, "key must be 0600");
    assert_eq!(mode(&dir), 0o700, "CA directory must be 0700");
    assert_eq!(
        mode(&store.cert_path()) & 0o022,
        0,
        "cert not writable by others"
    );
    let cert_before = std::fs::read(store.cert_path()).unwrap();
    let key_before = std::fs::read(store.key_path()).unwrap();
    assert!(String::from_utf8_lossy(&key_before).contains("BEGIN PRIVATE KEY"));
    assert_eq!(ca.cert_pem().as_bytes(), &cert_before[..]);

    // The second run reuses both files and creates nothing new.
    let (again, created) = store.load_or_init().unwrap();
    assert!(!created);
    assert_eq!(again.fingerprint(), ca.fingerprint());
    assert_eq!(std::fs::read(store.cert_path()).unwrap(), cert_before);
    assert_eq!(std::fs::read(store.key_path()).unwrap(), key_before);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ca-key.pem", "ca.pem"]);

    // An explicit init never overwrites.
    assert!(matches!(store.init(), Err(CaError::AlreadyExists { .. })));
}

#[test]
fn the_ca_is_a_p256_ca_named_after_the_host() {
    let scratch = Scratch::new("ca-text");
    let store = CaStore::new(scratch.path("ca"));
    let ca = store.init().unwrap();
    assert!(ca.subject().contains("interpose CA"), "{}", ca.subject());
    let text = openssl(
        &scratch.0,
        &[
            "x509",
            "-noout",
            "-text",
            "-in",
            store.cert_path().to_str().unwrap(),
        ],
    );
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("prime256v1"), "{text}");
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    if let Some(host) = interpose::ca::store::hostname() {
        assert!(text.contains(&host), "CN should name {host}: {text}");
    }
    // Ten years: still valid in 9.9 years, not in 10.1.
    let day = 86_400u64;
    let cert = store.cert_path();
    let check = |secs: u64| {
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(check(3640 * day));
    assert!(!check(3660 * day));
}

#[test]
fn refuses_a_key_readable_by_others() {
    let scratch = Scratch::new("ca-perm");
    let store = CaStore::new(scratch.path("ca"));
    store.init().unwrap();
    chmod(&store.key_path(), 0o644);
    let err = store.load().unwrap_err();
    assert!(matches!(err, CaError::KeyPermissions { mode: 0o644, .. }));
    let msg = err.to_string();
    assert!(msg.contains("chmod 600"), "{msg}");
    assert!(msg.contains("ca-key.pem"), "{msg}");
    // load_or_init does not paper over it by creating a new CA.
    assert!(store.load_or_init().is_err());
    chmod(&store.key_path(), 0o600);
    assert!(store.load().is_ok());
}

#[test]
fn a_key_without_its_certificate_is_not_overwritten() {
    let scratch = Scratch::new("ca-half");
    let store = CaStore::new(scratch.path("ca"));
    std::fs::create_dir_all(store.dir()).unwrap();
    std::fs::write(store.key_path(), "precious").unwrap();
    let err = store.load_or_init().unwrap_err();
    assert!(matches!(err, CaError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(store.key_path()).unwrap(),
        "precious"
    );
}

#[test]
fn default_dir_follows_xdg_then_home() {
    // The only test in this binary touching the environment.
    let saved = (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"));
    std::env::set_var("XDG_DATA_HOME", "/x/data");
    assert_eq!(
        CaStore::default_dir().unwrap(),
        std::path::Path::new("/x/data/interpose")
    );
    std::env::remove_var("XDG_DATA_HOME");
    std::env::set_var("HOME", "/home/u");
    assert_eq!(
        CaStore::default_dir().unwrap(),
        std::path::Path::new("/home/u/.local/share/interpose")
    );
    match saved.0 {
        Some(v) => std::env::set_var("XDG_DATA_HOME", v),
        None => std::env::remove_var("XDG_DATA_HOME"),
    }
    if let Some(v) = saved.1 {
        std::env::set_var("HOME", v);
    }
}
