//! Unit tests of the rules library, one file per rule kind, sharing these builders.

mod body;
mod header;
mod local;
mod parse;
mod remote;

use super::*;
use crate::flow::record::{CapturedBody, Request, Response};

/// Which flag a test rule goes to.
#[derive(Clone, Copy)]
enum Kind {
    Header,
    Body,
    Remote,
    Local,
    Block,
}

fn rules_of(kind: Kind, texts: &[&str]) -> Result<Rules, RuleError> {
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let mut args = RuleArgs::default();
    match kind {
        Kind::Header => args.modify_header = texts,
        Kind::Body => args.modify_body = texts,
        Kind::Remote => args.map_remote = texts,
        Kind::Local => args.map_local = texts,
        Kind::Block => args.block = texts,
    }
    Rules::parse(&args)
}

fn rules(kind: Kind, texts: &[&str]) -> Rules {
    match rules_of(kind, texts) {
        Ok(rules) => rules,
        Err(e) => panic!("{texts:?} should parse: {e}"),
    }
}

fn refused(kind: Kind, text: &str) -> RuleError {
    match rules_of(kind, &[text]) {
        Ok(_) => panic!("{text:?} should be refused"),
        Err(e) => e,
    }
}

/// A request-phase flow: no response yet.
fn request(url: &str) -> Flow {
    let request = Request {
        method: "GET".into(),
        url: url.into(),
        http_version: "HTTP/1.1".into(),
        headers: vec![("host".into(), "example.org".into())],
        body: CapturedBody::empty(),
    };
    Flow::new(1, 1, "127.0.0.1:4000".parse().unwrap(), request)
}

/// The same flow in its response phase.
fn response(url: &str) -> Flow {
    let mut flow = request(url);
    flow.response = Some(Response {
        status: 200,
        reason: "OK".into(),
        http_version: "HTTP/1.1".into(),
        headers: vec![("content-type".into(), "text/html".into())],
        body: CapturedBody::empty(),
    });
    flow
}
