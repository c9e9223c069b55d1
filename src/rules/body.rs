//! `--modify-body [/FILTER]/REGEX/REPLACEMENT`: replace every match of a regex in the
//! request or response bodies the filter selects (`~q`: requests, `~s`: responses, no
//! filter: both). The regex runs on the decoded bytes; REPLACEMENT may use `$1`,
//! `${name}` (`$$` for a dollar), or be `@FILE`: the file's bytes, taken literally and
//! read once at parse time.
//!
//! Memory is bounded by `--modify-max-body`: a body whose decoded form, or whose
//! rewritten form, would exceed it is passed on unmodified with a warning.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH};
use regex::bytes::Regex;
use std::io::Read;

use super::codec::{self, Decoded};
use super::error::{RuleError, RuleText};
use super::spec::{self, Field};
use crate::flow::filter::Filter;
use crate::flow::record::Flow;

/// What became of a body given to [`super::Rules::rewrite_body`]; every case carries the
/// body to send on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Some rule changed it. `headers` are updated: `Content-Length` is the new length and
    /// `Content-Encoding` is gone if the body is now sent decoded.
    Rewritten(Bytes),
    /// No rule applied or no regex matched: the body as given, `headers` untouched.
    Unchanged(Bytes),
    /// Passed unmodified (and warned): decoded or rewritten it would exceed the cap.
    TooLarge(Bytes),
    /// Passed unmodified (and warned): its `Content-Encoding` could not be undone.
    Undecodable { body: Bytes, reason: String },
}

impl BodyOutcome {
    /// The body to send on, whatever happened.
    pub fn into_body(self) -> Bytes {
        match self {
            BodyOutcome::Rewritten(b) | BodyOutcome::Unchanged(b) | BodyOutcome::TooLarge(b) => b,
            BodyOutcome::Undecodable { body, .. } => body,
        }
    }
}

/// One `--modify-body` rule.
#[derive(Debug, Clone)]
pub(super) struct BodyRule {
    filter: Option<Filter>,
    regex: Regex,
    replacement: Replacement,
}

#[derive(Debug, Clone)]
enum Replacement {
    /// Text where `$1`, `${name}` stand for groups.
    Template(Vec<u8>),
    /// An `@FILE`'s bytes, inserted as they are.
    Literal(Vec<u8>),
}

/// Parses one `--modify-body` rule; an `@FILE` is read now and may be at most `max` bytes.
pub(super) fn parse(rule: RuleText<'_>, max: usize) -> Result<BodyRule, RuleError> {
    let spec = spec::split(rule, ("REGEX", "REPLACEMENT"))?;
    let regex = spec::bytes_regex(rule, spec.subject)?;
    let replacement = match spec.replacement.text.strip_prefix('@') {
        Some(path) => Replacement::Literal(read_file(rule, spec.replacement, path, max)?),
        None => Replacement::Template(spec.replacement.text.as_bytes().to_vec()),
    };
    Ok(BodyRule {
        filter: spec.filter,
        regex,
        replacement,
    })
}

/// An `@FILE` replacement: a regular file of at most `max` bytes.
fn read_file(
    rule: RuleText<'_>,
    field: Field<'_>,
    path: &str,
    max: usize,
) -> Result<Vec<u8>, RuleError> {
    let fail = |why: String| rule.error("replacement", Some(field.column), why);
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read @{path} ({e})")))?;
    let is_file = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    if !is_file {
        return Err(fail(format!(
            "expected @FILE to name a regular file: {path}"
        )));
    }
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read @{path} ({e})")))?;
    if bytes.len() > max {
        return Err(fail(format!(
            "@{path} is larger than --modify-max-body ({max} bytes)"
        )));
    }
    Ok(bytes)
}

/// Whether any rule selects this flow.
pub(super) fn any_selects(rules: &[BodyRule], flow: &Flow) -> bool {
    rules.iter().any(|r| spec::selects(r.filter.as_ref(), flow))
}

/// Decodes, rewrites with every rule selecting `flow` (in order), re-encodes.
pub(super) fn rewrite(
    rules: &[BodyRule],
    flow: &Flow,
    headers: &mut HeaderMap,
    body: Bytes,
    max: usize,
) -> BodyOutcome {
    let selected: Vec<&BodyRule> = rules
        .iter()
        .filter(|r| spec::selects(r.filter.as_ref(), flow))
        .collect();
    if selected.is_empty() {
        return BodyOutcome::Unchanged(body);
    }
    let side = if flow.response.is_some() {
        "response"
    } else {
        "request"
    };
    let url = flow.request.url.as_str();
    let (mut plain, codings) = match codec::decode(headers, &body, max) {
        Decoded::Plain(plain, codings) => (plain, codings),
        Decoded::TooLarge => {
            tracing::warn!(
                url,
                side,
                max,
                "--modify-body: body too large, passed unmodified"
            );
            return BodyOutcome::TooLarge(body);
        }
        Decoded::Failed(reason) => {
            tracing::warn!(url, side, %reason, "--modify-body: body not decodable, passed unmodified");
            return BodyOutcome::Undecodable { body, reason };
        }
    };
    let mut changed = false;
    for rule in selected {
        match replace_capped(rule, &plain, max) {
            Replaced::None => {}
            Replaced::Some(next) => {
                changed |= next != plain;
                plain = next;
            }
            Replaced::TooLarge => {
                tracing::warn!(
                    url,
                    side,
                    max,
                    "--modify-body: rewritten body too large, passed unmodified"
                );
                return BodyOutcome::TooLarge(body);
            }
        }
    }
    if !changed {
        return BodyOutcome::Unchanged(body);
    }
    let encoded = codec::encode(plain, &codings);
    if encoded.sent_decoded {
        headers.remove(CONTENT_ENCODING);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(encoded.body.len()));
    BodyOutcome::Rewritten(Bytes::from(encoded.body))
}

enum Replaced {
    /// The regex did not match.
    None,
    Some(Vec<u8>),
    TooLarge,
}

/// Every match of the rule's regex replaced, stopping as soon as the result passes `max`.
fn replace_capped(rule: &BodyRule, input: &[u8], max: usize) -> Replaced {
    let mut out = Vec::new();
    let mut last = 0;
    let mut any = false;
    for caps in rule.regex.captures_iter(input) {
        let Some(whole) = caps.get(0) else { continue };
        any = true;
        out.extend_from_slice(input.get(last..whole.start()).unwrap_or_default());
        match &rule.replacement {
            Replacement::Template(template) => caps.expand(template, &mut out),
            Replacement::Literal(bytes) => out.extend_from_slice(bytes),
        }
        last = whole.end();
        if out.len() > max {
            return Replaced::TooLarge;
        }
    }
    if !any {
        return Replaced::None;
    }
    out.extend_from_slice(input.get(last..).unwrap_or_default());
    if out.len() > max {
        return Replaced::TooLarge;
    }
    Replaced::Some(out)
}
