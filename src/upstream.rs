//! The pooled HTTP client that talks to origins, and how its failures become
//! 502/504 answers that name the cause.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::ProxyError;
use crate::proxy::body::RequestBody;

/// Pooled keep-alive client for plain-HTTP origins.
pub type HttpClient = Client<HttpConnector, RequestBody>;

/// Builds the upstream client with a connect timeout and a keep-alive pool.
pub fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .http1_preserve_header_case(false)
        .build(connector)
}

/// Turns a client failure into the answer for the user, naming the host.
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
