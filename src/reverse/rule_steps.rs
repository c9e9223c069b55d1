//! The rewrite rules on a reverse-proxy HTTP/2 request, once its head is ready to go upstream:
//! `--block` and `--map-local` answer it here; `--map-remote` names the upstream to use
//! instead of the balancer's pick; `--modify-body` and `--modify-header` shape what is
//! sent. The response side is [`crate::proxy::hyper_rules::respond`].

use http::header::HeaderValue;
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Response, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::config::UpstreamTarget;
use super::handler::Outbound;
use super::metered::ExchangeLog;
use super::ReverseProxy;
use crate::error::ProxyError;
use crate::proxy::hyper_rules::answer_body::{AnswerBody, Spliced};
use crate::proxy::hyper_rules::{
    answer_locally, blocked, modify_request_headers, request_verdict, rewrite_body, Verdict,
};
use crate::rules::Rules;

/// The client's body as it goes upstream: untouched, or read and rewritten.
pub type RequestBody = Either<Incoming, Spliced<Incoming>>;

/// What the rules made of a request.
pub enum Prepared {
    /// Answered without an upstream (`--block`, `--map-local`).
    Answered(Response<AnswerBody<Incoming>>),
    /// To send, to the `--map-remote` upstream if there is one.
    Send {
        body: RequestBody,
        mapped: Option<UpstreamTarget>,
    },
}

/// Applies the request-phase rules to `out` and `body`.
pub async fn prepare(
    proxy: &ReverseProxy,
    rules: &Rules,
    log: &ExchangeLog,
    out: &mut Outbound,
    body: Incoming,
    version: Version,
) -> Result<Prepared, ProxyError> {
    let plan = &proxy.record;
    let mapped = match request_verdict(rules, log) {
        Verdict::Block => return Ok(Prepared::Answered(blocked(plan, log, version))),
        Verdict::Local(answer) => {
            let resp = answer_locally(rules, plan, log, answer, &out.method, version).await;
            return Ok(Prepared::Answered(resp));
        }
        Verdict::Forward(Some(url)) => {
            let (target, pq) = mapped_upstream(&url)?;
            out.pq = pq;
            // The Host the new upstream is asked for is its own.
            out.client_host = HeaderValue::from_str(target.authority.as_str()).ok();
            Some(target)
        }
        Verdict::Forward(None) => None,
    };
    // A client that stops sending would hold the exchange: bounded like an answer.
    let read = rewrite_body(rules, log, &mut out.headers, body);
    let body = match tokio::time::timeout(proxy.cfg.response_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return Err(ProxyError::bad_request(
                "malformed or incomplete request body",
            ))
        }
        Err(_) => return Err(ProxyError::bad_request("the request body stalled")),
    };
    modify_request_headers(rules, log, &mut out.headers);
    Ok(Prepared::Send { body, mapped })
}

/// A `--map-remote` URL as an upstream (no prefix) and the path to ask it for.
pub(super) fn mapped_upstream(url: &str) -> Result<(UpstreamTarget, PathAndQuery), ProxyError> {
    let bad = || ProxyError::bad_gateway(format!("--map-remote made an unusable URL: {url}"));
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err(bad()),
    };
    let authority = uri.authority().cloned().ok_or_else(bad)?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(bad());
    }
    let pq = match uri.path_and_query().map(PathAndQuery::as_str) {
        Some(p) if p.starts_with('/') => PathAndQuery::try_from(p).map_err(|_| bad())?,
        Some(p) => PathAndQuery::try_from(format!("/{p}")).map_err(|_| bad())?,
        None => PathAndQuery::from_static("/"),
    };
    let target = UpstreamTarget::new(scheme, authority, String::new());
    Ok((target, pq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_url_becomes_an_upstream_and_a_path() {
        let (t, pq) = mapped_upstream("http://127.0.0.1:8080/a/b?c=d").unwrap();
        assert_eq!(t.origin(), "http://127.0.0.1:8080");
        assert_eq!(pq.as_str(), "/a/b?c=d");
        let (t, pq) = mapped_upstream("https://example.org").unwrap();
        assert_eq!(t.origin(), "https://example.org");
        assert_eq!(pq.as_str(), "/");
        for bad in ["ftp://x/", "/relative", "http://u@x/"] {
            assert!(mapped_upstream(bad).is_err(), "{bad}");
        }
    }
}
