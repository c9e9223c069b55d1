//! The hostile-input corpus: named raw requests, each with what a proxy must do with it.
//! Templates: `{T}` is the target prefix (`http://HOST:PORT` for a forward proxy, empty
//! in origin-form modes), `{H}` the Host value, `{P}` a path unique to the case, so the
//! recording origin can tell whether any of it arrived.

#![allow(dead_code)]

/// What must reach the origin when a case is accepted (after the proxy re-framed it).
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub method: &'static str,
    pub body: &'static [u8],
    /// Header fields that must arrive with these values (names lowercase).
    pub has: &'static [(&'static str, &'static str)],
    /// Header names that must not arrive.
    pub absent: &'static [&'static str],
    /// Byte strings that must not appear anywhere in what the origin received.
    pub absent_raw: &'static [&'static str],
    /// Trailer names that must not arrive.
    pub absent_trailers: &'static [&'static str],
}

/// A plain accepted request: method, body, nothing else checked.
pub const fn accept(method: &'static str, body: &'static [u8]) -> Expect {
    Expect::Accept(Want {
        method,
        body,
        has: &[],
        absent: &[],
        absent_raw: &[],
        absent_trailers: &[],
    })
}

/// What the proxy must do with a case.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// A 4xx or a closed connection; not a byte of it reaches the origin.
    Reject,
    /// A 4xx or a closed connection; the head may have gone upstream already (a body
    /// error found while streaming) but never a complete request.
    RejectBody,
    /// Exactly one well-framed request reaches the origin, as wanted; the client gets 200.
    Accept(Want),
}

/// One corpus entry. `tunnel` overrides `forward` inside mitm tunnels and in the reverse
/// proxy, which both take origin-form targets.
pub struct Case {
    pub name: &'static str,
    pub raw: String,
    pub forward: Expect,
    pub tunnel: Option<Expect>,
}

impl Case {
    /// The expectation in a mode.
    pub fn expect(&self, mode_is_tunnel: bool, mode_is_reverse: bool) -> Expect {
        if mode_is_tunnel || mode_is_reverse {
            if let Some(e) = self.tunnel {
                return e;
            }
        }
        self.forward
    }

    /// The bytes to send, with the placeholders filled in.
    pub fn render(&self, target: &str, host: &str, path: &str) -> Vec<u8> {
        self.raw
            .replace("{T}", target)
            .replace("{H}", host)
            .replace("{P}", path)
            .into_bytes()
    }
}

fn case(name: &'static str, raw: impl Into<String>, forward: Expect) -> Case {
    Case {
        name,
        raw: raw.into(),
        forward,
        tunnel: None,
    }
}

fn post(headers: &str, body: &str) -> String {
    format!("POST {{T}}{{P}} HTTP/1.1\r\nHost: {{H}}\r\n{headers}\r\n{body}")
}

fn get(headers: &str) -> String {
    format!("GET {{T}}{{P}} HTTP/1.1\r\nHost: {{H}}\r\n{headers}\r\n")
}

const CHUNKED_HELLO: &str = "5\r\nhello\r\n0\r\n\r\n";
const REJECT: Expect = Expect::Reject;
const BODY: Expect = Expect::RejectBody;

/// The whole corpus (more than 60 cases, every family of issue 6 item 4).
pub fn corpus() -> Vec<Case> {
    let te = "Transfer-Encoding";
    let mut c = vec![
        // --- CL + TE
        case("cl_then_te", post(&format!("Content-Length: 6\r\n{te}: chunked\r\n"), "0\r\n\r\nX"), REJECT),
        case("te_then_cl", post(&format!("{te}: chunked\r\nContent-Length: 6\r\n"), "0\r\n\r\nX"), REJECT),
        case(
            "cl_te_smuggled_get",
            post(
                &format!("Content-Length: 44\r\n{te}: chunked\r\n"),
                "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: evil\r\n\r\n",
            ),
            REJECT,
        ),
        case("cl_zero_te", post(&format!("Content-Length: 0\r\n{te}: chunked\r\n"), CHUNKED_HELLO), REJECT),
        // --- TE.TE obfuscations
        case("te_space_before_colon", post(&format!("{te} : chunked\r\n"), CHUNKED_HELLO), REJECT),
        case("te_trailing_tab", post(&format!("{te}: chunked\t\r\n"), CHUNKED_HELLO), REJECT),
        case("te_trailing_space", post(&format!("{te}: chunked \r\n"), CHUNKED_HELLO), REJECT),
        case("te_xchunked", post(&format!("{te}: xchunked\r\n"), CHUNKED_HELLO), REJECT),
        case("te_chunked_identity", post(&format!("{te}: chunked, identity\r\n"), CHUNKED_HELLO), REJECT),
        case("te_gzip_chunked", post(&format!("{te}: gzip, chunked\r\n"), CHUNKED_HELLO), REJECT),
        case("te_identity", post(&format!("{te}: identity\r\n"), "hello"), REJECT),
        case("te_duplicated", post(&format!("{te}: chunked\r\n{te}: chunked\r\n"), CHUNKED_HELLO), REJECT),
        case("te_chunked_then_gzip", post(&format!("{te}: chunked\r\n{te}: gzip\r\n"), CHUNKED_HELLO), REJECT),
        case("te_quoted", post(&format!("{te}: \"chunked\"\r\n"), CHUNKED_HELLO), REJECT),
        case("te_vertical_tab", post(&format!("{te}:\x0bchunked\r\n"), CHUNKED_HELLO), REJECT),
        case("te_form_feed", post(&format!("{te}: \x0cchunked\r\n"), CHUNKED_HELLO), REJECT),
        case("te_obs_fold", post(&format!("{te}:\r\n chunked\r\n"), CHUNKED_HELLO), REJECT),
        case("te_nul", post(&format!("{te}: chunked\0\r\n"), CHUNKED_HELLO), REJECT),
        case(
            "te_http10",
            format!("POST {{T}}{{P}} HTTP/1.0\r\nHost: {{H}}\r\n{te}: chunked\r\n\r\n{CHUNKED_HELLO}"),
            REJECT,
        ),
        case("te_uppercase_value", post(&format!("{te}: CHUNKED\r\n"), CHUNKED_HELLO), accept("POST", b"hello")),
        case("te_leading_tab_ows", post(&format!("{te}:\tchunked\r\n"), CHUNKED_HELLO), accept("POST", b"hello")),
        // --- duplicate and signed Content-Length
        case("cl_conflicting", post("Content-Length: 3\r\nContent-Length: 5\r\n", "hello"), REJECT),
        case("cl_plus_sign", post("Content-Length: +5\r\n", "hello"), REJECT),
        case("cl_minus_sign", post("Content-Length: -5\r\n", "hello"), REJECT),
        case("cl_hex", post("Content-Length: 0x5\r\n", "hello"), REJECT),
        case("cl_inner_space", post("Content-Length: 1 5\r\n", "hello"), REJECT),
        case("cl_overflow", post("Content-Length: 99999999999999999999999\r\n", "hello"), REJECT),
        case("cl_empty", post("Content-Length: \r\n", "hello"), REJECT),
        case("cl_space_before_colon", post("Content-Length : 5\r\n", "hello"), REJECT),
        case("cl_conflicting_list", post("Content-Length: 5, 6\r\n", "hello"), REJECT),
        case("cl_bare_cr_after", post("Content-Length: 5\r\r\n", "hello"), REJECT),
        case(
            "cl_duplicate_equal",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            Expect::Accept(Want {
                method: "POST",
                body: b"hello",
                has: &[("content-length", "5")],
                absent: &[],
                absent_raw: &[],
                absent_trailers: &[],
            }),
        ),
        case("cl_leading_zeros", post("Content-Length: 005\r\n", "hello"), accept("POST", b"hello")),
        case("cl_on_get", "GET {T}{P} HTTP/1.1\r\nHost: {H}\r\nContent-Length: 5\r\n\r\nhello", accept("GET", b"hello")),
        // --- chunk sizes and extensions
        case("chunk_size_overflow", post(&format!("{te}: chunked\r\n"), "FFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"), BODY),
        case("chunk_size_negative", post(&format!("{te}: chunked\r\n"), "-5\r\nhello\r\n0\r\n\r\n"), BODY),
        case("chunk_size_0x_prefix", post(&format!("{te}: chunked\r\n"), "0x5\r\nhello\r\n0\r\n\r\n"), BODY),
        case("chunk_size_empty", post(&format!("{te}: chunked\r\n"), "\r\nhello\r\n0\r\n\r\n"), BODY),
        case("chunk_size_not_hex", post(&format!("{te}: chunked\r\n"), "g\r\nhello\r\n0\r\n\r\n"), BODY),
        case("chunk_data_too_long", post(&format!("{te}: chunked\r\n"), "3\r\nhello\r\n0\r\n\r\n"), BODY),
        case("chunk_missing_crlf", post(&format!("{te}: chunked\r\n"), "5\r\nhelloXX0\r\n\r\n"), BODY),
        case("chunk_ext_bare_cr", post(&format!("{te}: chunked\r\n"), "5;a\rb\r\nhello\r\n0\r\n\r\n"), BODY),
        case("chunk_ext_nul", post(&format!("{te}: chunked\r\n"), "5;a\0b\r\nhello\r\n0\r\n\r\n"), BODY),
        case(
            "chunk_ext_huge",
            post(&format!("{te}: chunked\r\n"), &format!("5;x={}\r\nhello\r\n0\r\n\r\n", "a".repeat(70_000))),
            BODY,
        ),
        case(
            "chunk_ext_valid",
            post(&format!("{te}: chunked\r\n"), "5;name=value\r\nhello\r\n0;last\r\n\r\n"),
            Expect::Accept(Want {
                method: "POST",
                body: b"hello",
                has: &[],
                absent: &["content-length"],
                absent_raw: &["name=value", "last"],
                absent_trailers: &[],
            }),
        ),
        case(
            "chunk_ext_quoted",
            post(&format!("{te}: chunked\r\n"), "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n"),
            accept("POST", b"hello"),
        ),
        case(
            "chunk_trailer_valid",
            post(&format!("{te}: chunked\r\n"), "5\r\nhello\r\n0\r\nX-Check: 1\r\n\r\n"),
            accept("POST", b"hello"),
        ),
        case(
            "chunk_trailer_framing_fields",
            post(
                &format!("{te}: chunked\r\n"),
                "5\r\nhello\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n\r\n",
            ),
            Expect::Accept(Want {
                method: "POST",
                body: b"hello",
                has: &[],
                absent: &[],
                absent_raw: &["evil", ": 99"],
                absent_trailers: &["content-length", "transfer-encoding", "host"],
            }),
        ),
        case("chunk_many_splits", post(&format!("{te}: chunked\r\n"), "1\r\nh\r\n1\r\ne\r\n3\r\nllo\r\n0\r\n\r\n"), accept("POST", b"hello")),
        // --- bare CR / LF, NUL
        case("bare_cr_in_value", get("X-A: b\rc\r\n"), REJECT),
        case("bare_cr_line_end", get("X-A: b\rX-B: c\r\n"), REJECT),
        case("nul_in_value", get("X-A: b\0c\r\n"), REJECT),
        case("nul_in_name", get("X-\0A: b\r\n"), REJECT),
        case("nul_in_path", "GET {T}{P}\0x HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("lf_in_path", "GET {T}{P}\nx HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("cr_in_path", "GET {T}{P}\rx HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("ctl_in_value", get("X-A: b\x01c\r\n"), REJECT),
        case("del_in_name", get("X-A\x7f: b\r\n"), REJECT),
        case("bare_lf_lines", "GET {T}{P} HTTP/1.1\nHost: {H}\nX-A: b\n\n", accept("GET", b"")),
        case("leading_crlf", "\r\nGET {T}{P} HTTP/1.1\r\nHost: {H}\r\n\r\n", accept("GET", b"")),
        // --- obs-fold, bad names
        case("obs_fold_value", get("X-A: b\r\n c\r\n"), REJECT),
        case("obs_fold_tab", get("X-A: b\r\n\tc\r\n"), REJECT),
        case("obs_fold_host", "GET {T}{P} HTTP/1.1\r\nHost:\r\n {H}\r\n\r\n", REJECT),
        case("space_in_name", get("X A: b\r\n"), REJECT),
        case("empty_name", get(": b\r\n"), REJECT),
        case("no_colon", get("X-A b\r\n"), REJECT),
        // --- Host
        case("host_missing", "GET {T}{P} HTTP/1.1\r\nX-A: b\r\n\r\n", REJECT),
        case("host_twice", "GET {T}{P} HTTP/1.1\r\nHost: {H}\r\nHost: other\r\n\r\n", REJECT),
        // --- oversized request line and headers
        case("huge_request_line", format!("GET {{T}}{{P}}?{} HTTP/1.1\r\nHost: {{H}}\r\n\r\n", "a".repeat(100_000)), REJECT),
        case("huge_header_value", get(&format!("X-Big: {}\r\n", "b".repeat(100_000))), REJECT),
        case("too_many_headers", get(&"X-Many: v\r\n".repeat(300)), REJECT),
        case("huge_header_section", get(&format!("X-Long: {}\r\n", "c".repeat(1000)).repeat(100)), REJECT),
        // --- request line shapes, versions
        case("http09", "GET {P}\r\n\r\n", REJECT),
        case("http2_version_on_h1", "GET {T}{P} HTTP/2.0\r\nHost: {H}\r\n\r\n", REJECT),
        case("http12_version", "GET {T}{P} HTTP/1.2\r\nHost: {H}\r\n\r\n", REJECT),
        case("lowercase_version", "GET {T}{P} http/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("h2_preface_on_h1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", REJECT),
        case("double_space", "GET  {T}{P} HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("space_in_target", "GET {T}{P} x HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("tab_separator", "GET\t{T}{P} HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("no_version", "GET {T}{P}\r\nHost: {H}\r\n\r\n", REJECT),
        case("method_with_slash", "GE/T {T}{P} HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        // --- absolute-form with userinfo; CONNECT shapes
        Case {
            name: "absolute_form_userinfo",
            raw: "GET http://user:pass@{H}{P} HTTP/1.1\r\nHost: {H}\r\n\r\n".into(),
            forward: REJECT,
            tunnel: Some(accept("GET", b"")),
        },
        Case {
            name: "absolute_form_https",
            raw: "GET https://{H}{P} HTTP/1.1\r\nHost: {H}\r\n\r\n".into(),
            forward: REJECT,
            tunnel: Some(accept("GET", b"")),
        },
        case("connect_without_port", "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", REJECT),
        case("connect_with_path", "CONNECT {H}{P} HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("connect_userinfo", "CONNECT u:p@{H} HTTP/1.1\r\nHost: {H}\r\n\r\n", REJECT),
        case("connect_port_zero", "CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", REJECT),
        // --- Upgrade: h2c is never passed on
        case(
            "upgrade_h2c",
            get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
            Expect::Accept(Want {
                method: "GET",
                body: b"",
                has: &[],
                absent: &["upgrade", "http2-settings"],
                absent_raw: &["h2c"],
                absent_trailers: &[],
            }),
        ),
        case(
            "connection_drops_named_header",
            get("Connection: X-Secret\r\nX-Secret: 1\r\n"),
            Expect::Accept(Want {
                method: "GET",
                body: b"",
                has: &[],
                absent: &["x-secret"],
                absent_raw: &[],
                absent_trailers: &[],
            }),
        ),
    ];
    // A valid request with a body, as a control inside the corpus.
    c.push(case(
        "control_post",
        post("Content-Length: 5\r\n", "hello"),
        accept("POST", b"hello"),
    ));
    c
}
