//! The origin side of an HTTP/2 client's tunnel: each exchange goes over the origin's
//! HTTP/2 connection when it chose `h2` (one connection, multiplexed), else over
//! HTTP/1.1 connections kept for this tunnel, one exchange at a time each (always so
//! for an `http://` origin, reached over plain TCP). The request is shaped for the
//! protocol it goes out in; the response timeout runs from the end of the request body.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::connect::dial;
use super::headers::{join_cookies, strip_for_h2};
use super::target::TunnelTarget;
use super::upstream_tls::{open, Opened};
use super::Engine;
use crate::error::ProxyError;
use crate::h1::writer::BoxError;
use crate::upstream::classify_exchange;
use crate::upstream::h2::{BoxedBody, H2Sender};

/// Idle HTTP/1.1 connections kept per tunnel.
const MAX_IDLE_H1: usize = 8;

type H1Sender = http1::SendRequest<BoxedBody>;

/// Where one exchange goes.
enum Upstream {
    H1(H1Sender),
    H2(H2Sender),
}

/// How one try went.
enum Attempt {
    Answered(Response<Incoming>),
    /// The connection was dead before the request left: it can go on another.
    Unsent(Request<BoxedBody>),
    Failed(ProxyError),
}

/// The upstream connections of one intercepted HTTP/2 tunnel.
pub struct TunnelUpstream {
    pub engine: Arc<Engine>,
    pub tunnel: TunnelTarget,
    idle_h1: Mutex<Vec<H1Sender>>,
    /// Held while a connection is opened as long as the origin's protocol is unknown,
    /// so that streams arriving together share one HTTP/2 connection.
    opening: tokio::sync::Mutex<()>,
    /// The origin chose HTTP/1.1 once: connections are then opened concurrently.
    speaks_h1: AtomicBool,
}

impl TunnelUpstream {
    pub fn new(engine: Arc<Engine>, tunnel: TunnelTarget) -> Self {
        TunnelUpstream {
            engine,
            tunnel,
            idle_h1: Mutex::new(Vec::new()),
            opening: tokio::sync::Mutex::new(()),
            speaks_h1: AtomicBool::new(false),
        }
    }

    /// Sends `req` (origin-form path in its URI, Host or not) to the origin as
    /// `authority`; a request that a dead connection gave back unsent is tried once more.
    pub async fn send(
        &self,
        req: Request<BoxedBody>,
        authority: &str,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (parts, body) = req.into_parts();
        let (ended_tx, ended) = oneshot::channel();
        let body = Watched {
            inner: body,
            ended: Some(ended_tx),
        };
        let mut req = Request::from_parts(parts, BoxedBody::new(body));
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let limit = self.engine.cfg.response_timeout;
        let deadline = async {
            let _ = ended.await;
            tokio::time::sleep(limit).await;
        };
        tokio::pin!(deadline);
        for _ in 0..2 {
            let attempt = self.attempt(req, authority, &path);
            let outcome = tokio::select! {
                r = attempt => r,
                _ = &mut deadline => return Err(timed_out(limit)),
            };
            match outcome {
                Attempt::Answered(resp) => return Ok(resp),
                Attempt::Unsent(unsent) => req = unsent,
                Attempt::Failed(err) => return Err(err),
            }
        }
        Err(ProxyError::bad_gateway(format!(
            "upstream {authority} closed the connection before the request"
        )))
    }

    /// One try on one connection.
    async fn attempt(&self, mut req: Request<BoxedBody>, authority: &str, path: &str) -> Attempt {
        let upstream = match self.upstream().await {
            Ok(upstream) => upstream,
            Err(err) => return Attempt::Failed(err),
        };
        let version = match upstream {
            Upstream::H2(_) => Version::HTTP_2,
            Upstream::H1(_) => Version::HTTP_11,
        };
        if let Err(err) = shape(&mut req, authority, path, version) {
            return Attempt::Failed(err);
        }
        let sent = match upstream {
            Upstream::H2(mut sender) => sender.try_send_request(req).await,
            Upstream::H1(mut sender) => {
                // A new connection takes a request only once its task has started.
                if sender.ready().await.is_err() {
                    return Attempt::Unsent(req);
                }
                let sent = sender.try_send_request(req).await;
                self.keep_h1(sender);
                sent
            }
        };
        match sent {
            Ok(resp) => Attempt::Answered(resp),
            Err(mut e) => match e.take_message() {
                Some(unsent) => Attempt::Unsent(unsent),
                None => Attempt::Failed(classify_exchange(e.error(), authority)),
            },
        }
    }

    /// An idle HTTP/1.1 connection of this tunnel, else the origin's HTTP/2 connection
    /// or a new connection of whichever protocol it chooses.
    async fn upstream(&self) -> Result<Upstream, ProxyError> {
        if let Some(sender) = self.take_idle_h1() {
            return Ok(Upstream::H1(sender));
        }
        let _single = if self.speaks_h1.load(Ordering::Relaxed) {
            None
        } else {
            Some(self.opening.lock().await)
        };
        if !self.tunnel.tls {
            // An `http://` origin (a `--map-remote` target): HTTP/1.1 on plain TCP.
            let tcp = match self.tunnel.take_first_tcp() {
                Some(tcp) => tcp,
                None => {
                    let limit = self.engine.cfg.connect_timeout;
                    dial(&self.tunnel.host, self.tunnel.port, limit).await?
                }
            };
            return self.start_h1(tcp).await;
        }
        match open(&self.engine, &self.tunnel, false).await? {
            Opened::H2(sender) => Ok(Upstream::H2(sender)),
            Opened::H1(stream) => self.start_h1(stream).await,
        }
    }

    /// HTTP/1.1 on a connection just opened, driven by its own task.
    async fn start_h1<S>(&self, stream: S) -> Result<Upstream, ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.speaks_h1.store(true, Ordering::Relaxed);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| classify_exchange(&e, &self.tunnel.server_name))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/1.1 upstream connection ended: {e}");
            }
        });
        Ok(Upstream::H1(sender))
    }

    fn take_idle_h1(&self) -> Option<H1Sender> {
        let mut idle = self.idle_h1.lock().ok()?;
        idle.retain(|s| !s.is_closed());
        let ready = idle.iter().position(|s| s.is_ready())?;
        Some(idle.swap_remove(ready))
    }

    /// Keeps a connection for the next exchange; it becomes ready once this one ends.
    fn keep_h1(&self, sender: H1Sender) {
        if let Ok(mut idle) = self.idle_h1.lock() {
            if idle.len() < MAX_IDLE_H1 && !sender.is_closed() {
                idle.push(sender);
            }
        }
    }
}

/// Shapes the request for the protocol it goes out in: HTTP/2 takes the authority in
/// the absolute URI (hyper makes it `:authority`) and no connection-specific headers;
/// HTTP/1.1 takes origin-form, a Host built from the authority, and one Cookie field.
fn shape(
    req: &mut Request<BoxedBody>,
    authority: &str,
    path: &str,
    version: Version,
) -> Result<(), ProxyError> {
    let invalid = |_| ProxyError::bad_request("invalid request target");
    if version == Version::HTTP_2 {
        strip_for_h2(req.headers_mut());
        *req.uri_mut() = format!("https://{authority}{path}")
            .parse::<Uri>()
            .map_err(invalid)?;
    } else {
        let host = HeaderValue::from_str(authority)
            .map_err(|_| ProxyError::bad_request("invalid authority"))?;
        req.headers_mut().insert(header::HOST, host);
        join_cookies(req.headers_mut());
        *req.uri_mut() = path.parse::<Uri>().map_err(invalid)?;
    }
    *req.version_mut() = version;
    Ok(())
}

fn timed_out(limit: Duration) -> ProxyError {
    ProxyError::gateway_timeout(format!(
        "the upstream did not answer within {}s",
        limit.as_secs_f64()
    ))
}

pin_project! {
    /// A request body that says when it ended (or was dropped): the response timeout
    /// starts then, not while a large upload is still going.
    struct Watched {
        #[pin]
        inner: BoxedBody,
        ended: Option<oneshot::Sender<()>>,
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            if let Some(tx) = this.ended.take() {
                let _ = tx.send(());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
