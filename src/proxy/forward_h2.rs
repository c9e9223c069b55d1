//! An HTTP/1.1 client's exchange with an origin that chose HTTP/2: Host becomes
//! `:authority` (hyper takes it from the absolute URI), connection-specific headers go,
//! the body streams through a bounded channel, and the response is written back as
//! HTTP/1.1 by the same code as any other (Content-Length kept, else chunked).

use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::{Method, Request, Uri, Version};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncRead, AsyncWrite};

use super::dump_body::BodyCapture;
use super::forward::{answer_head, Done, Prepared};
use super::headers::strip_for_h2;
use super::hyper_rules::answer_body::Spliced;
use super::hyper_rules::capped_read::{read_capped, CappedRead};
use super::rules_h1::ResponseSide;
use super::Engine;
use crate::error::ProxyError;
use crate::h1::head::{Framing, ResponseHead};
use crate::h1::reader::{BodyPiece, BodyState, MessageReader};
use crate::h1::writer::{
    write_response, BodySource, BoxError, FrameSource, OutFraming, WriteError,
};
use crate::proxy::round_trip::Answer;
use crate::upstream::classify_exchange;
use crate::upstream::h2::{BoxedBody, H2Sender};
use http_body_util::Either;

/// Request body frames buffered between the client and the HTTP/2 stream.
const CHANNEL_FRAMES: usize = 4;

/// Runs the exchange on `sender`; an `Err` is answered by the caller (nothing was sent).
pub(super) async fn send<R, W>(
    engine: &Engine,
    mut sender: H2Sender,
    request: Prepared<'_>,
    reader: &mut MessageReader<R>,
    body_state: &mut BodyState,
    w: &mut W,
) -> Result<Done, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if request.upgrade {
        return Err(ProxyError::bad_gateway(
            "the upstream speaks HTTP/2: the connection cannot be upgraded",
        ));
    }
    let Prepared {
        method,
        version,
        client_close,
        path,
        mut headers,
        recording,
        prefix,
        ..
    } = request;
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let uri: Uri = format!("https://{authority}{path}")
        .parse()
        .map_err(|_| ProxyError::bad_request("invalid request target"))?;
    strip_for_h2(&mut headers);
    let (body, tx): (BoxedBody, _) = if body_state.is_done() && prefix.is_empty() {
        (
            Empty::new().map_err(|never| match never {}).boxed_unsync(),
            None,
        )
    } else {
        let (tx, body) = Channel::<Bytes, BoxError>::new(CHANNEL_FRAMES);
        (body.boxed_unsync(), Some(BodyTx(Some(tx))))
    };
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;

    let idle = engine.cfg.idle_timeout;
    let limit = engine.cfg.response_timeout;
    let (taps, slot) = match recording {
        Some(r) => {
            let (taps, slot) = r.parts();
            (Some(taps), Some(slot))
        }
        None => (None, None),
    };
    let (request_tap, response_tap, sent_at) = match taps {
        Some(t) => (Some(t.request), Some(t.response), Some(t.sent_at)),
        None => (None, None, None),
    };
    let mut pump = Box::pin(pump_body(
        reader,
        body_state,
        (prefix, tx),
        idle,
        request_tap,
    ));
    let response = sender.send_request(req);
    tokio::pin!(response);
    // The response timeout runs from the end of the request body, as on HTTP/1.1.
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let mut pumped: Option<Result<u64, ProxyError>> = None;
    let mut sent_at = sent_at;
    let resp = loop {
        tokio::select! {
            biased;
            r = &mut pump, if pumped.is_none() => {
                pumped = Some(Ok(r?));
                if let Some(at) = sent_at.as_deref_mut() {
                    *at = Some(std::time::Instant::now());
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + limit);
            }
            r = &mut response => break r.map_err(|e| classify_exchange(&e, &authority))?,
            _ = &mut deadline, if pumped.is_some() => {
                return Err(ProxyError::gateway_timeout(format!(
                    "the upstream did not answer within {}s",
                    limit.as_secs_f64()
                )));
            }
        }
    };

    let (parts, incoming) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut head = ResponseHead {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        framing: Framing::Chunked,
    };
    let mut side = ResponseSide {
        plan: &engine.record,
        slot,
    };
    side.arrived(&head);
    let body = match side.body_cap(&head) {
        None => Either::Left(incoming),
        Some(cap) => {
            // A --modify-body rule: read the body whole (the request body still flowing).
            let reading = read_capped(incoming, cap);
            tokio::pin!(reading);
            let read = loop {
                tokio::select! {
                    biased;
                    r = &mut pump, if pumped.is_none() => pumped = Some(r),
                    r = &mut reading => break r.map_err(|e| {
                        ProxyError::bad_gateway(format!("reading the response body failed: {e}"))
                    })?,
                }
            };
            Either::Right(match read {
                // Trailers of a rewritten body are dropped: it goes out with a length.
                CappedRead::Whole { data, .. } => {
                    Spliced::whole(side.rewrite(&mut head, data), None)
                }
                CappedRead::Over { prefix, rest } => {
                    tracing::warn!(
                        "response body over --modify-max-body {cap} bytes, sent unmodified"
                    );
                    Spliced::resumed(prefix, rest)
                }
            })
        }
    };
    let Answer {
        head: answer,
        framing,
    } = answer_head(
        engine,
        &mut head,
        method == Method::HEAD,
        version,
        client_close,
        &side,
    );
    if framing == OutFraming::Upgrade {
        return Err(ProxyError::bad_gateway(
            "the upstream switched protocols unasked",
        ));
    }
    let written = {
        let source = Tapped {
            body: BodySource(body),
            tap: response_tap,
        };
        let write = write_response(w, answer, framing, source, idle);
        tokio::pin!(write);
        loop {
            tokio::select! {
                biased;
                r = &mut pump, if pumped.is_none() => pumped = Some(r),
                r = &mut write => break r,
            }
        }
    };
    drop(pump);
    let up = match pumped {
        Some(Ok(n)) => n,
        _ => 0,
    };
    let complete = body_state.is_done();
    Ok(match written {
        Ok(down) => Done {
            status,
            up,
            down,
            keep_alive: complete && !client_close && framing != OutFraming::Close,
            note: None,
        },
        Err(e) => Done {
            status,
            up,
            down: 0,
            keep_alive: false,
            note: Some(write_failure(e)),
        },
    })
}

/// Streams the client's body into the channel; returns the bytes read. The upstream
/// no longer reading ends the pump early (the body is then left unread).
async fn pump_body<R: AsyncRead + Unpin>(
    reader: &mut MessageReader<R>,
    state: &mut BodyState,
    (prefix, mut tx): (Bytes, Option<BodyTx>),
    idle: Duration,
    mut tap: Option<&mut BodyCapture>,
) -> Result<u64, ProxyError> {
    let Some(tx) = tx.as_mut() else {
        return Ok(0);
    };
    let mut total = prefix.len() as u64;
    if !prefix.is_empty() {
        // Read from the client already (a --modify-body rule's work): it goes first.
        if let Some(tap) = tap.as_deref_mut() {
            tap.observe(&prefix);
        }
        if !tx.send_data(prefix).await {
            return Ok(total);
        }
    }
    loop {
        let piece = match tokio::time::timeout(idle, reader.read_body(state)).await {
            Ok(Ok(piece)) => piece,
            Ok(Err(e)) => return Err(ProxyError::from(e)),
            Err(_) => return Err(ProxyError::bad_request("request body stalled")),
        };
        let sent = match piece {
            None => {
                tx.finish();
                return Ok(total);
            }
            Some(BodyPiece::Data(data)) => {
                total += data.len() as u64;
                if let Some(tap) = tap.as_deref_mut() {
                    tap.observe(&data);
                }
                tx.send_data(data).await
            }
            Some(BodyPiece::Trailers(trailers)) => {
                tx.send_trailers(trailers).await;
                tx.finish();
                return Ok(total);
            }
        };
        if !sent {
            return Ok(total);
        }
    }
}

/// The sending end of a request body: unless finished, dropping it aborts the body,
/// so a client that fails mid-body never looks like a complete (truncated) request.
struct BodyTx(Option<Sender<Bytes, BoxError>>);

impl BodyTx {
    async fn send_data(&mut self, data: Bytes) -> bool {
        match self.0.as_mut() {
            Some(tx) => tx.send_data(data).await.is_ok(),
            None => false,
        }
    }

    async fn send_trailers(&mut self, trailers: http::HeaderMap) {
        if let Some(tx) = self.0.as_mut() {
            let _ = tx.send_trailers(trailers).await;
        }
    }

    /// The body is complete: dropping the sender now ends it cleanly.
    fn finish(&mut self) {
        self.0.take();
    }
}

impl Drop for BodyTx {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            tx.abort("the client's request body ended early".into());
        }
    }
}

/// A response body whose data is copied to `tap` as it is written (flows, dumps).
struct Tapped<'a, S> {
    body: S,
    tap: Option<&'a mut BodyCapture>,
}

impl<S: FrameSource + Send> FrameSource for Tapped<'_, S> {
    async fn next_frame(&mut self) -> Option<Result<http_body::Frame<Bytes>, BoxError>> {
        let frame = self.body.next_frame().await;
        if let (Some(Ok(frame)), Some(tap)) = (&frame, self.tap.as_deref_mut()) {
            if let Some(data) = frame.data_ref() {
                tap.observe(data);
            }
        }
        frame
    }
}

/// The access-line note for a response that could not be relayed whole.
pub(super) fn write_failure(e: WriteError) -> String {
    match e {
        WriteError::Client(e) => format!("client went away: {e}"),
        WriteError::Upstream(e) => format!("upstream response body failed: {e}"),
        WriteError::Stalled(d) => format!("response stalled for {}s", d.as_secs_f64()),
    }
}
