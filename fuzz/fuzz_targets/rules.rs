//! Fuzzes the rule parsers (`--modify-header`, `--modify-body`, `--map-remote`,
//! `--map-local`, `--block`): the same UTF-8 text is given to each; it either parses or is
//! refused with a one-line error whose column lies within the text (one past its end at
//! most); never a panic. A parsed rule is run against a request-phase and a
//! response-phase flow: headers, body rewriting (a Rewritten body's Content-Length is its
//! length), map-remote (an answer is an absolute http(s) URL) and map-local.

#![no_main]

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use libfuzzer_sys::fuzz_target;

use interpose::flow::record::{CapturedBody, Flow, Request, Response};
use interpose::rules::{BodyOutcome, RuleArgs, Rules};

/// Small, so `@FILE` reads and rewritten bodies stay cheap.
const MAX_BODY: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in 0..5 {
        let mut args = RuleArgs {
            modify_max_body: MAX_BODY,
            ..RuleArgs::default()
        };
        let list = match kind {
            0 => &mut args.modify_header,
            1 => &mut args.modify_body,
            2 => &mut args.map_remote,
            3 => &mut args.map_local,
            _ => &mut args.block,
        };
        list.push(text.to_string());
        match Rules::parse(&args) {
            Ok(rules) => exercise(&rules),
            Err(e) => {
                let columns = text.chars().count() + 1;
                if let Some(column) = e.column {
                    assert!(column >= 1 && column <= columns, "{e} for {text:?}");
                }
                let line = e.to_string();
                assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            }
        }
    }
});

fn exercise(rules: &Rules) {
    let request = Request {
        method: "POST".into(),
        url: "https://example.org/static/a%20b/../c.css?q=1".into(),
        http_version: "HTTP/1.1".into(),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: CapturedBody::capped(b"hello", 1024),
    };
    let client = std::net::SocketAddr::from(([127, 0, 0, 1], 4000));
    let mut flow = Flow::new(1, 1, client, request);
    for response_phase in [false, true] {
        if response_phase {
            flow.response = Some(Response {
                status: 200,
                reason: "OK".into(),
                http_version: "HTTP/2.0".into(),
                headers: vec![("server".into(), "origin".into())],
                body: CapturedBody::capped(b"world", 1024),
            });
        }
        let _ = rules.blocks(&flow);
        let _ = rules.map_local(&flow);
        if let Some(url) = rules.map_remote(&flow) {
            let uri: http::Uri = url.parse().expect("map_remote gives a URI");
            assert!(matches!(uri.scheme_str(), Some("http" | "https")), "{url}");
        }
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("origin"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(11));
        if response_phase {
            rules.modify_response_headers(&flow, &mut headers);
        } else {
            rules.modify_request_headers(&flow, &mut headers);
        }
        if rules.body_rules_match(&flow) {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(11));
            let body = Bytes::from_static(b"hello world");
            if let BodyOutcome::Rewritten(new) = rules.rewrite_body(&flow, &mut headers, body) {
                assert!(new.len() <= MAX_BODY);
                let length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok());
                assert_eq!(length, Some(new.len().to_string().as_str()));
            }
        }
    }
}
