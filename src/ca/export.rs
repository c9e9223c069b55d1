//! What `interpose ca export` and `interpose ca path` print, and how to trust the CA.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use super::{Ca, CaError};

/// DER as PEM with the given label (`CERTIFICATE`), 64 base64 characters a line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// Writes the CA certificate as DER (for Android, Windows and other DER importers).
pub fn write_der(ca: &Ca, path: &Path) -> Result<(), CaError> {
    std::fs::write(path, ca.cert_der().as_ref()).map_err(|e| CaError::Io {
        path: path.to_path_buf(),
        msg: format!("cannot write: {e}"),
    })
}

/// Step-by-step ways to trust the CA certificate at `cert`, printed on first run and
/// by `interpose ca init`.
pub fn trust_instructions(cert: &Path) -> String {
    let p = shell_quote(&cert.display().to_string());
    format!(
        "To trust the interpose CA ({p}):\n\
         \x20 curl:            curl --cacert {p} -x http://127.0.0.1:8080 https://example.org/\n\
         \x20 OpenSSL-based tools (curl, Python, git, ...) for one shell:\n\
         \x20                  export SSL_CERT_FILE={p}\n\
         \x20 Chrome/Chromium and Firefox on Linux (NSS; libnss3-tools provides certutil):\n\
         \x20                  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n interpose -i {p}\n\
         \x20                  (Firefox profiles: the same with -d sql:PROFILE_DIR)\n\
         \x20 Debian/Ubuntu system store (as root):\n\
         \x20                  cp {p} /usr/local/share/ca-certificates/interpose.crt && update-ca-certificates\n\
         \x20 To undo: certutil -d sql:$HOME/.pki/nssdb -D -n interpose;\n\
         \x20          rm /usr/local/share/ca-certificates/interpose.crt && update-ca-certificates --fresh\n\
         Keep the key next to it private: anyone holding it can impersonate any site to you.\n"
    )
}

/// Quotes a path for a POSIX shell only when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,".contains(c));
    if plain && !s.is_empty() {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_has_64_char_lines() {
        let pem = pem_encode("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<_> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(*lines.last().unwrap(), "-----END CERTIFICATE-----");
    }

    #[test]
    fn instructions_quote_odd_paths() {
        let text = trust_instructions(Path::new("/home/a b/ca.pem"));
        assert!(text.contains("--cacert '/home/a b/ca.pem'"));
        assert!(text.contains("certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n interpose"));
        assert!(text.contains("update-ca-certificates"));
        assert!(text.contains("SSL_CERT_FILE"));
    }
}
