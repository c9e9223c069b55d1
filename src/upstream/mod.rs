//! Talking to origins: the keep-alive pool of plain HTTP/1 connections used by the
//! forward engine, the cache of HTTP/2 connections, and how upstream failures (including a hyper client's, for modes
//! that use one) become 502/504 answers that name the cause.

pub mod h2;
pub mod pool;
pub mod stream;

use std::error::Error as StdError;
use std::io;

use crate::error::ProxyError;

/// Turns a failed exchange on a hyper client connection into a 502 naming the origin.
pub fn classify_exchange(err: &hyper::Error, origin: &str) -> ProxyError {
    ProxyError::bad_gateway(format!("upstream {origin} failed: {}", root_cause(err)))
}

/// Turns a hyper client failure into the answer for the user, naming the host.
pub fn classify(err: &hyper_util::client::legacy::Error, host: &str) -> ProxyError {
    if err.is_connect() {
        return classify_connect(err, host);
    }
    ProxyError::bad_gateway(format!("upstream {host} failed: {}", root_cause(err)))
}

/// Classifies a connection failure: refused, unresolvable or timed out.
pub fn classify_connect(err: &(dyn StdError + 'static), host: &str) -> ProxyError {
    let text = chain_text(err);
    if let Some(io) = find_io(err) {
        match io.kind() {
            io::ErrorKind::ConnectionRefused => {
                return ProxyError::bad_gateway(format!("connection to {host} refused"))
            }
            io::ErrorKind::TimedOut => {
                return ProxyError::gateway_timeout(format!("connecting to {host} timed out"))
            }
            _ => {}
        }
    }
    if text.contains("dns error") || text.contains("failed to lookup") {
        return ProxyError::bad_gateway(format!("cannot resolve host {host}"));
    }
    ProxyError::bad_gateway(format!("cannot connect to {host}: {}", root_cause(err)))
}

/// The deepest cause in an error chain, for the short reason.
pub fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err;
    while let Some(next) = cur.source() {
        parts.push(next.to_string());
        cur = next;
    }
    parts.join(": ")
}

fn find_io<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// Turns a failed upstream TLS handshake into a 502 that says why, e.g.
/// "certificate for example.org not trusted: UnknownIssuer".
pub fn classify_tls(err: &io::Error, server_name: &str) -> ProxyError {
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(why)) => ProxyError::bad_gateway(format!(
            "certificate for {server_name} not trusted: {why:?}"
        )),
        Some(other) => {
            ProxyError::bad_gateway(format!("TLS handshake with {server_name} failed: {other}"))
        }
        None => ProxyError::bad_gateway(format!("TLS handshake with {server_name} failed: {err}")),
    }
}
