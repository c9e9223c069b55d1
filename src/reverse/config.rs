//! The reverse proxy's validated configuration and the parsing of its own flag values
//! (`--to URL`, `--sni-cert NAME=CERT:KEY`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::uri::{Authority, Scheme, Uri};
use ipnet::IpNet;

use crate::config::ConfigError;
use crate::tls::pem::CertSource;
use crate::tls::server::{CertSources, MinTls};

/// One upstream: scheme, authority and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port` as given; also the Host sent with `--upstream-host`.
    pub authority: Authority,
    /// Prepended to every request path; empty or starting with `/`, no trailing `/`.
    pub prefix: String,
    /// Where its idle connections are pooled: `host:port`, and for https also the name
    /// they were verified for (`name@host:port`, as the engine's TLS pool keys them).
    pub pool_key: String,
    /// The host to connect to, an IPv6 address without its brackets.
    host: String,
    /// The port, the scheme's default when none is given.
    port: u16,
}

impl UpstreamTarget {
    /// The upstream at `scheme://authority` with `prefix`.
    pub fn new(scheme: Scheme, authority: Authority, prefix: String) -> Self {
        let host = authority.host();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = scheme == Scheme::HTTPS;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let pool_key = if https {
            format!("{host}@{addr}")
        } else {
            addr
        };
        UpstreamTarget {
            scheme,
            authority,
            prefix,
            pool_key,
            host,
            port,
        }
    }

    /// Whether it is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The host to connect to, an IPv6 address without its brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when none is given.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `scheme://authority`, the name used in logs and error bodies.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// Parses `127.0.0.1:8080` (http), `http://host:port/prefix` or `https://host`.
pub fn parse_upstream(s: &str) -> Result<UpstreamTarget, ConfigError> {
    let bad = |why: &str| ConfigError(format!("invalid --to {s:?}: {why}"));
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|_| bad("not a URL or HOST:PORT"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(bad("only http:// and https:// upstreams are supported")),
    };
    let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    let prefix = uri.path().trim_end_matches('/').to_string();
    Ok(UpstreamTarget::new(scheme, authority, prefix))
}

/// Parses `NAME=CERT:KEY` (the key path is what follows the last `:`).
pub fn parse_sni_cert(s: &str) -> Result<(String, CertSource), ConfigError> {
    let bad = || {
        ConfigError(format!(
            "invalid --sni-cert {s:?} (expected NAME=CERT.pem:KEY.pem)"
        ))
    };
    let (name, paths) = s.split_once('=').ok_or_else(bad)?;
    let (cert, key) = paths.rsplit_once(':').ok_or_else(bad)?;
    if name.is_empty() || cert.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((
        name.to_ascii_lowercase(),
        CertSource {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        },
    ))
}

/// Everything the reverse proxy needs, validated.
#[derive(Debug, Clone)]
pub struct ReverseConfig {
    /// Where the TLS listener binds.
    pub listen: SocketAddr,
    /// Round-robin order.
    pub upstreams: Vec<UpstreamTarget>,
    /// Default and per-SNI certificates (no default: self-signed).
    pub certs: CertSources,
    /// Lowest TLS version accepted from clients.
    pub min_tls: MinTls,
    /// Extra roots for https upstreams, besides the system store.
    pub upstream_ca: Option<PathBuf>,
    /// Skip certificate checks towards https upstreams.
    pub insecure_upstream: bool,
    /// Peers whose X-Forwarded-*/Forwarded values are kept and extended.
    pub trusted_proxies: Vec<IpNet>,
    /// Send the upstream's own host as Host instead of the client's.
    pub upstream_host: bool,
    /// Limit for connecting to an upstream (then it is marked down).
    pub connect_timeout: Duration,
    /// Limit for an upstream's response head (504 after it).
    pub response_timeout: Duration,
    /// Limit for the TLS handshake and each request head.
    pub header_timeout: Duration,
    /// How long an upstream that refused or timed out is skipped.
    pub down_cooldown: Duration,
    /// How long open exchanges may finish after SIGINT/SIGTERM.
    pub grace: Duration,
    /// HTTP/2: concurrent streams per client connection (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// a client opening more gets REFUSED_STREAM.
    pub h2_max_streams: u32,
    /// HTTP/2: streams a client may reset before we accepted them ("rapid reset",
    /// CVE-2023-44487) before the connection is ended with GOAWAY.
    pub h2_max_pending_resets: usize,
    /// HTTP/2: streams we may reset because the client's frames were in error
    /// ("MadeYouReset", CVE-2025-8671) before the connection is ended with GOAWAY.
    pub h2_max_error_resets: usize,
    /// Largest request body forwarded (`--max-body-size`); `None`: no limit.
    pub max_body_size: Option<u64>,
    /// What to record: `--flows`, `--har`, `--filter`, `--capture-max-body`.
    pub record: crate::flow::recorder::RecordConfig,
    /// The recorder for `record`, opened at start.
    pub recorder: Option<std::sync::Arc<crate::flow::recorder::Recorder>>,
    /// `--modify-header`, `--modify-body`, `--map-remote`, `--map-local`, `--block`.
    pub rules: Option<std::sync::Arc<crate::rules::Rules>>,
}

/// Default for `--h2-max-streams`.
pub const DEFAULT_H2_MAX_STREAMS: u32 = 100;
/// Default for `--h2-max-resets` (rapid reset); h2's own default, said explicitly.
pub const DEFAULT_H2_MAX_PENDING_RESETS: usize = 20;
/// Default for `--h2-max-error-resets` (MadeYouReset); hyper's is 1024.
pub const DEFAULT_H2_MAX_ERROR_RESETS: usize = 100;

impl ReverseConfig {
    /// Defaults for the given listener and upstreams: self-signed, TLS 1.2+, nothing trusted.
    pub fn new(listen: SocketAddr, upstreams: Vec<UpstreamTarget>) -> Self {
        ReverseConfig {
            listen,
            upstreams,
            certs: CertSources::default(),
            min_tls: MinTls::V12,
            upstream_ca: None,
            insecure_upstream: false,
            trusted_proxies: Vec::new(),
            upstream_host: false,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            down_cooldown: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            h2_max_streams: DEFAULT_H2_MAX_STREAMS,
            h2_max_pending_resets: DEFAULT_H2_MAX_PENDING_RESETS,
            h2_max_error_resets: DEFAULT_H2_MAX_ERROR_RESETS,
            max_body_size: None,
            record: crate::flow::recorder::RecordConfig::default(),
            recorder: None,
            rules: None,
        }
    }

    /// Opens the files `record` names (at start, after validation).
    pub fn open_recorder(&mut self) -> Result<(), ConfigError> {
        if self.record.is_active() {
            let recorder =
                crate::flow::recorder::Recorder::open(&self.record).map_err(ConfigError)?;
            self.recorder = Some(std::sync::Arc::new(recorder));
        }
        Ok(())
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() {
            return Err(ConfigError("at least one --to upstream is required".into()));
        }
        if self.h2_max_streams == 0 {
            return Err(ConfigError("--h2-max-streams must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let u = parse_upstream("127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.authority.as_str()),
            ("http", "127.0.0.1:8080")
        );
        assert_eq!(u.prefix, "");
        let u = parse_upstream("https://localhost:9443/api/").unwrap();
        assert_eq!(u.origin(), "https://localhost:9443");
        assert_eq!(u.prefix, "/api");
        assert_eq!(u.pool_key, "localhost@localhost:9443");
        let u = parse_upstream("https://[::1]").unwrap();
        assert_eq!((u.host(), u.port()), ("::1", 443));
        assert_eq!(u.pool_key, "::1@[::1]:443");
        assert_eq!(
            parse_upstream("127.0.0.1:80").unwrap().pool_key,
            "127.0.0.1:80"
        );
        for bad in ["ftp://x", "http://", "http://u:p@h", "http://h/?q=1", ""] {
            assert!(parse_upstream(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn sni_cert_forms() {
        let (name, src) = parse_sni_cert("API.example.org=/c/a.pem:/c/a.key").unwrap();
        assert_eq!(name, "api.example.org");
        assert_eq!(src.cert, PathBuf::from("/c/a.pem"));
        assert_eq!(src.key, PathBuf::from("/c/a.key"));
        for bad in ["x", "=a:b", "n=ab", "n=:b", "n=a:"] {
            assert!(parse_sni_cert(bad).is_err(), "{bad:?} should fail");
        }
    }
}
