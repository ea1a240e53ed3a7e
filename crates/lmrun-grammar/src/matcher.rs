//! The incremental recognizer: a pushdown automaton over Unicode code points.
//!
//! This module exists to answer "may the output go on with these bytes?" one chunk at a time,
//! the way llama.cpp's grammar sampler does: the state is a set of stacks of grammar positions
//! (each stack one way the text so far can be parsed), every stack's top is a character class
//! waiting for the next code point, and an empty stack means the root rule has ended. Bytes
//! arrive in any chunking; a code point split across calls is kept as a partial sequence.
//! Left-recursive grammars are rejected when compiled, so expanding a state always ends.

use crate::grammar::{Elem, Grammar};
use std::sync::Arc;

/// Most stacks one state may hold; an ambiguous grammar that needs more is an error.
pub const MAX_STACKS: usize = 1 << 16;

/// Why [`Matcher::accept_bytes`] refused input. The matcher's state is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The grammar does not allow the byte at `offset` (of the chunk given) here.
    #[error("the grammar does not allow byte {byte:#04x} at offset {offset} of the input")]
    Rejected {
        /// Offset of the refused byte in the chunk.
        offset: usize,
        /// The refused byte.
        byte: u8,
    },
    /// The bytes are not valid UTF-8 (the grammar works on code points).
    #[error("invalid UTF-8 at offset {offset} of the input")]
    InvalidUtf8 {
        /// Offset of the bad byte in the chunk.
        offset: usize,
    },
    /// The grammar is so ambiguous that one state would need more than [`MAX_STACKS`] stacks.
    #[error("the grammar is too ambiguous here (more than {MAX_STACKS} parse stacks)")]
    TooAmbiguous,
}

/// A code point in progress: the bits so far, bytes still to come, and its total length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Partial {
    pub value: u32,
    pub remaining: u8,
    pub len: u8,
}

/// The result of feeding one byte to a UTF-8 decoder.
pub(crate) enum Utf8Step {
    /// More bytes are needed.
    Partial(Partial),
    /// A code point is complete.
    Complete(u32),
    /// Not valid UTF-8.
    Invalid,
}

impl Partial {
    /// Feed one byte.
    #[inline]
    pub fn step(self, b: u8) -> Utf8Step {
        if self.remaining == 0 {
            let (value, len) = match b {
                0x00..=0x7F => return Utf8Step::Complete(u32::from(b)),
                0xC2..=0xDF => (u32::from(b & 0x1F), 2),
                0xE0..=0xEF => (u32::from(b & 0x0F), 3),
                0xF0..=0xF4 => (u32::from(b & 0x07), 4),
                _ => return Utf8Step::Invalid,
            };
            return Utf8Step::Partial(Partial {
                value,
                remaining: len - 1,
                len,
            });
        }
        if b & 0xC0 != 0x80 {
            return Utf8Step::Invalid;
        }
        let value = (self.value << 6) | u32::from(b & 0x3F);
        if self.remaining > 1 {
            return Utf8Step::Partial(Partial {
                value,
                remaining: self.remaining - 1,
                len: self.len,
            });
        }
        let ok = match self.len {
            2 => true,
            3 => value >= 0x800 && !(0xD800..=0xDFFF).contains(&value),
            _ => (0x10000..=0x10FFFF).contains(&value),
        };
        if ok {
            Utf8Step::Complete(value)
        } else {
            Utf8Step::Invalid
        }
    }

    /// The code points this partial sequence can still become (inclusive): the bits read so
    /// far, clamped to what a sequence of its length may encode (no overlong forms: a 4-byte
    /// lead like 0xF0 can only become U+10000 and up, never an ASCII letter).
    pub fn completions(self) -> (u32, u32) {
        let shift = 6 * u32::from(self.remaining);
        let lo = self.value << shift;
        let hi = lo | ((1u32 << shift) - 1);
        let (min, max) = match self.len {
            2 => (0x80, 0x7FF),
            3 => (0x800, 0xFFFF),
            _ => (0x1_0000, 0x10_FFFF),
        };
        (lo.max(min), hi.min(max))
    }
}

/// Expand `stack` until every resulting stack's top is a character class (or it is empty,
/// meaning the root has ended); push the results to `out`.
pub(crate) fn expand(
    g: &Grammar,
    stack: Vec<u32>,
    out: &mut Vec<Vec<u32>>,
) -> Result<(), MatchError> {
    let mut work = vec![stack];
    let mut steps = 0usize;
    while let Some(mut s) = work.pop() {
        loop {
            steps += 1;
            if steps > MAX_STACKS * 16 || out.len() > MAX_STACKS {
                return Err(MatchError::TooAmbiguous);
            }
            let Some(&top) = s.last() else {
                out.push(s);
                break;
            };
            match g.elem(top) {
                Elem::Char(_) => {
                    out.push(s);
                    break;
                }
                Elem::End => {
                    s.pop();
                }
                Elem::Ref(r) => {
                    s.pop();
                    if g.elem(top + 1) != Elem::End {
                        s.push(top + 1);
                    }
                    for &alt in g.rules[r as usize].alts.iter().rev() {
                        let mut t = s.clone();
                        t.push(alt);
                        work.push(t);
                    }
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The stacks a grammar starts in.
pub(crate) fn initial_stacks(g: &Grammar) -> Result<Vec<Vec<u32>>, MatchError> {
    let mut out = Vec::new();
    for &alt in &g.rules[g.root as usize].alts {
        expand(g, vec![alt], &mut out)?;
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Advance every stack that accepts code point `c`.
pub(crate) fn step_stacks(
    g: &Grammar,
    stacks: &[Vec<u32>],
    c: u32,
) -> Result<Vec<Vec<u32>>, MatchError> {
    let mut out = Vec::new();
    for s in stacks {
        let Some(&top) = s.last() else { continue };
        if let Elem::Char(cls) = g.elem(top) {
            if g.classes[cls as usize].contains(c) {
                let mut t = s.clone();
                if let Some(last) = t.last_mut() {
                    *last = top + 1;
                }
                expand(g, t, &mut out)?;
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Whether some stack could take a code point in `lo..=hi`.
pub(crate) fn any_accepts_range(g: &Grammar, stacks: &[Vec<u32>], lo: u32, hi: u32) -> bool {
    stacks.iter().any(|s| match s.last().map(|&t| g.elem(t)) {
        Some(Elem::Char(cls)) => g.classes[cls as usize].intersects(lo, hi),
        _ => false,
    })
}

/// An incremental recognizer for one [`Grammar`]: feed it bytes, ask whether the text so far
/// is a complete sentence ([`Matcher::is_accepting`]) or can go on at all.
///
/// Cloning copies the parse stacks (a few short vectors for typical grammars), so a clone is
/// the snapshot to keep before trying input.
#[derive(Debug, Clone)]
pub struct Matcher {
    grammar: Arc<Grammar>,
    stacks: Vec<Vec<u32>>,
    partial: Partial,
}

impl Matcher {
    /// A matcher at the start of `grammar`'s root rule.
    pub fn new(grammar: Arc<Grammar>) -> Result<Matcher, MatchError> {
        let stacks = initial_stacks(&grammar)?;
        Ok(Matcher {
            grammar,
            stacks,
            partial: Partial::default(),
        })
    }

    /// The grammar this matcher runs.
    pub fn grammar(&self) -> &Arc<Grammar> {
        &self.grammar
    }

    /// Consume `bytes`. UTF-8 may be split anywhere between calls; an incomplete code point at
    /// the end is kept (and accepted only if some allowed code point starts with it).
    ///
    /// On error nothing is consumed: the matcher stays as it was before the call.
    pub fn accept_bytes(&mut self, bytes: &[u8]) -> Result<(), MatchError> {
        let mut stacks: Option<Vec<Vec<u32>>> = None;
        let mut partial = self.partial;
        for (offset, &b) in bytes.iter().enumerate() {
            match partial.step(b) {
                Utf8Step::Invalid => return Err(MatchError::InvalidUtf8 { offset }),
                Utf8Step::Partial(p) => {
                    let (lo, hi) = p.completions();
                    let cur = stacks.as_deref().unwrap_or(&self.stacks);
                    if !any_accepts_range(&self.grammar, cur, lo, hi) {
                        return Err(MatchError::Rejected { offset, byte: b });
                    }
                    partial = p;
                }
                Utf8Step::Complete(c) => {
                    let cur = stacks.as_deref().unwrap_or(&self.stacks);
                    let next = step_stacks(&self.grammar, cur, c)?;
                    if next.is_empty() {
                        return Err(MatchError::Rejected { offset, byte: b });
                    }
                    stacks = Some(next);
                    partial = Partial::default();
                }
            }
        }
        if let Some(s) = stacks {
            self.stacks = s;
        }
        self.partial = partial;
        Ok(())
    }

    /// Whether the text so far is a complete match of the root rule (generation may end here).
    pub fn is_accepting(&self) -> bool {
        self.partial.remaining == 0 && self.stacks.iter().any(Vec::is_empty)
    }

    /// Whether no further byte can be accepted (the root has ended on every parse, or the
    /// grammar allowed nothing at all). A dead matcher may still be accepting.
    pub fn is_dead(&self) -> bool {
        !self.stacks.iter().any(|s| !s.is_empty())
    }

    /// Whether a code point is in progress (some of its bytes seen, not all).
    pub fn has_partial_char(&self) -> bool {
        self.partial.remaining > 0
    }

    pub(crate) fn stacks(&self) -> &[Vec<u32>] {
        &self.stacks
    }

    pub(crate) fn partial(&self) -> Partial {
        self.partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_lead_byte_only_completes_to_its_own_range() {
        let p = |b: u8| match Partial::default().step(b) {
            Utf8Step::Partial(p) => p.completions(),
            _ => panic!("not a lead byte"),
        };
        // 0xF0 leads U+10000..U+3FFFF, never ASCII; 0xE0 U+0800..U+0FFF; 0xC2 U+0080..U+00BF.
        assert_eq!(p(0xF0), (0x1_0000, 0x3_FFFF));
        assert_eq!(p(0xE0), (0x800, 0xFFF));
        assert_eq!(p(0xC2), (0x80, 0xBF));
        assert_eq!(p(0xF4), (0x10_0000, 0x10_FFFF));
    }
}
