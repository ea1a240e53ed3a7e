//! GBNF text → syntax tree.
//!
//! This module exists so that the grammar text (llama.cpp's GBNF: `name ::= alternatives`,
//! literals, character classes, groups, repetitions, comments) is read in one place with
//! precise errors: every error carries the line and column where reading stopped and what was
//! expected there. It knows nothing about matching; [`crate::grammar`] compiles the tree.
//!
//! Whitespace follows llama.cpp: spaces, tabs and `#` comments separate items anywhere; a
//! newline ends a rule unless it follows `|` or `::=`, or appears inside parentheses.

use std::fmt;

/// Deepest nesting of parentheses a grammar may use (deeper is an error, not a stack overflow).
pub const MAX_NESTING: usize = 128;
/// Largest count a `{m,n}` repetition may name.
pub const MAX_REPETITION: u32 = 2000;

/// Where in the grammar text something is: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in Unicode characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A grammar that could not be read or compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("grammar error at {location}: {message}")]
pub struct GrammarError {
    /// Where the problem was found.
    pub location: Location,
    /// What was wrong, worded as "expected …, found …" where that applies.
    pub message: String,
}

/// One item of a rule body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// Alternatives (`a | b`); at least one.
    Alt(Vec<Expr>),
    /// A sequence (possibly empty).
    Seq(Vec<Expr>),
    /// A string literal as code points.
    Lit(Vec<u32>),
    /// A character class: inclusive ranges, negated or not.
    Class {
        ranges: Vec<(u32, u32)>,
        negated: bool,
    },
    /// `.`: any code point.
    Any,
    /// A reference to a rule by name, with where it was written.
    Ref(String, Location),
    /// A repetition: `min` to `max` (None = unbounded) copies.
    Repeat {
        expr: Box<Expr>,
        min: u32,
        max: Option<u32>,
    },
}

/// A parsed rule definition.
#[derive(Debug, Clone)]
pub(crate) struct RuleDef {
    pub name: String,
    pub location: Location,
    pub body: Expr,
}

/// Compute the line/column of byte offset `pos` in `src`.
pub(crate) fn location_of(src: &str, pos: usize) -> Location {
    let pos = pos.min(src.len());
    let before = src.get(..pos).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Location { line, column }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl<'a> Parser<'a> {
    fn err<T>(&self, pos: usize, message: impl Into<String>) -> Result<T, GrammarError> {
        Err(GrammarError {
            location: location_of(self.src, pos),
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Describe what is at the cursor, for "found …" in errors.
    fn found(&self) -> String {
        match self.src.get(self.pos..).and_then(|s| s.chars().next()) {
            None => "end of input".to_string(),
            Some('\n') => "end of line".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn space(&mut self, newline_ok: bool) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newline_ok => self.pos += 1,
                b'#' => {
                    while let Some(b) = self.peek() {
                        if b == b'\r' || b == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<String, GrammarError> {
        let start = self.pos;
        while self.peek().is_some_and(is_word) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.err(
                start,
                format!("expected a rule name, found {}", self.found()),
            );
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn int(&mut self) -> Result<u32, GrammarError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.err(
                start,
                format!("expected an integer, found {}", self.found()),
            );
        }
        match self.src[start..self.pos].parse::<u64>() {
            Ok(v) if v <= u64::from(MAX_REPETITION) => Ok(v as u32),
            _ => self.err(
                start,
                format!(
                    "repetition count {} exceeds the limit of {MAX_REPETITION}",
                    &self.src[start..self.pos]
                ),
            ),
        }
    }

    fn hex(&mut self, n: usize) -> Result<u32, GrammarError> {
        let start = self.pos;
        let digits = self
            .src
            .get(start..start + n)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(d) = digits else {
            return self.err(start, format!("expected {n} hex digits after the escape"));
        };
        self.pos += n;
        let v = u32::from_str_radix(d, 16).unwrap_or(u32::MAX);
        if v > 0x10FFFF || (0xD800..=0xDFFF).contains(&v) {
            return self.err(start, format!("escape \\{d} is not a Unicode scalar value"));
        }
        Ok(v)
    }

    /// One character of a literal or class, with escapes.
    fn char(&mut self) -> Result<u32, GrammarError> {
        let start = self.pos;
        let Some(c) = self.src.get(self.pos..).and_then(|s| s.chars().next()) else {
            return self.err(self.pos, "expected a character, found end of input");
        };
        self.pos += c.len_utf8();
        if c != '\\' {
            return Ok(c as u32);
        }
        let Some(e) = self.peek() else {
            return self.err(
                self.pos,
                "expected an escape character after '\\', found end of input",
            );
        };
        self.pos += 1;
        Ok(match e {
            b'x' => self.hex(2)?,
            b'u' => self.hex(4)?,
            b'U' => self.hex(8)?,
            b't' => 9,
            b'r' => 13,
            b'n' => 10,
            b'\\' | b'"' | b'[' | b']' | b'-' => u32::from(e),
            _ => {
                self.pos = start;
                return self.err(
                    start,
                    format!(
                        "unknown escape; expected one of \\x \\u \\U \\t \\r \\n \\\\ \\\" \\[ \\] \\-, found {}",
                        self.src[start..].chars().take(2).collect::<String>()
                    ),
                );
            }
        })
    }

    fn alternates(&mut self, nested: bool) -> Result<Expr, GrammarError> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Expr::Seq(Vec::new()))
        } else {
            Expr::Alt(alts)
        })
    }

    fn sequence(&mut self, nested: bool) -> Result<Expr, GrammarError> {
        let mut items: Vec<Expr> = Vec::new();
        loop {
            let start = self.pos;
            let Some(b) = self.peek() else { break };
            match b {
                b'"' => {
                    self.pos += 1;
                    let mut chars = Vec::new();
                    loop {
                        match self.peek() {
                            None => return self.err(
                                start,
                                "unterminated string literal: expected '\"' before end of input",
                            ),
                            Some(b'"') => break,
                            Some(b'\n') => {
                                return self.err(
                                    self.pos,
                                    "unterminated string literal: expected '\"' before end of line",
                                )
                            }
                            Some(_) => chars.push(self.char()?),
                        }
                    }
                    self.pos += 1;
                    items.push(Expr::Lit(chars));
                }
                b'[' => {
                    self.pos += 1;
                    let negated = self.peek() == Some(b'^');
                    if negated {
                        self.pos += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        match self.peek() {
                            None => return self.err(
                                start,
                                "unterminated character class: expected ']' before end of input",
                            ),
                            Some(b']') => break,
                            Some(_) => {
                                let lo = self.char()?;
                                let mut hi = lo;
                                if self.peek() == Some(b'-')
                                    && self.bytes.get(self.pos + 1) != Some(&b']')
                                {
                                    self.pos += 1;
                                    if self.peek().is_none() {
                                        return self.err(
                                            self.pos,
                                            "expected the end of a range, found end of input",
                                        );
                                    }
                                    let at = self.pos;
                                    hi = self.char()?;
                                    if hi < lo {
                                        return self.err(
                                            at,
                                            "character range is reversed (end before start)",
                                        );
                                    }
                                }
                                ranges.push((lo, hi));
                            }
                        }
                    }
                    self.pos += 1;
                    items.push(Expr::Class { ranges, negated });
                }
                b'<' | b'!' => {
                    return self.err(
                        start,
                        "token references (<[id]>, <text>, !<...>) are not supported by lmrun-grammar; \
                         expected a literal, class, rule name or group",
                    );
                }
                b'(' => {
                    self.depth += 1;
                    if self.depth > MAX_NESTING {
                        return self.err(
                            start,
                            format!("parentheses nested deeper than {MAX_NESTING}"),
                        );
                    }
                    self.pos += 1;
                    self.space(true);
                    let inner = self.alternates(true)?;
                    if self.peek() != Some(b')') {
                        return self.err(self.pos, format!("expected ')', found {}", self.found()));
                    }
                    self.pos += 1;
                    self.depth -= 1;
                    items.push(inner);
                }
                b'.' => {
                    self.pos += 1;
                    items.push(Expr::Any);
                }
                b'*' | b'+' | b'?' | b'{' => {
                    let Some(last) = items.pop() else {
                        return self.err(
                            start,
                            format!("expected an item before '{}'", char::from(b)),
                        );
                    };
                    let mut layers = 0;
                    let mut inner = &last;
                    while let Expr::Repeat { expr, .. } = inner {
                        layers += 1;
                        inner = expr;
                    }
                    if layers >= MAX_NESTING {
                        return self.err(
                            start,
                            format!("repetition operators nested deeper than {MAX_NESTING}"),
                        );
                    }
                    self.pos += 1;
                    let (min, max) = match b {
                        b'*' => (0, None),
                        b'+' => (1, None),
                        b'?' => (0, Some(1)),
                        _ => {
                            self.space(nested);
                            let min = self.int()?;
                            self.space(nested);
                            let max = match self.peek() {
                                Some(b'}') => Some(min),
                                Some(b',') => {
                                    self.pos += 1;
                                    self.space(nested);
                                    let max = if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                                        let at = self.pos;
                                        let m = self.int()?;
                                        if m < min {
                                            return self.err(at, format!("repetition maximum {m} is below its minimum {min}"));
                                        }
                                        self.space(nested);
                                        Some(m)
                                    } else {
                                        None
                                    };
                                    if self.peek() != Some(b'}') {
                                        return self.err(
                                            self.pos,
                                            format!("expected '}}', found {}", self.found()),
                                        );
                                    }
                                    max
                                }
                                _ => {
                                    return self.err(
                                        self.pos,
                                        format!("expected ',' or '}}', found {}", self.found()),
                                    )
                                }
                            };
                            self.pos += 1;
                            (min, max)
                        }
                    };
                    items.push(Expr::Repeat {
                        expr: Box::new(last),
                        min,
                        max,
                    });
                }
                b if is_word(b) => {
                    let loc = location_of(self.src, self.pos);
                    let name = self.name()?;
                    items.push(Expr::Ref(name, loc));
                }
                _ => break,
            }
            self.space(nested);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::Seq(Vec::new()))
        } else {
            Expr::Seq(items)
        })
    }

    fn rule(&mut self) -> Result<RuleDef, GrammarError> {
        let location = location_of(self.src, self.pos);
        let name = self.name()?;
        self.space(false);
        if !self.src[self.pos..].starts_with("::=") {
            return self.err(
                self.pos,
                format!(
                    "expected '::=' after rule name '{name}', found {}",
                    self.found()
                ),
            );
        }
        self.pos += 3;
        self.space(true);
        let body = self.alternates(false)?;
        match self.peek() {
            None => {}
            Some(b'\n') => self.pos += 1,
            Some(b'\r') => {
                self.pos += 1;
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                }
            }
            Some(_) => {
                return self.err(
                    self.pos,
                    format!("expected a literal, class, rule name, group, operator, '|' or end of line, found {}", self.found()),
                )
            }
        }
        self.space(true);
        Ok(RuleDef {
            name,
            location,
            body,
        })
    }
}

/// Parse GBNF text into rule definitions (in order of appearance).
pub(crate) fn parse(src: &str) -> Result<Vec<RuleDef>, GrammarError> {
    let mut p = Parser {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.space(true);
    let mut rules = Vec::new();
    while p.pos < p.bytes.len() {
        rules.push(p.rule()?);
    }
    Ok(rules)
}
