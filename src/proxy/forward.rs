//! Forwarding one absolute-form request: target to origin-form, header rules, the
//! upstream call with the body streamed both ways, and the answer to the client.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::conn::answer_error;
use super::connect::dial;
use super::headers::{apply_max_forwards, strip_hop_by_hop, wants_close, MaxForwards};
use super::round_trip::{round_trip, Answer, Outgoing, TripError};
use super::{access, Engine};
use crate::access_log::{log_access, AccessRecord};
use crate::error::{ErrorKind, ProxyError};
use crate::h1::head::{Framing, RequestHead, ResponseHead};
use crate::h1::reader::{BodyState, MessageReader};
use crate::h1::writer::{
    choose_framing, encode_head, encode_request_head, simple_response, OutFraming,
};

/// How an exchange ended, for the access line and the keep-alive decision.
struct Done {
    status: u16,
    up: u64,
    down: u64,
    keep_alive: bool,
    note: Option<String>,
}

/// Serves one forwarded request; returns whether the connection may carry another.
pub async fn serve_exchange<R, W>(
    engine: &Engine,
    reader: &mut MessageReader<R>,
    w: &mut W,
    head: RequestHead,
    peer: SocketAddr,
    started: Instant,
    shutting_down: bool,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let method = head.method.clone();
    let target = head.target.clone();
    let client_close = shutting_down || wants_close(&head.headers, head.version);
    let mut body = BodyState::new(head.framing);
    let done = match exchange(engine, reader, w, head, &mut body, client_close).await {
        Ok(done) => done,
        Err(err) => {
            let keep_alive = !client_close && !err.closes_connection() && body.is_done();
            answer_error(w, &err, keep_alive).await;
            Done {
                status: err.status().as_u16(),
                up: 0,
                down: 0,
                keep_alive,
                note: Some(err.reason()),
            }
        }
    };
    log_access(&AccessRecord {
        client: peer,
        method: method.as_str(),
        target: &target,
        status: done.status,
        up: done.up,
        down: done.down,
        elapsed: started.elapsed(),
        note: done.note.as_deref(),
    });
    done.keep_alive
}

/// The exchange proper; an `Err` is answered by the caller (nothing was sent yet).
async fn exchange<R, W>(
    engine: &Engine,
    reader: &mut MessageReader<R>,
    w: &mut W,
    head: RequestHead,
    body_state: &mut BodyState,
    client_close: bool,
) -> Result<Done, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let RequestHead {
        method,
        target: raw_target,
        version,
        mut headers,
        framing,
    } = head;
    access::check_proxy_auth(engine.cfg.auth.as_ref(), &headers)?;
    if engine.via.seen_in(&headers) {
        return Err(ErrorKind::Loop.into());
    }
    match apply_max_forwards(&method, &mut headers) {
        MaxForwards::Invalid => return Err(ProxyError::bad_request("invalid Max-Forwards")),
        MaxForwards::AnswerHere => {
            // An unread body leaves the connection unusable for another request.
            return answer_options_here(w, client_close || !body_state.is_done()).await;
        }
        _ => {}
    }
    let target = parse_forward_target(&raw_target)?;

    let expect_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let trailer_decl: Vec<HeaderValue> = headers.get_all(header::TRAILER).iter().cloned().collect();
    let client_takes_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    strip_hop_by_hop(&mut headers);
    if client_takes_trailers && version == Version::HTTP_11 {
        // TE is hop-by-hop: we say it again for our own hop, since we relay trailers.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if expect_continue {
        // We answer 100 ourselves below and stream the body at once, so the origin must not wait.
        headers.remove(header::EXPECT);
    }
    if framing == Framing::Chunked {
        for v in trailer_decl {
            headers.append(header::TRAILER, v);
        }
    }
    headers.insert(header::HOST, target.host_header.clone());
    engine.via.append_to(&mut headers, version);

    let mut head_bytes = BytesMut::with_capacity(512);
    encode_request_head(
        &mut head_bytes,
        &method,
        &target.path,
        &headers,
        framing == Framing::Chunked,
    );
    if expect_continue && version == Version::HTTP_11 && framing != Framing::Empty {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(client_gone)?;
    }

    let key = format!("{}:{}", target.host, target.port);
    // A reused connection the origin closed meanwhile fails before any answer: then an
    // idempotent request without a body is sent once more on a fresh connection.
    let replayable = framing == Framing::Empty && method.is_idempotent();
    let mut pooled = engine.pool.checkout(&key);
    loop {
        let reused = pooled.is_some();
        let mut stream = match pooled.take() {
            Some(stream) => stream,
            None => dial(&target.host, target.port, engine.cfg.connect_timeout).await?,
        };
        let out = Outgoing {
            head: head_bytes.clone(),
            chunked: framing == Framing::Chunked,
            is_head: method == Method::HEAD,
            response_timeout: engine.cfg.response_timeout,
            idle: engine.cfg.idle_timeout,
        };
        let answer = |head: &ResponseHead| {
            answer_head(engine, head, method == Method::HEAD, version, client_close)
        };
        match round_trip(&mut stream, out, reader, body_state, w, answer).await {
            Ok(trip) => {
                if trip.reusable {
                    engine.pool.checkin(&key, stream);
                }
                return Ok(Done {
                    status: trip.status,
                    up: trip.up,
                    down: trip.down,
                    keep_alive: trip.complete
                        && trip.note.is_none()
                        && !client_close
                        && trip.framing != OutFraming::Close,
                    note: trip.note,
                });
            }
            Err(TripError::Upstream { stale: true, .. }) if reused && replayable => continue,
            Err(TripError::Upstream { err, .. }) | Err(TripError::Client(err)) => return Err(err),
        }
    }
}

/// Applies the header rules to a response head and encodes what the client gets.
fn answer_head(
    engine: &Engine,
    head: &ResponseHead,
    is_head: bool,
    client_version: Version,
    client_close: bool,
) -> Answer {
    let mut headers = head.headers.clone();
    let trailer_decl: Vec<HeaderValue> = headers.get_all(header::TRAILER).iter().cloned().collect();
    strip_hop_by_hop(&mut headers);
    engine.via.append_to(&mut headers, head.version);
    let has_length = headers.contains_key(header::CONTENT_LENGTH);
    let framing = choose_framing(head.status, is_head, has_length, client_version);
    if framing == OutFraming::Chunked {
        for v in trailer_decl {
            headers.append(header::TRAILER, v);
        }
    }
    let keep_alive = !client_close && framing != OutFraming::Close;
    let mut out = BytesMut::with_capacity(512);
    encode_head(&mut out, head.status, &headers, framing, keep_alive);
    Answer { head: out, framing }
}

/// Max-Forwards reached zero on OPTIONS: this proxy is the final recipient.
async fn answer_options_here<W: AsyncWrite + Unpin>(
    w: &mut W,
    client_close: bool,
) -> Result<Done, ProxyError> {
    let mut extra = http::HeaderMap::new();
    extra.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, CONNECT"),
    );
    let bytes = simple_response(StatusCode::OK, &extra, "", !client_close);
    w.write_all(&bytes).await.map_err(client_gone)?;
    Ok(Done {
        status: 200,
        up: 0,
        down: 0,
        keep_alive: !client_close,
        note: Some("answered here: Max-Forwards 0".into()),
    })
}

fn client_gone(e: std::io::Error) -> ProxyError {
    ProxyError::bad_request(format!("client went away: {e}"))
}

/// Where an absolute-form request goes.
#[derive(Debug)]
pub struct ForwardTarget {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// The Host header value: the URL's authority.
    pub host_header: HeaderValue,
    /// Origin-form: path and query.
    pub path: String,
}

/// Checks an absolute-form target and splits it into where to connect and what to send.
pub fn parse_forward_target(target: &str) -> Result<ForwardTarget, ProxyError> {
    if target.starts_with('/') || target == "*" {
        return Err(ProxyError::bad_request(
            "this is a proxy: the request target must be an absolute URL such as http://host/path",
        ));
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| ProxyError::bad_request("invalid request target"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(ProxyError::bad_request(
                "https:// URLs go through a CONNECT tunnel (set https_proxy, or curl -p)",
            ))
        }
        _ => {
            return Err(ProxyError::bad_request(
                "only http:// URLs can be forwarded",
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| ProxyError::bad_request("the URL has no host"))?;
    if authority.as_str().contains('@') {
        return Err(ProxyError::bad_request(
            "user information in the URL is not allowed",
        ));
    }
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(ProxyError::bad_request(
            "the URL has no valid host and port",
        ));
    }
    let host_header = HeaderValue::from_str(authority.as_str())
        .map_err(|_| ProxyError::bad_request("invalid host in the URL"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok(ForwardTarget {
        host: host.to_ascii_lowercase(),
        port,
        host_header,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_targets() {
        let t = parse_forward_target("http://Example.org:8080/a?b=c").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.org", 8080, "/a?b=c")
        );
        assert_eq!(t.host_header, "Example.org:8080");
        let t = parse_forward_target("http://[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 80, "/"));
        assert_eq!(t.host_header, "[::1]");
        for bad in [
            "/relative",
            "*",
            "https://example.org/",
            "ftp://example.org/",
            "http://user:pw@example.org/",
            "http:///nohost",
            "http://example.org:0/",
            "example.org:80",
        ] {
            assert!(parse_forward_target(bad).is_err(), "{bad}");
        }
    }
}
