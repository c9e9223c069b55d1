//! Who may use the proxy: client address lists, Basic proxy authentication, CONNECT ports.

use base64::Engine as _;
use http::header::{HeaderMap, PROXY_AUTHORIZATION};

use crate::config::Credentials;
use crate::error::{ErrorKind, ProxyError};

/// Checks `Proxy-Authorization: Basic ...` against the configured credentials.
pub fn check_proxy_auth(
    expected: Option<&Credentials>,
    headers: &HeaderMap,
) -> Result<(), ProxyError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = headers
        .get(PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
    let want = format!("{}:{}", expected.user, expected.pass);
    match given {
        Some(given) if constant_time_eq(&given, want.as_bytes()) => Ok(()),
        _ => Err(ErrorKind::ProxyAuthRequired.into()),
    }
}

/// Compares without returning early, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a client address outside `--allow-client`.
pub fn check_client(
    cfg: &crate::config::ForwardConfig,
    peer: std::net::IpAddr,
) -> Result<(), ProxyError> {
    if cfg.client_allowed(peer) {
        Ok(())
    } else {
        Err(ProxyError::forbidden(format!(
            "client {peer} is not allowed to use this proxy"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth() {
        let creds: Credentials = "alice:s3cret".parse().unwrap();
        let mut h = HeaderMap::new();
        assert!(check_proxy_auth(Some(&creds), &h).is_err());
        assert!(check_proxy_auth(None, &h).is_ok());
        let good = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        h.insert(
            PROXY_AUTHORIZATION,
            format!("Basic {good}").parse().unwrap(),
        );
        assert!(check_proxy_auth(Some(&creds), &h).is_ok());
        let bad = base64::engine::general_purpose::STANDARD.encode("alice:wrong!");
        h.insert(PROXY_AUTHORIZATION, format!("basic {bad}").parse().unwrap());
        assert!(check_proxy_auth(Some(&creds), &h).is_err());
        h.insert(PROXY_AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(check_proxy_auth(Some(&creds), &h).is_err());
    }
}
