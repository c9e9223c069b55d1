//! The proxy engine: one connection loop that reads requests, applies access rules,
//! and hands each to the step that serves it (forwarding or CONNECT).

pub mod access;
pub mod conn;
pub mod connect;
pub mod forward;
pub mod headers;
pub mod peek;
pub mod round_trip;
pub mod tunnel;

use std::sync::Arc;

use std::time::Duration;

use crate::config::ForwardConfig;
use crate::upstream::pool::Pool;
use headers::ViaToken;

/// How long an idle upstream connection is kept for reuse.
const UPSTREAM_IDLE: Duration = Duration::from_secs(90);

/// State shared by every connection of one proxy instance.
pub struct Engine {
    pub cfg: ForwardConfig,
    /// Idle keep-alive connections to origins.
    pub pool: Pool,
    pub via: ViaToken,
}

impl Engine {
    pub fn new(cfg: ForwardConfig) -> Arc<Engine> {
        Arc::new(Engine {
            cfg,
            pool: Pool::new(UPSTREAM_IDLE),
            via: ViaToken::random(),
        })
    }
}
