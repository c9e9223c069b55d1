//! HAR 1.2 from flows: `--har FILE.har` on exit and `interpose har FLOWS.jsonl`.
//! Entries are streamed out one by one, so converting a large flows file needs memory
//! for one flow at a time. Text bodies are written as text, others as base64
//! (`"encoding": "base64"`); our extras are `_`-prefixed fields, as HAR allows.

mod pairs;

use std::io::{self, BufRead, Write};

use serde_json::{json, Map, Value};

use super::jsonl::{read_flows, ReadError};
use super::record::{CapturedBody, Flow, Timings};
use pairs::{iso8601, query_string, request_cookies, response_cookies};

/// Writes one HAR document entry by entry: [`HarWriter::start`], [`HarWriter::add`] per
/// flow, then [`HarWriter::finish`].
pub struct HarWriter<W: Write> {
    out: W,
    entries: usize,
}

impl<W: Write> HarWriter<W> {
    /// Writes the document's opening: `log.version`, `log.creator`, the entries' `[`.
    pub fn start(mut out: W) -> io::Result<Self> {
        let creator = json!({ "name": "interpose", "version": env!("CARGO_PKG_VERSION") });
        write!(
            out,
            "{{\"log\":{{\"version\":\"1.2\",\"creator\":{creator},\"entries\":["
        )?;
        Ok(HarWriter { out, entries: 0 })
    }

    /// Appends the flow as an entry.
    pub fn add(&mut self, flow: &Flow) -> io::Result<()> {
        let sep = if self.entries == 0 { "\n" } else { ",\n" };
        self.out.write_all(sep.as_bytes())?;
        serde_json::to_writer(&mut self.out, &entry(flow)).map_err(io::Error::other)?;
        self.entries += 1;
        Ok(())
    }

    /// Closes the document and flushes; returns the sink and how many entries it holds.
    pub fn finish(mut self) -> io::Result<(W, usize)> {
        self.out.write_all(b"\n]}}\n")?;
        self.out.flush()?;
        Ok((self.out, self.entries))
    }
}

/// Writes the flows as one HAR document (what `--har` does on exit).
pub fn write_har<'a, W: Write>(flows: impl IntoIterator<Item = &'a Flow>, out: W) -> io::Result<W> {
    let mut har = HarWriter::start(out)?;
    for flow in flows {
        har.add(flow)?;
    }
    Ok(har.finish()?.0)
}

/// Converts a flows file to HAR (`interpose har`). A line that is no flow (the one a
/// crash cut short) is handed to `skipped` and left out; returns the entries written.
pub fn convert_jsonl<W: Write>(
    input: impl BufRead,
    out: W,
    mut skipped: impl FnMut(ReadError),
) -> io::Result<usize> {
    let mut har = HarWriter::start(out)?;
    for flow in read_flows(input) {
        match flow {
            Ok(flow) => har.add(&flow)?,
            Err(ReadError::Io(e)) => return Err(e),
            Err(bad) => skipped(bad),
        }
    }
    Ok(har.finish()?.1)
}

/// One flow as a HAR entry.
pub fn entry(flow: &Flow) -> Value {
    let (timings, time) = timings(&flow.timings);
    let mut e = Map::new();
    e.insert(
        "startedDateTime".into(),
        iso8601(flow.started_unix_ms).into(),
    );
    e.insert("time".into(), time.into());
    e.insert("request".into(), request(flow));
    e.insert("response".into(), response(flow));
    e.insert("cache".into(), json!({}));
    e.insert("timings".into(), timings);
    if let Some(server) = flow.server {
        e.insert("serverIPAddress".into(), server.ip().to_string().into());
    }
    e.insert("connection".into(), flow.connection_id.to_string().into());
    if let Some(error) = &flow.error {
        e.insert("comment".into(), error.as_str().into());
    }
    e.insert("_id".into(), flow.id.into());
    e.insert("_clientAddress".into(), flow.client.to_string().into());
    if let Some(tls) = &flow.tls {
        e.insert(
            "_tls".into(),
            serde_json::to_value(tls).unwrap_or(Value::Null),
        );
    }
    if !flow.websocket.is_empty() {
        let start = flow.started_unix_ms as f64 / 1000.0;
        let messages = flow.websocket.iter().map(|m| {
            let kind = match m.direction {
                super::record::Direction::ClientToServer => "send",
                super::record::Direction::ServerToClient => "receive",
            };
            let (data, base64) = text_or_base64(&m.payload, None);
            json!({ "type": kind, "time": start + m.at / 1000.0, "opcode": m.opcode,
                    "data": data, "_base64": base64, "_size": m.payload.size })
        });
        e.insert("_webSocketMessages".into(), messages.collect());
    }
    Value::Object(e)
}

fn request(flow: &Flow) -> Value {
    let req = &flow.request;
    let url = if req.url.contains("://") {
        req.url.clone()
    } else {
        // Origin-form (reverse proxy): made absolute, as HAR requires.
        let scheme = if flow.tls.is_some() { "https" } else { "http" };
        format!(
            "{scheme}://{}{}",
            req.header("host").unwrap_or("localhost"),
            req.url
        )
    };
    let mut r = json!({
        "method": req.method,
        "url": url,
        "httpVersion": req.http_version,
        "cookies": request_cookies(&req.headers),
        "headers": headers(&req.headers),
        "queryString": query_string(&req.url),
        "headersSize": -1,
        "bodySize": req.body.size,
    });
    if req.body.size > 0 {
        let encoding = req.header("content-encoding");
        let (text, base64) = text_or_base64(&req.body, encoding);
        let mut post = Map::new();
        post.insert(
            "mimeType".into(),
            req.header("content-type").unwrap_or("").into(),
        );
        post.insert("text".into(), text.into());
        if base64 {
            post.insert("_encoding".into(), "base64".into());
        }
        if let Some(note) = body_note(&req.body, encoding) {
            post.insert("comment".into(), note.into());
        }
        r["postData"] = Value::Object(post);
    }
    r
}

fn response(flow: &Flow) -> Value {
    let Some(resp) = &flow.response else {
        return json!({
            "status": 0, "statusText": "", "httpVersion": "", "cookies": [], "headers": [],
            "content": { "size": 0, "mimeType": "x-unknown" },
            "redirectURL": "", "headersSize": -1, "bodySize": -1,
            "comment": "no response",
        });
    };
    let encoding = resp.header("content-encoding");
    let mut content = Map::new();
    content.insert("size".into(), resp.body.size.into());
    content.insert(
        "mimeType".into(),
        resp.header("content-type").unwrap_or("x-unknown").into(),
    );
    if !resp.body.bytes.is_empty() {
        let (text, base64) = text_or_base64(&resp.body, encoding);
        content.insert("text".into(), text.into());
        if base64 {
            content.insert("encoding".into(), "base64".into());
        }
    }
    if let Some(note) = body_note(&resp.body, encoding) {
        content.insert("comment".into(), note.into());
    }
    json!({
        "status": resp.status,
        "statusText": resp.reason,
        "httpVersion": resp.http_version,
        "cookies": response_cookies(&resp.headers),
        "headers": headers(&resp.headers),
        "content": content,
        "redirectURL": resp.header("location").unwrap_or(""),
        "headersSize": -1,
        "bodySize": resp.body.size,
    })
}

fn headers(pairs: &[(String, String)]) -> Value {
    pairs
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

/// The captured bytes as text when they are UTF-8 and not content-encoded (a capture cut
/// inside a character loses that character), else as base64 (`true`).
fn text_or_base64(body: &CapturedBody, content_encoding: Option<&str>) -> (String, bool) {
    use base64::Engine as _;
    let encoded = content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    if !encoded {
        match std::str::from_utf8(&body.bytes) {
            Ok(text) => return (text.to_string(), false),
            Err(e) if body.truncated && e.error_len().is_none() => {
                let valid = body.bytes.get(..e.valid_up_to()).unwrap_or_default();
                return (String::from_utf8_lossy(valid).into_owned(), false);
            }
            Err(_) => {}
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&body.bytes);
    (b64, true)
}

/// Says when the text is not the whole body, or still in its `Content-Encoding`.
fn body_note(body: &CapturedBody, content_encoding: Option<&str>) -> Option<String> {
    let mut notes = Vec::new();
    if body.truncated {
        notes.push(format!(
            "truncated: {} of {} bytes captured",
            body.bytes.len(),
            body.size
        ));
    }
    if let Some(coding) = content_encoding.filter(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        notes.push(format!("still {coding}-encoded, as on the wire"));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// HAR timings and their sum (`time`). HAR's `connect` includes `ssl`; phases we did
/// not see are -1 (optional ones) or 0 (required ones).
fn timings(t: &Timings) -> (Value, f64) {
    let setup = t.connect.unwrap_or(0.0) + t.tls.unwrap_or(0.0);
    let connect = match (t.connect, t.tls) {
        (None, None) => -1.0,
        _ => setup,
    };
    let span = |from: Option<f64>, to: Option<f64>| match (from, to) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    };
    let send = span(Some(setup), t.request_sent);
    let wait = span(t.request_sent, t.first_byte);
    let receive = span(t.first_byte, t.done);
    let time = connect.max(0.0) + send + wait + receive;
    let value = json!({
        "blocked": -1, "dns": -1, "connect": connect, "ssl": t.tls.unwrap_or(-1.0),
        "send": send, "wait": wait, "receive": receive,
    });
    (value, time)
}

#[cfg(test)]
mod tests;
