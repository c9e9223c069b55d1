//! `--map-local`: files, directories, index.html, content types, and no way out of the
//! directory.

use super::parse::TempDir;
use super::*;
use std::path::Path;

/// `root/site` with a few files, and a secret next to it (outside the mapped directory).
fn site() -> TempDir {
    let dir = TempDir::new("site");
    let site = dir.path.join("site");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(site.join("css/main.css"), "body{}").unwrap();
    std::fs::write(site.join("docs/index.html"), "docs").unwrap();
    std::fs::write(site.join("a b.JSON"), "{}").unwrap();
    std::fs::write(site.join("blob.bin"), [0u8; 4]).unwrap();
    std::fs::write(dir.path.join("secret.txt"), "secret").unwrap();
    dir
}

fn file(path: &Path, content_type: &'static str) -> Option<LocalAnswer> {
    Some(LocalAnswer::File {
        path: path.to_path_buf(),
        content_type,
    })
}

fn dir_rule(dir: &TempDir) -> Rules {
    let text = format!(
        "|^https://example\\.org/static/|{}",
        dir.path.join("site").display()
    );
    rules(Kind::Local, &[&text])
}

#[test]
fn a_file_path_answers_every_matching_request() {
    let dir = site();
    let css = dir.path.join("site/css/main.css");
    let r = rules(Kind::Local, &[&format!("|~q|\\.css$|{}", css.display())]);
    let answer = r.map_local(&request("https://example.org/any/thing.css"));
    assert_eq!(answer, file(&css, "text/css; charset=utf-8"));
    assert_eq!(r.map_local(&request("https://example.org/x.js")), None);
    assert_eq!(
        r.map_local(&response("https://example.org/x.css")),
        None,
        "~q"
    );
}

#[test]
fn a_directory_maps_the_rest_of_the_path() {
    let dir = site();
    let site = dir.path.join("site");
    let r = dir_rule(&dir);
    let at = |url: &str| r.map_local(&request(url));
    assert_eq!(
        at("https://example.org/static/css/main.css?v=3#top"),
        file(&site.join("css/main.css"), "text/css; charset=utf-8")
    );
    assert_eq!(
        at("https://example.org/static/"),
        file(&site.join("index.html"), "text/html; charset=utf-8")
    );
    assert_eq!(
        at("https://example.org/static/docs/"),
        file(&site.join("docs/index.html"), "text/html; charset=utf-8")
    );
    assert_eq!(
        at("https://example.org/static/a%20b.JSON"),
        file(&site.join("a b.JSON"), "application/json")
    );
    assert_eq!(
        at("https://example.org/static/blob.bin"),
        file(&site.join("blob.bin"), "application/octet-stream")
    );
    assert_eq!(
        at("https://example.org/static/missing.js"),
        Some(LocalAnswer::NotFound)
    );
    assert_eq!(at("https://example.org/elsewhere/index.html"), None);
}

#[test]
fn the_first_group_names_the_part_when_there_is_one() {
    let dir = site();
    let text = format!(
        "|^https://cdn\\.test/v\\d+/(.*)$|{}",
        dir.path.join("site").display()
    );
    let r = rules(Kind::Local, &[&text]);
    assert_eq!(
        r.map_local(&request("https://cdn.test/v42/css/main.css?x=1")),
        file(
            &dir.path.join("site/css/main.css"),
            "text/css; charset=utf-8"
        )
    );
}

#[test]
fn traversal_never_leaves_the_directory() {
    let dir = site();
    let r = dir_rule(&dir);
    for url in [
        "https://example.org/static/../secret.txt",
        "https://example.org/static/css/../../secret.txt",
        "https://example.org/static/%2e%2e/secret.txt",
        "https://example.org/static/%2E%2E%2fsecret.txt",
        "https://example.org/static/..%2Fsecret.txt",
        "https://example.org/static/./index.html",
        "https://example.org/static//etc/passwd",
        "https://example.org/static/%2Fetc%2Fpasswd",
        "https://example.org/static/a%00b",
        "https://example.org/static/%ff%fe",
    ] {
        match r.map_local(&request(url)) {
            Some(LocalAnswer::NotFound) => {}
            other => panic!("{url} gave {other:?}"),
        }
    }
}

#[test]
fn an_absolute_path_part_stays_inside() {
    // "//etc/passwd" trims to "etc/passwd": looked up inside the directory, not at /etc.
    assert_eq!(
        crate::rules::local::safe_relative("etc/passwd").as_deref(),
        Some(Path::new("etc/passwd"))
    );
    assert_eq!(crate::rules::local::safe_relative("%2e%2e"), None);
    assert_eq!(crate::rules::local::safe_relative("a/./b"), None);
    assert_eq!(
        crate::rules::local::safe_relative("a//b").as_deref(),
        Some(Path::new("a/b"))
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_directory_is_not_followed() {
    let dir = site();
    let site = dir.path.join("site");
    std::os::unix::fs::symlink(dir.path.join("secret.txt"), site.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&dir.path, site.join("up")).unwrap();
    std::os::unix::fs::symlink(site.join("css/main.css"), site.join("alias.css")).unwrap();
    let r = dir_rule(&dir);
    for url in [
        "https://example.org/static/leak.txt",
        "https://example.org/static/up/secret.txt",
    ] {
        assert_eq!(
            r.map_local(&request(url)),
            Some(LocalAnswer::NotFound),
            "{url}"
        );
    }
    assert_eq!(
        r.map_local(&request("https://example.org/static/alias.css")),
        file(&site.join("css/main.css"), "text/css; charset=utf-8"),
        "a link that stays inside is fine"
    );
}

#[test]
fn a_later_rule_may_have_the_file_an_earlier_one_lacks() {
    let dir = site();
    let empty = TempDir::new("empty");
    let r = rules(
        Kind::Local,
        &[
            &format!("|^https://example\\.org/|{}", empty.path.display()),
            &format!(
                "|^https://example\\.org/|{}",
                dir.path.join("site").display()
            ),
        ],
    );
    assert_eq!(
        r.map_local(&request("https://example.org/css/main.css")),
        file(
            &dir.path.join("site/css/main.css"),
            "text/css; charset=utf-8"
        )
    );
}
