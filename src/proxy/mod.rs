//! The proxy engine: one connection loop that reads requests, applies access rules,
//! and hands each to the step that serves it (forwarding or CONNECT).

pub mod access;
pub mod body;
pub mod conn;
pub mod connect;
pub mod forward;
pub mod headers;
pub mod tunnel;

use std::sync::Arc;

use crate::config::ForwardConfig;
use crate::upstream::{http_client, HttpClient};
use headers::ViaToken;

/// State shared by every connection of one proxy instance.
pub struct Engine {
    pub cfg: ForwardConfig,
    pub client: HttpClient,
    pub via: ViaToken,
}

impl Engine {
    pub fn new(cfg: ForwardConfig) -> Arc<Engine> {
        let client = http_client(cfg.connect_timeout);
        Arc::new(Engine {
            cfg,
            client,
            via: ViaToken::random(),
        })
    }
}
