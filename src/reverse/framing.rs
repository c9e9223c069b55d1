//! Request shapes hyper accepts but a proxy must not pass on (RFC 9112 3.2, 6.1):
//! an HTTP/1.1 request without exactly one Host, and transfer codings other than a
//! single `chunked` (hyper decodes only the chunking and would forward, say, gzip'd
//! bytes as if they were plain). Pure functions, checked before anything goes upstream.

use http::header::{self, HeaderMap};
use http::Version;

use crate::error::ProxyError;

/// Refuses a request whose framing or Host another parser could read differently.
pub fn check_request_shape(version: Version, headers: &HeaderMap) -> Result<(), ProxyError> {
    let codings: Vec<&[u8]> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
        .collect();
    match codings.as_slice() {
        [] => {}
        [only] if only.eq_ignore_ascii_case(b"chunked") => {}
        _ => {
            return Err(ProxyError::bad_request(
                "unsupported Transfer-Encoding (only a single \"chunked\" is accepted)",
            ))
        }
    }
    if version == Version::HTTP_11 && headers.get_all(header::HOST).iter().count() != 1 {
        return Err(ProxyError::bad_request(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in fields {
            map.append(*n, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn shapes() {
        let ok =
            |v, f: &[(&'static str, &'static str)]| check_request_shape(v, &headers(f)).is_ok();
        assert!(ok(Version::HTTP_11, &[("host", "a")]));
        assert!(ok(
            Version::HTTP_11,
            &[("host", "a"), ("transfer-encoding", "Chunked")]
        ));
        assert!(ok(Version::HTTP_10, &[]));
        assert!(ok(Version::HTTP_2, &[]));
        assert!(!ok(Version::HTTP_11, &[]));
        assert!(!ok(Version::HTTP_11, &[("host", "a"), ("host", "b")]));
        assert!(!ok(
            Version::HTTP_11,
            &[("host", "a"), ("transfer-encoding", "gzip, chunked")]
        ));
        assert!(!ok(
            Version::HTTP_11,
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]
        ));
    }
}
