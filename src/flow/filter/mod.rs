//! `--filter` expressions, in the spirit of mitmproxy's: which flows are printed and
//! recorded. [`parse`] turns the text into a [`Filter`]; [`Filter::matches`] tests a flow.
//!
//! Grammar (loosest first; adjacent terms are joined by an implicit `&` that binds
//! loosest of all, as mitmproxy's do: `a | b c` is `(a | b) & c`):
//!
//! ```text
//! filter   := sequence END
//! sequence := or { or }                 implicit &
//! or       := and { "|" and }
//! and      := not { "&" not }
//! not      := "!" not | primary
//! primary  := "(" sequence ")" | "~" NAME [ARGUMENT] | WORD | QUOTED     a bare word is ~u
//! ```
//!
//! An argument is a word (up to whitespace or one of `()~'"`; `&`, `|`, `!` inside a word are
//! part of it, as in mitmproxy: `~u a|b` is one regex) or a string in `"…"` or
//! `'…'`, where `\"`, `\'` and `\\` stand for the character and any other backslash is
//! kept, so regex escapes such as `\d` survive. Regexes are case-insensitive.
//!
//! | filter | matches flows whose… |
//! |---|---|
//! | `~d REGEX` | request host |
//! | `~u REGEX` | URL |
//! | `~m REGEX` | method |
//! | `~c CODE` | response status |
//! | `~h REGEX`, `~hq`, `~hs` | header line `name: value`, either side / request / response |
//! | `~t REGEX`, `~tq`, `~ts` | `Content-Type`, either side / request / response |
//! | `~b REGEX`, `~bq`, `~bs` | captured body, either side / request / response |
//! | `~src REGEX`, `~dst REGEX` | client / server address `ip:port` |
//! | `~q`, `~s` | request has no response yet / has a response |
//! | `~e`, `~websocket`, `~all` | failed / carried WebSocket messages / every flow |

mod parse;

use regex::bytes::Regex as BytesRegex;
use regex::Regex;

pub use parse::{parse, FilterError, MAX_DEPTH};

use super::record::{CapturedBody, Flow};

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub enum Filter {
    Not(Box<Filter>),
    /// Every part matches (empty: true).
    And(Vec<Filter>),
    /// Some part matches.
    Or(Vec<Filter>),
    Test(Test),
}

/// Which message of the exchange a test looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Either,
    Request,
    Response,
}

/// One `~` test.
#[derive(Debug, Clone)]
pub enum Test {
    Domain(Regex),
    Url(Regex),
    Method(Regex),
    Code(u16),
    Header(Side, Regex),
    ContentType(Side, Regex),
    Body(Side, BytesRegex),
    Src(Regex),
    Dst(Regex),
    /// `~q`: no response (yet).
    NoResponse,
    /// `~s`: a response.
    HasResponse,
    Error,
    WebSocket,
    All,
}

impl Filter {
    /// Whether the flow is selected.
    pub fn matches(&self, flow: &Flow) -> bool {
        match self {
            Filter::Not(inner) => !inner.matches(flow),
            Filter::And(parts) => parts.iter().all(|p| p.matches(flow)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(flow)),
            Filter::Test(test) => test.matches(flow),
        }
    }
}

impl Test {
    fn matches(&self, flow: &Flow) -> bool {
        let req = &flow.request;
        let resp = flow.response.as_ref();
        match self {
            Test::Domain(re) => req.host().is_some_and(|h| re.is_match(h)),
            Test::Url(re) => re.is_match(&req.url),
            Test::Method(re) => re.is_match(&req.method),
            Test::Code(code) => resp.is_some_and(|r| r.status == *code),
            Test::Header(side, re) => sides(flow, *side, |headers, _| {
                headers
                    .iter()
                    .any(|(n, v)| re.is_match(&format!("{n}: {v}")))
            }),
            Test::ContentType(side, re) => sides(flow, *side, |headers, _| {
                headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .any(|(_, v)| re.is_match(v))
            }),
            Test::Body(side, re) => sides(flow, *side, |_, body| re.is_match(&body.bytes)),
            Test::Src(re) => re.is_match(&flow.client.to_string()),
            Test::Dst(re) => flow.server.is_some_and(|s| re.is_match(&s.to_string())),
            Test::NoResponse => resp.is_none(),
            Test::HasResponse => resp.is_some(),
            Test::Error => flow.error.is_some(),
            Test::WebSocket => !flow.websocket.is_empty(),
            Test::All => true,
        }
    }
}

/// Applies `test` to the request's and/or the response's headers and body.
fn sides(
    flow: &Flow,
    side: Side,
    test: impl Fn(&[(String, String)], &CapturedBody) -> bool,
) -> bool {
    let on_request = || test(&flow.request.headers, &flow.request.body);
    let on_response = || {
        flow.response
            .as_ref()
            .is_some_and(|r| test(&r.headers, &r.body))
    };
    match side {
        Side::Either => on_request() || on_response(),
        Side::Request => on_request(),
        Side::Response => on_response(),
    }
}

#[cfg(test)]
mod tests;
