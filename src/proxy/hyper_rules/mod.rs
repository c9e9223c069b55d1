//! The rewrite rules ([`Rules`]) applied on the hyper-based paths (an intercepted
//! HTTP/2 client, the reverse proxy), in mitmproxy's order: `--block`, `--map-remote`
//! (the flow's URL follows), `--map-local` on that URL; then per message `--modify-body`
//! and `--modify-header` (which has the last word). The rules look at the exchange's
//! flow, kept by its [`ExchangeLog`]. Without rules none of this is called.
//!
//! - [`answer_body`]: the bodies such an exchange can send.
//! - [`capped_read`]: reading a body for `--modify-body` under `--modify-max-body`.
//! - [`local_answer`]: `--map-local` answers streamed from disk.

pub mod answer_body;
pub mod capped_read;
pub mod local_answer;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::Either;

use crate::error::ProxyError;
use crate::proxy::recording::RecordPlan;
use crate::reverse::handler::error_response;
use crate::reverse::metered::ExchangeLog;
use crate::rules::{LocalAnswer, Rules};
use answer_body::{AnswerBody, Spliced};
use capped_read::{read_capped, CappedRead};

/// What the request-phase rules decided.
pub enum Verdict {
    /// `--block`: answer 403, contact nobody.
    Block,
    /// `--map-local`: answer from disk, contact nobody.
    Local(LocalAnswer),
    /// Send it on; to this absolute URL instead when `--map-remote` said so (the flow
    /// already shows it).
    Forward(Option<String>),
}

/// Asks `--block`, `--map-remote` and `--map-local`, in that order, about the request.
pub fn request_verdict(rules: &Rules, log: &ExchangeLog) -> Verdict {
    let asked = log.with_recording(|r| {
        let flow = r.flow()?;
        if rules.blocks(flow) {
            return Some(Verdict::Block);
        }
        let remote = rules.map_remote(flow);
        if let Some(url) = &remote {
            r.set_url(url);
        }
        let local = r.flow().and_then(|flow| rules.map_local(flow));
        Some(local.map_or(Verdict::Forward(remote), Verdict::Local))
    });
    asked.flatten().unwrap_or(Verdict::Forward(None))
}

/// The 403 for a `--block`ed request, recorded in the flow as its response.
pub fn blocked<B>(
    plan: &RecordPlan,
    log: &ExchangeLog,
    version: Version,
) -> Response<AnswerBody<B>> {
    let resp = error_response(&ProxyError::forbidden("blocked by a --block rule"));
    log.with_recording(|r| r.response_head(plan, resp.status(), version, resp.headers()));
    resp.map(AnswerBody::text)
}

/// The `--map-local` answer, recorded in the flow as its response; the response header
/// rules apply to it (its body is the file's, as mitmproxy leaves it).
pub async fn answer_locally<B>(
    rules: &Rules,
    plan: &RecordPlan,
    log: &ExchangeLog,
    answer: LocalAnswer,
    method: &Method,
    version: Version,
) -> Response<AnswerBody<B>> {
    let (mut resp, note) = local_answer::local_response(answer, method == Method::HEAD).await;
    if let Some(note) = note {
        tracing::warn!("{note}");
        log.set_note(note);
    }
    log.with_recording(|r| {
        r.response_head(plan, resp.status(), version, resp.headers());
        if let Some(flow) = r.flow() {
            rules.modify_response_headers(flow, resp.headers_mut());
        }
    });
    resp
}

/// `--modify-header` on the request about to be sent; the flow shows the result when a
/// rule changed something.
pub fn modify_request_headers(rules: &Rules, log: &ExchangeLog, headers: &mut HeaderMap) {
    log.with_recording(|r| {
        let Some(flow) = r.flow() else {
            return;
        };
        let before = headers.clone();
        rules.modify_request_headers(flow, headers);
        if *headers != before {
            r.request_headers_changed(headers);
        }
    });
}

/// `--modify-body` on the body of the message whose `headers` are given (the request's
/// until the flow has a response): read up to `--modify-max-body`, rewritten, and sent
/// with its new length. A body no rule selects is handed back untouched and unread; one
/// over the cap is passed on unmodified (what was read, then the rest of the stream).
pub async fn rewrite_body<B>(
    rules: &Rules,
    log: &ExchangeLog,
    headers: &mut HeaderMap,
    body: B,
) -> Result<Either<B, Spliced<B>>, B::Error>
where
    B: Body<Data = Bytes>,
{
    let about = log.with_recording(|r| {
        let flow = r.flow()?;
        let side = if flow.response.is_some() {
            "response"
        } else {
            "request"
        };
        rules
            .body_rules_match(flow)
            .then(|| (side, flow.request.url.clone()))
    });
    let Some((side, url)) = about.flatten() else {
        return Ok(Either::Left(body));
    };
    let cap = rules.modify_max_body();
    let too_large = || {
        tracing::warn!(
            url,
            side,
            max = cap,
            "--modify-body: body over --modify-max-body, passed unmodified"
        );
    };
    if body.size_hint().lower() > u64::try_from(cap).unwrap_or(u64::MAX) {
        too_large();
        return Ok(Either::Left(body));
    }
    let (data, trailers) = match read_capped(body, cap).await? {
        CappedRead::Whole { data, trailers } => (data, trailers),
        CappedRead::Over { prefix, rest } => {
            too_large();
            return Ok(Either::Right(Spliced::resumed(prefix, rest)));
        }
    };
    let rewritten = log.with_recording(|r| {
        let flow = r.flow()?;
        Some(rules.rewrite_body(flow, headers, data.clone()).into_body())
    });
    let data = rewritten.flatten().unwrap_or(data);
    // The body now goes whole, with its length (HTTP/1.1 would drop trailers with one);
    // an empty body that had no length (a GET's) is left without one.
    headers.remove(header::TRANSFER_ENCODING);
    let said = !data.is_empty() || headers.contains_key(header::CONTENT_LENGTH);
    if trailers.is_none() && said {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
    }
    Ok(Either::Right(Spliced::whole(data, trailers)))
}

/// The response-phase rules on a response whose head the flow already holds:
/// `--modify-body`, then `--modify-header`. `method` is the request's: a HEAD answer
/// (like a 1xx, 204 or 304) has no body to rewrite.
pub async fn respond<B>(
    rules: &Rules,
    log: &ExchangeLog,
    method: &Method,
    resp: Response<B>,
) -> Result<Response<AnswerBody<B>>, B::Error>
where
    B: Body<Data = Bytes>,
{
    let (mut parts, body) = resp.into_parts();
    let bodiless = *method == Method::HEAD
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let body = if bodiless {
        AnswerBody::streamed(body)
    } else {
        match rewrite_body(rules, log, &mut parts.headers, body).await? {
            Either::Left(body) => AnswerBody::streamed(body),
            Either::Right(body) => AnswerBody::Spliced { body },
        }
    };
    log.with_recording(|r| {
        if let Some(flow) = r.flow() {
            rules.modify_response_headers(flow, &mut parts.headers);
        }
    });
    Ok(Response::from_parts(parts, body))
}
