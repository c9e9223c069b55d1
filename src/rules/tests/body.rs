//! `--modify-body`: identity and compressed bodies, consistent headers, the cap, bombs.

use super::*;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::HeaderValue;
use std::io::{Read, Write};

const PAGE: &str = "<p>Hello World, hello world</p>";

fn encoded_headers(coding: &str, len: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !coding.is_empty() {
        h.insert(CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap());
    }
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "" => data.to_vec(),
        "gzip" => gzip(data),
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        "zstd" => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        other => panic!("no test encoder for {other}"),
    }
}

/// Decodes a body per the headers it is sent with, checking Content-Length on the way.
fn decode_as_sent(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let length: usize = headers[CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
    assert_eq!(length, body.len(), "Content-Length is the body's length");
    let mut out = Vec::new();
    match headers.get(CONTENT_ENCODING).map(|v| v.to_str().unwrap()) {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli_decompressor::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("sent as {other}"),
    }
    out
}

#[test]
fn every_coding_is_decoded_rewritten_and_sent_consistently() {
    let r = rules(Kind::Body, &["/~s/(?i)(hello) world/$1 interpose"]);
    let flow = response("https://example.org/");
    for coding in ["", "gzip", "deflate", "br", "zstd"] {
        let wire = encode(coding, PAGE.as_bytes());
        let mut h = encoded_headers(coding, wire.len());
        let outcome = r.rewrite_body(&flow, &mut h, Bytes::from(wire));
        let BodyOutcome::Rewritten(body) = outcome else {
            panic!("{coding}: {outcome:?}");
        };
        let text = decode_as_sent(&h, &body);
        assert_eq!(text, b"<p>Hello interpose, hello interpose</p>", "{coding}");
        let kept = h
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_string());
        let expected = match coding {
            "" | "zstd" => None,
            other => Some(other.to_string()),
        };
        assert_eq!(
            kept, expected,
            "gzip/deflate/br are re-encoded, zstd sent decoded"
        );
    }
}

#[test]
fn rules_apply_in_order_and_follow_their_filter() {
    let r = rules(
        Kind::Body,
        &[
            "/~q/secret/[redacted]",
            "/~s/World/There",
            "/There/Everyone",
        ],
    );
    let req = request("https://example.org/");
    assert!(r.body_rules_match(&req));
    let mut h = encoded_headers("", 6);
    let out = r.rewrite_body(&req, &mut h, Bytes::from_static(b"secret World"));
    assert_eq!(
        out,
        BodyOutcome::Rewritten(Bytes::from_static(b"[redacted] World"))
    );

    let resp = response("https://example.org/");
    let mut h = encoded_headers("", PAGE.len());
    let out = r.rewrite_body(&resp, &mut h, Bytes::from_static(PAGE.as_bytes()));
    assert_eq!(
        out,
        BodyOutcome::Rewritten(Bytes::from_static(b"<p>Hello Everyone, hello world</p>"))
    );
    assert_eq!(h[CONTENT_LENGTH], "34");

    let only_responses = rules(Kind::Body, &["/~s/a/b"]);
    assert!(!only_responses.body_rules_match(&req));
    assert!(only_responses.body_rules_match(&resp));
}

#[test]
fn no_match_leaves_body_and_headers_alone() {
    let r = rules(Kind::Body, &["/~s/absent/x", "/~q/World/x"]);
    let wire = gzip(PAGE.as_bytes());
    let mut h = encoded_headers("gzip", wire.len());
    let before = h.clone();
    let out = r.rewrite_body(
        &response("https://example.org/"),
        &mut h,
        Bytes::from(wire.clone()),
    );
    assert_eq!(out, BodyOutcome::Unchanged(Bytes::from(wire)));
    assert_eq!(h, before);
}

#[test]
fn a_file_replacement_is_taken_literally() {
    let dir = super::parse::TempDir::new("literal");
    let file = dir.path.join("r.txt");
    std::fs::write(&file, b"$1 stays").unwrap();
    let r = rules(Kind::Body, &[&format!("|(World)|@{}", file.display())]);
    let mut h = encoded_headers("", PAGE.len());
    let out = r.rewrite_body(
        &response("http://a/"),
        &mut h,
        Bytes::from_static(PAGE.as_bytes()),
    );
    assert_eq!(
        out.into_body(),
        Bytes::from_static(b"<p>Hello $1 stays, hello world</p>")
    );
}

fn capped(texts: &[&str], max: usize) -> Rules {
    Rules::parse(&RuleArgs {
        modify_body: texts.iter().map(|t| t.to_string()).collect(),
        modify_max_body: max,
        ..RuleArgs::default()
    })
    .unwrap()
}

#[test]
fn a_body_over_the_cap_passes_unchanged() {
    let r = capped(&["/a/b"], 10);
    assert_eq!(r.modify_max_body(), 10);
    let body = Bytes::from_static(b"aaaaaaaaaaaa");
    let mut h = encoded_headers("", body.len());
    let out = r.rewrite_body(&response("http://a/"), &mut h, body.clone());
    assert_eq!(out, BodyOutcome::TooLarge(body));
    assert_eq!(h[CONTENT_LENGTH], "12");

    // Small on the wire, over the cap decoded.
    let wire = Bytes::from(gzip(&[b'a'; 100]));
    let mut h = encoded_headers("gzip", wire.len());
    let out = r.rewrite_body(&response("http://a/"), &mut h, wire.clone());
    assert_eq!(out, BodyOutcome::TooLarge(wire));
}

#[test]
fn a_rewrite_that_would_grow_past_the_cap_passes_unchanged() {
    let r = capped(&["/a/aaaaaaaaaa"], 64);
    let body = Bytes::from_static(b"aaaaaaaaaaaaaaaaaaaa");
    let mut h = encoded_headers("", body.len());
    let out = r.rewrite_body(&response("http://a/"), &mut h, body.clone());
    assert_eq!(out, BodyOutcome::TooLarge(body));
}

#[test]
fn a_gzip_bomb_stops_at_the_cap() {
    // 100 gzip members of 1 MiB of zeros each: 100 MiB decoded from about 100 KiB.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = e.finish().unwrap();
    let wire: Vec<u8> = member
        .iter()
        .copied()
        .cycle()
        .take(member.len() * 100)
        .collect();
    assert!(wire.len() < 200 * 1024, "{}", wire.len());
    let r = capped(&["/x/y"], 1 << 20);
    let mut h = encoded_headers("gzip", wire.len());
    let wire = Bytes::from(wire);
    let out = r.rewrite_body(&response("http://a/"), &mut h, wire.clone());
    assert_eq!(out, BodyOutcome::TooLarge(wire));
}

#[test]
fn an_undecodable_body_passes_unchanged() {
    let r = rules(Kind::Body, &["/a/b"]);
    for (coding, wire) in [("gzip", &b"not gzip"[..]), ("compress", &b"a"[..])] {
        let mut h = encoded_headers(coding, wire.len());
        let body = Bytes::copy_from_slice(wire);
        match r.rewrite_body(&response("http://a/"), &mut h, body.clone()) {
            BodyOutcome::Undecodable { body: back, reason } => {
                assert_eq!(back, body);
                assert!(!reason.is_empty());
            }
            other => panic!("{coding}: {other:?}"),
        }
    }
}
