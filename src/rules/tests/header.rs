//! `--modify-header`: set, replace, remove, and the filter choosing the phase.

use super::*;
use http::HeaderValue;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(*n, HeaderValue::from_static(v));
    }
    h
}

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn a_value_replaces_every_field_of_the_name() {
    let r = rules(Kind::Header, &["/X-Tag/new"]);
    let mut h = headers(&[("x-tag", "a"), ("x-tag", "b"), ("other", "kept")]);
    r.modify_request_headers(&request("http://example.org/"), &mut h);
    assert_eq!(values(&h, "x-tag"), ["new"]);
    assert_eq!(values(&h, "other"), ["kept"]);
}

#[test]
fn an_empty_value_removes_the_header() {
    let r = rules(Kind::Header, &["/~s/Server/"]);
    let mut h = headers(&[("server", "nginx"), ("server", "x"), ("date", "now")]);
    r.modify_response_headers(&response("http://example.org/"), &mut h);
    assert!(h.get("server").is_none());
    assert_eq!(values(&h, "date"), ["now"]);
}

#[test]
fn two_rules_for_one_name_leave_two_fields() {
    let r = rules(Kind::Header, &["/X-A/1", "/x-a/2"]);
    let mut h = headers(&[("x-a", "old")]);
    r.modify_request_headers(&request("http://example.org/"), &mut h);
    assert_eq!(values(&h, "x-a"), ["1", "2"]);
}

#[test]
fn the_filter_limits_a_rule_to_requests_or_responses() {
    let r = rules(Kind::Header, &["/~q/X-Req/1", "/~s/X-Resp/2", "/X-Both/3"]);
    let mut req = HeaderMap::new();
    r.modify_request_headers(&request("http://example.org/"), &mut req);
    assert_eq!(values(&req, "x-req"), ["1"]);
    assert!(req.get("x-resp").is_none());
    assert_eq!(values(&req, "x-both"), ["3"]);

    let mut resp = HeaderMap::new();
    r.modify_response_headers(&response("http://example.org/"), &mut resp);
    assert!(resp.get("x-req").is_none());
    assert_eq!(values(&resp, "x-resp"), ["2"]);
    assert_eq!(values(&resp, "x-both"), ["3"]);
}

#[test]
fn a_filter_on_the_url_or_host_selects_flows() {
    let r = rules(Kind::Header, &["|~d api\\.example|Authorization|Bearer t"]);
    let mut h = HeaderMap::new();
    r.modify_request_headers(&request("https://www.example.org/"), &mut h);
    assert!(h.is_empty());
    r.modify_request_headers(&request("https://api.example.org/v1"), &mut h);
    assert_eq!(values(&h, "authorization"), ["Bearer t"]);
}
