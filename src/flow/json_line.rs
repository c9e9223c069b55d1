//! A flow written as one compact JSON line, by hand: the same bytes `serde_json` writes
//! for [`Flow`]'s `Serialize` (a test holds them equal), at a fraction of the cost,
//! because `--flows` writes a line for every exchange. Strings are escaped eight bytes
//! at a time; `serde_json` still reads the lines back.

use std::io::Write as _;
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::ser::{CompactFormatter, Formatter};

use super::record::{CapturedBody, Direction, Flow, Request, Response, Timings, TlsFacts};

/// Appends `flow` to `out` as `serde_json::to_writer` would write it (no newline).
pub fn write_flow(out: &mut Vec<u8>, flow: &Flow) {
    out.extend_from_slice(b"{\"id\":");
    number(out, flow.id);
    out.extend_from_slice(b",\"connection_id\":");
    number(out, flow.connection_id);
    out.extend_from_slice(b",\"started_unix_ms\":");
    number(out, flow.started_unix_ms);
    out.extend_from_slice(b",\"client\":");
    address(out, flow.client);
    out.extend_from_slice(b",\"server\":");
    or_null(out, flow.server, address);
    out.extend_from_slice(b",\"tls\":");
    or_null(out, flow.tls.as_ref(), tls_facts);
    out.extend_from_slice(b",\"request\":");
    request(out, &flow.request);
    out.extend_from_slice(b",\"response\":");
    or_null(out, flow.response.as_ref(), response);
    out.extend_from_slice(b",\"timings\":");
    timings(out, &flow.timings);
    out.extend_from_slice(b",\"error\":");
    or_null(out, flow.error.as_deref(), string);
    if !flow.websocket.is_empty() {
        out.extend_from_slice(b",\"websocket\":[");
        for (i, message) in flow.websocket.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(match message.direction {
                Direction::ClientToServer => b"{\"direction\":\"client_to_server\"",
                Direction::ServerToClient => b"{\"direction\":\"server_to_client\"",
            });
            out.extend_from_slice(b",\"opcode\":");
            number(out, message.opcode);
            out.extend_from_slice(b",\"at\":");
            float(out, message.at);
            out.extend_from_slice(b",\"payload\":");
            body(out, &message.payload);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn tls_facts(out: &mut Vec<u8>, tls: &TlsFacts) {
    out.extend_from_slice(b"{\"sni\":");
    or_null(out, tls.sni.as_deref(), string);
    out.extend_from_slice(b",\"version\":");
    or_null(out, tls.version.as_deref(), string);
    out.extend_from_slice(b",\"alpn\":");
    or_null(out, tls.alpn.as_deref(), string);
    out.extend_from_slice(if tls.intercepted {
        b",\"intercepted\":true}"
    } else {
        b",\"intercepted\":false}"
    });
}

fn request(out: &mut Vec<u8>, req: &Request) {
    out.extend_from_slice(b"{\"method\":");
    string(out, &req.method);
    out.extend_from_slice(b",\"url\":");
    string(out, &req.url);
    out.extend_from_slice(b",\"http_version\":");
    string(out, &req.http_version);
    out.extend_from_slice(b",\"headers\":");
    headers(out, &req.headers);
    out.extend_from_slice(b",\"body\":");
    body(out, &req.body);
    out.push(b'}');
}

fn response(out: &mut Vec<u8>, resp: &Response) {
    out.extend_from_slice(b"{\"status\":");
    number(out, resp.status);
    out.extend_from_slice(b",\"reason\":");
    string(out, &resp.reason);
    out.extend_from_slice(b",\"http_version\":");
    string(out, &resp.http_version);
    out.extend_from_slice(b",\"headers\":");
    headers(out, &resp.headers);
    out.extend_from_slice(b",\"body\":");
    body(out, &resp.body);
    out.push(b'}');
}

fn headers(out: &mut Vec<u8>, headers: &[(String, String)]) {
    out.push(b'[');
    for (i, (name, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        string(out, name);
        out.push(b',');
        string(out, value);
        out.push(b']');
    }
    out.push(b']');
}

fn timings(out: &mut Vec<u8>, t: &Timings) {
    let fields: [(&[u8], Option<f64>); 5] = [
        (b"{\"connect\":", t.connect),
        (b",\"tls\":", t.tls),
        (b",\"request_sent\":", t.request_sent),
        (b",\"first_byte\":", t.first_byte),
        (b",\"done\":", t.done),
    ];
    for (key, value) in fields {
        out.extend_from_slice(key);
        or_null(out, value, float);
    }
    out.push(b'}');
}

/// As [`CapturedBody`]'s `Serialize`: text when UTF-8, base64 otherwise, then the size.
fn body(out: &mut Vec<u8>, body: &CapturedBody) {
    out.push(b'{');
    if !body.bytes.is_empty() {
        match std::str::from_utf8(&body.bytes) {
            Ok(text) => {
                out.extend_from_slice(b"\"text\":");
                string(out, text);
            }
            Err(_) => {
                out.extend_from_slice(b"\"base64\":\"");
                let start = out.len();
                out.resize(start + body.bytes.len().div_ceil(3) * 4, 0);
                let written = BASE64
                    .encode_slice(&body.bytes, &mut out[start..])
                    .unwrap_or(0);
                out.truncate(start + written);
                out.push(b'"');
            }
        }
        out.push(b',');
    }
    out.extend_from_slice(b"\"size\":");
    number(out, body.size);
    out.extend_from_slice(if body.truncated {
        b",\"truncated\":true}"
    } else {
        b",\"truncated\":false}"
    });
}

fn number(out: &mut Vec<u8>, n: impl Into<u64>) {
    let _ = CompactFormatter.write_u64(out, n.into());
}

/// A finite float as `serde_json` writes it; `null` otherwise, as it does.
fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `"ip:port"`, as `SocketAddr`'s `Display` spells it.
fn address(out: &mut Vec<u8>, addr: SocketAddr) {
    out.push(b'"');
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, octet);
            }
            out.push(b':');
            number(out, v4.port());
        }
        // Rare on loopback-heavy use; the standard formatting handles scopes and zeros.
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
    out.push(b'"');
}

/// `value` written by `write`, or `null` when there is none.
fn or_null<T>(out: &mut Vec<u8>, value: Option<T>, write: fn(&mut Vec<u8>, T)) {
    match value {
        Some(value) => write(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: `"`, `\` and control bytes escaped as `serde_json` escapes them
/// (`\n`-style where JSON has a short form, `\u00XX` otherwise), the rest as is.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none of them needs escaping.
        if let Some(word) = bytes.get(i..i + 8) {
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(word);
            if !needs_escape(u64::from_le_bytes(chunk)) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        match escape_for(byte) {
            None => i += 1,
            Some(escape) => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(escape.as_bytes(byte).as_slice());
                i += 1;
                start = i;
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the eight bytes is a control byte, `"` or `\`.
fn needs_escape(word: u64) -> bool {
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    // A byte below 0x20: subtracting 0x20 borrows into its high bit (bytes of 0x80 and
    // up are excluded by `!word`).
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

/// How one byte is escaped, if it must be.
enum Escape {
    Short(u8),
    Unicode,
}

impl Escape {
    fn as_bytes(&self, byte: u8) -> EscapeBytes {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match *self {
            Escape::Short(c) => EscapeBytes {
                bytes: [b'\\', c, 0, 0, 0, 0],
                len: 2,
            },
            Escape::Unicode => EscapeBytes {
                bytes: [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ],
                len: 6,
            },
        }
    }
}

struct EscapeBytes {
    bytes: [u8; 6],
    len: usize,
}

impl EscapeBytes {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn escape_for(byte: u8) -> Option<Escape> {
    match byte {
        b'"' => Some(Escape::Short(b'"')),
        b'\\' => Some(Escape::Short(b'\\')),
        0x08 => Some(Escape::Short(b'b')),
        0x0c => Some(Escape::Short(b'f')),
        b'\n' => Some(Escape::Short(b'n')),
        b'\r' => Some(Escape::Short(b'r')),
        b'\t' => Some(Escape::Short(b't')),
        0x00..=0x1f => Some(Escape::Unicode),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::record::WsMessage;
    use http::{HeaderMap, Method, StatusCode, Version};

    fn same_as_serde(flow: &Flow) {
        let mut ours = Vec::new();
        write_flow(&mut ours, flow);
        let theirs = serde_json::to_vec(flow).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
        assert_eq!(&serde_json::from_slice::<Flow>(&ours).unwrap(), flow);
    }

    fn bare(url: &str) -> Flow {
        let req = Request::new(&Method::GET, url, Version::HTTP_11, &HeaderMap::new());
        Flow::new(1, 2, "127.0.0.1:40000".parse().unwrap(), req)
    }

    #[test]
    fn a_bare_flow_is_written_as_serde_writes_it() {
        same_as_serde(&bare("http://a.test/"));
    }

    #[test]
    fn a_full_flow_is_written_as_serde_writes_it() {
        let mut flow = bare("https://a.test/x?q=\"1\"");
        flow.server = Some("[::1]:8443".parse().unwrap());
        flow.client = "10.0.0.255:1".parse().unwrap();
        flow.tls = Some(TlsFacts {
            sni: Some("a.test".into()),
            version: Some("TLSv1.3".into()),
            alpn: None,
            intercepted: true,
        });
        flow.request.headers = vec![
            ("host".into(), "a.test".into()),
            ("x-odd".into(), "tab\there \\ \"q\" \u{7f} é 😀".into()),
        ];
        flow.request.body = CapturedBody::capped(b"line\nnext\r\n\x01\x1f", 1024);
        let mut resp = Response::new(StatusCode::NOT_FOUND, Version::HTTP_2, &HeaderMap::new());
        resp.headers = vec![("content-type".into(), "application/octet-stream".into())];
        resp.body = CapturedBody::capped(&[0xff, 0x00, 0x80, 0x10, 0x20], 4);
        flow.response = Some(resp);
        flow.timings = Timings {
            connect: Some(0.125),
            tls: Some(1.0 / 3.0),
            request_sent: None,
            first_byte: Some(12_345.678_9),
            done: Some(f64::NAN),
        };
        flow.error = Some("upstream said \"no\"\u{8}\u{c}".into());
        flow.websocket = vec![
            WsMessage {
                direction: Direction::ClientToServer,
                opcode: 1,
                at: 4.5,
                payload: CapturedBody::capped(b"hi", 10),
            },
            WsMessage {
                direction: Direction::ServerToClient,
                opcode: 2,
                at: 1e-7,
                payload: CapturedBody::capped(&[0xc3], 10),
            },
        ];
        let mut ours = Vec::new();
        write_flow(&mut ours, &flow);
        assert_eq!(ours, serde_json::to_vec(&flow).unwrap());
    }

    #[test]
    fn every_byte_is_escaped_as_serde_escapes_it() {
        // Each ASCII byte at each offset of a word, so the eight-byte scan is covered.
        for byte in 0u8..0x80 {
            for offset in 0..9 {
                let mut s = "abcdefghijklmnop".to_string();
                s.insert(offset, char::from(byte));
                let mut ours = Vec::new();
                string(&mut ours, &s);
                assert_eq!(
                    ours,
                    serde_json::to_vec(&s).unwrap(),
                    "byte {byte:#x} at {offset}"
                );
            }
        }
    }
}
