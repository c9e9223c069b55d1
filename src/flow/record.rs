//! The flow record: one exchange as one value, what `--flows` writes as a JSON line,
//! what HAR is made from and what `--filter` expressions are evaluated against.

use std::net::SocketAddr;

use http::{HeaderMap, Method, StatusCode, Version};
use serde::{Deserialize, Serialize};

pub use super::body::CapturedBody;

/// One exchange: who talked to whom, over what TLS, the heads and bodies both ways,
/// when each step happened and how it failed, if it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Unique within one run, in the order exchanges started.
    pub id: u64,
    /// The client connection the exchange came on (several exchanges share one).
    pub connection_id: u64,
    /// When the request head arrived, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub client: SocketAddr,
    /// The upstream address, once connected.
    pub server: Option<SocketAddr>,
    /// TLS between client and proxy (`None`: plain HTTP).
    pub tls: Option<TlsFacts>,
    pub request: Request,
    /// `None` while the exchange waits for a response, or when it failed before one.
    pub response: Option<Response>,
    pub timings: Timings,
    /// Why the exchange failed, if it did.
    pub error: Option<String>,
    /// Messages of a WebSocket the exchange upgraded to, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websocket: Vec<WsMessage>,
}

/// What was learnt of the client's TLS: the name it asked for, what was agreed, and
/// whether we terminated it (intercepted) or relayed it blind (passed through).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFacts {
    pub sni: Option<String>,
    /// e.g. `TLSv1.3`.
    pub version: Option<String>,
    /// e.g. `h2`, `http/1.1`.
    pub alpn: Option<String>,
    pub intercepted: bool,
}

/// The request as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    /// The absolute URL (`https://host/path?q`).
    pub url: String,
    /// e.g. `HTTP/1.1`, `HTTP/2.0`.
    pub http_version: String,
    /// In wire order; repeated names stay repeated.
    pub headers: Vec<(String, String)>,
    pub body: CapturedBody,
}

/// The response as the upstream sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub http_version: String,
    pub headers: Vec<(String, String)>,
    pub body: CapturedBody,
}

/// Milliseconds spent, each `None` when the step did not happen (a reused connection
/// has no connect, plain HTTP no TLS, a failed exchange no first byte).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Duration of the upstream TCP connect.
    pub connect: Option<f64>,
    /// Duration of the upstream TLS handshake.
    pub tls: Option<f64>,
    /// From the start until the request (head and body) was sent upstream.
    pub request_sent: Option<f64>,
    /// From the start until the first byte of the response arrived.
    pub first_byte: Option<f64>,
    /// From the start until the exchange ended.
    pub done: Option<f64>,
}

/// Which way a WebSocket message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// One WebSocket message (or control frame) on an upgraded flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    pub direction: Direction,
    /// The frame opcode: 1 text, 2 binary, 8 close, 9 ping, 10 pong.
    pub opcode: u8,
    /// Milliseconds since the flow started.
    pub at: f64,
    /// The payload, capped like bodies; `payload.size` is the message size.
    pub payload: CapturedBody,
}

impl Flow {
    /// A flow whose request head just arrived; the rest is filled in as it happens.
    pub fn new(id: u64, connection_id: u64, client: SocketAddr, request: Request) -> Self {
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Flow {
            id,
            connection_id,
            started_unix_ms,
            client,
            server: None,
            tls: None,
            request,
            response: None,
            timings: Timings::default(),
            error: None,
            websocket: Vec::new(),
        }
    }
}

impl Request {
    /// The request head from `http` types; the body is added once captured.
    pub fn new(method: &Method, url: &str, version: Version, headers: &HeaderMap) -> Self {
        Request {
            method: method.as_str().to_string(),
            url: url.to_string(),
            http_version: version_name(version).to_string(),
            headers: header_pairs(headers),
            body: CapturedBody::empty(),
        }
    }

    /// The host the request is for: from the URL, else the `Host` header; no port.
    pub fn host(&self) -> Option<&str> {
        url_host(&self.url).or_else(|| header(&self.headers, "host").map(strip_port))
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl Response {
    /// The response head from `http` types; the body is added once captured.
    pub fn new(status: StatusCode, version: Version, headers: &HeaderMap) -> Self {
        Response {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            http_version: version_name(version).to_string(),
            headers: header_pairs(headers),
            body: CapturedBody::empty(),
        }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The usual spelling of an HTTP version, as HAR and mitmproxy write it.
pub fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Header fields in map order (which keeps wire order per name), values made text.
pub fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = match value.to_str() {
                Ok(text) => text.to_string(),
                Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The host of an absolute URL, without userinfo, port or IPv6 brackets.
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = strip_port(host_port);
    (!host.is_empty()).then_some(host)
}

fn strip_port(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host_port.split(':').next().unwrap_or(host_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn sample() -> Flow {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "example.org".parse().unwrap());
        h.append(header::ACCEPT, "text/html".parse().unwrap());
        h.append(header::ACCEPT, "*/*".parse().unwrap());
        let mut req = Request::new(
            &Method::POST,
            "https://example.org/a?b=1",
            Version::HTTP_11,
            &h,
        );
        req.body = CapturedBody::capped(b"{\"k\":1}", 1024);
        let mut flow = Flow::new(7, 3, "127.0.0.1:5000".parse().unwrap(), req);
        flow.server = Some("93.184.216.34:443".parse().unwrap());
        flow.tls = Some(TlsFacts {
            sni: Some("example.org".into()),
            version: Some("TLSv1.3".into()),
            alpn: Some("http/1.1".into()),
            intercepted: true,
        });
        let mut resp = Response::new(StatusCode::NOT_FOUND, Version::HTTP_2, &HeaderMap::new());
        resp.body = CapturedBody::capped(&[0x1f, 0x8b, 0xff], 1024);
        flow.response = Some(resp);
        flow.timings.connect = Some(1.5);
        flow.timings.done = Some(9.0);
        flow.websocket.push(WsMessage {
            direction: Direction::ServerToClient,
            opcode: 1,
            at: 4.0,
            payload: CapturedBody::capped(b"hi", 10),
        });
        flow
    }

    #[test]
    fn heads_come_from_http_types_in_order() {
        let flow = sample();
        assert_eq!(flow.request.method, "POST");
        assert_eq!(flow.request.http_version, "HTTP/1.1");
        assert_eq!(
            flow.request.headers,
            vec![
                ("host".to_string(), "example.org".to_string()),
                ("accept".to_string(), "text/html".to_string()),
                ("accept".to_string(), "*/*".to_string()),
            ]
        );
        assert_eq!(flow.request.header("ACCEPT"), Some("text/html"));
        let resp = flow.response.as_ref().unwrap();
        assert_eq!((resp.status, resp.reason.as_str()), (404, "Not Found"));
        assert_eq!(resp.http_version, "HTTP/2.0");
    }

    #[test]
    fn a_flow_round_trips_through_json() {
        let flow = sample();
        let json = serde_json::to_string(&flow).unwrap();
        assert!(json.contains(r#""client":"127.0.0.1:5000""#), "{json}");
        assert!(json.contains(r#""direction":"server_to_client""#), "{json}");
        assert_eq!(serde_json::from_str::<Flow>(&json).unwrap(), flow);
    }

    #[test]
    fn the_host_comes_from_the_url_or_the_host_header() {
        let mut req = Request::new(
            &Method::GET,
            "http://u@[::1]:8080/x",
            Version::HTTP_11,
            &HeaderMap::new(),
        );
        assert_eq!(req.host(), Some("::1"));
        req.url = "https://a.test:8443?q".into();
        assert_eq!(req.host(), Some("a.test"));
        req.url = "/only/a/path".into();
        assert_eq!(req.host(), None);
        req.headers.push(("Host".into(), "b.test:81".into()));
        assert_eq!(req.host(), Some("b.test"));
    }
}
