//! Filter tests: every operator and test on sample flows, precedence, and errors with
//! their positions.

use http::{header, HeaderMap, Method, StatusCode, Version};

use super::*;
use crate::flow::record::{Direction, Request, Response, WsMessage};

/// A POST of JSON to api.example.org answered 201 with HTML.
fn answered() -> Flow {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, "api.example.org".parse().unwrap());
    h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    h.insert("x-trace", "abc123".parse().unwrap());
    let url = "https://api.example.org/v1/items?id=7";
    let mut req = Request::new(&Method::POST, url, Version::HTTP_11, &h);
    req.body = CapturedBody::capped(br#"{"name":"Widget"}"#, 1024);
    let mut flow = Flow::new(1, 1, "10.0.0.5:40000".parse().unwrap(), req);
    flow.server = Some("192.0.2.8:443".parse().unwrap());
    let mut rh = HeaderMap::new();
    rh.insert(
        header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().unwrap(),
    );
    rh.insert(header::SERVER, "nginx".parse().unwrap());
    let mut resp = Response::new(StatusCode::CREATED, Version::HTTP_11, &rh);
    resp.body = CapturedBody::capped(b"<h1>Created</h1>", 1024);
    flow.response = Some(resp);
    flow
}

/// A GET to static.test still waiting for its response.
fn waiting() -> Flow {
    let req = Request::new(
        &Method::GET,
        "http://static.test/logo.png",
        Version::HTTP_11,
        &HeaderMap::new(),
    );
    Flow::new(2, 2, "127.0.0.1:5555".parse().unwrap(), req)
}

fn is(expr: &str, flow: &Flow) -> bool {
    parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .matches(flow)
}

fn err(expr: &str) -> String {
    parse(expr).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn domain_url_and_method() {
    let (a, w) = (answered(), waiting());
    assert!(is("~d example.org", &a) && !is("~d example.org", &w));
    assert!(is("~d ^API\\.", &a), "case-insensitive");
    assert!(is("~u /v1/items", &a) && is("~u id=7$", &a));
    assert!(!is("~u /v2/", &a));
    assert!(is("~m post", &a) && is("~m ^GET$", &w) && !is("~m GET", &a));
}

#[test]
fn code_needs_a_response() {
    let (a, w) = (answered(), waiting());
    assert!(is("~c 201", &a) && !is("~c 200", &a) && !is("~c 201", &w));
}

#[test]
fn headers_either_side_or_one() {
    let a = answered();
    assert!(is("~h x-trace", &a) && is("~h 'server: nginx'", &a));
    assert!(is("~hq x-trace", &a) && !is("~hs x-trace", &a));
    assert!(is("~hs nginx", &a) && !is("~hq nginx", &a));
    assert!(
        is(r#"~h "^x-trace: abc\d+$""#, &a),
        "regex escapes survive quoting"
    );
}

#[test]
fn content_type_either_side_or_one() {
    let a = answered();
    assert!(is("~t json", &a) && is("~t html", &a));
    assert!(is("~tq json", &a) && !is("~ts json", &a));
    assert!(is("~ts text/html", &a) && !is("~tq html", &a));
}

#[test]
fn bodies_either_side_or_one() {
    let a = answered();
    assert!(is("~b widget", &a) && is("~b created", &a));
    assert!(is("~bq widget", &a) && !is("~bs widget", &a));
    assert!(is("~bs <h1>", &a) && !is("~bq <h1>", &a));
    let mut binary = answered();
    binary.response.as_mut().unwrap().body = CapturedBody::capped(&[0xff, b'o', b'k', 0xfe], 10);
    assert!(is("~bs ok", &binary), "binary bodies are searched as bytes");
}

#[test]
fn response_state_error_websocket_addresses() {
    let (a, mut w) = (answered(), waiting());
    assert!(is("~s", &a) && !is("~q", &a));
    assert!(is("~q", &w) && !is("~s", &w));
    assert!(!is("~e", &w));
    w.error = Some("upstream refused the connection".into());
    assert!(is("~e", &w));
    assert!(!is("~websocket", &a));
    let mut ws = answered();
    ws.websocket.push(WsMessage {
        direction: Direction::ClientToServer,
        opcode: 1,
        at: 1.0,
        payload: CapturedBody::capped(b"hi", 10),
    });
    assert!(is("~websocket", &ws));
    assert!(is("~src ^10\\.0\\.0\\.5:", &a) && is("~dst :443$", &a) && !is("~dst .", &w));
    assert!(is("~all", &a) && is("~all", &w));
}

#[test]
fn operators_and_bare_words() {
    let (a, w) = (answered(), waiting());
    assert!(is("!~q", &a) && !is("!~q", &w));
    assert!(is("~m POST & ~c 201", &a) && !is("~m POST & ~c 200", &a));
    assert!(is("~c 200 | ~c 201", &a) && !is("~c 200 | ~c 404", &a));
    assert!(is("items", &a) && !is("items", &w), "a bare word is ~u");
    assert!(is("\"logo\\.png\"", &w), "a bare quoted string is ~u");
    assert!(
        is("~d example ~m POST", &a),
        "adjacent terms are joined by &"
    );
    assert!(!is("~d example ~m GET", &a));
    assert!(is("!!~s", &a));
    assert!(
        is("~u items|logo", &w),
        "| inside a word belongs to the regex"
    );
}

#[test]
fn precedence_not_then_and_then_or() {
    let a = answered();
    // ! binds tighter than &: (!~q) & ~s.
    assert!(is("!~q & ~s", &a));
    // & binds tighter than |: ~q | (~s & ~c 201).
    assert!(is("~q | ~s & ~c 201", &a));
    // (~q | ~s) & ~c 200 would be false; ~q | (~s & ~c 200) is false too; but:
    assert!(is("~s | ~q & ~c 999", &a), "~s | (~q & ~c 999)");
    assert!(!is("(~s | ~q) & ~c 999", &a));
    // The implicit & binds loosest, as mitmproxy's: (~q | ~s) & ~c 201.
    assert!(is("~q | ~s ~c 201", &a));
    assert!(!is("~s | ~q ~c 999", &a), "(~s | ~q) & ~c 999");
    // ! applies to one term only.
    assert!(!is("!~s | ~q", &a));
    assert!(is("!(~q | ~c 404)", &a));
}

#[test]
fn parentheses_group_and_nest() {
    let a = answered();
    assert!(is("((~s))", &a));
    assert!(is("(~d nothing | ~d example) & (~m POST)", &a));
    assert!(
        is("( ~d example ~m POST )", &a),
        "implicit & inside parentheses"
    );
    assert!(is("~c 201|~c 202", &a), "a status code ends at its digits");
    assert!(is("~m POST &(~c 202|~s)", &a));
    assert!(
        !is("~m POST&(~s)", &a),
        "& inside a word belongs to the regex"
    );
    assert!(is("~d example~s", &a), "~ ends a word");
    let deep = format!("{}~s{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(is(&deep, &a));
}

#[test]
fn errors_say_where_and_what() {
    assert_eq!(
        err("~d foo & ~u"),
        "filter error at column 12: expected a regex after ~u"
    );
    assert_eq!(err(""), "filter error at column 1: expected a filter");
    assert_eq!(err("   "), "filter error at column 4: expected a filter");
    assert_eq!(
        err("~s &"),
        "filter error at column 5: expected a filter after &"
    );
    assert_eq!(
        err("~s | | ~q"),
        "filter error at column 6: expected a filter after |, found '|'"
    );
    assert_eq!(
        err("!"),
        "filter error at column 2: expected a filter after !"
    );
    assert_eq!(
        err("()"),
        "filter error at column 2: expected a filter after (, found ')'"
    );
    assert_eq!(
        err("(~s"),
        "filter error at column 4: expected ')' to close the '(' at column 1"
    );
    assert_eq!(
        err("~s)"),
        "filter error at column 3: expected an expression before ')' (no '(' to close)"
    );
    assert_eq!(
        err("~c abc"),
        "filter error at column 4: expected a status code (an integer) after ~c"
    );
    assert_eq!(
        err("~c 99999"),
        "filter error at column 4: expected a status code (an integer) after ~c"
    );
    assert_eq!(
        err("~"),
        "filter error at column 2: expected a filter name after ~"
    );
    assert!(err("~s ~zz")
        .starts_with("filter error at column 4: expected a known filter, not ~zz (known: ~d"));
    assert_eq!(
        err("~u 'abc"),
        "filter error at column 8: expected a closing ' for the string at column 4"
    );
    assert_eq!(
        err("~u (x)"),
        "filter error at column 4: expected a regex after ~u"
    );
    assert_eq!(
        err("~u ~s"),
        "filter error at column 4: expected a regex after ~u"
    );
    assert_eq!(
        err("~c ~s"),
        "filter error at column 4: expected a status code (an integer) after ~c"
    );
    let e = err("~h a[b");
    assert!(
        e.starts_with(
            "filter error at column 4: expected a valid regex for ~h (unclosed character class"
        ),
        "{e}"
    );
    let e = err("~s foo(");
    assert!(
        e.starts_with("filter error at column 8: expected a filter"),
        "{e}"
    );
    let too_deep = "!".repeat(MAX_DEPTH + 1) + "~s";
    assert_eq!(
        err(&too_deep),
        format!("filter error at column {}: expected at most {MAX_DEPTH} nested parentheses or negations", MAX_DEPTH + 1)
    );
    let e = err("~u a{99999}{99999}");
    assert!(e.contains("expected a valid regex for ~u"), "{e}");
}

#[test]
fn columns_count_characters_not_bytes() {
    assert_eq!(
        err("é ~u"),
        "filter error at column 5: expected a regex after ~u"
    );
}

#[test]
fn quoting_rules() {
    let a = answered();
    assert!(is(r#"~b "\"name\"""#, &a), r#"\" is a quote"#);
    assert!(is(r"~b '\'?name'", &a), r"\' is a quote");
    assert!(
        is(r#"~hs 'server: nginx' & ~c 201"#, &a),
        "spaces inside quotes"
    );
    assert!(is(r#"~u """#, &a), "an empty regex matches everything");
}
