//! The routing rules on the reverse proxy's HTTP/1.1 side: `--block` refuses the
//! request, `--map-remote` names the upstream instead of the balancer, `--map-local`
//! answers here. (`--modify-body` and `--modify-header` then shape what is sent, and the
//! round trip applies the response rules, as in the other modes.)

use super::config::UpstreamTarget;
use super::rule_steps::mapped_upstream;
use crate::error::ProxyError;
use crate::proxy::recording::Recording;
use crate::rules::{LocalAnswer, Rules};

/// Where a request goes after the routing rules.
pub enum Route {
    /// To the balancer's pick.
    Balanced,
    /// To the `--map-remote` upstream, asking it for `path`.
    Mapped {
        upstream: UpstreamTarget,
        path: String,
    },
    /// Answered here from a local file.
    Local(LocalAnswer),
}

/// Applies `--block`, `--map-remote` and `--map-local`, in that order (mitmproxy's).
pub fn route(rules: &Rules, recording: &mut Recording) -> Result<Route, ProxyError> {
    let Some(flow) = recording.flow() else {
        return Ok(Route::Balanced);
    };
    if rules.blocks(flow) {
        return Err(ProxyError::forbidden("blocked by a --block rule"));
    }
    let mut route = Route::Balanced;
    if let Some(url) = rules.map_remote(flow) {
        let (upstream, path) = mapped_upstream(&url)?;
        recording.set_url(&url);
        route = Route::Mapped {
            upstream,
            path: path.as_str().to_string(),
        };
    }
    let local = recording.flow().and_then(|flow| rules.map_local(flow));
    Ok(local.map_or(route, Route::Local))
}
