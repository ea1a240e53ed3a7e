//! Byte-level BPE merging by merge rank, the way llama.cpp's `llm_tokenizer_bpe` does it:
//! every byte of a pre-tokenized word starts as its own symbol, then the adjacent pair with the
//! lowest merge rank (leftmost on ties) is merged until no ranked pair is left. Shared by the
//! GGUF `gpt2` tokenizer and tiktoken (whose ranks are its token ids).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::TokenId;

/// Merge table over token ids: `(left, right) -> (rank, merged id)`.
#[derive(Debug, Default, Clone)]
pub(crate) struct MergeTable {
    map: FxHashMap<(TokenId, TokenId), (u32, TokenId)>,
}

impl MergeTable {
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut map = FxHashMap::default();
        map.reserve(n);
        MergeTable { map }
    }

    /// Record a merge; an earlier (lower-rank) entry for the same pair wins.
    pub(crate) fn insert(&mut self, left: TokenId, right: TokenId, rank: u32, merged: TokenId) {
        self.map.entry((left, right)).or_insert((rank, merged));
    }

    /// Heap bytes held (16-byte entries plus a control byte per bucket).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.map.capacity() * 17
    }

    #[inline]
    fn get(&self, l: TokenId, r: TokenId) -> Option<(u32, TokenId)> {
        self.map.get(&(l, r)).copied()
    }
}

/// A queued merge: (rank, left index, right index, left id, right id, merged id).
type Candidate = Reverse<(u32, usize, usize, TokenId, TokenId, TokenId)>;

#[derive(Clone, Copy)]
struct Sym {
    id: TokenId,
    prev: usize,
    next: usize,
    alive: bool,
}

const NONE: usize = usize::MAX;

/// Reusable buffers for merging one word at a time.
#[derive(Default)]
pub(crate) struct BpeScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Candidate>,
}

/// Merge the symbols `ids` (one per initial byte or character; `TokenId::MAX` marks a symbol
/// the vocabulary lacks, which never merges) and append the result to `out`. Symbols that stay
/// unknown are dropped, as llama.cpp drops them.
pub(crate) fn merge_word(
    table: &MergeTable,
    ids: &[TokenId],
    scratch: &mut BpeScratch,
    out: &mut Vec<TokenId>,
) {
    merge_word_with(table, ids, scratch, out, |_, _| {});
}

/// [`merge_word`], with `unknown(i, out)` called for each symbol that stays unknown (`i` is its
/// index in `ids`), so a caller can put byte-fallback tokens in its place.
pub(crate) fn merge_word_with(
    table: &MergeTable,
    ids: &[TokenId],
    scratch: &mut BpeScratch,
    out: &mut Vec<TokenId>,
    mut unknown: impl FnMut(usize, &mut Vec<TokenId>),
) {
    let syms = &mut scratch.syms;
    let heap = &mut scratch.heap;
    syms.clear();
    heap.clear();
    let n = ids.len();
    for (i, &id) in ids.iter().enumerate() {
        syms.push(Sym {
            id,
            prev: if i == 0 { NONE } else { i - 1 },
            next: if i + 1 == n { NONE } else { i + 1 },
            alive: true,
        });
    }
    let push = |heap: &mut BinaryHeap<_>, syms: &Vec<Sym>, l: usize, r: usize| {
        if l == NONE || r == NONE {
            return;
        }
        let (a, b) = (syms[l].id, syms[r].id);
        if a == TokenId::MAX || b == TokenId::MAX {
            return;
        }
        if let Some((rank, merged)) = table.get(a, b) {
            heap.push(Reverse((rank, l, r, a, b, merged)));
        }
    };
    for i in 1..n {
        push(heap, syms, i - 1, i);
    }
    while let Some(Reverse((_, l, r, a, b, merged))) = heap.pop() {
        if !syms[l].alive || !syms[r].alive || syms[l].id != a || syms[r].id != b {
            continue;
        }
        syms[l].id = merged;
        syms[r].alive = false;
        let rn = syms[r].next;
        syms[l].next = rn;
        if rn != NONE {
            syms[rn].prev = l;
        }
        let lp = syms[l].prev;
        push(heap, syms, lp, l);
        push(heap, syms, l, rn);
    }
    let mut i = if n == 0 { NONE } else { 0 };
    while i != NONE {
        if syms[i].id != TokenId::MAX {
            out.push(syms[i].id);
        } else {
            unknown(i, out);
        }
        i = syms[i].next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_rank_leftmost_first() {
        // ids: a=0 b=1 ab=2 bb=3 abb=4
        let mut t = MergeTable::with_capacity(4);
        t.insert(1, 1, 0, 3); // b b -> bb (rank 0)
        t.insert(0, 1, 1, 2); // a b -> ab
        t.insert(0, 3, 2, 4); // a bb -> abb
        let mut s = BpeScratch::default();
        let mut out = Vec::new();
        merge_word(&t, &[0, 1, 1], &mut s, &mut out);
        assert_eq!(out, [4]);
        out.clear();
        merge_word(&t, &[1, 1, 1], &mut s, &mut out);
        assert_eq!(out, [3, 1]);
        out.clear();
        merge_word(&t, &[0, TokenId::MAX, 1], &mut s, &mut out);
        assert_eq!(out, [0, 1]);
    }
}
