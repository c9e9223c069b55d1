//! `--map-local [/FILTER]/URL-REGEX/PATH`: answer from a local file or directory instead
//! of the upstream, with mitmproxy's semantics. A file PATH answers every matching
//! request. For a directory, the URL part to map is the regex's first group if it has
//! one, else what follows the match; the query and fragment are dropped, slashes trimmed,
//! percent-escapes decoded; `DIR/PART`, then `DIR/PART/index.html` are tried (`DIR/index.html`
//! for an empty part). A part with `..`, `.` or a non-plain component, or whose file
//! resolves (through symlinks) outside the directory, is never served.

use std::path::{Component, Path, PathBuf};

use regex::Regex;

use super::error::{RuleError, RuleText};
use super::{mime, spec};
use crate::flow::filter::Filter;
use crate::flow::record::Flow;

/// What the engine answers a mapped request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAnswer {
    /// 200 with this file's contents (the engine reads it).
    File {
        path: PathBuf,
        content_type: &'static str,
    },
    /// A rule applied but no file fits: 404, without contacting the upstream.
    NotFound,
}

/// One `--map-local` rule.
#[derive(Debug, Clone)]
pub(super) struct LocalRule {
    filter: Option<Filter>,
    regex: Regex,
    /// Canonical (absolute, symlinks resolved) at parse time.
    target: PathBuf,
}

/// Parses one `--map-local` rule; PATH must exist (a leading `~/` is the home directory).
pub(super) fn parse(rule: RuleText<'_>) -> Result<LocalRule, RuleError> {
    let spec = spec::split(rule, ("URL-REGEX", "PATH"))?;
    let regex = spec::url_regex(rule, spec.subject)?;
    let field = spec.replacement;
    if field.text.is_empty() {
        return Err(rule.error(
            "path",
            Some(field.column),
            "expected a file or directory, found nothing",
        ));
    }
    let target = expand_home(field.text).canonicalize().map_err(|e| {
        rule.error(
            "path",
            Some(field.column),
            format!("expected an existing file or directory ({e})"),
        )
    })?;
    Ok(LocalRule {
        filter: spec.filter,
        regex,
        target,
    })
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The answer of the first applicable rule that has a file for the request; `NotFound`
/// when rules applied but none had one; `None` when no rule applied (go upstream).
pub(super) fn answer(rules: &[LocalRule], flow: &Flow) -> Option<LocalAnswer> {
    let url = flow.request.url.as_str();
    let mut applied = false;
    for rule in rules {
        if !spec::selects(rule.filter.as_ref(), flow) {
            continue;
        }
        let Some(caps) = rule.regex.captures(url) else {
            continue;
        };
        applied = true;
        let found = if rule.target.is_dir() {
            caps_part(&caps, url).and_then(|part| find_in_dir(&rule.target, part))
        } else {
            rule.target.is_file().then(|| rule.target.clone())
        };
        if let Some(path) = found {
            let content_type = mime::content_type(&path);
            return Some(LocalAnswer::File { path, content_type });
        }
    }
    applied.then_some(LocalAnswer::NotFound)
}

/// The URL part to map into a directory: group 1, or what follows the match; without
/// query, fragment and surrounding slashes.
fn caps_part<'u>(caps: &regex::Captures<'u>, url: &'u str) -> Option<&'u str> {
    let raw = match caps.get(1) {
        Some(group) => group.as_str(),
        None => url.get(caps.get(0)?.end()..)?,
    };
    let raw = raw.split(['?', '#']).next().unwrap_or("");
    Some(raw.trim_matches('/'))
}

/// The regular file `part` names inside `dir` (or its `index.html`), if it stays inside.
fn find_in_dir(dir: &Path, part: &str) -> Option<PathBuf> {
    if part.is_empty() {
        return inside(dir, &dir.join("index.html"));
    }
    let relative = safe_relative(part)?;
    let candidate = dir.join(relative);
    inside(dir, &candidate).or_else(|| inside(dir, &candidate.join("index.html")))
}

/// `part` percent-decoded as a relative path of plain components only; `None` for `..`,
/// `.`, a root or prefix component, a NUL, or text that does not decode to UTF-8.
pub(super) fn safe_relative(part: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .ok()?;
    let mut path = PathBuf::new();
    for piece in decoded.split('/').filter(|p| !p.is_empty()) {
        let mut components = Path::new(piece).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) if !piece.contains('\0') && name == piece => {
                path.push(name);
            }
            _ => return None,
        }
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

/// `candidate` resolved through symlinks, if it is a regular file under `dir`.
fn inside(dir: &Path, candidate: &Path) -> Option<PathBuf> {
    let real = candidate.canonicalize().ok()?;
    (real.starts_with(dir) && real.is_file()).then_some(real)
}
