//! Forwarding one absolute-form request: target to origin-form, header rules, the
//! upstream call with the body streamed both ways, and the answer to the client.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::body::{BodySender, RequestBody};
use super::conn::answer_error;
use super::headers::{apply_max_forwards, strip_hop_by_hop, wants_close, MaxForwards};
use super::{access, Engine};
use crate::access_log::{log_access, AccessRecord};
use crate::error::{ErrorKind, ProxyError};
use crate::h1::head::{Framing, RequestHead};
use crate::h1::reader::{BodyPiece, BodyState, ClientReader};
use crate::h1::writer::{
    choose_framing, encode_head, simple_response, write_response, OutFraming, WriteError,
};
use crate::upstream::classify;

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
    reader: &mut ClientReader<R>,
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
    reader: &mut ClientReader<R>,
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
        target,
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
    let (uri, host) = parse_forward_target(&target)?;

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
    headers.insert(header::HOST, host.clone());
    engine.via.append_to(&mut headers, version);

    let (sender, body) = match framing {
        Framing::Empty => (None, RequestBody::Empty),
        Framing::Length(n) => {
            let (tx, body) = RequestBody::channel(Some(n));
            (Some(tx), body)
        }
        Framing::Chunked => {
            let (tx, body) = RequestBody::channel(None);
            (Some(tx), body)
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;

    if expect_continue && version == Version::HTTP_11 && sender.is_some() {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(client_gone)?;
        w.flush().await.map_err(client_gone)?;
    }

    let host_name = host.to_str().unwrap_or("upstream").to_string();
    let pump = pump_body(reader, body_state, sender);
    tokio::pin!(pump);
    let send = engine.client.request(req);
    tokio::pin!(send);
    // The response timeout runs from the moment the whole request has been sent.
    let response_deadline = tokio::time::sleep(engine.cfg.response_timeout);
    tokio::pin!(response_deadline);

    let mut pumped: Option<Result<u64, ProxyError>> = None;
    let response = loop {
        tokio::select! {
            biased;
            r = &mut pump, if pumped.is_none() => {
                if let Err(e) = r {
                    return Err(e);
                }
                pumped = Some(r);
                let deadline = tokio::time::Instant::now() + engine.cfg.response_timeout;
                response_deadline.as_mut().reset(deadline);
            }
            r = &mut send => break r,
            _ = &mut response_deadline, if pumped.is_some() => {
                return Err(ProxyError::gateway_timeout(format!(
                    "{host_name} did not answer within {}s",
                    engine.cfg.response_timeout.as_secs_f64()
                )));
            }
        }
    };
    let response = response.map_err(|e| classify(&e, &host_name))?;

    let (parts, resp_body) = response.into_parts();
    let mut resp_headers = parts.headers;
    let trailer_decl: Vec<HeaderValue> = resp_headers
        .get_all(header::TRAILER)
        .iter()
        .cloned()
        .collect();
    strip_hop_by_hop(&mut resp_headers);
    engine.via.append_to(&mut resp_headers, parts.version);
    let has_length = resp_headers.contains_key(header::CONTENT_LENGTH);
    let out = choose_framing(parts.status, method == Method::HEAD, has_length, version);
    if out == OutFraming::Chunked {
        for v in trailer_decl {
            resp_headers.append(header::TRAILER, v);
        }
    }
    let keep_alive = !client_close && out != OutFraming::Close;
    let mut head_buf = BytesMut::with_capacity(512);
    encode_head(&mut head_buf, parts.status, &resp_headers, out, keep_alive);

    let write = write_response(w, head_buf, out, resp_body, engine.cfg.idle_timeout);
    tokio::pin!(write);
    let written = loop {
        tokio::select! {
            biased;
            r = &mut pump, if pumped.is_none() => pumped = Some(r),
            r = &mut write => break r,
        }
    };
    let (up, body_complete) = match pumped {
        Some(Ok(n)) => (n, true),
        _ => (0, false),
    };
    let status = parts.status.as_u16();
    Ok(match written {
        Ok(down) => Done {
            status,
            up,
            down,
            keep_alive: keep_alive && body_complete,
            note: None,
        },
        Err(e) => Done {
            status,
            up,
            down: 0,
            keep_alive: false,
            note: Some(match e {
                WriteError::Client(e) => format!("client went away: {e}"),
                WriteError::Upstream(e) => format!("upstream body from {host_name} failed: {e}"),
                WriteError::Stalled(d) => format!("response stalled for {}s", d.as_secs_f64()),
            }),
        },
    })
}

/// Feeds the client's request body to the upstream; the total on success.
async fn pump_body<R: AsyncRead + Unpin>(
    reader: &mut ClientReader<R>,
    state: &mut BodyState,
    sender: Option<BodySender>,
) -> Result<u64, ProxyError> {
    let Some(sender) = sender else {
        return Ok(0);
    };
    let mut total = 0u64;
    loop {
        let piece = reader.read_body(state).await.map_err(ProxyError::from)?;
        let frame = match piece {
            None => {
                sender.finish();
                return Ok(total);
            }
            Some(BodyPiece::Data(data)) => {
                total += data.len() as u64;
                Frame::data(data)
            }
            Some(BodyPiece::Trailers(t)) => Frame::trailers(t),
        };
        if !sender.send(frame).await {
            // The upstream stopped reading (it answered early or failed): stop too.
            return Err(ProxyError::bad_gateway(
                "upstream stopped reading the request body",
            ));
        }
    }
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

/// Checks an absolute-form target and returns the URI for the client and the Host value.
pub fn parse_forward_target(target: &str) -> Result<(Uri, HeaderValue), ProxyError> {
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
    if authority.host().is_empty() || authority.port_u16() == Some(0) {
        return Err(ProxyError::bad_request(
            "the URL has no valid host and port",
        ));
    }
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| ProxyError::bad_request("invalid host in the URL"))?;
    Ok((uri, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_targets() {
        let (uri, host) = parse_forward_target("http://example.org:8080/a?b=c").unwrap();
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/a?b=c");
        assert_eq!(host, "example.org:8080");
        let (_, host) = parse_forward_target("http://[::1]/").unwrap();
        assert_eq!(host, "[::1]");
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
