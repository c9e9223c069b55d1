//! A deterministic stand-in for the cargo-fuzz target (`fuzz/fuzz_targets/filter.rs`),
//! run with the ordinary tests: 20,000 generated and mutated expressions must each parse
//! or be refused with a column inside the text, never panic, and evaluate safely.

use interpose::flow::filter::parse;
use interpose::flow::record::{CapturedBody, Flow, Request, Response};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const TOKENS: &[&str] = &[
    "~d",
    "~u",
    "~m",
    "~c",
    "~h",
    "~hq",
    "~hs",
    "~t",
    "~tq",
    "~ts",
    "~b",
    "~bq",
    "~bs",
    "~q",
    "~s",
    "~e",
    "~src",
    "~dst",
    "~all",
    "~websocket",
    "~zz",
    "~",
    "!",
    "&",
    "|",
    "(",
    ")",
    " ",
    "\"",
    "'",
    "\\",
    "200",
    "99999",
    "example",
    "a|b",
    "[a-",
    "x{3}",
    ".*",
    "é",
    "\t",
    "\"q s\"",
    "'it\\'s'",
    "(?i)",
    "\\d+",
    "{",
    "}",
];

const SEEDS: &[&str] = &[
    "~d example.org",
    "~u /api & ~m POST",
    "!(~c 200 | ~c 304)",
    "~h \"^x-trace: \\d+$\"",
    "~bq 'password' ~s",
    "((~src 10\\.0) & !~dst :443$)",
    "~c 201|~c 202",
    "login ~hs set-cookie | ~e",
];

fn generated(rng: &mut Rng) -> String {
    let n = 1 + rng.below(12);
    (0..n)
        .map(|_| rng.pick(TOKENS))
        .collect::<Vec<_>>()
        .join(if rng.below(2) == 0 { " " } else { "" })
}

fn mutated(rng: &mut Rng) -> String {
    let mut chars: Vec<char> = rng.pick(SEEDS).chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 if at < chars.len() => {
                let token: Vec<char> = rng.pick(TOKENS).chars().collect();
                chars.splice(at..at + 1, token);
            }
            _ => {
                let token: Vec<char> = rng.pick(TOKENS).chars().collect();
                chars.splice(at..at, token);
            }
        }
    }
    chars.into_iter().collect()
}

fn sample_flow() -> Flow {
    let request = Request {
        method: "POST".into(),
        url: "https://example.org/api?q=1".into(),
        http_version: "HTTP/1.1".into(),
        headers: vec![("x-trace".into(), "42".into())],
        body: CapturedBody::capped(b"password=hunter2", 1024),
    };
    let mut flow = Flow::new(1, 1, "10.0.0.1:4000".parse().unwrap(), request);
    flow.response = Some(Response {
        status: 200,
        reason: "OK".into(),
        http_version: "HTTP/1.1".into(),
        headers: vec![("set-cookie".into(), "a=1".into())],
        body: CapturedBody::capped(&[0xff, 0, 1], 1024),
    });
    flow
}

#[test]
fn twenty_thousand_expressions_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let flow = sample_flow();
    let (mut parsed, mut refused) = (0, 0);
    for i in 0..20_000 {
        let text = if i % 2 == 0 {
            generated(&mut rng)
        } else {
            mutated(&mut rng)
        };
        match parse(&text) {
            Ok(filter) => {
                parsed += 1;
                let _ = filter.matches(&flow);
            }
            Err(e) => {
                refused += 1;
                let columns = text.chars().count() + 1;
                assert!((1..=columns).contains(&e.position), "{e} for {text:?}");
                assert!(!e.expected.is_empty(), "{text:?}");
            }
        }
    }
    // Both paths were exercised in earnest.
    assert!(
        parsed > 1000 && refused > 1000,
        "parsed {parsed}, refused {refused}"
    );
}
