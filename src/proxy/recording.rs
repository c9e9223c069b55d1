//! What is kept of one exchange besides its access line: the `--dump` block printed when
//! the exchange ends, and the flow for `--flows`, `--har` and `--filter`. Bodies are
//! copied aside (capped) while they stream; nothing here holds the traffic back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode, Version};

use super::dump::{request_dump, response_dump, ExchangeDump, HeadSeen, Secrets};
use super::dump_body::BodyCapture;
use super::round_trip::BodyTaps;
use crate::access_log::AccessRecord;
use crate::flow::record::{header_pairs, CapturedBody, Flow, Request, Response, TlsFacts};
use crate::flow::recorder::Recorder;
use crate::flow::websocket::WsTaps;
use crate::rules::Rules;

/// How a proxy records its exchanges: set once at start, shared by every connection.
#[derive(Clone, Default)]
pub struct RecordPlan {
    /// `--flows`, `--har`, `--filter`: flows are built and offered to it.
    pub recorder: Option<Arc<Recorder>>,
    /// Rewrite rules: flows are built for them to look at.
    pub rules: Option<Arc<Rules>>,
    /// `--dump headers` or `--dump bodies`.
    pub dump_headers: bool,
    /// Body bytes shown by `--dump bodies` (0: heads only).
    pub dump_body_max: usize,
    pub secrets: Secrets,
}

/// Who asked what: the start of a flow.
pub struct Asked<'a> {
    pub client: SocketAddr,
    pub connection_id: u64,
    pub method: &'a Method,
    /// The absolute URL.
    pub url: &'a str,
    pub version: Version,
    /// As the client sent them.
    pub headers: &'a HeaderMap,
    pub tls: Option<TlsFacts>,
}

impl RecordPlan {
    /// Whether dumps wait for the end of the exchange: to show bodies, or because a
    /// filter decides then whether the exchange is shown at all.
    fn dump_deferred(&self) -> bool {
        self.dump_headers
            && (self.dump_body_max > 0 || self.recorder.as_ref().is_some_and(|r| r.has_filter()))
    }

    /// A recording for an exchange whose head just arrived, or `None` when nothing is
    /// recorded past the access line (and heads, if dumped, are printed as they pass).
    /// Boxed: a recording is large, and an exchange's futures move theirs around
    /// whether there is one or not.
    pub fn begin(&self, asked: Asked<'_>) -> Option<Box<Recording>> {
        if self.recorder.is_none() && self.rules.is_none() && !self.dump_deferred() {
            return None;
        }
        let flow_id = self.recorder.as_ref().map(|r| r.next_id());
        let flow = (self.recorder.is_some() || self.rules.is_some()).then(|| {
            let id = flow_id.unwrap_or(0);
            let mut request = Request::new(asked.method, asked.url, asked.version, asked.headers);
            drop_ours(&mut request.headers);
            let mut flow = Flow::new(id, asked.connection_id, asked.client, request);
            flow.tls = asked.tls;
            flow
        });
        let flow_cap = self.recorder.as_ref().map_or(0, |r| r.capture_max_body());
        let dump_cap = if self.dump_deferred() {
            self.dump_body_max
        } else {
            0
        };
        let cap = flow_cap.max(dump_cap);
        let started = Instant::now();
        let asks_websocket = asked
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let websocket = (flow.is_some() && asks_websocket).then(|| WsTaps::new(started, flow_cap));
        Some(Box::new(Recording {
            recorder: self.recorder.clone(),
            deferred_dump: self.dump_deferred(),
            dump_body_max: self.dump_body_max,
            started,
            dump: None,
            flow,
            flow_cap,
            request_body: BodyCapture::new(cap),
            response_body: BodyCapture::new(cap),
            sent_at: None,
            flow_id,
            websocket,
        }))
    }

    /// `--dump`: the request head as sent upstream, kept in `recording` to be printed
    /// when the exchange ends, or printed now.
    pub fn dump_request(
        &self,
        recording: Option<&mut Recording>,
        method: &Method,
        url: &str,
        path: &str,
        version: Version,
        headers: &HeaderMap,
    ) {
        if !self.dump_headers {
            return;
        }
        let text = request_dump(method, url, path, version, headers, self.secrets);
        match recording {
            Some(r) if r.deferred_dump => {
                r.dump = Some(ExchangeDump::new(
                    r.dump_body_max,
                    HeadSeen::new(text, headers),
                ));
            }
            _ => tracing::info!(target: "access", "{}", text.trim_end()),
        }
    }

    /// `--dump`: a response head printed at once (nothing is recorded for its exchange).
    pub fn dump_response_now(&self, status: StatusCode, version: Version, headers: &HeaderMap) {
        let text = response_dump(status, version, headers, self.secrets);
        tracing::info!(target: "access", "{}", text.trim_end());
    }
}

/// One exchange being recorded.
pub struct Recording {
    recorder: Option<Arc<Recorder>>,
    deferred_dump: bool,
    dump_body_max: usize,
    started: Instant,
    dump: Option<ExchangeDump>,
    flow: Option<Flow>,
    /// Body bytes the flow keeps (the captures may keep more, for the dump).
    flow_cap: usize,
    pub request_body: BodyCapture,
    pub response_body: BodyCapture,
    /// When the request was all sent upstream.
    sent_at: Option<Instant>,
    /// The id the recorder gave this exchange (it counts it as in flight until dropped).
    flow_id: Option<u64>,
    /// A WebSocket's messages, when the request asks for one and flows are recorded.
    websocket: Option<WsTaps>,
}

/// Where a response head is recorded, apart from the body taps.
pub struct HeadSlot<'a> {
    started: Instant,
    flow: Option<&'a mut Flow>,
    dump: Option<&'a mut ExchangeDump>,
}

impl HeadSlot<'_> {
    /// The flow, with the response head once [`HeadSlot::response_head`] recorded it.
    pub fn flow(&self) -> Option<&Flow> {
        self.flow.as_deref()
    }

    /// The response head arrived now: recorded as received (before our header rules),
    /// and dumped (kept for the block, or printed at once when dumps are not deferred).
    pub fn response_head(
        &mut self,
        plan: &RecordPlan,
        status: StatusCode,
        version: Version,
        headers: &HeaderMap,
    ) {
        if let Some(flow) = self.flow.as_deref_mut() {
            flow.timings.first_byte = Some(ms(self.started.elapsed()));
            flow.response = Some(Response::new(status, version, headers));
        }
        if !plan.dump_headers {
            return;
        }
        match self.dump.as_deref_mut() {
            Some(dump) => {
                let text = response_dump(status, version, headers, plan.secrets);
                dump.response = Some(HeadSeen::new(text, headers));
            }
            None => plan.dump_response_now(status, version, headers),
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(recorder) = &self.recorder {
            if self.flow_id.is_some() {
                recorder.ended();
            }
        }
    }
}

impl Recording {
    /// Where the streaming bodies are copied (and the time the request was sent put),
    /// and where the response head goes: apart, as both are filled at once.
    pub fn parts(&mut self) -> (BodyTaps<'_>, HeadSlot<'_>) {
        let taps = BodyTaps {
            request: &mut self.request_body,
            response: &mut self.response_body,
            sent_at: &mut self.sent_at,
            websocket: self.websocket.as_mut(),
        };
        let slot = HeadSlot {
            started: self.started,
            flow: self.flow.as_mut(),
            dump: self.dump.as_mut(),
        };
        (taps, slot)
    }

    /// The request went out on a connection to `server`; `connect` and `tls` are how
    /// long opening it took (`None`: a reused connection, or no TLS).
    pub fn connected(
        &mut self,
        server: Option<SocketAddr>,
        connect: Option<Duration>,
        tls: Option<Duration>,
    ) {
        if let Some(flow) = &mut self.flow {
            flow.server = server.or(flow.server);
            flow.timings.connect = connect.map(ms).or(flow.timings.connect);
            flow.timings.tls = tls.map(ms).or(flow.timings.tls);
        }
    }

    /// The request (head and body) was all sent upstream now.
    pub fn request_sent(&mut self) {
        self.sent_at = Some(Instant::now());
    }

    /// The response head arrived: see [`HeadSlot::response_head`].
    pub fn response_head(
        &mut self,
        plan: &RecordPlan,
        status: StatusCode,
        version: Version,
        headers: &HeaderMap,
    ) {
        self.parts().1.response_head(plan, status, version, headers);
    }

    /// A tunnel relayed blind: answered 200, `up` and `down` bytes crossed it unseen
    /// (counted as the bodies' sizes, none of them captured).
    pub fn tunnel_relayed(&mut self, server: Option<SocketAddr>, up: u64, down: u64) {
        if let Some(flow) = &mut self.flow {
            flow.server = server;
            let mut response = Response::new(StatusCode::OK, Version::HTTP_11, &HeaderMap::new());
            response.reason = "Connection established".into();
            flow.response = Some(response);
        }
        self.request_body.clear();
        self.response_body.clear();
        self.request_body.count(up);
        self.response_body.count(down);
        self.flow_cap = 0;
    }

    /// The request's headers after the rewrite rules changed them.
    pub fn request_headers_changed(&mut self, headers: &HeaderMap) {
        if let Some(flow) = &mut self.flow {
            flow.request.headers = header_pairs(headers);
            drop_ours(&mut flow.request.headers);
        }
    }

    /// The flow as it stands (for rules that look at it mid-exchange).
    pub fn flow(&self) -> Option<&Flow> {
        self.flow.as_ref()
    }

    /// The request now goes to `url` (`--map-remote`).
    pub fn set_url(&mut self, url: &str) {
        if let Some(flow) = &mut self.flow {
            flow.request.url = url.to_string();
        }
    }

    /// Ends the exchange: when the filter selects it (or there is none), its dump block
    /// and access line (written by `line`) are printed and its flow is recorded.
    pub fn finish(
        mut self,
        access: &AccessRecord<'_>,
        error: Option<&str>,
        line: fn(&AccessRecord<'_>),
    ) {
        let selected = match (&mut self.flow, &self.recorder) {
            (Some(flow), Some(recorder)) => {
                flow.timings.done = Some(ms(self.started.elapsed()));
                flow.timings.request_sent = self
                    .sent_at
                    .map(|at| ms(at.saturating_duration_since(self.started)));
                flow.error = error.map(str::to_string);
                flow.request.body = captured(&self.request_body, self.flow_cap);
                if let Some(response) = &mut flow.response {
                    response.body = captured(&self.response_body, self.flow_cap);
                }
                if let Some(taps) = self.websocket.take() {
                    let (messages, dropped) = taps.finish();
                    if dropped > 0 {
                        tracing::info!(
                            "{}: {dropped} WebSocket messages not recorded",
                            flow.request.url
                        );
                    }
                    flow.websocket = messages;
                }
                recorder.selects(flow)
            }
            _ => true,
        };
        if !selected {
            return;
        }
        if let Some(dump) = &self.dump {
            let block = dump.render(&self.request_body, &self.response_body);
            tracing::info!(target: "access", "{}", block.trim_end());
        }
        line(access);
        if let (Some(flow), Some(recorder)) = (self.flow.take(), &self.recorder) {
            recorder.keep(flow);
        }
    }
}

/// Request fields as a flow keeps them: all but `Proxy-Authorization`, which is ours.
fn drop_ours(fields: &mut Vec<(String, String)>) {
    fields.retain(|(name, _)| name != http::header::PROXY_AUTHORIZATION.as_str());
}

/// The first `cap` bytes of a capture as a flow keeps them.
fn captured(capture: &BodyCapture, cap: usize) -> CapturedBody {
    let kept = capture.kept();
    let kept = kept.get(..cap.min(kept.len())).unwrap_or_default();
    CapturedBody::from_capture(kept, capture.total())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
