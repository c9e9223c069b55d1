//! A TLS origin that speaks only the protocols it is told to offer by ALPN and says
//! what it saw: the HTTP version, the authority (Host or `:authority`), a test header,
//! and for uploads the body's SHA-256 and how it was framed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{full, TestBody};

/// The protocols a [`ProtoOrigin`] serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    /// ALPN `http/1.1` only, served by hyper's HTTP/1.1 server.
    Http1,
    /// ALPN `h2` only, served by hyper's HTTP/2 server.
    Http2,
}

/// A self-signed (localhost, 127.0.0.1) TLS origin on 127.0.0.1:0.
///
/// - `GET /echo`: `version=… authority=… x-test=…`, and `x-echo` repeats `x-test`;
/// - `POST|PUT /sum`: `sha256=… len=… framing=… version=…` of the request body
///   (`framing` is the Content-Length, `chunked`, or `none`);
/// - `GET /big?n=N`: N bytes of a repeating pattern, streamed without a length;
/// - `GET /slow?ms=N`: `late`, after N milliseconds;
/// - `GET /headers`: the names of the request's header fields, sorted.
pub struct ProtoOrigin {
    pub addr: SocketAddr,
    pub cert_pem: String,
    /// Requests answered so far.
    pub hits: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl ProtoOrigin {
    pub async fn start(proto: Proto) -> ProtoOrigin {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let key =
            rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(interpose::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        config.alpn_protocols = match proto {
            Proto::Http1 => vec![b"http/1.1".to_vec()],
            Proto::Http2 => vec![b"h2".to_vec()],
        };
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let (addr, shutdown) = super::tls_listener(config, move |tls, _| {
            let counter = counter.clone();
            async move {
                let svc = service_fn(move |req| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let io = TokioIo::new(tls);
                let _ = match proto {
                    Proto::Http1 => {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await
                    }
                    Proto::Http2 => {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await
                    }
                };
            }
        })
        .await;
        ProtoOrigin {
            addr,
            cert_pem: certified.cert.pem(),
            hits,
            shutdown,
        }
    }

    /// `https://localhost:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path)
    }
}

impl Drop for ProtoOrigin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn answer(req: Request<Incoming>) -> Response<TestBody> {
    let version = format!("{:?}", req.version());
    let authority = if req.version() == Version::HTTP_2 {
        req.uri().authority().map(|a| a.to_string())
    } else {
        req.headers()
            .get("host")
            .map(|h| h.to_str().unwrap_or("?").to_string())
    }
    .unwrap_or_else(|| "-".into());
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").to_string())
    };
    let x_test = header("x-test").unwrap_or_else(|| "-".into());
    match req.uri().path() {
        "/echo" => {
            let mut resp = Response::new(full(format!(
                "version={version} authority={authority} x-test={x_test}\n"
            )));
            resp.headers_mut().insert("x-echo", x_test.parse().unwrap());
            resp
        }
        "/sum" => {
            let framing = match (header("content-length"), header("transfer-encoding")) {
                (Some(n), _) => n,
                (None, Some(te)) if te.contains("chunked") => "chunked".into(),
                _ => "none".into(),
            };
            let mut body = req.into_body();
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Response::new(full("body failed\n"));
                };
                if let Some(data) = frame.data_ref() {
                    len += data.len() as u64;
                    hasher.update(data);
                }
            }
            let sum = hex(&hasher.finalize());
            Response::new(full(format!(
                "sha256={sum} len={len} framing={framing} version={version}\n"
            )))
        }
        "/headers" => {
            let mut names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
            names.sort();
            names.dedup();
            Response::new(full(format!("{}\n", names.join(","))))
        }
        "/slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Response::new(full("late\n"))
        }
        "/big" => {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let chunks = pattern(n)
                .chunks(64 * 1024)
                .map(|c| {
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(
                        Bytes::copy_from_slice(c),
                    ))
                })
                .collect::<Vec<_>>();
            Response::new(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
        }
        _ => {
            let mut resp = Response::new(full("not found\n"));
            *resp.status_mut() = http::StatusCode::NOT_FOUND;
            resp
        }
    }
}

/// The bytes `/big` answers with, for comparing checksums.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
