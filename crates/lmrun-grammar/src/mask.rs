//! Token masks: which tokens may come next, computed by walking the vocabulary trie and the
//! grammar automaton together, with a cache keyed by automaton state.
//!
//! This module exists because checking 262,144 tokens one by one against the grammar costs tens
//! of milliseconds per step, more than a small model's whole decode step. Three things make it
//! cheap:
//! - **The trie walk** ([`Vocab`] is a preorder byte trie): one automaton step per trie node, and a
//!   refused prefix skips its whole subtree.
//! - **Interned states with byte tables**: parse stacks are hash-consed (a stack is one `u32`),
//!   a set of stacks plus a partial code point is one interned walk state, and each walk state
//!   has a lazily filled 256-entry table of successor states, so a trie node costs one array
//!   read once the tables are warm.
//! - **A mask cache per stack top**: the matcher's state is a set of stacks and a token is
//!   allowed if some stack allows it, so the mask is the union of per-stack masks. Each stack's
//!   mask is computed for its top [`CONTEXT_FRAMES`] frames only (the rest replaced by a marker)
//!   and cached under that key; tokens whose walk pops past those frames are kept as trie nodes
//!   ("uncertain" subtrees) and finished against the real stack below at mask time. Inside a JSON
//!   string, for example, the key is the same at every depth of nesting and only tokens that
//!   close the string (`",`, `"}` …) need the rest of the stack.

use crate::grammar::{Elem, Grammar};
use crate::matcher::{MatchError, Matcher, Partial, Utf8Step};
use crate::vocab::{TokenSet, Vocab};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Stack frames (from the top) a cached mask depends on.
pub const CONTEXT_FRAMES: usize = 3;

/// Walk states an engine keeps before it drops its tables and caches (each state holds a
/// 1 KiB successor table).
const MAX_WALK_STATES: usize = 1 << 15;

/// Interned stack nodes an engine keeps before it drops its tables and caches.
const MAX_STACK_NODES: usize = 1 << 21;

const EMPTY: u32 = 0;
const BOTTOM: u32 = 1;
const DEAD: u32 = 0;
const UNKNOWN: u32 = u32::MAX;

/// Why a [`Constraint`] refused a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The token id is not in the vocabulary.
    #[error("token id {id} is outside the vocabulary ({n_tokens} tokens)")]
    UnknownToken {
        /// The id given.
        id: u32,
        /// The vocabulary size.
        n_tokens: usize,
    },
    /// The grammar does not allow this token here.
    #[error("the grammar does not allow token {id} here")]
    NotAllowed {
        /// The token refused.
        id: u32,
    },
    /// No token of the vocabulary can continue the text and the grammar cannot end here either
    /// (the grammar needs characters no token provides, or allows nothing at all).
    #[error("no token can continue the output under the grammar")]
    NoTokenAllowed,
    /// Generation already ended (an end-of-generation token was accepted).
    #[error("the constrained output has already ended")]
    Finished,
    /// The matcher failed (an overly ambiguous grammar).
    #[error(transparent)]
    Match(#[from] MatchError),
}

#[derive(Debug, Clone)]
struct WalkState {
    stacks: Box<[u32]>,
    partial: Partial,
    escaped: bool,
}

/// Interned stacks and walk states with their successor tables.
#[derive(Debug, Clone)]
struct Engine {
    g: Arc<Grammar>,
    nodes: Vec<(u32, u32)>,
    node_ids: FxHashMap<(u32, u32), u32>,
    advanced: FxHashMap<u32, Box<[u32]>>,
    states: Vec<WalkState>,
    state_ids: FxHashMap<(Box<[u32]>, Partial), u32>,
    table: Vec<u32>,
}

impl Engine {
    fn new(g: Arc<Grammar>) -> Engine {
        let mut e = Engine {
            g,
            nodes: Vec::new(),
            node_ids: FxHashMap::default(),
            advanced: FxHashMap::default(),
            states: Vec::new(),
            state_ids: FxHashMap::default(),
            table: Vec::new(),
        };
        e.clear();
        e
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.node_ids.clear();
        self.advanced.clear();
        self.states.clear();
        self.state_ids.clear();
        self.table.clear();
        // Stack ids 0 and 1 are the markers EMPTY and BOTTOM.
        self.nodes.push((u32::MAX, u32::MAX));
        self.nodes.push((u32::MAX, u32::MAX));
        // Walk state 0 is DEAD.
        self.intern_state(Box::new([]), Partial::default());
    }

    fn cons(&mut self, pos: u32, parent: u32) -> u32 {
        if let Some(&id) = self.node_ids.get(&(pos, parent)) {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push((pos, parent));
        self.node_ids.insert((pos, parent), id);
        id
    }

    fn intern_state(&mut self, stacks: Box<[u32]>, partial: Partial) -> u32 {
        let key = (stacks, partial);
        if let Some(&id) = self.state_ids.get(&key) {
            return id;
        }
        let id = self.states.len() as u32;
        let escaped = key.0.contains(&BOTTOM);
        self.states.push(WalkState {
            stacks: key.0.clone(),
            partial,
            escaped,
        });
        self.state_ids.insert(key, id);
        self.table.resize(self.table.len() + 256, UNKNOWN);
        id
    }

    /// Expand stack `s` until each result's top is a character class or a marker.
    fn expand(&mut self, s: u32, out: &mut Vec<u32>) -> Result<(), MatchError> {
        let mut work = vec![s];
        let mut steps = 0usize;
        while let Some(mut s) = work.pop() {
            loop {
                steps += 1;
                if steps > crate::matcher::MAX_STACKS * 16 {
                    return Err(MatchError::TooAmbiguous);
                }
                if s == EMPTY || s == BOTTOM {
                    out.push(s);
                    break;
                }
                let (top, parent) = self.nodes[s as usize];
                match self.g.elem(top) {
                    Elem::Char(_) => {
                        out.push(s);
                        break;
                    }
                    Elem::End => s = parent,
                    Elem::Ref(r) => {
                        let base = if self.g.elem(top + 1) != Elem::End {
                            self.cons(top + 1, parent)
                        } else {
                            parent
                        };
                        let g = Arc::clone(&self.g);
                        for &alt in g.rules[r as usize].alts.iter().rev() {
                            let t = self.cons(alt, base);
                            work.push(t);
                        }
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stacks after stack `s` consumes the code point its top class matched.
    fn advance(&mut self, s: u32) -> Result<Box<[u32]>, MatchError> {
        if let Some(v) = self.advanced.get(&s) {
            return Ok(v.clone());
        }
        let (top, parent) = self.nodes[s as usize];
        let next = self.cons(top + 1, parent);
        let mut out = Vec::new();
        self.expand(next, &mut out)?;
        let out: Box<[u32]> = out.into();
        self.advanced.insert(s, out.clone());
        Ok(out)
    }

    fn top_class(&self, s: u32) -> Option<u32> {
        if s == EMPTY || s == BOTTOM {
            return None;
        }
        match self.g.elem(self.nodes[s as usize].0) {
            Elem::Char(c) => Some(c),
            _ => None,
        }
    }

    /// The walk state after `state` reads byte `b`.
    #[inline]
    fn step(&mut self, state: u32, b: u8) -> Result<u32, MatchError> {
        let slot = state as usize * 256 + b as usize;
        let t = self.table[slot];
        if t != UNKNOWN {
            return Ok(t);
        }
        let next = self.step_slow(state, b)?;
        self.table[slot] = next;
        Ok(next)
    }

    fn step_slow(&mut self, state: u32, b: u8) -> Result<u32, MatchError> {
        let st = self.states[state as usize].clone();
        match st.partial.step(b) {
            Utf8Step::Invalid => Ok(DEAD),
            Utf8Step::Partial(p) => {
                let (lo, hi) = p.completions();
                let kept: Box<[u32]> = st
                    .stacks
                    .iter()
                    .copied()
                    .filter(|&s| {
                        self.top_class(s)
                            .is_some_and(|c| self.g.classes[c as usize].intersects(lo, hi))
                    })
                    .collect();
                if kept.is_empty() {
                    return Ok(DEAD);
                }
                Ok(self.intern_state(kept, p))
            }
            Utf8Step::Complete(c) => {
                let mut next = Vec::new();
                for &s in st.stacks.iter() {
                    let Some(cls) = self.top_class(s) else {
                        continue;
                    };
                    if self.g.classes[cls as usize].contains(c) {
                        next.extend_from_slice(&self.advance(s)?);
                    }
                }
                if next.is_empty() {
                    return Ok(DEAD);
                }
                next.sort_unstable();
                next.dedup();
                if next.len() > crate::matcher::MAX_STACKS {
                    return Err(MatchError::TooAmbiguous);
                }
                Ok(self.intern_state(next.into(), Partial::default()))
            }
        }
    }

    /// Walk the subtree under trie node `root` from walk state `start`: allowed tokens go to
    /// `out`, nodes where the walk popped past the key's frames to `uncertain` (when given).
    fn walk(
        &mut self,
        vocab: &Vocab,
        start: u32,
        root: usize,
        out: &mut Vec<u32>,
        mut uncertain: Option<&mut Vec<u32>>,
        depth_states: &mut Vec<u32>,
    ) -> Result<(), MatchError> {
        if start == DEAD {
            return Ok(());
        }
        let base = vocab.node_depth[root] as usize;
        depth_states.clear();
        depth_states.push(start);
        let end = vocab.node_end[root] as usize;
        let mut i = root + 1;
        while i < end {
            let d = vocab.node_depth[i] as usize - base;
            let s = self.step(depth_states[d - 1], vocab.node_byte[i])?;
            if s == DEAD {
                i = vocab.node_end[i] as usize;
                continue;
            }
            if depth_states.len() <= d {
                depth_states.push(s);
            } else {
                depth_states[d] = s;
            }
            out.extend_from_slice(vocab.tokens_at(i));
            if self.states[s as usize].escaped {
                if let Some(u) = uncertain.as_deref_mut() {
                    u.push(i as u32);
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// A cached per-key mask: allowed tokens (sparse or dense) and subtrees needing the stack below.
#[derive(Debug, Clone)]
struct MaskEntry {
    sparse: Vec<u32>,
    dense: Option<Vec<u64>>,
    uncertain: Vec<u32>,
}

/// Counters of what mask computations did (for benchmarks and tuning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskStats {
    /// Per-stack masks answered from the cache.
    pub cache_hits: u64,
    /// Per-stack masks computed by a trie walk.
    pub cache_misses: u64,
    /// Subtrees walked against a full stack (tokens that pop past the cached frames).
    pub uncertain_walks: u64,
    /// Interned walk states right now.
    pub walk_states: usize,
    /// Times the tables were dropped because they grew past their limit.
    pub resets: u64,
}

/// A grammar constraint over one vocabulary: the allowed-token mask for the next step, and the
/// matcher state advanced token by token.
///
/// Its caches are keyed by automaton state and survive [`Constraint::restart`], so one
/// `Constraint` per (grammar, vocabulary) reused across requests gets faster as it warms.
#[derive(Debug, Clone)]
pub struct Constraint {
    vocab: Arc<Vocab>,
    matcher: Matcher,
    start: Matcher,
    engine: Engine,
    cache: FxHashMap<(u32, Partial), MaskEntry>,
    finished: bool,
    stats: MaskStats,
    scratch: Vec<u32>,
    depth_states: Vec<u32>,
    uncertain: Vec<u32>,
}

impl Constraint {
    /// A constraint at the start of `grammar` over `vocab`.
    pub fn new(grammar: Arc<Grammar>, vocab: Arc<Vocab>) -> Result<Constraint, ConstraintError> {
        let matcher = Matcher::new(Arc::clone(&grammar))?;
        Ok(Constraint {
            vocab,
            start: matcher.clone(),
            matcher,
            engine: Engine::new(grammar),
            cache: FxHashMap::default(),
            finished: false,
            stats: MaskStats::default(),
            scratch: Vec::new(),
            depth_states: Vec::new(),
            uncertain: Vec::new(),
        })
    }

    /// Go back to the start of the grammar (for the next request), keeping the caches.
    pub fn restart(&mut self) {
        self.matcher = self.start.clone();
        self.finished = false;
    }

    /// The matcher (the text accepted so far, as grammar state).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Arc<Vocab> {
        &self.vocab
    }

    /// What the mask computations have done so far.
    pub fn stats(&self) -> MaskStats {
        MaskStats {
            walk_states: self.engine.states.len(),
            ..self.stats
        }
    }

    /// Whether generation has ended: an end-of-generation token was accepted, or the grammar
    /// has ended and allows no further byte.
    pub fn is_finished(&self) -> bool {
        self.finished || (self.matcher.is_accepting() && self.matcher.is_dead())
    }

    /// Write the tokens allowed next into `out` (resized to the vocabulary) and return how
    /// many there are. End-of-generation tokens are allowed exactly when the grammar may end.
    ///
    /// When nothing is allowed, `out` is left empty and the result is
    /// [`ConstraintError::NoTokenAllowed`] (or [`ConstraintError::Finished`] after the end).
    pub fn allowed(&mut self, out: &mut TokenSet) -> Result<usize, ConstraintError> {
        if out.capacity() != self.vocab.len() {
            out.reset(self.vocab.len());
        } else {
            out.clear();
        }
        if self.finished {
            return Err(ConstraintError::Finished);
        }
        if self.engine.states.len() > MAX_WALK_STATES || self.engine.nodes.len() > MAX_STACK_NODES {
            self.engine.clear();
            self.cache.clear();
            self.stats.resets += 1;
        }
        let vocab = Arc::clone(&self.vocab);
        let partial = self.matcher.partial();
        let stacks: Vec<Vec<u32>> = self.matcher.stacks().to_vec();
        for stack in &stacks {
            if stack.is_empty() {
                continue;
            }
            let k = CONTEXT_FRAMES.min(stack.len());
            let split = stack.len() - k;
            let mut key = if split > 0 { BOTTOM } else { EMPTY };
            for &pos in &stack[split..] {
                key = self.engine.cons(pos, key);
            }
            if !self.cache.contains_key(&(key, partial)) {
                self.stats.cache_misses += 1;
                let entry = self.compute_entry(&vocab, key, partial)?;
                self.cache.insert((key, partial), entry);
            } else {
                self.stats.cache_hits += 1;
            }
            let Some(entry) = self.cache.get(&(key, partial)) else {
                continue;
            };
            match &entry.dense {
                Some(words) => out.union_words(words),
                None => {
                    for &t in &entry.sparse {
                        out.insert(t);
                    }
                }
            }
            if entry.uncertain.is_empty() {
                continue;
            }
            self.uncertain.clear();
            self.uncertain.extend_from_slice(&entry.uncertain);
            // The real stack below the key's frames, expanded.
            let mut below = EMPTY;
            for &pos in &stack[..split] {
                below = self.engine.cons(pos, below);
            }
            let mut expanded = Vec::new();
            self.engine.expand(below, &mut expanded)?;
            expanded.sort_unstable();
            expanded.dedup();
            let resume = self
                .engine
                .intern_state(expanded.into(), Partial::default());
            let nodes = std::mem::take(&mut self.uncertain);
            for &n in &nodes {
                self.stats.uncertain_walks += 1;
                self.scratch.clear();
                let mut scratch = std::mem::take(&mut self.scratch);
                let mut ds = std::mem::take(&mut self.depth_states);
                let r = self
                    .engine
                    .walk(&vocab, resume, n as usize, &mut scratch, None, &mut ds);
                self.depth_states = ds;
                for &t in &scratch {
                    out.insert(t);
                }
                self.scratch = scratch;
                r?;
            }
            self.uncertain = nodes;
        }
        if self.matcher.is_accepting() {
            for &id in vocab.eog_ids() {
                out.insert(id);
            }
        }
        let n = out.count();
        if n == 0 {
            return Err(ConstraintError::NoTokenAllowed);
        }
        Ok(n)
    }

    fn compute_entry(
        &mut self,
        vocab: &Vocab,
        key: u32,
        partial: Partial,
    ) -> Result<MaskEntry, ConstraintError> {
        let start = self.engine.intern_state(Box::new([key]), partial);
        let mut tokens = Vec::new();
        let mut uncertain = Vec::new();
        let mut ds = std::mem::take(&mut self.depth_states);
        let r = self
            .engine
            .walk(vocab, start, 0, &mut tokens, Some(&mut uncertain), &mut ds);
        self.depth_states = ds;
        r?;
        let dense = if tokens.len() * 32 > vocab.len() {
            let mut set = TokenSet::new(vocab.len());
            for &t in &tokens {
                set.insert(t);
            }
            tokens = Vec::new();
            Some(set.words().to_vec())
        } else {
            None
        };
        Ok(MaskEntry {
            sparse: tokens,
            dense,
            uncertain,
        })
    }

    /// Advance by token `id` (which should be in the last mask). An end-of-generation token is
    /// accepted when the grammar may end, and finishes the constraint. On error nothing changes.
    pub fn accept_token(&mut self, id: u32) -> Result<(), ConstraintError> {
        if id as usize >= self.vocab.len() {
            return Err(ConstraintError::UnknownToken {
                id,
                n_tokens: self.vocab.len(),
            });
        }
        if self.finished {
            return Err(ConstraintError::Finished);
        }
        if self.vocab.is_eog(id) {
            if self.matcher.is_accepting() {
                self.finished = true;
                return Ok(());
            }
            return Err(ConstraintError::NotAllowed { id });
        }
        let bytes = self.vocab.token(id);
        if bytes.is_empty() {
            return Err(ConstraintError::NotAllowed { id });
        }
        match self.matcher.accept_bytes(bytes) {
            Ok(()) => Ok(()),
            Err(MatchError::TooAmbiguous) => Err(MatchError::TooAmbiguous.into()),
            Err(_) => Err(ConstraintError::NotAllowed { id }),
        }
    }

    /// Advance by raw bytes instead of a token (a forced prefix, or text the caller wrote).
    /// UTF-8 may stop inside a code point. On error nothing changes.
    pub fn accept_text(&mut self, bytes: &[u8]) -> Result<(), ConstraintError> {
        if self.finished {
            return Err(ConstraintError::Finished);
        }
        Ok(self.matcher.accept_bytes(bytes)?)
    }

    /// Whether token `id` is allowed next (one matcher run; for checks, not for masks).
    pub fn is_allowed(&self, id: u32) -> bool {
        let mut c = self.matcher.clone();
        if self.finished || id as usize >= self.vocab.len() {
            return false;
        }
        if self.vocab.is_eog(id) {
            return c.is_accepting();
        }
        let bytes = self.vocab.token(id);
        !bytes.is_empty() && c.accept_bytes(bytes).is_ok()
    }
}
