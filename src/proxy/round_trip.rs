//! One HTTP/1 exchange over an upstream connection: the request goes out (body streamed
//! from the client) while the response head is awaited; then the response is relayed to
//! the client while any rest of the request body still flows.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http::HeaderMap;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::dump_body::BodyCapture;
use super::rules_h1::{read_capped, CappedError, ResponseSide};
use crate::error::{ErrorKind, ProxyError};
use crate::flow::websocket::{WsTap, WsTaps};
use crate::h1::head::{Framing, ResponseHead};
use crate::h1::reader::{BodyPiece, BodyState, MessageReader, ReadError};
use crate::h1::writer::{write_response, BoxError, FrameSource, OutFraming, WriteError};
use crate::upstream::stream::UpstreamIo;

/// Request bodies smaller than this go out in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// The request as it goes upstream.
pub struct Outgoing {
    /// Request line and headers, already encoded (shared, so a replay costs no copy).
    pub head: Bytes,
    pub chunked: bool,
    pub is_head: bool,
    /// The client asked to switch protocols (WebSocket): a 101 is relayed, then bytes.
    pub upgrade: bool,
    pub response_timeout: Duration,
    pub idle: Duration,
    /// `--max-body-size`: a streamed body crossing it aborts the exchange.
    pub max_body: Option<u64>,
    /// Body bytes already read from the client (a `--modify-body` rule's work), sent
    /// before the rest of the body is streamed.
    pub prefix: Bytes,
}

/// What the caller decided about a response head: the bytes to send the client.
pub struct Answer {
    pub head: BytesMut,
    pub framing: OutFraming,
}

/// Where copies of the bodies go as they stream (`--dump bodies`, flows), and when the
/// request was all sent.
pub struct BodyTaps<'a> {
    pub request: &'a mut BodyCapture,
    pub response: &'a mut BodyCapture,
    pub sent_at: &'a mut Option<std::time::Instant>,
    /// A WebSocket's frames, read as they are relayed after a 101.
    pub websocket: Option<&'a mut WsTaps>,
}

/// Why a round trip failed before anything was sent to the client.
pub enum TripError {
    /// The client's request body was malformed or cut off.
    Client(ProxyError),
    /// The upstream failed; `stale` when it closed or reset before a byte of answer,
    /// as a reused keep-alive connection does when the origin had just closed it.
    Upstream { err: ProxyError, stale: bool },
}

/// How a completed round trip went.
pub struct Trip {
    pub status: u16,
    pub up: u64,
    pub down: u64,
    /// The request and response both ended cleanly: the client connection may continue.
    pub complete: bool,
    /// The upstream connection may go back to the pool.
    pub reusable: bool,
    /// How the response was framed towards the client.
    pub framing: OutFraming,
    pub note: Option<String>,
}

/// Runs one exchange on `stream`. `side` records the response head and applies the
/// response rules; `answer` turns the head into what the client gets; `taps`, if any,
/// take capped copies of both bodies as they pass.
#[allow(clippy::too_many_arguments)]
pub async fn round_trip<S, R, W>(
    stream: &mut S,
    out: Outgoing,
    client: &mut MessageReader<R>,
    body: &mut BodyState,
    client_w: &mut W,
    answer: impl FnOnce(&mut ResponseHead, &ResponseSide<'_>) -> Answer,
    taps: Option<BodyTaps<'_>>,
    side: &mut ResponseSide<'_>,
) -> Result<Trip, TripError>
where
    S: UpstreamIo,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (request_tap, response_tap, mut sent_at, ws_taps) = match taps {
        Some(t) => (
            Some(t.request),
            Some(t.response),
            Some(t.sent_at),
            t.websocket,
        ),
        None => (None, None, None, None),
    };
    let mut mark_sent = |r: &Result<u64, TripError>| {
        if let (Ok(_), Some(slot)) = (r, sent_at.as_deref_mut()) {
            *slot = Some(std::time::Instant::now());
        }
    };
    let (up_r, mut up_w) = stream.halves();
    let mut up = MessageReader::new(up_r);
    // Boxed so that an upgrade can drop it and take the halves it borrows back.
    let mut pump = Box::pin(send_request(
        &mut up_w,
        (out.head, out.prefix),
        client,
        body,
        out.chunked,
        Pace {
            idle: out.idle,
            max_body: out.max_body,
        },
        request_tap,
    ));
    let response_deadline = tokio::time::sleep(out.response_timeout);
    tokio::pin!(response_deadline);

    let mut pumped: Option<Result<u64, TripError>> = None;
    let mut head = {
        let reading = read_final_head(&mut up, out.is_head, out.upgrade);
        tokio::pin!(reading);
        loop {
            tokio::select! {
                biased;
                r = &mut pump, if pumped.is_none() => {
                    match r {
                        Err(TripError::Client(e)) => return Err(TripError::Client(e)),
                        // Upstream write failures surface again, better described, as a read failure.
                        r => {
                            mark_sent(&r);
                            pumped = Some(r);
                        }
                    }
                    let deadline = tokio::time::Instant::now() + out.response_timeout;
                    response_deadline.as_mut().reset(deadline);
                }
                r = &mut reading => break r?,
                _ = &mut response_deadline, if pumped.is_some() => {
                    return Err(TripError::Upstream {
                        err: ProxyError::gateway_timeout(format!(
                            "the upstream did not answer within {}s",
                            out.response_timeout.as_secs_f64()
                        )),
                        stale: false,
                    });
                }
            }
        }
    };

    // Decided before `answer` takes the headers over.
    let upstream_keeps_alive = !crate::proxy::headers::wants_close(&head.headers, head.version);
    side.arrived(&head);
    let mut state = BodyState::new(head.framing);
    let mut prefix = None;
    if let Some(cap) = side.body_cap(&head) {
        // A --modify-body rule: the body is read whole (up to the cap) before the head
        // goes out with its new length; a longer one goes on unchanged.
        let (body, whole) = match read_capped(&mut up, &mut state, cap, out.idle).await {
            Ok(read) => read,
            Err(CappedError::Stalled) => return Err(upstream("the response body stalled", false)),
            Err(CappedError::Read(e)) => {
                let why = format!("reading the response body failed: {e}");
                return Err(upstream(&why, false));
            }
        };
        prefix = Some(if whole {
            side.rewrite(&mut head, body)
        } else {
            tracing::warn!("response body over --modify-max-body {cap} bytes, sent unmodified");
            body
        });
    }
    let Answer {
        head: answer_head,
        framing,
    } = answer(&mut head, side);
    if framing == OutFraming::Upgrade {
        if !matches!(pumped, Some(Ok(_))) {
            return Err(upstream("the upgrade request was not sent whole", false));
        }
        drop(pump);
        let sent = write_response(client_w, answer_head, framing, NoBody, out.idle).await;
        let note = match sent {
            Ok(_) => relay_upgraded(client, client_w, &mut up, &mut up_w, ws_taps)
                .await
                .err(),
            Err(e) => Some(format!("client went away: {e}")),
        };
        return Ok(Trip {
            status: 101,
            up: 0,
            down: 0,
            complete: false,
            reusable: false,
            framing,
            note,
        });
    }
    let written = {
        let source = UpstreamBody {
            reader: &mut up,
            state: &mut state,
            tap: response_tap,
            prefix,
        };
        let write = write_response(client_w, answer_head, framing, source, out.idle);
        tokio::pin!(write);
        loop {
            tokio::select! {
                biased;
                r = &mut pump, if pumped.is_none() => {
                    if let Err(TripError::Client(e)) = &r {
                        // The response has started: the client's connection is closed
                        // mid-answer, and the upstream one is dropped with it.
                        return Ok(Trip {
                            status: head.status.as_u16(),
                            up: 0,
                            down: 0,
                            complete: false,
                            reusable: false,
                            framing,
                            note: Some(e.reason()),
                        });
                    }
                    mark_sent(&r);
                    pumped = Some(r)
                }
                r = &mut write => break r,
            }
        }
    };
    let (up_bytes, request_sent) = match pumped {
        Some(Ok(n)) => (n, true),
        _ => (0, false),
    };
    let status = head.status.as_u16();
    Ok(match written {
        Ok(down) => Trip {
            status,
            up: up_bytes,
            down,
            complete: request_sent,
            framing,
            reusable: request_sent
                && upstream_keeps_alive
                && state.is_done()
                && head.framing != Framing::UntilClose
                && !up.has_buffered(),
            note: None,
        },
        Err(e) => Trip {
            status,
            up: up_bytes,
            down: 0,
            complete: false,
            reusable: false,
            framing,
            note: Some(match e {
                WriteError::Client(e) => format!("client went away: {e}"),
                WriteError::Upstream(e) => format!("upstream response body failed: {e}"),
                WriteError::Stalled(d) => format!("response stalled for {}s", d.as_secs_f64()),
            }),
        },
    })
}

/// Reads response heads until a final one (1xx interim answers are dropped: the proxy
/// answered `100 Continue` to the client itself).
pub(crate) async fn read_final_head<R: AsyncRead + Unpin>(
    up: &mut MessageReader<R>,
    is_head: bool,
    upgrade: bool,
) -> Result<ResponseHead, TripError> {
    loop {
        match up.read_response_head(is_head).await {
            Ok(Some(head)) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                if upgrade {
                    return Ok(head);
                }
                return Err(upstream("the upstream switched protocols unasked", false));
            }
            Ok(Some(head)) if head.status.is_informational() => {}
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {
                return Err(upstream(
                    "the upstream closed the connection without answering",
                    true,
                ))
            }
            Err(ReadError::Io(e)) => {
                return Err(upstream(
                    &format!("reading the upstream response failed: {e}"),
                    true,
                ))
            }
            Err(e) => {
                return Err(upstream(
                    &format!("the upstream sent a malformed response: {e}"),
                    false,
                ))
            }
        }
    }
}

fn upstream(reason: &str, stale: bool) -> TripError {
    TripError::Upstream {
        err: ProxyError::bad_gateway(reason.to_string()),
        stale,
    }
}

/// How a request body may flow: the longest pause, and the most bytes.
struct Pace {
    idle: Duration,
    max_body: Option<u64>,
}

/// Writes the request head and streams the client's body after it (re-chunked when
/// chunked), a copy going to `tap`; returns the body bytes sent. A body crossing
/// `pace.max_body` is a client error: the upstream never sees its end.
async fn send_request<R, W>(
    up: &mut W,
    (head, prefix): (Bytes, Bytes),
    client: &mut MessageReader<R>,
    state: &mut BodyState,
    chunked: bool,
    pace: Pace,
    mut tap: Option<&mut BodyCapture>,
) -> Result<u64, TripError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if state.is_done() && !chunked && prefix.is_empty() {
        // No body: the head goes out as it is, without being copied.
        up.write_all(&head).await.map_err(upstream_write)?;
        return Ok(0);
    }
    let mut pending = BytesMut::from(&head[..]);
    let mut total = 0u64;
    if !prefix.is_empty() {
        total += prefix.len() as u64;
        if let Some(tap) = tap.as_deref_mut() {
            tap.observe(&prefix);
        }
        if chunked {
            pending.put_slice(format!("{:x}\r\n", prefix.len()).as_bytes());
        }
        pending.put_slice(&prefix);
        if chunked {
            pending.put_slice(b"\r\n");
        }
    }
    loop {
        let piece = if state.is_done() {
            None
        } else {
            match client.read_body(state).now_or_never() {
                Some(r) => r.map_err(client_error)?,
                None => {
                    flush(up, &mut pending).await?;
                    match tokio::time::timeout(pace.idle, client.read_body(state)).await {
                        Ok(r) => r.map_err(client_error)?,
                        Err(_) => {
                            return Err(TripError::Client(ProxyError::bad_request(
                                "request body stalled",
                            )))
                        }
                    }
                }
            }
        };
        match piece {
            None => {
                if chunked {
                    pending.put_slice(b"0\r\n\r\n");
                }
                flush(up, &mut pending).await?;
                return Ok(total);
            }
            Some(BodyPiece::Data(data)) => {
                total += data.len() as u64;
                if let Some(max) = pace.max_body.filter(|&max| total > max) {
                    return Err(TripError::Client(ErrorKind::BodyTooLarge(max).into()));
                }
                if let Some(tap) = tap.as_deref_mut() {
                    tap.observe(&data);
                }
                if chunked {
                    pending.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
                }
                if pending.len() + data.len() <= COALESCE {
                    pending.put_slice(&data);
                } else {
                    flush(up, &mut pending).await?;
                    up.write_all(&data).await.map_err(upstream_write)?;
                }
                if chunked {
                    pending.put_slice(b"\r\n");
                }
            }
            Some(BodyPiece::Trailers(trailers)) => {
                pending.put_slice(b"0\r\n");
                put_fields(&mut pending, &trailers);
                pending.put_slice(b"\r\n");
                flush(up, &mut pending).await?;
                return Ok(total);
            }
        }
    }
}

async fn flush<W: AsyncWrite + Unpin>(up: &mut W, pending: &mut BytesMut) -> Result<(), TripError> {
    if !pending.is_empty() {
        up.write_all(pending).await.map_err(upstream_write)?;
        pending.clear();
    }
    Ok(())
}

fn put_fields(out: &mut BytesMut, fields: &HeaderMap) {
    for (name, value) in fields {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

fn client_error(e: ReadError) -> TripError {
    TripError::Client(ProxyError::from(e))
}

fn upstream_write(e: std::io::Error) -> TripError {
    upstream(&format!("sending the request upstream failed: {e}"), true)
}

/// The upstream's response body, decoded, as frames for the client writer (a copy
/// going to `tap`).
struct UpstreamBody<'a, R> {
    reader: &'a mut MessageReader<R>,
    state: &'a mut BodyState,
    tap: Option<&'a mut BodyCapture>,
    /// Sent first: a rewritten body (the state is then done), or what was read of one
    /// too long to rewrite.
    prefix: Option<Bytes>,
}

impl<R: AsyncRead + Unpin + Send> FrameSource for UpstreamBody<'_, R> {
    async fn next_frame(&mut self) -> Option<Result<Frame<bytes::Bytes>, BoxError>> {
        if let Some(prefix) = self.prefix.take().filter(|p| !p.is_empty()) {
            if let Some(tap) = self.tap.as_deref_mut() {
                tap.observe(&prefix);
            }
            return Some(Ok(Frame::data(prefix)));
        }
        match self.reader.read_body(self.state).await {
            Ok(None) => None,
            Ok(Some(BodyPiece::Data(data))) => {
                if let Some(tap) = self.tap.as_deref_mut() {
                    tap.observe(&data);
                }
                Some(Ok(Frame::data(data)))
            }
            Ok(Some(BodyPiece::Trailers(t))) => Some(Ok(Frame::trailers(t))),
            Err(e) => Some(Err(e.into())),
        }
    }
}

/// No body at all (the head of a 101).
struct NoBody;

impl FrameSource for NoBody {
    async fn next_frame(&mut self) -> Option<Result<Frame<bytes::Bytes>, BoxError>> {
        None
    }
}

/// After a 101: bytes both ways (those already buffered first) until both sides are done;
/// each side's end of stream is passed on as a write shutdown.
async fn relay_upgraded<CR, CW, UR, UW>(
    client: &mut MessageReader<CR>,
    client_w: &mut CW,
    up: &mut MessageReader<UR>,
    up_w: &mut UW,
    taps: Option<&mut WsTaps>,
) -> Result<(), String>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let early_up = client.take_buffered();
    let early_down = up.take_buffered();
    let (tap_up, tap_down) = match taps {
        Some(t) => (Some(&mut t.to_server), Some(&mut t.to_client)),
        None => (None, None),
    };
    let to_upstream = async {
        copy_tapped(&early_up, client.get_mut(), up_w, tap_up).await?;
        up_w.shutdown().await
    };
    let to_client = async {
        copy_tapped(&early_down, up.get_mut(), client_w, tap_down).await?;
        client_w.shutdown().await
    };
    match tokio::try_join!(to_upstream, to_client) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("upgraded connection ended: {e}")),
    }
}

/// Writes `early`, then copies `r` to `w` until `r` ends; `tap`, if any, sees every byte.
async fn copy_tapped<R, W>(
    early: &[u8],
    r: &mut R,
    w: &mut W,
    tap: Option<&mut WsTap>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let Some(tap) = tap else {
        w.write_all(early).await?;
        tokio::io::copy(r, w).await?;
        return Ok(());
    };
    tap.observe(early);
    w.write_all(early).await?;
    w.flush().await?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        tap.observe(data);
        w.write_all(data).await?;
        // TLS keeps what it was given until flushed: a message must not wait for the next.
        w.flush().await?;
    }
}
