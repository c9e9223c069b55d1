//! Rewrite rules: `--modify-header`, `--modify-body`, `--map-remote`, `--map-local` and
//! `--block`, parsed once from their flags into [`Rules`], then asked by the engine at
//! each step of an exchange. Pure library: no I/O but reading `@FILE` replacements and
//! resolving `--map-local` paths at parse time, and checking mapped files per request.
//!
//! Syntax, as mitmproxy's: the first character of a rule is its separator; then
//! `[FILTER]SUBJECT REPLACEMENT` split on it (two fields: every flow; three: the first is
//! a `--filter` expression, empty for every flow; the last field keeps any further
//! separators). `--block` takes a bare filter.
//!
//! | flag | fields | effect |
//! |---|---|---|
//! | `--modify-header` | `/FILTER/NAME/VALUE` | set NAME (empty VALUE: remove it) |
//! | `--modify-body` | `/FILTER/REGEX/REPLACEMENT` | rewrite the selected bodies |
//! | `--map-remote` | `/FILTER/URL-REGEX/REPLACEMENT` | send the request to another URL |
//! | `--map-local` | `/FILTER/URL-REGEX/PATH` | answer from a local file or directory |
//! | `--block` | `FILTER` | answer 403 without contacting the upstream |
//!
//! Phases: the engine asks request-phase questions with a flow whose `response` is
//! `None` (so `~q` holds, `~s` does not) and response-phase ones with the response set;
//! a rule without filter acts in both.
//!
//! Order, as mitmproxy's addons run: `blocks`, `map_remote` (the engine then puts the new
//! URL in `flow.request.url`), `map_local` (on that URL), then per message
//! `rewrite_body` and the header rules, so a `--modify-header` has the last word.

mod body;
mod codec;
mod error;
mod header;
pub(super) mod local;
mod mime;
mod remote;
mod spec;

use bytes::Bytes;
use http::HeaderMap;

pub use body::BodyOutcome;
pub use error::RuleError;
pub use local::LocalAnswer;

use crate::flow::filter::{self, Filter};
use crate::flow::record::Flow;
use error::RuleText;

/// The default for `--modify-max-body`: bodies are buffered and rewritten up to 16 MiB.
pub const DEFAULT_MODIFY_MAX_BODY: usize = 16 * 1024 * 1024;

/// The rule flags as given on the command line, one string per occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleArgs {
    pub modify_header: Vec<String>,
    pub modify_body: Vec<String>,
    pub map_remote: Vec<String>,
    pub map_local: Vec<String>,
    pub block: Vec<String>,
    /// Bodies larger than this (decoded or rewritten) pass unmodified.
    pub modify_max_body: usize,
}

impl Default for RuleArgs {
    fn default() -> Self {
        RuleArgs {
            modify_header: Vec::new(),
            modify_body: Vec::new(),
            map_remote: Vec::new(),
            map_local: Vec::new(),
            block: Vec::new(),
            modify_max_body: DEFAULT_MODIFY_MAX_BODY,
        }
    }
}

/// All rules of one proxy, each kind in the order given.
#[derive(Debug, Clone)]
pub struct Rules {
    headers: Vec<header::HeaderRule>,
    bodies: Vec<body::BodyRule>,
    remotes: Vec<remote::RemoteRule>,
    locals: Vec<local::LocalRule>,
    blocks: Vec<Filter>,
    modify_max_body: usize,
}

impl Rules {
    /// Parses every rule; the first bad one is the error.
    pub fn parse(args: &RuleArgs) -> Result<Rules, RuleError> {
        let max = args.modify_max_body;
        Ok(Rules {
            headers: each(&args.modify_header, "--modify-header", header::parse)?,
            bodies: each(&args.modify_body, "--modify-body", |r| body::parse(r, max))?,
            remotes: each(&args.map_remote, "--map-remote", remote::parse)?,
            locals: each(&args.map_local, "--map-local", local::parse)?,
            blocks: each(&args.block, "--block", parse_block)?,
            modify_max_body: max,
        })
    }

    /// No rule at all: the engine can skip every question.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.bodies.is_empty()
            && self.remotes.is_empty()
            && self.locals.is_empty()
            && self.blocks.is_empty()
    }

    /// Whether a `--block` filter selects the request (answer 403, no upstream).
    pub fn blocks(&self, flow: &Flow) -> bool {
        self.blocks.iter().any(|f| f.matches(flow))
    }

    /// `--map-remote`: the absolute `http(s)` URL to send the request to instead, from
    /// the first rule whose filter selects the flow and whose regex matches its URL;
    /// `None` when none applies, the URL is unchanged, or the result is no absolute
    /// http(s) URL (warned).
    pub fn map_remote(&self, flow: &Flow) -> Option<String> {
        remote::map(&self.remotes, flow)
    }

    /// `--map-local`: the file to answer with, or `NotFound` when a rule applied but had
    /// no file; `None` when no rule applied.
    pub fn map_local(&self, flow: &Flow) -> Option<LocalAnswer> {
        local::answer(&self.locals, flow)
    }

    /// `--modify-header` on a request's headers (`flow.response` is `None`).
    pub fn modify_request_headers(&self, flow: &Flow, headers: &mut HeaderMap) {
        header::apply(&self.headers, flow, headers);
    }

    /// `--modify-header` on a response's headers (`flow.response` is set).
    pub fn modify_response_headers(&self, flow: &Flow, headers: &mut HeaderMap) {
        header::apply(&self.headers, flow, headers);
    }

    /// Whether some `--modify-body` rule selects the flow in its current phase, i.e.
    /// whether the engine should buffer this body (up to [`Rules::modify_max_body`]).
    pub fn body_rules_match(&self, flow: &Flow) -> bool {
        body::any_selects(&self.bodies, flow)
    }

    /// `--modify-body` on a fully buffered body (the request's when `flow.response` is
    /// `None`, else the response's): decoded per `headers`' `Content-Encoding`, rewritten
    /// by every selected rule in order, re-encoded, `Content-Length` set. Transfer-Encoding
    /// is the engine's business.
    pub fn rewrite_body(&self, flow: &Flow, headers: &mut HeaderMap, body: Bytes) -> BodyOutcome {
        body::rewrite(&self.bodies, flow, headers, body, self.modify_max_body)
    }

    /// The `--modify-max-body` cap, for the engine's buffering.
    pub fn modify_max_body(&self) -> usize {
        self.modify_max_body
    }
}

/// Parses each rule text of one flag.
fn each<T>(
    texts: &[String],
    flag: &'static str,
    parse: impl Fn(RuleText<'_>) -> Result<T, RuleError>,
) -> Result<Vec<T>, RuleError> {
    texts
        .iter()
        .map(|text| parse(RuleText { flag, text }))
        .collect()
}

/// `--block FILTER`: the whole text is a filter; an empty one is refused, since blocking
/// everything by accident is worse than saying `~all`.
fn parse_block(rule: RuleText<'_>) -> Result<Filter, RuleError> {
    if rule.text.trim().is_empty() {
        return Err(rule.error(
            "filter",
            Some(1),
            "expected a filter expression (~all blocks every request)",
        ));
    }
    filter::parse(rule.text).map_err(|e| {
        rule.error(
            "filter",
            Some(e.position),
            format!("expected {}", e.expected),
        )
    })
}

#[cfg(test)]
mod tests;
