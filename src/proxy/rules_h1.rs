//! The rewrite rules in the HTTP/1 engine: where a request goes (`--block`,
//! `--map-remote`, `--map-local`), its headers and body (`--modify-header`,
//! `--modify-body`), and the response side of the same. Each step looks at the
//! exchange's flow; nothing here runs when no rule is given.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::forward::Done;
use super::recording::{HeadSlot, RecordPlan, Recording};
use super::target::{parse_absolute, ForwardTarget, Scope, TunnelTarget};
use crate::error::ProxyError;
use crate::flow::record::Flow;
use crate::h1::head::{Framing, ResponseHead};
use crate::h1::reader::{BodyPiece, BodyState, MessageReader, ReadError};
use crate::h1::writer::{encode_head, OutFraming};
use crate::rules::{LocalAnswer, Rules};

/// Where a request goes after the routing rules.
pub enum Route {
    /// Upstream: to the same place, or to the scope `--map-remote` chose.
    Upstream(Option<Scope>),
    /// Answered here from a local file (`--map-local`).
    Local(LocalAnswer),
}

/// Applies `--block`, `--map-remote` (rewriting `target`) and `--map-local`, in that
/// order (mitmproxy's).
pub fn route(
    rules: &Rules,
    recording: &mut Recording,
    target: &mut ForwardTarget,
    scope: &Scope,
) -> Result<Route, ProxyError> {
    let Some(flow) = recording.flow() else {
        return Ok(Route::Upstream(None));
    };
    if rules.blocks(flow) {
        return Err(ProxyError::forbidden("blocked by a --block rule"));
    }
    let mut mapped = None;
    if let Some(url) = rules.map_remote(flow) {
        let (to, https) = parse_absolute(&url)?;
        mapped = match scope {
            Scope::Forward if https => {
                return Err(ProxyError::bad_gateway(format!(
                    "--map-remote to {url}: https upstreams need interpose mitm"
                )))
            }
            Scope::Forward => None,
            Scope::Tunnel(tunnel) => Some(Scope::Tunnel(TunnelTarget {
                host: to.host.clone(),
                port: to.port,
                tls: https,
                server_name: to.host.clone(),
                first_tcp: Mutex::new(None),
                client_tls: tunnel.client_tls.clone(),
                opened: Mutex::new(None),
            })),
        };
        *target = to;
        recording.set_url(&url);
    }
    let local = recording.flow().and_then(|flow| rules.map_local(flow));
    Ok(match local {
        Some(answer) => Route::Local(answer),
        None => Route::Upstream(mapped),
    })
}

/// `--modify-header` on a request about to go upstream; the flow shows the result.
pub fn modify_request_headers(rules: &Rules, recording: &mut Recording, headers: &mut HeaderMap) {
    let Some(flow) = recording.flow() else {
        return;
    };
    let before = headers.clone();
    rules.modify_request_headers(flow, headers);
    if *headers != before {
        recording.request_headers_changed(headers);
    }
}

/// What a `--modify-body` rule made of a request body.
pub struct RequestBody {
    /// Read from the client already: sent first.
    pub prefix: Bytes,
    /// The framing the request now goes out with.
    pub framing: Framing,
}

/// Reads a request body a `--modify-body` rule applies to and rewrites it; a body over
/// `--modify-max-body` goes on unmodified: what was read, then the rest as it comes.
pub async fn rewrite_request_body<R: AsyncRead + Unpin>(
    rules: &Rules,
    recording: &Recording,
    reader: &mut MessageReader<R>,
    state: &mut BodyState,
    headers: &mut HeaderMap,
    framing: Framing,
    idle: std::time::Duration,
) -> Result<Option<RequestBody>, ProxyError> {
    let Some(flow) = recording.flow() else {
        return Ok(None);
    };
    if framing == Framing::Empty || !rules.body_rules_match(flow) {
        return Ok(None);
    }
    let cap = rules.modify_max_body();
    let (read, whole) = match read_capped(reader, state, cap, idle).await {
        Ok(read) => read,
        Err(CappedError::Stalled) => return Err(ProxyError::bad_request("request body stalled")),
        Err(CappedError::Read(e)) => return Err(ProxyError::from(e)),
    };
    if !whole {
        tracing::warn!(
            "{}: request body over --modify-max-body {cap} bytes, sent unmodified",
            flow.request.url
        );
        return Ok(Some(RequestBody {
            prefix: read,
            framing,
        }));
    }
    let body = rules.rewrite_body(flow, headers, read).into_body();
    set_length(headers, body.len());
    Ok(Some(RequestBody {
        framing: if body.is_empty() {
            Framing::Empty
        } else {
            Framing::Length(body.len() as u64)
        },
        prefix: body,
    }))
}

/// Why [`read_capped`] stopped short.
pub enum CappedError {
    /// Nothing came for the idle time.
    Stalled,
    Read(ReadError),
}

/// Reads an HTTP/1 body until it ends or passes `cap` bytes: the bytes, and whether that
/// is all of it (trailers of a body read whole are dropped: it goes out with a length).
pub async fn read_capped<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
    state: &mut BodyState,
    cap: usize,
    idle: std::time::Duration,
) -> Result<(Bytes, bool), CappedError> {
    let mut read = BytesMut::new();
    loop {
        let piece = tokio::time::timeout(idle, reader.read_body(state))
            .await
            .map_err(|_| CappedError::Stalled)?
            .map_err(CappedError::Read)?;
        match piece {
            Some(BodyPiece::Data(data)) => {
                read.extend_from_slice(&data);
                if read.len() > cap {
                    return Ok((read.freeze(), false));
                }
            }
            Some(BodyPiece::Trailers(_)) | None => return Ok((read.freeze(), true)),
        }
    }
}

fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::TRAILER);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

/// The response side of one exchange: records and dumps the head when it arrives, and
/// applies the response rules (body first, then headers: headers have the last word).
pub struct ResponseSide<'a> {
    pub plan: &'a RecordPlan,
    pub slot: Option<HeadSlot<'a>>,
}

impl ResponseSide<'_> {
    /// The final response head arrived (as the upstream sent it).
    pub fn arrived(&mut self, head: &ResponseHead) {
        match &mut self.slot {
            Some(slot) => slot.response_head(self.plan, head.status, head.version, &head.headers),
            None if self.plan.dump_headers => {
                self.plan
                    .dump_response_now(head.status, head.version, &head.headers)
            }
            None => {}
        }
    }

    fn rules_and_flow(&self) -> Option<(&Rules, &Flow)> {
        let rules = self.plan.rules.as_deref()?;
        let flow = self.slot.as_ref()?.flow()?;
        Some((rules, flow))
    }

    /// How much of the body to read whole before answering, when a `--modify-body`
    /// rule applies to this response.
    pub fn body_cap(&self, head: &ResponseHead) -> Option<usize> {
        let (rules, flow) = self.rules_and_flow()?;
        let has_body = !matches!(head.framing, Framing::Empty)
            && head.status != StatusCode::SWITCHING_PROTOCOLS;
        (has_body && rules.body_rules_match(flow)).then(|| rules.modify_max_body())
    }

    /// Rewrites a whole response body; `head` gets the new length.
    pub fn rewrite(&self, head: &mut ResponseHead, body: Bytes) -> Bytes {
        let Some((rules, flow)) = self.rules_and_flow() else {
            return body;
        };
        let body = rules
            .rewrite_body(flow, &mut head.headers, body)
            .into_body();
        set_length(&mut head.headers, body.len());
        head.framing = Framing::Length(body.len() as u64);
        body
    }

    /// `--modify-header` on the response as it goes to the client.
    pub fn modify_headers(&self, headers: &mut HeaderMap) {
        if let Some((rules, flow)) = self.rules_and_flow() {
            rules.modify_response_headers(flow, headers);
        }
    }
}

/// Answers from a local file (`--map-local`): 200 with its type and length, the file
/// streamed; 404 when no file fits or it cannot be read.
pub(crate) async fn answer_local<W: AsyncWrite + Unpin>(
    w: &mut W,
    answer: LocalAnswer,
    is_head: bool,
    keep_alive: bool,
) -> Result<Done, ProxyError> {
    let opened = match &answer {
        LocalAnswer::File { path, content_type } => match tokio::fs::File::open(path).await {
            Ok(file) => match file.metadata().await {
                Ok(meta) if meta.is_file() => Some((file, meta.len(), *content_type)),
                _ => None,
            },
            Err(_) => None,
        },
        LocalAnswer::NotFound => None,
    };
    let Some((mut file, len, content_type)) = opened else {
        return Err(ProxyError::not_found(
            "no local file for this URL (--map-local)",
        ));
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let mut head = BytesMut::with_capacity(256);
    encode_head(
        &mut head,
        StatusCode::OK,
        &headers,
        OutFraming::Length,
        keep_alive,
    );
    let gone = |e: std::io::Error| ProxyError::bad_request(format!("client went away: {e}"));
    w.write_all(&head).await.map_err(gone)?;
    // The head is out: a failure now ends the connection, it cannot be answered.
    let copied = match is_head {
        true => Ok(0),
        false => tokio::io::copy(&mut file, w).await,
    };
    let flushed = w.flush().await;
    let (sent, note) = match (copied, flushed) {
        (Ok(n), Ok(())) if is_head || n == len => (n, None),
        (Ok(n), Ok(())) => (
            n,
            Some(format!("the local file changed size ({n} of {len} bytes)")),
        ),
        (Err(e), _) | (_, Err(e)) => (0, Some(format!("sending the local file failed: {e}"))),
    };
    Ok(Done {
        status: 200,
        up: 0,
        down: sent,
        keep_alive: keep_alive && note.is_none(),
        note,
    })
}
