//! The shape all four `[FILTER]SUBJECT REPLACEMENT` rules share, as mitmproxy writes
//! them: the first character is the separator, then two or three fields split on it.
//! Two fields mean no filter (every flow); with three the first is a `--filter`
//! expression (empty: every flow). Splitting stops after the third field, so the last
//! field may contain the separator (`/~q/X/a/b` sets `X` to `a/b`).

use regex::bytes::{Regex as BytesRegex, RegexBuilder as BytesRegexBuilder};
use regex::{Regex, RegexBuilder};

use super::error::{RuleError, RuleText};
use crate::flow::filter::{self, Filter};
use crate::flow::record::Flow;

/// Compiled regexes are bounded, so a hostile rule cannot claim much memory (as filters).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One field of a rule and the 1-based column (in characters) it starts at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field<'a> {
    pub text: &'a str,
    pub column: usize,
}

/// A rule cut into its parts.
#[derive(Debug)]
pub(super) struct Spec<'a> {
    /// `None`: every flow.
    pub filter: Option<Filter>,
    pub subject: Field<'a>,
    pub replacement: Field<'a>,
}

/// Cuts `rule.text` into `[FILTER]SUBJECT REPLACEMENT`; `names` says what the subject and
/// replacement are called in the error for a missing field, e.g. `("NAME", "VALUE")`.
pub(super) fn split<'a>(rule: RuleText<'a>, names: (&str, &str)) -> Result<Spec<'a>, RuleError> {
    let text = rule.text;
    let sep = separator(rule)?;
    let rest = text.get(sep.len_utf8()..).unwrap_or("");
    let mut fields = Vec::with_capacity(3);
    let mut column = 2;
    for part in rest.splitn(3, sep) {
        fields.push(Field { text: part, column });
        column += part.chars().count() + 1;
    }
    let (subject, replacement) = names;
    match fields.as_slice() {
        [subject, replacement] => Ok(Spec {
            filter: None,
            subject: *subject,
            replacement: *replacement,
        }),
        [filter, subject, replacement] => Ok(Spec {
            filter: parse_filter(rule, *filter)?,
            subject: *subject,
            replacement: *replacement,
        }),
        _ => Err(rule.error(
            "rule",
            Some(text.chars().count() + 1),
            format!("expected [FILTER]{sep}{subject}{sep}{replacement} after the separator '{sep}' (2 or 3 fields)"),
        )),
    }
}

/// The separator: the rule's first character, any punctuation. A letter, digit or space
/// there almost always means the separator was forgotten, so it is refused.
fn separator(rule: RuleText<'_>) -> Result<char, RuleError> {
    match rule.text.chars().next() {
        None => Err(rule.error(
            "rule",
            Some(1),
            "expected a separator character such as '/' or '|' (the rule is empty)",
        )),
        Some(c) if c.is_alphanumeric() || c.is_whitespace() || c.is_control() => Err(rule.error(
            "rule",
            Some(1),
            format!("expected a separator character such as '/' or '|' first, found {c:?}"),
        )),
        Some(c) => Ok(c),
    }
}

/// A `--filter` expression in a rule; empty or blank means every flow. The filter
/// parser's column is moved to the rule's.
pub(super) fn parse_filter(
    rule: RuleText<'_>,
    field: Field<'_>,
) -> Result<Option<Filter>, RuleError> {
    if field.text.trim().is_empty() {
        return Ok(None);
    }
    filter::parse(field.text).map(Some).map_err(|e| {
        rule.error(
            "filter",
            Some(field.column + e.position.saturating_sub(1)),
            format!("expected {}", e.expected),
        )
    })
}

/// Whether a rule's filter selects the flow (no filter: every flow).
pub(super) fn selects(filter: Option<&Filter>, flow: &Flow) -> bool {
    filter.is_none_or(|f| f.matches(flow))
}

/// A URL regex (case-sensitive, as mitmproxy's).
pub(super) fn url_regex(rule: RuleText<'_>, field: Field<'_>) -> Result<Regex, RuleError> {
    if field.text.is_empty() {
        return Err(rule.error(
            "regex",
            Some(field.column),
            "expected a URL regex, found nothing",
        ));
    }
    RegexBuilder::new(field.text)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| rule.error("regex", Some(field.column), regex_message(&e)))
}

/// A body regex, on bytes (bodies need not be UTF-8).
pub(super) fn bytes_regex(rule: RuleText<'_>, field: Field<'_>) -> Result<BytesRegex, RuleError> {
    if field.text.is_empty() {
        return Err(rule.error(
            "regex",
            Some(field.column),
            "expected a body regex, found nothing",
        ));
    }
    BytesRegexBuilder::new(field.text)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| rule.error("regex", Some(field.column), regex_message(&e)))
}

/// The regex crate's error, cut to its one telling line.
fn regex_message(e: &regex::Error) -> String {
    let why = match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or("invalid syntax")
            .to_string(),
        regex::Error::CompiledTooBig(_) => "it compiles too big".to_string(),
        _ => e.to_string(),
    };
    format!("expected a valid regex ({why})")
}
