//! Where a request goes: absolute-form targets on a forward-proxy connection, or
//! origin-form targets inside an intercepted CONNECT tunnel whose authority is known.

use std::sync::Mutex;

use http::header::{self, HeaderMap, HeaderValue};
use http::Uri;
use tokio::net::TcpStream;

use crate::error::ProxyError;

/// The context requests on one client connection are read in.
pub enum Scope {
    /// A forward-proxy connection: requests carry absolute-form `http://` targets.
    Forward,
    /// Inside a CONNECT tunnel: requests are for this origin.
    Tunnel(TunnelTarget),
}

/// The origin a CONNECT tunnel leads to, as decided when it was opened.
pub struct TunnelTarget {
    pub host: String,
    pub port: u16,
    /// The client spoke TLS inside the tunnel, so the upstream gets TLS too.
    pub tls: bool,
    /// The server name for the upstream TLS handshake: the client's SNI, else `host`.
    pub server_name: String,
    /// The TCP connection opened to validate the CONNECT, used by the first request.
    pub first_tcp: Mutex<Option<TcpStream>>,
    /// What the client's TLS agreed with us (intercepted tunnels), for flows.
    pub client_tls: Option<Box<crate::flow::record::TlsFacts>>,
    /// The last upstream connection opened: taken by the exchange that opened it.
    pub opened: Mutex<Option<Opened>>,
}

/// An upstream TLS connection as it was opened, for flows.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub server: Option<std::net::SocketAddr>,
    /// The TCP connect (`None`: the CONNECT's own connection was used).
    pub tcp: Option<std::time::Duration>,
    pub tls: std::time::Duration,
}

impl TunnelTarget {
    /// Notes an upstream connection just opened.
    pub fn note_opened(&self, opened: Opened) {
        if let Ok(mut slot) = self.opened.lock() {
            *slot = Some(opened);
        }
    }

    /// Takes what [`TunnelTarget::note_opened`] noted.
    pub fn take_opened(&self) -> Option<Opened> {
        self.opened.lock().ok().and_then(|mut slot| slot.take())
    }

    /// `host:port`, IPv6 hosts in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `https://host:port` or `http://host:port`, for access lines.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }

    /// The connection dialed for the CONNECT itself, once.
    pub fn take_first_tcp(&self) -> Option<TcpStream> {
        self.first_tcp.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Where an absolute-form request goes.
#[derive(Debug)]
pub struct ForwardTarget {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// The Host header value: the URL's authority.
    pub host_header: HeaderValue,
    /// Origin-form: path and query.
    pub path: String,
}

/// Checks an absolute-form target and splits it into where to connect and what to send.
pub fn parse_forward_target(target: &str) -> Result<ForwardTarget, ProxyError> {
    if target.starts_with('/') || target == "*" {
        return Err(ProxyError::bad_request(
            "this is a proxy: the request target must be an absolute URL such as http://host/path",
        ));
    }
    match parse_absolute(target)? {
        (parsed, false) => Ok(parsed),
        (_, true) => Err(ProxyError::bad_request(
            "https:// URLs go through a CONNECT tunnel (set https_proxy, or curl -p)",
        )),
    }
}

/// An absolute `http://` or `https://` URL (a `--map-remote` result): where to connect,
/// what to send, and whether the scheme is https.
pub fn parse_absolute(target: &str) -> Result<(ForwardTarget, bool), ProxyError> {
    let uri: Uri = target
        .parse()
        .map_err(|_| ProxyError::bad_request("invalid request target"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(ProxyError::bad_request(
                "only http:// URLs can be forwarded",
            ))
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ProxyError::bad_request("the URL has no host"))?;
    if authority.as_str().contains('@') {
        return Err(ProxyError::bad_request(
            "user information in the URL is not allowed",
        ));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(ProxyError::bad_request(
            "the URL has no valid host and port",
        ));
    }
    let host_header = HeaderValue::from_str(authority.as_str())
        .map_err(|_| ProxyError::bad_request("invalid host in the URL"))?;
    let path = origin_form(&uri);
    let parsed = ForwardTarget {
        host: host.to_ascii_lowercase(),
        port,
        host_header,
        path,
    };
    Ok((parsed, https))
}

/// The origin-form of an absolute URI: its path and query, with the path `/` when it is
/// empty (`http://host?q` asks for `/?q`; the bare `?q` is no valid request target).
fn origin_form(uri: &Uri) -> String {
    match uri.path_and_query().map(|p| p.as_str()) {
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
        None => "/".to_string(),
    }
}

/// A request inside a tunnel: origin-form (or absolute-form naming the same origin);
/// the Host header the client sent is kept, defaulting to the tunnel's authority.
pub fn parse_tunnel_target(
    target: &str,
    tunnel: &TunnelTarget,
    headers: &HeaderMap,
) -> Result<ForwardTarget, ProxyError> {
    if target == "*" {
        return Err(ProxyError::bad_request("OPTIONS * is not forwarded"));
    }
    let path = if target.starts_with('/') {
        target.to_string()
    } else {
        let uri: Uri = target
            .parse()
            .map_err(|_| ProxyError::bad_request("invalid request target"))?;
        origin_form(&uri)
    };
    let host_header = match headers.get(header::HOST) {
        Some(h) => h.clone(),
        None => HeaderValue::from_str(&tunnel.authority())
            .map_err(|_| ProxyError::bad_request("invalid host"))?,
    };
    Ok(ForwardTarget {
        host: tunnel.host.clone(),
        port: tunnel.port,
        host_header,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_targets() {
        let t = parse_forward_target("http://Example.org:8080/a?b=c").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.org", 8080, "/a?b=c")
        );
        assert_eq!(t.host_header, "Example.org:8080");
        let t = parse_forward_target("http://[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 80, "/"));
        assert_eq!(t.host_header, "[::1]");
        // Found by the connect_target fuzz target: an empty path before a query was
        // passed on as the target `?q`.
        let t = parse_forward_target("http://example.org?a=1").unwrap();
        assert_eq!(t.path, "/?a=1");
        let t = parse_forward_target("http://host:?0/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("host", 80, "/?0/")
        );
        for bad in [
            "/relative",
            "*",
            "https://example.org/",
            "ftp://example.org/",
            "http://user:pw@example.org/",
            "http:///nohost",
            "http://example.org:0/",
            "example.org:80",
        ] {
            assert!(parse_forward_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tunnel_targets() {
        let tunnel = TunnelTarget {
            host: "example.org".into(),
            port: 443,
            tls: true,
            server_name: "example.org".into(),
            first_tcp: Mutex::new(None),
            client_tls: None,
            opened: Mutex::new(None),
        };
        let none = HeaderMap::new();
        for (target, path) in [
            ("/a?b", "/a?b"),
            ("https://example.org/x", "/x"),
            ("https://example.org", "/"),
            ("https://example.org?q=1", "/?q=1"),
        ] {
            let t = parse_tunnel_target(target, &tunnel, &none).unwrap();
            assert_eq!(t.path, path, "{target}");
            assert_eq!(t.host_header, "example.org:443");
        }
        assert!(parse_tunnel_target("*", &tunnel, &none).is_err());
    }
}
