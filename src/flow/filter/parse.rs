//! The hand-written recursive-descent parser of filter expressions (grammar in the
//! parent module). Lexing is driven by the parser, since what follows `~u` is an argument
//! while the same characters elsewhere would be operators. Never panics; nesting is
//! bounded so no input can exhaust the stack.

use regex::bytes::RegexBuilder as BytesRegexBuilder;
use regex::RegexBuilder;

use super::{Filter, Side, Test};

/// How deeply parentheses and `!` may nest.
pub const MAX_DEPTH: usize = 64;

/// Compiled regexes are bounded, so a hostile expression cannot claim much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why an expression was refused: the 1-based column (in characters) and what was
/// expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter error at column {position}: expected {expected}")]
pub struct FilterError {
    pub position: usize,
    pub expected: String,
}

/// Parses a filter expression, e.g. `~d example.org & !(~c 200 | ~q)`.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let mut parser = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let filter = parser.sequence("")?;
    parser.skip_ws();
    match parser.peek() {
        None => Ok(filter),
        Some(')') => Err(parser.error("an expression before ')' (no '(' to close)")),
        Some(c) => Err(parser.error(&format!("the end of the expression, found '{c}'"))),
    }
}

/// What a `~NAME` filter takes after it.
enum Arg {
    None(Test),
    Regex(fn(regex::Regex) -> Test),
    Bytes(Side),
    Code,
}

/// The filters by name, and what each takes.
fn lookup(name: &str) -> Option<Arg> {
    Some(match name {
        "d" => Arg::Regex(Test::Domain),
        "u" => Arg::Regex(Test::Url),
        "m" => Arg::Regex(Test::Method),
        "h" => Arg::Regex(|r| Test::Header(Side::Either, r)),
        "hq" => Arg::Regex(|r| Test::Header(Side::Request, r)),
        "hs" => Arg::Regex(|r| Test::Header(Side::Response, r)),
        "t" => Arg::Regex(|r| Test::ContentType(Side::Either, r)),
        "tq" => Arg::Regex(|r| Test::ContentType(Side::Request, r)),
        "ts" => Arg::Regex(|r| Test::ContentType(Side::Response, r)),
        "src" => Arg::Regex(Test::Src),
        "dst" => Arg::Regex(Test::Dst),
        "b" => Arg::Bytes(Side::Either),
        "bq" => Arg::Bytes(Side::Request),
        "bs" => Arg::Bytes(Side::Response),
        "c" => Arg::Code,
        "q" => Arg::None(Test::NoResponse),
        "s" => Arg::None(Test::HasResponse),
        "e" => Arg::None(Test::Error),
        "websocket" => Arg::None(Test::WebSocket),
        "all" => Arg::None(Test::All),
        _ => return None,
    })
}

const KNOWN: &str =
    "~d ~u ~m ~c ~h ~hq ~hs ~t ~tq ~ts ~b ~bq ~bs ~src ~dst ~q ~s ~e ~websocket ~all";

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// The characters from `from` up to the cursor.
    fn text(&self, from: usize) -> String {
        let chars = self.chars.get(from..self.pos).unwrap_or_default();
        chars.iter().collect()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &str) -> FilterError {
        self.error_at(self.pos, expected)
    }

    fn error_at(&self, pos: usize, expected: &str) -> FilterError {
        FilterError {
            position: pos + 1,
            expected: expected.to_string(),
        }
    }

    /// `or { or }`: adjacent terms joined by the implicit `&`.
    fn sequence(&mut self, ctx: &str) -> Result<Filter, FilterError> {
        let mut parts = vec![self.or(ctx)?];
        loop {
            self.skip_ws();
            match self.peek() {
                None | Some(')') => break,
                Some(_) => parts.push(self.or("")?),
            }
        }
        Ok(joined(parts, Filter::And))
    }

    fn or(&mut self, ctx: &str) -> Result<Filter, FilterError> {
        let mut parts = vec![self.and(ctx)?];
        loop {
            self.skip_ws();
            if self.peek() != Some('|') {
                break;
            }
            self.pos += 1;
            parts.push(self.and(" after |")?);
        }
        Ok(joined(parts, Filter::Or))
    }

    fn and(&mut self, ctx: &str) -> Result<Filter, FilterError> {
        let mut parts = vec![self.not(ctx)?];
        loop {
            self.skip_ws();
            if self.peek() != Some('&') {
                break;
            }
            self.pos += 1;
            parts.push(self.not(" after &")?);
        }
        Ok(joined(parts, Filter::And))
    }

    fn not(&mut self, ctx: &str) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.peek() != Some('!') {
            return self.primary(ctx);
        }
        self.enter()?;
        self.pos += 1;
        let inner = self.not(" after !")?;
        self.depth -= 1;
        Ok(Filter::Not(Box::new(inner)))
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        if self.depth >= MAX_DEPTH {
            let what = format!("at most {MAX_DEPTH} nested parentheses or negations");
            return Err(self.error(&what));
        }
        self.depth += 1;
        Ok(())
    }

    fn primary(&mut self, ctx: &str) -> Result<Filter, FilterError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(self.error(&format!("a filter{ctx}"))),
            Some(c @ (')' | '&' | '|')) => Err(self.error(&format!("a filter{ctx}, found '{c}'"))),
            Some('(') => {
                self.enter()?;
                self.pos += 1;
                let inner = self.sequence(" after (")?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    let col = start + 1;
                    return Err(self.error(&format!("')' to close the '(' at column {col}")));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some('~') => self.test(),
            Some(_) => {
                let word = self.argument()?;
                Ok(Filter::Test(Test::Url(regex(&word, start, "a bare word")?)))
            }
        }
    }

    /// `~NAME [ARGUMENT]`.
    fn test(&mut self) -> Result<Filter, FilterError> {
        let start = self.pos;
        self.pos += 1;
        let name_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let name = self.text(name_start);
        if name.is_empty() {
            return Err(self.error("a filter name after ~"));
        }
        let Some(kind) = lookup(&name) else {
            return Err(self.error_at(
                start,
                &format!("a known filter, not ~{name} (known: {KNOWN})"),
            ));
        };
        let test = match kind {
            Arg::None(test) => test,
            Arg::Regex(make) => {
                let (arg, at) = self.required(&format!("a regex after ~{name}"))?;
                make(regex(&arg, at, &format!("~{name}"))?)
            }
            Arg::Bytes(side) => {
                let (arg, at) = self.required(&format!("a regex after ~{name}"))?;
                let re = BytesRegexBuilder::new(&arg)
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| regex_error(e, at, &format!("~{name}")))?;
                Test::Body(side, re)
            }
            Arg::Code => {
                let expected = "a status code (an integer) after ~c";
                self.skip_ws();
                let at = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let code = self.text(at).parse::<u16>();
                Test::Code(code.map_err(|_| self.error_at(at, expected))?)
            }
        };
        Ok(Filter::Test(test))
    }

    /// An argument that must be there; returns it with its start.
    fn required(&mut self, expected: &str) -> Result<(String, usize), FilterError> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            None | Some('(' | ')' | '~') => Err(self.error(expected)),
            Some(_) => Ok((self.argument()?, at)),
        }
    }

    /// A quoted string, or a word running up to whitespace or one of `()~'"` (as in
    /// mitmproxy, `&`, `|` and `!` inside a word belong to it: `~u a|b` is one regex).
    fn argument(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let Some(quote @ ('"' | '\'')) = self.peek() else {
            while self.peek().is_some_and(is_word_char) {
                self.pos += 1;
            }
            return Ok(self.text(start));
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    let col = start + 1;
                    return Err(
                        self.error(&format!("a closing {quote} for the string at column {col}"))
                    );
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ ('"' | '\'' | '\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => out.push('\\'),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '~' | '\'' | '"')
}

/// One part stands alone; several are combined.
fn joined(mut parts: Vec<Filter>, combine: fn(Vec<Filter>) -> Filter) -> Filter {
    match parts.pop() {
        Some(only) if parts.is_empty() => only,
        Some(last) => {
            parts.push(last);
            combine(parts)
        }
        None => combine(parts),
    }
}

fn regex(pattern: &str, at: usize, what: &str) -> Result<regex::Regex, FilterError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| regex_error(e, at, what))
}

/// The regex crate's error, cut to its one telling line.
fn regex_error(e: regex::Error, at: usize, what: &str) -> FilterError {
    let why = match &e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or("invalid syntax")
            .to_string(),
        regex::Error::CompiledTooBig(_) => "it compiles too big".to_string(),
        _ => e.to_string(),
    };
    FilterError {
        position: at + 1,
        expected: format!("a valid regex for {what} ({why})"),
    }
}
