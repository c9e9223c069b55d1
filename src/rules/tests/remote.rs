//! `--map-remote`: capture groups, first applicable rule, invalid results.

use super::*;

#[test]
fn capture_groups_build_the_new_url() {
    let r = rules(
        Kind::Remote,
        &["|^https://example\\.org/api/(v\\d)/(.*)$|http://127.0.0.1:8080/${1}/mock/$2"],
    );
    let flow = request("https://example.org/api/v2/users?id=3");
    assert_eq!(
        r.map_remote(&flow).as_deref(),
        Some("http://127.0.0.1:8080/v2/mock/users?id=3")
    );
    assert_eq!(r.map_remote(&request("https://example.org/other")), None);
}

#[test]
fn the_first_applicable_rule_decides() {
    let r = rules(
        Kind::Remote,
        &[
            "|~s|example|first.test",
            "|example\\.org|second.test",
            "|example|third.test",
        ],
    );
    assert_eq!(
        r.map_remote(&request("http://example.org/x")).as_deref(),
        Some("http://second.test/x")
    );
}

#[test]
fn every_match_is_replaced() {
    let r = rules(Kind::Remote, &["|a\\.test|b.test"]);
    assert_eq!(
        r.map_remote(&request("http://a.test/?next=a.test"))
            .as_deref(),
        Some("http://b.test/?next=b.test")
    );
}

#[test]
fn a_result_that_is_no_absolute_http_url_is_dropped() {
    for rule in [
        "|^https?://|ftp://",
        "|^http://[^/]+|/relative",
        "|.*|http://",
    ] {
        let r = rules(Kind::Remote, &[rule]);
        assert_eq!(
            r.map_remote(&request("http://example.org/x")),
            None,
            "{rule}"
        );
    }
    let same = rules(Kind::Remote, &["|example|example"]);
    assert_eq!(same.map_remote(&request("http://example.org/")), None);
}
