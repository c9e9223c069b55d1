//! `--map-remote [/FILTER]/URL-REGEX/REPLACEMENT`: send a request elsewhere. The regex is
//! replaced in the request's absolute URL (every match, as mitmproxy's `re.sub`), with
//! `$1`, `${name}` for groups (`$$` for a dollar); the first rule whose filter selects the
//! flow and whose regex matches the URL decides.

use regex::Regex;

use super::error::{RuleError, RuleText};
use super::spec;
use crate::flow::filter::Filter;
use crate::flow::record::Flow;

/// One `--map-remote` rule.
#[derive(Debug, Clone)]
pub(super) struct RemoteRule {
    filter: Option<Filter>,
    regex: Regex,
    replacement: String,
}

/// Parses one `--map-remote` rule.
pub(super) fn parse(rule: RuleText<'_>) -> Result<RemoteRule, RuleError> {
    let spec = spec::split(rule, ("URL-REGEX", "REPLACEMENT"))?;
    let regex = spec::url_regex(rule, spec.subject)?;
    if spec.replacement.text.is_empty() {
        return Err(rule.error(
            "replacement",
            Some(spec.replacement.column),
            "expected the replacement URL text, found nothing",
        ));
    }
    Ok(RemoteRule {
        filter: spec.filter,
        regex,
        replacement: spec.replacement.text.to_string(),
    })
}

/// The URL the first applicable rule makes of the request's, when it differs. A result
/// that is not an absolute `http`/`https` URL is dropped with a warning (the request then
/// goes where it was going).
pub(super) fn map(rules: &[RemoteRule], flow: &Flow) -> Option<String> {
    let url = flow.request.url.as_str();
    let rule = rules
        .iter()
        .find(|r| spec::selects(r.filter.as_ref(), flow) && r.regex.is_match(url))?;
    let mapped = rule.regex.replace_all(url, rule.replacement.as_str());
    if mapped == url {
        return None;
    }
    if !is_absolute_http_url(&mapped) {
        tracing::warn!(
            url,
            mapped = %mapped,
            regex = rule.regex.as_str(),
            "--map-remote made no absolute http(s) URL; request left as it was"
        );
        return None;
    }
    Some(mapped.into_owned())
}

/// `http://host…` or `https://host…` that `http::Uri` accepts, with a non-empty host.
fn is_absolute_http_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let scheme_ok = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    scheme_ok && uri.host().is_some_and(|h| !h.is_empty())
}
