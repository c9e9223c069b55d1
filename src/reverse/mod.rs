//! `interpose reverse`: a TLS-terminating reverse proxy. TLS and HTTP/1.1 or HTTP/2
//! towards clients, round-robin with passive health over pooled upstreams, forwarding
//! headers, WebSocket pass-through, certificates reloadable on SIGHUP.
//!
//! - [`config`]: flag values and the validated config.
//! - [`conn`]: one client connection (TLS handshake, HTTP serving, shutdown).
//! - [`h2_limits`]: recognising a connection ended by the HTTP/2 reset limits.
//! - [`h1`]: HTTP/1.1 exchanges on the proxy engine.
//! - [`h1_rules`]: where the routing rules send such an exchange.
//! - [`h1_upstream`]: its way upstream (balancing, retry, one attempt).
//! - [`handler`]: one HTTP/2 exchange, on hyper.
//! - [`h2_inline`]: an HTTP/2 stream's bodiless request sent on the engine's pool.
//! - [`balance`]: round-robin and passive health.
//! - [`forwarded`]: X-Forwarded-* and Forwarded (pure functions).
//! - [`metered`]: byte counting and the access line.
//! - [`rule_steps`]: the rewrite rules on an HTTP/2 request.

pub mod balance;
pub mod config;
pub mod conn;
pub mod forwarded;
pub mod h1;
pub mod h1_rules;
pub mod h1_upstream;
pub mod h2_inline;
pub mod h2_limits;
pub mod handler;
pub mod metered;
pub mod rule_steps;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_rustls::TlsAcceptor;

use crate::config::ConfigError;
use crate::tls::client::upstream_client_config;
use crate::tls::pem::CertError;
use crate::tls::selfsigned::SelfSigned;
use crate::tls::server::{server_config, CertStore};
use balance::Balancer;
use config::ReverseConfig;
use metered::Metered;

/// What the reverse proxy sends upstream: the client's body, nothing (so a bodiless
/// request can be sent again on another upstream), or the body `--modify-body` read.
pub type UpstreamBody = Either<
    Metered<Incoming>,
    Either<Empty<Bytes>, Metered<crate::proxy::hyper_rules::answer_body::Spliced<Incoming>>>,
>;

/// Pooled keep-alive client for http and https upstreams (h2 when offered by ALPN).
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// Why the reverse proxy cannot start, in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag value that does not make sense.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A certificate, key or CA file that cannot be used.
    #[error(transparent)]
    Tls(#[from] CertError),
}

/// State shared by every connection of one reverse proxy.
pub struct ReverseProxy {
    /// The validated configuration it was started with.
    pub cfg: ReverseConfig,
    client: UpstreamClient,
    balancer: Balancer,
    certs: Arc<CertStore>,
    acceptor: TlsAcceptor,
    /// Flow recording (`--flows`, `--har`, `--filter`).
    pub record: crate::proxy::recording::RecordPlan,
    /// The engine the HTTP/1.1 side runs on: its parser, pools and round trip.
    engine: Arc<crate::proxy::Engine>,
}

impl ReverseProxy {
    /// Validates the config and loads every certificate; nothing is bound yet.
    pub fn new(cfg: ReverseConfig) -> Result<Arc<Self>, StartError> {
        cfg.validate()?;
        let provider = crate::tls::provider();
        let certs = CertStore::load(cfg.certs.clone(), provider.clone())?;
        let tls = server_config(certs.clone(), cfg.min_tls, provider.clone())?;
        let client_tls =
            upstream_client_config(cfg.upstream_ca.as_deref(), cfg.insecure_upstream, provider)?;
        let engine = engine_for(&cfg, client_tls.clone());
        let client = upstream_client(client_tls, cfg.connect_timeout);
        let record = crate::proxy::recording::RecordPlan {
            recorder: cfg.recorder.clone(),
            rules: cfg.rules.clone(),
            ..Default::default()
        };
        Ok(Arc::new(ReverseProxy {
            engine,
            record,
            balancer: Balancer::new(cfg.upstreams.clone(), cfg.down_cooldown),
            client,
            certs,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            cfg,
        }))
    }

    /// Reloads every certificate from disk (what SIGHUP does). On failure the old
    /// certificates stay; open connections are never affected. Returns how many loaded.
    pub fn reload_certificates(&self) -> Result<usize, CertError> {
        self.certs.reload()
    }

    /// The certificate minted at start when none was given.
    pub fn self_signed(&self) -> Option<&SelfSigned> {
        self.certs.self_signed()
    }
}

/// The engine under the HTTP/1.1 side, with the reverse proxy's limits and recorder.
fn engine_for(cfg: &ReverseConfig, mut tls: rustls::ClientConfig) -> Arc<crate::proxy::Engine> {
    let mut fwd = crate::config::ForwardConfig::new(cfg.listen);
    fwd.connect_timeout = cfg.connect_timeout;
    fwd.response_timeout = cfg.response_timeout;
    fwd.header_timeout = cfg.header_timeout;
    fwd.grace = cfg.grace;
    fwd.max_body_size = cfg.max_body_size;
    fwd.recorder = cfg.recorder.clone();
    fwd.rules = cfg.rules.clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    crate::proxy::Engine::for_reverse(fwd, connector)
}

fn upstream_client(tls: rustls::ClientConfig, connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(https)
}
