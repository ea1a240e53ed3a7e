//! SentencePiece-style BPE driven by token scores, as llama.cpp's `llm_tokenizer_spm` runs it:
//! the text starts as one symbol per character; the adjacent pair whose concatenation is a
//! token with the highest score (leftmost on ties) is merged until none is left; symbols that
//! are not tokens fall back to `<0xXX>` byte tokens. Used by GGUF `llama` vocabularies and
//! SentencePiece BPE `.model` files.
//!
//! For speed the text is cut into independent segments at every place where no vocabulary
//! token contains the two characters on either side: no merge can ever cross such a place, so
//! the result is exactly that of the whole-text algorithm.

use std::collections::BinaryHeap;

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use rustc_hash::FxHashMap;

use lmrun_gguf::LeArray;

use crate::vocab::TokenTable;

/// A hasher for the `u64` character-pair keys: splitmix64's finalizer, so both halves of the
/// key reach the low bits the table indexes by.
#[derive(Default, Clone, Copy)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type PairSet = HashSet<u64, BuildHasherDefault<PairHasher>>;

use crate::TokenId;

/// The score-driven merger over a vocabulary. The vocabulary itself (texts and the text → id
/// index, where the last id wins for duplicate texts, as in llama.cpp) is a [`TokenTable`]
/// that the owner keeps and passes to [`SpmModel::encode`], so it is held once.
#[derive(Debug, Clone)]
pub(crate) struct SpmModel {
    /// One score per token, in place in the GGUF file when it came from one (missing: 0).
    pub(crate) scores: LeArray<f32>,
    /// Ids for raw bytes (`<0xXX>`, else the one-byte token); `None` when the vocab lacks both.
    pub(crate) byte_ids: Box<[Option<TokenId>; 256]>,
    pub(crate) unk_id: Option<TokenId>,
    /// Adjacent character pairs that occur inside some token.
    pairs: PairSet,
}

/// Reusable buffers and the segment cache of one encode call.
#[derive(Default)]
pub(crate) struct SpmScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Bigram>,
    /// Segments repeat (words): where their ids already are in the output.
    cache: FxHashMap<Box<str>, (usize, usize)>,
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    /// The token this symbol is, if it is one.
    id: Option<TokenId>,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

struct Bigram {
    score: f32,
    id: TokenId,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Max-heap: higher score first, then the smaller left index.
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

fn pair_key(a: char, b: char) -> u64 {
    (u64::from(a as u32) << 32) | u64::from(b as u32)
}

impl SpmModel {
    /// Build from a vocabulary and its scores.
    pub(crate) fn new(vocab: &TokenTable, scores: LeArray<f32>, unk_id: Option<TokenId>) -> Self {
        let mut pairs = PairSet::default();
        for t in vocab.texts().iter() {
            let mut it = t.chars();
            if let Some(mut prev) = it.next() {
                for c in it {
                    pairs.insert(pair_key(prev, c));
                    prev = c;
                }
            }
        }
        let mut byte_ids = Box::new([None; 256]);
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = vocab.get(hex.as_str()).or_else(|| {
                let s = [b as u8];
                std::str::from_utf8(&s).ok().and_then(|s| vocab.get(s))
            });
        }
        pairs.shrink_to_fit();
        SpmModel {
            scores,
            byte_ids,
            unk_id,
            pairs,
        }
    }

    /// Heap bytes held: scores and the character-pair set (8-byte keys, 1 control byte).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.scores.heap_bytes() + self.pairs.capacity() * 9
    }

    fn score(&self, id: TokenId) -> f32 {
        self.scores.get(id as usize).unwrap_or(0.0)
    }

    /// Tokenize `text` (already whitespace-escaped) over `vocab` (the table the model was
    /// built from) and append the ids to `out`.
    ///
    /// `scratch` may be reused across calls that append to the same `out` (its segment cache
    /// points into `out`); start a new one for a new output vector.
    pub(crate) fn encode(
        &self,
        vocab: &TokenTable,
        text: &str,
        scratch: &mut SpmScratch,
        out: &mut Vec<TokenId>,
    ) {
        let mut seg_start = 0usize;
        let mut prev: Option<char> = None;
        for (i, c) in text.char_indices() {
            if let Some(p) = prev {
                if !self.pairs.contains(&pair_key(p, c)) {
                    self.encode_cached(vocab, &text[seg_start..i], scratch, out);
                    seg_start = i;
                }
            }
            prev = Some(c);
        }
        self.encode_cached(vocab, &text[seg_start..], scratch, out);
    }

    fn encode_cached(
        &self,
        vocab: &TokenTable,
        seg: &str,
        scratch: &mut SpmScratch,
        out: &mut Vec<TokenId>,
    ) {
        if let Some(&(a, b)) = scratch.cache.get(seg) {
            out.extend_from_within(a..b);
            return;
        }
        let start = out.len();
        self.encode_segment(vocab, seg, &mut scratch.syms, &mut scratch.heap, out);
        if seg.len() <= 64 {
            scratch.cache.insert(seg.into(), (start, out.len()));
        }
    }

    fn encode_segment(
        &self,
        vocab: &TokenTable,
        text: &str,
        syms: &mut Vec<Sym>,
        heap: &mut BinaryHeap<Bigram>,
        out: &mut Vec<TokenId>,
    ) {
        if text.is_empty() {
            return;
        }
        syms.clear();
        heap.clear();
        for (i, c) in text.char_indices() {
            let idx = syms.len();
            let len = c.len_utf8();
            syms.push(Sym {
                start: i,
                len,
                id: vocab.get(&text[i..i + len]),
                prev: if idx == 0 { NONE } else { idx - 1 },
                next: idx + 1,
            });
        }
        if let Some(last) = syms.last_mut() {
            last.next = NONE;
        }
        let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &Vec<Sym>, l: usize, r: usize| {
            if l == NONE || r == NONE {
                return;
            }
            let start = syms[l].start;
            let size = syms[l].len + syms[r].len;
            if let Some(piece) = text.get(start..start + size) {
                if let Some(id) = vocab.get(piece) {
                    heap.push(Bigram {
                        score: self.score(id),
                        id,
                        left: l,
                        right: r,
                        size,
                    });
                }
            }
        };
        for i in 1..syms.len() {
            try_add(heap, syms, i - 1, i);
        }
        while let Some(bg) = heap.pop() {
            let (l, r) = (bg.left, bg.right);
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != bg.size {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[l].id = Some(bg.id);
            syms[r].len = 0;
            let rn = syms[r].next;
            syms[l].next = rn;
            if rn != NONE {
                syms[rn].prev = l;
            }
            let lp = syms[l].prev;
            try_add(heap, syms, lp, l);
            try_add(heap, syms, l, rn);
        }
        let mut i = 0;
        while i != NONE {
            let s = syms[i];
            let piece = &text[s.start..s.start + s.len];
            match s.id {
                Some(id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        if let Some(id) = self.byte_ids[b as usize].or(self.unk_id) {
                            out.push(id);
                        }
                    }
                }
            }
            i = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_score_with_byte_fallback() {
        let toks = TokenTable::new(
            [
                "<unk>", "<0xC3>", "<0xA9>", "▁", "a", "b", "ab", "▁ab", "bb",
            ]
            .iter()
            .collect(),
        );
        let scores = vec![0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -2.0, -3.0, -2.5];
        let m = SpmModel::new(&toks, scores.into(), Some(0));
        let mut out = Vec::new();
        m.encode(&toks, "▁abé", &mut SpmScratch::default(), &mut out);
        assert_eq!(out, [7, 1, 2]);
        out.clear();
        m.encode(&toks, "abb", &mut SpmScratch::default(), &mut out);
        assert_eq!(out, [6, 5]);
    }
}
