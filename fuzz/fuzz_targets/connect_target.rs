//! Fuzzes the request-target parsers: the CONNECT authority (`host:port`), absolute-form
//! targets on a forward connection, and origin-form targets inside a tunnel. Any UTF-8
//! text either parses or is refused; what parses must be usable as it stands.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;

use http::header::{HeaderMap, HeaderValue, HOST};
use interpose::proxy::connect::parse_connect_target;
use interpose::proxy::target::{parse_forward_target, parse_tunnel_target, TunnelTarget};

fn tunnel(host: &str, port: u16) -> TunnelTarget {
    TunnelTarget {
        host: host.into(),
        port,
        tls: true,
        server_name: host.into(),
        first_tcp: Mutex::new(None),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok((host, port)) = parse_connect_target(text) {
        assert!(port != 0, "port 0 accepted for {text:?}");
        assert!(!host.is_empty(), "empty host accepted for {text:?}");
    }

    if let Ok(t) = parse_forward_target(text) {
        assert!(t.port != 0, "port 0 accepted for {text:?}");
        assert!(!t.host.is_empty(), "empty host accepted for {text:?}");
        assert!(t.path.starts_with('/'), "path {:?} for {text:?}", t.path);
    }

    let mut with_host = HeaderMap::new();
    with_host.insert(HOST, HeaderValue::from_static("example.test"));
    for (t, headers) in [
        (tunnel("example.test", 443), HeaderMap::new()),
        (tunnel("::1", 8443), HeaderMap::new()),
        (tunnel("example.test", 443), with_host),
    ] {
        if let Ok(f) = parse_tunnel_target(text, &t, &headers) {
            assert_eq!((f.host.as_str(), f.port), (t.host.as_str(), t.port));
            assert!(f.path.starts_with('/'), "path {:?} for {text:?}", f.path);
        }
    }
});
