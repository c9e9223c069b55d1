//! Rule syntax: separators, field counts, filters, regexes, names, and the one-line errors.

use super::*;

#[test]
fn every_kind_parses_with_and_without_a_filter() {
    rules(
        Kind::Header,
        &["/~q/X-A/1", "/X-B/2", "|~d example.org|X-C|", "//X-D/4"],
    );
    rules(Kind::Body, &["/~s/foo/bar", "/foo/bar", ":~u x:a(b)c:$1"]);
    rules(
        Kind::Remote,
        &["|^http://a/|http://b/", "|~q|^http://a/(.*)|http://b/$1"],
    );
    rules(Kind::Local, &["|^http://a/|/", "|~q|\\.css$|."]);
    let all = rules(Kind::Block, &["~d ads.example", "~u /track & ~m POST"]);
    assert!(!all.is_empty());
    assert!(Rules::parse(&RuleArgs::default()).unwrap().is_empty());
}

#[test]
fn the_last_field_keeps_further_separators() {
    let r = rules(Kind::Header, &["/~q/X-Path/a/b/c"]);
    let mut h = HeaderMap::new();
    r.modify_request_headers(&request("http://example.org/"), &mut h);
    assert_eq!(h["x-path"], "a/b/c");
}

#[test]
fn a_missing_or_alphanumeric_separator_is_refused() {
    let e = refused(Kind::Header, "");
    assert_eq!(e.field, "rule");
    assert!(e.to_string().contains("separator"), "{e}");
    let e = refused(Kind::Header, "X-A:1");
    assert_eq!(e.column, Some(1));
    assert!(e.to_string().contains("found 'X'"), "{e}");
    let e = refused(Kind::Body, " /a/b");
    assert!(e.to_string().contains("separator"), "{e}");
}

#[test]
fn a_wrong_field_count_is_refused() {
    for text in ["/X-A", "/", "|only-one"] {
        let e = refused(Kind::Header, text);
        assert_eq!(e.field, "rule", "{text}");
        assert!(e.message.contains("2 or 3 fields"), "{e}");
    }
    let e = refused(Kind::Remote, "|^http://a/");
    assert!(e.message.contains("URL-REGEX|REPLACEMENT"), "{e}");
}

#[test]
fn a_bad_filter_is_the_filter_parsers_error_at_the_rules_column() {
    let e = refused(Kind::Header, "/~d [/X/1");
    assert_eq!(e.field, "filter");
    let line = e.to_string();
    assert!(
        line.starts_with("--modify-header \"/~d [/X/1\": filter: expected "),
        "{line}"
    );
    assert!(line.contains("regex"), "{line}");
    assert_eq!(e.column, Some(5), "{line}");
    assert!(!line.contains('\n'));

    let e = refused(Kind::Body, "|~nope|a|b");
    assert_eq!((e.field, e.column), ("filter", Some(2)), "{e}");
    let e = refused(Kind::Block, "~q & (");
    assert_eq!(e.field, "filter", "{e}");
    assert!(
        e.to_string()
            .starts_with("--block \"~q & (\": filter: expected"),
        "{e}"
    );
    let e = refused(Kind::Block, "  ");
    assert!(e.message.contains("~all"), "{e}");
}

#[test]
fn a_bad_regex_is_refused_with_its_column() {
    let e = refused(Kind::Body, "/~s/a(b/c");
    assert_eq!((e.field, e.column), ("regex", Some(5)), "{e}");
    assert!(e.message.starts_with("expected a valid regex ("), "{e}");
    let e = refused(Kind::Remote, "|[z-a]|http://x/");
    assert_eq!((e.field, e.column), ("regex", Some(2)), "{e}");
    let e = refused(Kind::Local, "|~q|(|.");
    assert_eq!(e.field, "regex", "{e}");
    let e = refused(Kind::Body, "/~s//x");
    assert!(e.message.contains("found nothing"), "{e}");
}

#[test]
fn bad_header_names_and_values_are_refused() {
    let e = refused(Kind::Header, "/~q/X A/1");
    assert_eq!((e.field, e.column), ("name", Some(5)), "{e}");
    let e = refused(Kind::Header, "/Bad:Name/1");
    assert_eq!(e.field, "name", "{e}");
    let e = refused(Kind::Header, "//1");
    assert_eq!(e.field, "name", "{e}");
    let e = refused(Kind::Header, "/X-A/a\nb");
    assert_eq!((e.field, e.column), ("value", Some(6)), "{e}");
    assert!(!e.to_string().contains('\n'), "one line even so: {e}");
}

#[test]
fn map_rules_need_their_last_field() {
    let e = refused(Kind::Remote, "|^http://a/|");
    assert_eq!(e.field, "replacement", "{e}");
    let e = refused(Kind::Local, "|^http://a/|");
    assert_eq!(e.field, "path", "{e}");
    let e = refused(Kind::Local, "|^http://a/|/no/such/dir/for/interpose");
    assert!(
        e.message
            .starts_with("expected an existing file or directory"),
        "{e}"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = refused(Kind::Header, "§é§X A§1");
    assert_eq!((e.field, e.column), ("name", Some(4)), "{e}");
}

#[test]
fn the_body_replacement_may_be_read_from_a_file() {
    let dir = TempDir::new("body-file");
    let file = dir.path.join("repl.txt");
    std::fs::write(&file, b"from $1 file").unwrap();
    let text = format!("/~s/(a)/@{}", file.display());
    rules(Kind::Body, &[&text]);
    let e = refused(Kind::Body, "/~s/a/@/no/such/file");
    assert_eq!(e.field, "replacement", "{e}");
    let e = refused(Kind::Body, &format!("/~s/a/@{}", dir.path.display()));
    assert!(e.message.contains("regular file"), "{e}");
    let mut args = RuleArgs {
        modify_body: vec![text],
        modify_max_body: 4,
        ..RuleArgs::default()
    };
    let e = Rules::parse(&args).unwrap_err();
    assert!(e.message.contains("larger than --modify-max-body"), "{e}");
    args.modify_max_body = 100;
    assert!(Rules::parse(&args).is_ok());
}

/// A directory under the system temp dir, removed when dropped.
pub(super) struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "interpose-rules-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir {
            path: path.canonicalize().unwrap(),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
