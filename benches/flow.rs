//! What recording costs per exchange (`--flows`): building a flow from the heads an
//! intercepted keep-alive request and its response carry, and serializing it as the
//! JSON line the flows file gets. `cargo bench --bench flow`.

use std::hint::black_box;

use criterion::Criterion;
use http::{HeaderMap, Method, StatusCode, Version};
use interpose::flow::record::{CapturedBody, Flow, Request, Response, TlsFacts};

fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", "127.0.0.1:8443".parse().unwrap());
    h.insert("user-agent", "oha/1.16.0".parse().unwrap());
    h.insert("accept", "*/*".parse().unwrap());
    h
}

fn response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("server", "nginx/1.22.1".parse().unwrap());
    h.insert("date", "Fri, 27 Nov 2026 19:00:00 GMT".parse().unwrap());
    h.insert("content-type", "application/octet-stream".parse().unwrap());
    h.insert("content-length", "6".parse().unwrap());
    h.insert("connection", "keep-alive".parse().unwrap());
    h
}

fn build(req: &HeaderMap, resp: &HeaderMap) -> Flow {
    let url = "https://127.0.0.1:8443/";
    let request = Request::new(&Method::GET, url, Version::HTTP_11, req);
    let mut flow = Flow::new(1, 1, "127.0.0.1:50000".parse().unwrap(), request);
    flow.tls = Some(TlsFacts {
        sni: None,
        version: Some("TLSv1.3".into()),
        alpn: Some("http/1.1".into()),
        intercepted: true,
    });
    flow.server = Some("127.0.0.1:8443".parse().unwrap());
    let mut response = Response::new(StatusCode::OK, Version::HTTP_11, resp);
    response.body = CapturedBody::from_capture(b"hello\n", 6);
    flow.response = Some(response);
    flow.timings.first_byte = Some(0.21);
    flow.timings.done = Some(0.25);
    flow
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let (req, resp) = (request_headers(), response_headers());
    c.bench_function("build a flow", |b| b.iter(|| black_box(build(&req, &resp))));
    let flow = build(&req, &resp);
    let mut line = Vec::with_capacity(2048);
    c.bench_function("serialize a flow line", |b| {
        b.iter(|| {
            line.clear();
            serde_json::to_writer(&mut line, black_box(&flow)).unwrap();
            black_box(line.len())
        })
    });
    println!("line: {} bytes", line.len());
    c.final_summary();
}
