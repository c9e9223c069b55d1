//! HAR conversion tests: the document's shape, bodies as text or base64, timings,
//! failed flows, WebSocket messages, and converting a flows file.

use serde_json::{json, Value};

use super::*;
use crate::flow::record::{Direction, Request, Response, TlsFacts, WsMessage};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn get_flow() -> Flow {
    let req = Request {
        method: "GET".into(),
        url: "https://a.test/p?q=1".into(),
        http_version: "HTTP/1.1".into(),
        headers: pairs(&[("host", "a.test"), ("cookie", "s=1")]),
        body: CapturedBody::empty(),
    };
    let mut flow = Flow::new(1, 9, "127.0.0.1:5000".parse().unwrap(), req);
    flow.started_unix_ms = 1_714_564_800_123;
    flow.server = Some("[2001:db8::1]:443".parse().unwrap());
    flow.tls = Some(TlsFacts {
        sni: Some("a.test".into()),
        version: Some("TLSv1.3".into()),
        alpn: None,
        intercepted: true,
    });
    flow.response = Some(Response {
        status: 200,
        reason: "OK".into(),
        http_version: "HTTP/1.1".into(),
        headers: pairs(&[
            ("content-type", "text/plain"),
            ("set-cookie", "t=2; Path=/"),
        ]),
        body: CapturedBody::capped("héllo".as_bytes(), 1024),
    });
    flow.timings = Timings {
        connect: Some(2.0),
        tls: Some(3.0),
        request_sent: Some(6.0),
        first_byte: Some(10.0),
        done: Some(11.5),
    };
    flow
}

fn har_of(flows: &[Flow]) -> Value {
    let out = write_har(flows, Vec::new()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn a_document_with_one_entry() {
    let har = har_of(&[get_flow()]);
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["creator"]["name"], "interpose");
    let e = &har["log"]["entries"][0];
    assert_eq!(e["startedDateTime"], "2024-05-01T12:00:00.123Z");
    assert_eq!(e["serverIPAddress"], "2001:db8::1");
    assert_eq!(e["connection"], "9");
    assert_eq!(e["cache"], json!({}));
    assert_eq!(e["_tls"]["sni"], "a.test");
    let req = &e["request"];
    assert_eq!(req["url"], "https://a.test/p?q=1");
    assert_eq!(req["queryString"], json!([{"name":"q","value":"1"}]));
    assert_eq!(req["cookies"], json!([{"name":"s","value":"1"}]));
    assert_eq!(req["headers"][0], json!({"name":"host","value":"a.test"}));
    assert_eq!(
        (req["bodySize"].as_i64(), req.get("postData")),
        (Some(0), None)
    );
    let resp = &e["response"];
    assert_eq!(
        (resp["status"].as_u64(), resp["statusText"].as_str()),
        (Some(200), Some("OK"))
    );
    assert_eq!(
        resp["cookies"],
        json!([{"name":"t","value":"2","path":"/"}])
    );
    assert_eq!(
        resp["content"],
        json!({"size":6,"mimeType":"text/plain","text":"héllo"})
    );
    assert_eq!(resp["redirectURL"], "");
}

#[test]
fn timings_split_into_har_phases() {
    let e = entry(&get_flow());
    assert_eq!(
        e["timings"],
        json!({"blocked":-1,"dns":-1,"connect":5.0,"ssl":3.0,"send":1.0,"wait":4.0,"receive":1.5})
    );
    assert_eq!(e["time"], 11.5);
    let mut reused = get_flow();
    reused.timings = Timings::default();
    let e = entry(&reused);
    assert_eq!(e["timings"]["connect"], -1.0);
    assert_eq!(e["timings"]["ssl"], -1.0);
    assert_eq!(e["time"], 0.0);
}

#[test]
fn binary_encoded_and_cut_bodies() {
    let mut flow = get_flow();
    let resp = flow.response.as_mut().unwrap();
    resp.headers = pairs(&[("content-type", "image/png")]);
    resp.body = CapturedBody::capped(&[0x89, b'P', b'N', b'G', 0xff], 1024);
    let content = &entry(&flow)["response"]["content"];
    assert_eq!(content["text"], "iVBOR/8=");
    assert_eq!(content["encoding"], "base64");

    let resp = flow.response.as_mut().unwrap();
    resp.headers = pairs(&[("content-encoding", "gzip")]);
    resp.body = CapturedBody::capped(b"abc", 1024);
    let content = &entry(&flow)["response"]["content"];
    assert_eq!(
        (content["encoding"].as_str(), content["text"].as_str()),
        (Some("base64"), Some("YWJj"))
    );
    assert_eq!(content["comment"], "still gzip-encoded, as on the wire");

    // Cut inside the two bytes of "é": the partial character is dropped, text stays text.
    let resp = flow.response.as_mut().unwrap();
    resp.headers.clear();
    resp.body = CapturedBody::capped("hé!".as_bytes(), 2);
    let content = &entry(&flow)["response"]["content"];
    assert_eq!(content["text"], "h");
    assert_eq!(content.get("encoding"), None);
    assert_eq!(content["size"], 4);
    assert_eq!(content["comment"], "truncated: 2 of 4 bytes captured");
}

#[test]
fn request_bodies_are_post_data() {
    let mut flow = get_flow();
    flow.request.method = "POST".into();
    flow.request
        .headers
        .push(("content-type".into(), "application/json".into()));
    flow.request.body = CapturedBody::capped(b"{\"a\":1}", 1024);
    let req = &entry(&flow)["request"];
    assert_eq!(req["bodySize"], 7);
    assert_eq!(
        req["postData"],
        json!({"mimeType":"application/json","text":"{\"a\":1}"})
    );
    flow.request.body = CapturedBody::capped(&[0, 0xff], 1024);
    let post = &entry(&flow)["request"]["postData"];
    assert_eq!(
        (post["text"].as_str(), post["_encoding"].as_str()),
        (Some("AP8="), Some("base64"))
    );
}

#[test]
fn failed_flows_and_origin_form_urls() {
    let mut flow = get_flow();
    flow.response = None;
    flow.error = Some("upstream timed out".into());
    flow.request.url = "/p?q=1".into();
    let e = entry(&flow);
    assert_eq!(e["comment"], "upstream timed out");
    assert_eq!(e["response"]["status"], 0);
    assert_eq!(e["response"]["comment"], "no response");
    assert_eq!(e["request"]["url"], "https://a.test/p?q=1");
}

#[test]
fn websocket_messages_ride_on_their_entry() {
    let mut flow = get_flow();
    flow.websocket = vec![
        WsMessage {
            direction: Direction::ClientToServer,
            opcode: 1,
            at: 500.0,
            payload: CapturedBody::capped(b"ping?", 64),
        },
        WsMessage {
            direction: Direction::ServerToClient,
            opcode: 2,
            at: 750.0,
            payload: CapturedBody::capped(&[1, 2, 0xff], 64),
        },
    ];
    let msgs = &entry(&flow)["_webSocketMessages"];
    assert_eq!(msgs[0]["type"], "send");
    assert_eq!(msgs[0]["data"], "ping?");
    assert_eq!(msgs[0]["time"], 1_714_564_800.623);
    assert_eq!(
        (msgs[1]["type"].as_str(), msgs[1]["data"].as_str()),
        (Some("receive"), Some("AQL/"))
    );
    assert_eq!(msgs[1]["_base64"], true);
}

#[test]
fn a_flows_file_converts_skipping_a_cut_line() {
    let line = serde_json::to_string(&get_flow()).unwrap();
    let input = format!("{line}\n{{\"id\":\n{line}\n");
    let mut skipped = Vec::new();
    let mut out = Vec::new();
    let n = convert_jsonl(input.as_bytes(), &mut out, |e| skipped.push(e.to_string())).unwrap();
    assert_eq!(n, 2);
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].starts_with("line 2 is not a flow"),
        "{skipped:?}"
    );
    let har: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
    let empty: Value = serde_json::from_slice(&write_har(&[], Vec::new()).unwrap()).unwrap();
    assert_eq!(empty["log"]["entries"], json!([]));
}
