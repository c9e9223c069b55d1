//! `--modify-header [/FILTER]/NAME/VALUE`: set a header on the requests or responses the
//! filter selects, or remove it when VALUE is empty. As in mitmproxy, every selected rule
//! first removes all fields of its name, then each non-empty VALUE is added, so two rules
//! for one name leave two fields.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::error::{RuleError, RuleText};
use super::spec;
use crate::flow::filter::Filter;
use crate::flow::record::Flow;

/// One `--modify-header` rule.
#[derive(Debug, Clone)]
pub(super) struct HeaderRule {
    filter: Option<Filter>,
    name: HeaderName,
    /// `None`: remove the header.
    value: Option<HeaderValue>,
}

/// Parses one `--modify-header` rule; names and values are checked here, not per flow.
pub(super) fn parse(rule: RuleText<'_>) -> Result<HeaderRule, RuleError> {
    let spec = spec::split(rule, ("NAME", "VALUE"))?;
    let name = HeaderName::from_bytes(spec.subject.text.as_bytes()).map_err(|_| {
        rule.error(
            "name",
            Some(spec.subject.column),
            format!(
                "expected a header name (letters, digits and !#$%&'*+-.^_`|~), found {:?}",
                spec.subject.text
            ),
        )
    })?;
    let value = match spec.replacement.text {
        "" => None,
        text => Some(HeaderValue::from_str(text).map_err(|_| {
            rule.error(
                "value",
                Some(spec.replacement.column),
                "expected a header value (visible characters, spaces and tabs; no line breaks)",
            )
        })?),
    };
    Ok(HeaderRule {
        filter: spec.filter,
        name,
        value,
    })
}

/// Applies every rule that selects `flow` to `headers`, in the order given.
pub(super) fn apply(rules: &[HeaderRule], flow: &Flow, headers: &mut HeaderMap) {
    let selected: Vec<&HeaderRule> = rules
        .iter()
        .filter(|r| spec::selects(r.filter.as_ref(), flow))
        .collect();
    for rule in &selected {
        headers.remove(&rule.name);
    }
    for rule in selected {
        if let Some(value) = &rule.value {
            headers.append(rule.name.clone(), value.clone());
        }
    }
}
