//! Syntax tree → compiled grammar: flat rules of alternatives over code-point classes.
//!
//! This module exists to turn the parsed rules into the form the matchers run: every rule is a
//! list of alternatives, every alternative a run of elements (a code-point class or a reference
//! to a rule) ending in an end marker, all in one flat array so that a position in the grammar
//! is one `u32`. Groups and repetitions become synthesized rules the way llama.cpp rewrites
//! them (`S{m,n}` → m copies of `S`, then n−m nested optional rules). Compilation checks what
//! would otherwise hang or blow up at match time: undefined rules, a missing `root`, left
//! recursion (including through rules that can match nothing), and the grammar's size.

use crate::parse::{self, Expr, GrammarError, Location, RuleDef};
use rustc_hash::FxHashMap;

/// Most elements a compiled grammar may hold (repetitions multiply quickly).
pub const MAX_ELEMENTS: usize = 1 << 20;

/// One element of a compiled alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem {
    /// Match one code point in class `classes[i]`.
    Char(u32),
    /// Expand rule `i`.
    Ref(u32),
    /// End of the alternative.
    End,
}

/// A compiled rule: its name and where its alternatives start in `elems`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub name: String,
    /// The user-written rule this one was synthesized from (itself for written rules).
    pub origin: u32,
    pub location: Location,
    pub alts: Vec<u32>,
}

/// A set of code points: sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CharClass(pub Vec<(u32, u32)>);

impl CharClass {
    fn new(mut ranges: Vec<(u32, u32)>, negated: bool) -> CharClass {
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        if !negated {
            return CharClass(merged);
        }
        let mut out = Vec::with_capacity(merged.len() + 1);
        let mut next = 0u32;
        for (lo, hi) in merged {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        if next <= 0x10FFFF {
            out.push((next, 0x10FFFF));
        }
        CharClass(out)
    }

    /// Whether code point `c` is in the class.
    #[inline]
    pub fn contains(&self, c: u32) -> bool {
        let r = &self.0;
        if r.len() <= 4 {
            return r.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        }
        match r.binary_search_by(|&(lo, _)| lo.cmp(&c)) {
            Ok(_) => true,
            Err(0) => false,
            Err(i) => c <= r[i - 1].1,
        }
    }

    /// Whether the class has any code point in `lo..=hi`.
    pub fn intersects(&self, lo: u32, hi: u32) -> bool {
        self.0.iter().any(|&(a, b)| a <= hi && lo <= b)
    }
}

/// A compiled GBNF grammar, ready for [`crate::Matcher`] and [`crate::Constraint`].
///
/// Build one with [`Grammar::parse`]; share it behind an `Arc` (it is immutable).
#[derive(Debug, Clone)]
pub struct Grammar {
    pub(crate) elems: Vec<Elem>,
    pub(crate) classes: Vec<CharClass>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) root: u32,
}

struct Compiler {
    elems: Vec<Elem>,
    classes: Vec<CharClass>,
    class_ids: FxHashMap<CharClass, u32>,
    rules: Vec<Rule>,
    names: FxHashMap<String, u32>,
    /// Rule bodies waiting to be compiled (rule id, alternatives as expressions).
    counter: FxHashMap<u32, u32>,
}

impl Compiler {
    fn too_big(&self, location: Location) -> Result<(), GrammarError> {
        if self.elems.len() > MAX_ELEMENTS {
            return Err(GrammarError {
                location,
                message: format!(
                    "the grammar expands to more than {MAX_ELEMENTS} elements (repetition counts multiply); \
                     reduce the repetition counts"
                ),
            });
        }
        Ok(())
    }

    fn class(&mut self, c: CharClass) -> u32 {
        if let Some(&id) = self.class_ids.get(&c) {
            return id;
        }
        let id = self.classes.len() as u32;
        self.classes.push(c.clone());
        self.class_ids.insert(c, id);
        id
    }

    fn new_rule(&mut self, origin: u32) -> u32 {
        let n = self.counter.entry(origin).or_insert(0);
        *n += 1;
        let name = format!("{}-{}", self.rules[origin as usize].name, n);
        let id = self.rules.len() as u32;
        let location = self.rules[origin as usize].location;
        self.rules.push(Rule {
            name,
            origin,
            location,
            alts: Vec::new(),
        });
        id
    }

    /// Compile `alts` as the alternatives of rule `id`.
    fn define(&mut self, id: u32, alts: &[Expr], origin: u32) -> Result<(), GrammarError> {
        let mut starts = Vec::with_capacity(alts.len());
        for alt in alts {
            let seq = self.sequence(alt, origin)?;
            starts.push(self.elems.len() as u32);
            self.elems.extend_from_slice(&seq);
            self.elems.push(Elem::End);
            self.too_big(self.rules[origin as usize].location)?;
        }
        self.rules[id as usize].alts = starts;
        Ok(())
    }

    /// Compile an expression into a run of elements (sub-rules are defined on the way).
    fn sequence(&mut self, e: &Expr, origin: u32) -> Result<Vec<Elem>, GrammarError> {
        let mut out = Vec::new();
        self.append(e, origin, &mut out)?;
        Ok(out)
    }

    fn append(&mut self, e: &Expr, origin: u32, out: &mut Vec<Elem>) -> Result<(), GrammarError> {
        match e {
            Expr::Seq(items) => {
                for item in items {
                    self.append(item, origin, out)?;
                }
            }
            Expr::Lit(chars) => {
                for &c in chars {
                    let id = self.class(CharClass(vec![(c, c)]));
                    out.push(Elem::Char(id));
                }
            }
            Expr::Class { ranges, negated } => {
                let id = self.class(CharClass::new(ranges.clone(), *negated));
                out.push(Elem::Char(id));
            }
            Expr::Any => {
                let id = self.class(CharClass(vec![(0, 0x10FFFF)]));
                out.push(Elem::Char(id));
            }
            Expr::Ref(name, location) => match self.names.get(name) {
                Some(&id) => out.push(Elem::Ref(id)),
                None => {
                    return Err(GrammarError {
                        location: *location,
                        message: format!("undefined rule '{name}'"),
                    })
                }
            },
            Expr::Alt(alts) => {
                let id = self.new_rule(origin);
                self.define(id, alts, origin)?;
                out.push(Elem::Ref(id));
            }
            Expr::Repeat { expr, min, max } => {
                let body = self.sequence(expr, origin)?;
                let location = self.rules[origin as usize].location;
                let copies = (*min as usize).saturating_mul(body.len());
                if copies.saturating_add(self.elems.len()) > MAX_ELEMENTS {
                    return self.too_big_err(location);
                }
                for _ in 0..*min {
                    out.extend_from_slice(&body);
                }
                match max {
                    None => {
                        // R ::= body R |
                        let r = self.new_rule(origin);
                        let start = self.elems.len() as u32;
                        self.elems.extend_from_slice(&body);
                        self.elems.push(Elem::Ref(r));
                        self.elems.push(Elem::End);
                        let empty = self.elems.len() as u32;
                        self.elems.push(Elem::End);
                        self.rules[r as usize].alts = vec![start, empty];
                        out.push(Elem::Ref(r));
                    }
                    Some(max) => {
                        // R1 ::= body | ; Rk ::= body R(k-1) |
                        let optional = max - min;
                        let needed = (optional as usize).saturating_mul(body.len() + 3);
                        if needed.saturating_add(self.elems.len()) > MAX_ELEMENTS {
                            return self.too_big_err(location);
                        }
                        let mut prev: Option<u32> = None;
                        for _ in 0..optional {
                            let r = self.new_rule(origin);
                            let start = self.elems.len() as u32;
                            self.elems.extend_from_slice(&body);
                            if let Some(p) = prev {
                                self.elems.push(Elem::Ref(p));
                            }
                            self.elems.push(Elem::End);
                            let empty = self.elems.len() as u32;
                            self.elems.push(Elem::End);
                            self.rules[r as usize].alts = vec![start, empty];
                            prev = Some(r);
                        }
                        if let Some(p) = prev {
                            out.push(Elem::Ref(p));
                        }
                    }
                }
            }
        }
        if out.len().saturating_add(self.elems.len()) > MAX_ELEMENTS {
            return self.too_big_err(self.rules[origin as usize].location);
        }
        Ok(())
    }

    fn too_big_err<T>(&self, location: Location) -> Result<T, GrammarError> {
        Err(GrammarError {
            location,
            message: format!(
                "the grammar expands to more than {MAX_ELEMENTS} elements (repetition counts multiply); \
                 reduce the repetition counts"
            ),
        })
    }
}

fn top_alts(e: &Expr) -> Vec<Expr> {
    match e {
        Expr::Alt(alts) => alts.clone(),
        other => vec![other.clone()],
    }
}

impl Grammar {
    /// Parse and compile GBNF text. The start rule is `root`.
    ///
    /// Errors carry the line and column: syntax errors, undefined rules, a rule defined twice,
    /// no `root` rule, left recursion (llama.cpp rejects it too), nesting deeper than
    /// [`crate::parse::MAX_NESTING`], repetition counts over [`crate::parse::MAX_REPETITION`] and
    /// grammars that expand past [`MAX_ELEMENTS`] elements.
    pub fn parse(src: &str) -> Result<Grammar, GrammarError> {
        let defs = parse::parse(src)?;
        Self::compile(src, &defs)
    }

    fn compile(src: &str, defs: &[RuleDef]) -> Result<Grammar, GrammarError> {
        let mut c = Compiler {
            elems: Vec::new(),
            classes: Vec::new(),
            class_ids: FxHashMap::default(),
            rules: Vec::new(),
            names: FxHashMap::default(),
            counter: FxHashMap::default(),
        };
        for d in defs {
            if let Some(&prev) = c.names.get(&d.name) {
                return Err(GrammarError {
                    location: d.location,
                    message: format!(
                        "rule '{}' is defined twice (first at {})",
                        d.name, c.rules[prev as usize].location
                    ),
                });
            }
            let id = c.rules.len() as u32;
            c.names.insert(d.name.clone(), id);
            c.rules.push(Rule {
                name: d.name.clone(),
                origin: id,
                location: d.location,
                alts: Vec::new(),
            });
        }
        let Some(&root) = c.names.get("root") else {
            return Err(GrammarError {
                location: parse::location_of(src, src.len()),
                message: "expected a rule named 'root' (the start rule), found none".to_string(),
            });
        };
        for (i, d) in defs.iter().enumerate() {
            c.define(i as u32, &top_alts(&d.body), i as u32)?;
        }
        let g = Grammar {
            elems: c.elems,
            classes: c.classes,
            rules: c.rules,
            root,
        };
        g.check_left_recursion()?;
        Ok(g)
    }

    /// Which rules can match the empty string (fixed point).
    fn nullable(&self) -> Vec<bool> {
        let mut nullable = vec![false; self.rules.len()];
        let mut changed = true;
        while changed {
            changed = false;
            for (r, rule) in self.rules.iter().enumerate() {
                if nullable[r] {
                    continue;
                }
                let any = rule.alts.iter().any(|&start| {
                    self.elems[start as usize..]
                        .iter()
                        .take_while(|e| **e != Elem::End)
                        .all(|e| matches!(e, Elem::Ref(x) if nullable[*x as usize]))
                });
                if any {
                    nullable[r] = true;
                    changed = true;
                }
            }
        }
        nullable
    }

    /// Reject rules that can reach themselves without consuming a character.
    fn check_left_recursion(&self) -> Result<(), GrammarError> {
        let nullable = self.nullable();
        // Edges: rule → rules that can start it.
        let mut edges: Vec<Vec<u32>> = vec![Vec::new(); self.rules.len()];
        for (r, rule) in self.rules.iter().enumerate() {
            for &start in &rule.alts {
                for e in &self.elems[start as usize..] {
                    match *e {
                        Elem::Ref(x) => {
                            edges[r].push(x);
                            if !nullable[x as usize] {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
        // Iterative DFS with colours: 0 new, 1 on the path, 2 done.
        let mut colour = vec![0u8; self.rules.len()];
        for s in 0..self.rules.len() {
            if colour[s] != 0 {
                continue;
            }
            let mut stack: Vec<(u32, usize)> = vec![(s as u32, 0)];
            colour[s] = 1;
            while let Some(&mut (r, ref mut i)) = stack.last_mut() {
                if let Some(&next) = edges[r as usize].get(*i) {
                    *i += 1;
                    match colour[next as usize] {
                        0 => {
                            colour[next as usize] = 1;
                            stack.push((next, 0));
                        }
                        1 => {
                            let rule = &self.rules[next as usize];
                            let origin = &self.rules[rule.origin as usize];
                            return Err(GrammarError {
                                location: origin.location,
                                message: format!(
                                    "rule '{}' is left-recursive (it can reach itself without consuming \
                                     a character); rewrite it with repetition, e.g. `a ::= b (\"x\" b)*`",
                                    origin.name
                                ),
                            });
                        }
                        _ => {}
                    }
                } else {
                    colour[r as usize] = 2;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    /// Names of the rules written in the grammar text (synthesized rules excluded).
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(i, r)| r.origin as usize == *i)
            .map(|(_, r)| r.name.as_str())
    }

    #[inline]
    pub(crate) fn elem(&self, pos: u32) -> Elem {
        self.elems[pos as usize]
    }
}
