//! The rewrite rules on an intercepted HTTP/2 client's request, once its head is ready
//! to go to the origin: `--block` and `--map-local` answer it here; `--map-remote`
//! changes the path and, for another origin than the tunnel's, gives the exchange an
//! upstream of its own; `--modify-body` and `--modify-header` shape what is sent. The
//! response side is [`super::hyper_rules::respond`].

use std::sync::{Arc, Mutex};

use http::request::Parts;
use http::Version;
use http_body_util::Either;
use hyper::body::Incoming;

use super::hyper_rules::{
    answer_locally, blocked, modify_request_headers, request_verdict, rewrite_body, Verdict,
};
use super::intercept_h2::Answer;
use super::stream_watch::StallLimit;
use super::target::{parse_absolute, ForwardTarget, TunnelTarget};
use super::tunnel_upstream::TunnelUpstream;
use crate::error::ProxyError;
use crate::reverse::metered::{ExchangeLog, Metered};
use crate::rules::Rules;
use crate::upstream::h2::BoxedBody;

/// What the rules made of a request.
pub enum Prepared {
    /// Answered without an upstream (`--block`, `--map-local`).
    Answered(http::Response<Answer>),
    /// To send, elsewhere if `--map-remote` said so.
    Send {
        body: BoxedBody,
        mapped: Option<Mapped>,
    },
}

/// Where `--map-remote` sends the request (its path is already in the URI).
pub struct Mapped {
    pub url: String,
    pub path: String,
    /// The `:authority` (or Host) the origin is asked for.
    pub authority: String,
    /// Another origin than the tunnel's: a one-off upstream for this exchange.
    pub upstream: Option<TunnelUpstream>,
}

/// Applies the request-phase rules to `parts` and `body`.
pub async fn prepare(
    tunnel: &TunnelUpstream,
    rules: &Rules,
    log: &Arc<ExchangeLog>,
    parts: &mut Parts,
    body: StallLimit<Incoming>,
) -> Result<Prepared, ProxyError> {
    let plan = &tunnel.engine.record;
    let mapped = match request_verdict(rules, log) {
        Verdict::Block => return Ok(Prepared::Answered(blocked(plan, log, Version::HTTP_2))),
        Verdict::Local(answer) => {
            let answer = answer_locally(rules, plan, log, answer, &parts.method, Version::HTTP_2);
            return Ok(Prepared::Answered(answer.await));
        }
        Verdict::Forward(Some(url)) => {
            let (target, https) = parse_absolute(&url)?;
            // `TunnelUpstream::send` takes the path from the URI.
            parts.uri = target
                .path
                .parse()
                .map_err(|_| ProxyError::bad_request("invalid --map-remote path"))?;
            Some(Mapped {
                url,
                path: target.path.clone(),
                authority: target.host_header.to_str().unwrap_or_default().to_string(),
                upstream: elsewhere(tunnel, target, https),
            })
        }
        Verdict::Forward(None) => None,
    };
    let limit = tunnel.engine.cfg.max_body_size;
    let body = match rewrite_body(rules, log, &mut parts.headers, body).await {
        Ok(Either::Left(body)) => BoxedBody::new(Metered::upload(body, log.clone(), limit)),
        Ok(Either::Right(body)) => BoxedBody::new(Metered::upload(body, log.clone(), limit)),
        Err(_) => {
            return Err(ProxyError::bad_request(
                "malformed, incomplete or stalled request body",
            ))
        }
    };
    modify_request_headers(rules, log, &mut parts.headers);
    Ok(Prepared::Send { body, mapped })
}

/// The one-off upstream for a `--map-remote` URL at another origin than the tunnel's
/// (`None`: the same origin, whose connections serve it). `http://` means plain TCP.
fn elsewhere(
    tunnel: &TunnelUpstream,
    target: ForwardTarget,
    https: bool,
) -> Option<TunnelUpstream> {
    let here = &tunnel.tunnel;
    let same = here.host.eq_ignore_ascii_case(&target.host)
        && here.port == target.port
        && here.tls == https;
    if same {
        return None;
    }
    let there = TunnelTarget {
        server_name: target.host.clone(),
        host: target.host,
        port: target.port,
        tls: https,
        first_tcp: Mutex::new(None),
        client_tls: None,
        opened: Mutex::new(None),
    };
    Some(TunnelUpstream::new(tunnel.engine.clone(), there))
}
