//! Our own CA on disk: `ca.pem` and `ca-key.pem` in the CA directory, created on
//! first use (ECDSA P-256, 10 years, "interpose CA" plus the host name) and reused
//! afterwards. The key is created 0600 and the directory 0700: never world-readable,
//! not even between creating and chmod-ing.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::{load, Ca, CaError};

/// File name of the CA certificate in the CA directory.
pub const CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in the CA directory.
pub const KEY_FILE: &str = "ca-key.pem";
const VALIDITY_DAYS: i64 = 3650;

/// The directory holding our CA (`--ca-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaStore {
    dir: PathBuf,
}

impl CaStore {
    /// A store in `dir`; nothing is touched until `init` or `load`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_DATA_HOME/interpose`, else `~/.local/share/interpose`; `None` without a home.
    pub fn default_dir() -> Option<PathBuf> {
        let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
        if let Some(data) = std::env::var_os("XDG_DATA_HOME").and_then(nonempty) {
            return Some(data.join("interpose"));
        }
        let home = std::env::var_os("HOME").and_then(nonempty)?;
        Some(home.join(".local").join("share").join("interpose"))
    }

    /// The store in [`default_dir`](Self::default_dir), or an error saying to pass `--ca-dir`.
    pub fn default_store() -> Result<Self, CaError> {
        Self::default_dir()
            .map(Self::new)
            .ok_or_else(|| CaError::Io {
                path: PathBuf::from("$HOME"),
                msg: "neither XDG_DATA_HOME nor HOME is set; pass --ca-dir".into(),
            })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the CA certificate (`interpose ca path` prints it).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// Path of the CA private key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Whether a CA certificate is present (it is written last, so it marks a whole CA).
    pub fn exists(&self) -> bool {
        self.cert_path().exists()
    }

    /// Loads the stored CA.
    pub fn load(&self) -> Result<Ca, CaError> {
        load::load_pair(&self.cert_path(), &self.key_path())
    }

    /// Loads the stored CA, creating it first if there is none; `true` when created now
    /// (the caller then tells the user how to trust it).
    pub fn load_or_init(&self) -> Result<(Ca, bool), CaError> {
        if self.exists() {
            return Ok((self.load()?, false));
        }
        Ok((self.init()?, true))
    }

    /// Creates a new CA in the directory; refuses if either file already exists.
    pub fn init(&self) -> Result<Ca, CaError> {
        let (cert, key) = (self.cert_path(), self.key_path());
        for path in [&cert, &key] {
            if path.exists() {
                return Err(CaError::AlreadyExists { path: path.clone() });
            }
        }
        self.create_dir()?;
        let (cert_pem, key_pem) = generate()?;
        // Both go to temporary names first and the certificate is renamed last, so a
        // crash never leaves a `ca.pem` without its key.
        let key_tmp = self.dir.join(format!(".{KEY_FILE}.tmp"));
        let cert_tmp = self.dir.join(format!(".{CERT_FILE}.tmp"));
        write_new(&key_tmp, key_pem.as_bytes(), 0o600)?;
        write_new(&cert_tmp, cert_pem.as_bytes(), 0o644)?;
        rename(&key_tmp, &key)?;
        rename(&cert_tmp, &cert)?;
        self.load()
    }

    fn create_dir(&self) -> Result<(), CaError> {
        let io = |e: std::io::Error| CaError::Io {
            path: self.dir.clone(),
            msg: format!("cannot create the CA directory: {e}"),
        };
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io(e)),
            _ => Ok(()),
        }
    }
}

/// Creates `path` with `mode` from the start (never wider, even for a moment).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |e: std::io::Error| CaError::Io {
        path: path.to_path_buf(),
        msg: format!("cannot write: {e}"),
    };
    // A leftover from an interrupted init is ours to replace; remove it rather than
    // truncate, so the new file gets `mode` whatever the old one had.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn rename(from: &Path, to: &Path) -> Result<(), CaError> {
    std::fs::rename(from, to).map_err(|e| CaError::Io {
        path: to.to_path_buf(),
        msg: format!("cannot move {} into place: {e}", from.display()),
    })
}

/// A fresh CA: (certificate PEM, PKCS#8 key PEM).
fn generate() -> Result<(String, String), CaError> {
    let fail = |e: rcgen::Error| CaError::Mint {
        host: "(CA)".into(),
        msg: format!("cannot create the CA: {e}"),
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, ca_common_name(hostname().as_deref()));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "interpose");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    params.serial_number = Some(super::mint::random_serial()?.into());
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// "interpose CA (host)", so CAs from several machines are told apart in a trust store.
pub fn ca_common_name(host: Option<&str>) -> String {
    match host {
        Some(h) => format!("interpose CA ({h})"),
        None => "interpose CA".to_string(),
    }
}

/// This machine's name: /etc/hostname, else `$HOSTNAME`, else gethostname(2).
pub fn hostname() -> Option<String> {
    let clean = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty() && s.len() <= 48).then_some(s)
    };
    if let Some(h) = std::fs::read_to_string("/etc/hostname")
        .ok()
        .and_then(clean)
    {
        return Some(h);
    }
    if let Some(h) = std::env::var("HOSTNAME").ok().and_then(clean) {
        return Some(h);
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    clean(String::from_utf8_lossy(buf.get(..end)?).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_ca_after_the_host() {
        assert_eq!(ca_common_name(Some("box")), "interpose CA (box)");
        assert_eq!(ca_common_name(None), "interpose CA");
    }
}
