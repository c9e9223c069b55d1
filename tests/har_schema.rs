//! HAR output validated against the HAR 1.2 JSON schema by npm's `har-validator`
//! (installed on first use under the target directory), both as written from flows and
//! as `interpose har FLOWS.jsonl` converts a flows file.

mod support;

use std::path::Path;
use std::process::Command;

use interpose::flow::har::write_har;
use interpose::flow::jsonl::FlowWriter;
use interpose::flow::record::{
    CapturedBody, Direction, Flow, Request, Response, Timings, TlsFacts, WsMessage,
};
use support::har_check::{har_validator, node_tools, validate};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        http_version: "HTTP/1.1".into(),
        headers: pairs(headers),
        body: CapturedBody::capped(body, 16),
    }
}

fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response {
    Response {
        status,
        reason: http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .into(),
        http_version: "HTTP/2.0".into(),
        headers: pairs(headers),
        body: CapturedBody::capped(body, 16),
    }
}

/// Flows of every shape the HAR writer distinguishes.
fn sample_flows() -> Vec<Flow> {
    let client = "127.0.0.1:50000".parse().unwrap();
    let mut flows = Vec::new();

    let req = request(
        "GET",
        "https://example.org/search?q=caf%C3%A9&page=2",
        &[("host", "example.org"), ("cookie", "sid=1; theme=dark")],
        b"",
    );
    let mut f = Flow::new(1, 1, client, req);
    f.server = Some("93.184.216.34:443".parse().unwrap());
    f.tls = Some(TlsFacts {
        sni: Some("example.org".into()),
        version: Some("TLSv1.3".into()),
        alpn: Some("h2".into()),
        intercepted: true,
    });
    let headers = [
        ("content-type", "text/html; charset=utf-8"),
        (
            "set-cookie",
            "sid=2; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT; HttpOnly",
        ),
    ];
    f.response = Some(response(200, &headers, "<p>café</p>".as_bytes()));
    f.timings = Timings {
        connect: Some(1.2),
        tls: Some(4.5),
        request_sent: Some(6.0),
        first_byte: Some(20.25),
        done: Some(21.0),
    };
    flows.push(f);

    let req = request(
        "POST",
        "http://api.test:8080/upload",
        &[("content-type", "application/octet-stream")],
        &[
            0, 1, 2, 0xff, 0xfe, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
        ],
    );
    let mut f = Flow::new(2, 2, client, req);
    f.server = Some("[2001:db8::7]:8080".parse().unwrap());
    f.response = Some(response(
        302,
        &[("location", "/done"), ("content-encoding", "gzip")],
        &[0x1f, 0x8b, 8, 0],
    ));
    flows.push(f);

    let req = request("DELETE", "/items/7", &[("host", "rev.test")], b"");
    let mut f = Flow::new(3, 3, client, req);
    f.error = Some("upstream refused the connection".into());
    flows.push(f);

    let req = request(
        "GET",
        "http://ws.test/chat",
        &[("upgrade", "websocket")],
        b"",
    );
    let mut f = Flow::new(4, 4, client, req);
    f.response = Some(response(101, &[("upgrade", "websocket")], b""));
    f.websocket = vec![
        WsMessage {
            direction: Direction::ClientToServer,
            opcode: 1,
            at: 3.0,
            payload: CapturedBody::capped(b"hello", 16),
        },
        WsMessage {
            direction: Direction::ServerToClient,
            opcode: 2,
            at: 4.0,
            payload: CapturedBody::capped(&[0xde, 0xad], 16),
        },
    ];
    flows.push(f);
    flows
}

#[test]
fn har_output_validates_against_the_har_1_2_schema() {
    if node_tools().is_none() {
        println!("SKIPPED: node/npm not found; install npm (scripts/test.sh does) to validate HAR");
        return;
    }
    let modules = har_validator();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("har-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flows = sample_flows();

    // Written from flows, as --har does on exit.
    let har_path = dir.join("direct.har");
    let bytes = write_har(&flows, Vec::new()).unwrap();
    std::fs::write(&har_path, &bytes).unwrap();
    validate(&modules, &har_path).unwrap_or_else(|e| panic!("direct.har is invalid: {e}"));

    // The validator does reject a broken document (so the pass above means something).
    let mut broken: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    broken["log"]["entries"][0]["request"]
        .as_object_mut()
        .unwrap()
        .remove("headers");
    let broken_path = dir.join("broken.har");
    std::fs::write(&broken_path, broken.to_string()).unwrap();
    assert!(
        validate(&modules, &broken_path).is_err(),
        "a HAR without request.headers passed"
    );

    // A flows file, with a line a crash cut short, converted by `interpose har`.
    let flows_path = dir.join("flows.jsonl");
    let mut writer = FlowWriter::append_to(&flows_path).unwrap();
    for flow in &flows[..2] {
        writer.write(flow).unwrap();
    }
    drop(writer);
    let mut text = std::fs::read_to_string(&flows_path).unwrap();
    text.push_str("{\"id\": 3, \"cut");
    std::fs::write(&flows_path, text).unwrap();
    let mut writer = FlowWriter::append_to(&flows_path).unwrap();
    for flow in &flows[2..] {
        writer.write(flow).unwrap();
    }
    drop(writer);
    let out = Command::new(env!("CARGO_BIN_EXE_interpose"))
        .arg("har")
        .arg(&flows_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3 is not a flow"), "{stderr}");
    let converted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(converted["log"]["entries"].as_array().unwrap().len(), 4);
    let converted_path = dir.join("converted.har");
    std::fs::write(&converted_path, &out.stdout).unwrap();
    validate(&modules, &converted_path).unwrap_or_else(|e| panic!("converted.har is invalid: {e}"));

    std::fs::remove_dir_all(&dir).unwrap();
}
