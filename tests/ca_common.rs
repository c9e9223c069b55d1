//! Helpers shared by the `ca_*` tests (included with `#[path]`): scratch directories,
//! the openssl binary, and writing PEM files with a given mode.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "interpose-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs openssl in `dir`, asserting success; returns stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl binary");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Writes the leaf of `leaf` (first certificate of the chain) as PEM and returns its path.
pub fn write_leaf(dir: &Path, name: &str, leaf: &rustls::sign::CertifiedKey) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        interpose::ca::pem_encode("CERTIFICATE", &leaf.cert[0]),
    )
    .unwrap();
    path
}

/// mkcert's layout: an RSA-3072 CA in `rootCA.pem` with a PKCS#8 key in `rootCA-key.pem`.
pub fn mkcert_ca(dir: &Path) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:3072",
            "-nodes",
            "-keyout",
            "rootCA-key.pem",
            "-out",
            "rootCA.pem",
            "-days",
            "3650",
            "-subj",
            "/O=mkcert development CA/CN=mkcert test",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    let key = dir.join("rootCA-key.pem");
    chmod(&key, 0o600);
    (dir.join("rootCA.pem"), key)
}
