//! Fuzzes the `--filter` parser: any UTF-8 text either parses or is refused with an
//! error whose column lies within the text (one past its end at most); never a panic.
//! A parsed filter is also evaluated, so matching cannot panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;

use interpose::flow::filter::parse;
use interpose::flow::record::{CapturedBody, Flow, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(filter) => {
            let request = Request {
                method: "POST".into(),
                url: "https://example.org/a?b=1".into(),
                http_version: "HTTP/1.1".into(),
                headers: vec![("content-type".into(), "text/plain".into())],
                body: CapturedBody::capped(b"hello", 1024),
            };
            let client = std::net::SocketAddr::from(([127, 0, 0, 1], 4000));
            let flow = Flow::new(1, 1, client, request);
            let _ = filter.matches(&flow);
        }
        Err(e) => {
            let columns = text.chars().count() + 1;
            assert!(e.position >= 1 && e.position <= columns, "{e} for {text:?}");
        }
    }
});
