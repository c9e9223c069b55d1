//! The proxy engine: one connection loop that reads requests, applies access rules,
//! and hands each to the step that serves it (forwarding or CONNECT).

pub mod access;
pub mod conn;
pub mod connect;
pub mod dump;
pub mod dump_body;
pub mod forward;
pub mod forward_h2;
pub mod headers;
pub mod hyper_rules;
pub mod intercept;
pub mod intercept_h2;
pub mod intercept_h2_rules;
pub mod next_hop;
pub mod passthrough;
pub mod peek;
pub mod recording;
pub mod round_trip;
pub mod rules_h1;
pub mod stream_watch;
pub mod target;
pub mod tunnel;
pub mod tunnel_upstream;
pub mod upstream_tls;

use std::sync::Arc;

use std::time::Duration;

use crate::config::ForwardConfig;
use crate::upstream::h2::H2Pool;
use crate::upstream::pool::Pool;
use headers::ViaToken;

/// How long an idle upstream connection is kept for reuse.
const UPSTREAM_IDLE: Duration = Duration::from_secs(90);

/// How often idle upstream connections are checked, closed by their origin or idle too
/// long, and let go (a quiet proxy would otherwise hold them until traffic returns).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Sweeps the engine's pools every `every`, until the engine is gone.
async fn sweep_idle(engine: std::sync::Weak<Engine>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.pool.sweep();
        engine.tls_pool.sweep();
        engine.h2_pool.sweep();
    }
}

/// State shared by every connection of one proxy instance.
pub struct Engine {
    pub cfg: ForwardConfig,
    /// Idle keep-alive connections to plain-HTTP origins.
    pub pool: Pool<tokio::net::TcpStream>,
    /// Idle keep-alive TLS connections to origins (interception).
    pub tls_pool: Pool<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    /// Live HTTP/2 connections to origins that chose `h2` (interception).
    pub h2_pool: H2Pool,
    /// How upstream TLS is made and verified; set when the engine intercepts.
    pub upstream_tls: Option<tokio_rustls::TlsConnector>,
    /// The same, offering HTTP/1.1 only: for upgrades, which HTTP/2 cannot carry.
    pub upstream_tls_h1: Option<tokio_rustls::TlsConnector>,
    /// The interception policy; `None` for a plain forward proxy.
    pub intercept: Option<intercept::Policy>,
    pub via: ViaToken,
    /// Dumps and flow recording.
    pub record: recording::RecordPlan,
}

impl Engine {
    /// A forward proxy: nothing is intercepted.
    pub fn new(cfg: ForwardConfig) -> Arc<Engine> {
        Engine::with_interception(cfg, None)
    }

    /// The same engine, intercepting what `policy` says (the `mitm` mode).
    pub fn with_interception(
        cfg: ForwardConfig,
        policy: Option<(intercept::Policy, tokio_rustls::TlsConnector)>,
    ) -> Arc<Engine> {
        let (intercept, upstream_tls) = match policy {
            Some((p, c)) => (Some(p), Some(c)),
            None => (None, None),
        };
        Engine::build(cfg, intercept, upstream_tls, ViaToken::random())
    }

    /// The engine under the reverse proxy's HTTP/1.1 side: nothing intercepted, TLS
    /// towards https upstreams through `upstream_tls`, no Via.
    pub fn for_reverse(
        cfg: ForwardConfig,
        upstream_tls: tokio_rustls::TlsConnector,
    ) -> Arc<Engine> {
        Engine::build(cfg, None, Some(upstream_tls), ViaToken::none())
    }

    fn build(
        cfg: ForwardConfig,
        intercept: Option<intercept::Policy>,
        upstream_tls: Option<tokio_rustls::TlsConnector>,
        via: ViaToken,
    ) -> Arc<Engine> {
        let upstream_tls_h1 = upstream_tls.as_ref().map(|tls| {
            let mut config = tls.config().as_ref().clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        let record = recording::RecordPlan {
            recorder: cfg.recorder.clone(),
            rules: cfg.rules.clone(),
            dump_headers: cfg.dump_headers,
            dump_body_max: cfg.dump_body_max,
            secrets: cfg.dump_secrets(),
        };
        let engine = Arc::new(Engine {
            record,
            cfg,
            pool: Pool::new(UPSTREAM_IDLE),
            tls_pool: Pool::new(UPSTREAM_IDLE),
            h2_pool: H2Pool::new(UPSTREAM_IDLE),
            upstream_tls,
            upstream_tls_h1,
            intercept,
            via,
        });
        // Outside a runtime (none of the binary's paths) idle connections are still
        // dropped by the traffic that finds them.
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep_idle(Arc::downgrade(&engine), SWEEP_EVERY));
        }
        engine
    }

    /// Emits an access line in this mode's style: mitmdump's when intercepting.
    pub fn log_access(&self, record: &crate::access_log::AccessRecord<'_>) {
        (self.access_line())(record)
    }

    /// The access line writer of this mode: mitmdump's style when intercepting.
    pub fn access_line(&self) -> fn(&crate::access_log::AccessRecord<'_>) {
        if self.intercept.is_some() {
            crate::access_log::log_flow
        } else {
            crate::access_log::log_access
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn the_sweeper_lets_go_of_closed_idle_connections_and_ends_with_its_engine() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let engine = Engine::new(ForwardConfig::new(addr));
        let client = TcpStream::connect(addr).await.unwrap();
        let server = listener.accept().await.unwrap().0;
        engine.pool.checkin("o:80", client, None);
        let sweeper = tokio::spawn(sweep_idle(
            Arc::downgrade(&engine),
            Duration::from_millis(20),
        ));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(engine.pool.idle_count(), 1, "a live connection is kept");

        drop(server);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(engine.pool.idle_count(), 0, "no traffic came, yet it went");

        drop(engine);
        let ended = tokio::time::timeout(Duration::from_secs(2), sweeper).await;
        assert!(ended.is_ok(), "the sweeper ends once the engine is gone");
    }
}
