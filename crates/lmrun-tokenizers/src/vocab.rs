//! Compact vocabulary storage. A vocabulary of 262,144 tokens held as `Vec<String>` costs one
//! heap block per token (24 bytes of `String` plus a 32-byte minimum malloc chunk, ~15 MiB for
//! Gemma's 2.3 MB of text), and a `HashMap<Box<str>, u32>` for text → id as much again. Here
//! the texts are the GGUF parser's [`StrList`]: read in place from the loaded file (page cache
//! under a mapping; 4 bytes of heap per 16 tokens) or, built in memory, one byte arena with a
//! `u32` end offset per token. The text → id index is an open-addressing table of `u32` ids
//! that compares against the list ([`TokenTable`]): 1.3 MiB for Gemma.

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use crate::TokenId;

/// The token and merge lists: the GGUF parser's string array ([`lmrun_gguf::StrArray`], in
/// place in the loaded file or an arena), so a vocabulary moves from the metadata to the
/// tokenizer without a change of representation or a copy.
pub use lmrun_gguf::{StrArray as StrList, StrArrayFull as StrListFull};

const EMPTY: u32 = u32::MAX;

/// Token texts and the text → id index over them.
///
/// For a text held by several ids, the index gives the last id (as llama.cpp's
/// `token_to_id` map, which later entries overwrite).
#[derive(Clone)]
pub(crate) struct TokenTable {
    texts: StrList,
    /// Open addressing, linear probing; each slot is a token id or `EMPTY`. 4/3 of the token
    /// count (load factor 0.75: ~2.5 probes to find a token, ~8.5 to miss one, 4-byte reads in
    /// a row), any size: the start slot is the hash scaled to the length, not masked. With
    /// fewer than 2^24 - 1 tokens the top 8 bits of a slot hold a tag of the text's hash, so
    /// most probes of other texts are rejected without reading the text list.
    slots: Box<[u32]>,
    /// Mask of the id bits of a slot (`ID_MASK_TAGGED`, or all bits when untagged).
    id_mask: u32,
}

/// The id bits of a tagged slot.
const ID_MASK_TAGGED: u32 = (1 << 24) - 1;

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("tokens", &self.texts.len())
            .field("text_bytes", &self.texts.text_len())
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// The hash of a text.
#[inline]
fn hash(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

/// The tag bits of a slot for a text of hash `h` (0 when untagged): bits 24..32 of the hash,
/// which the start slot (its top bits) hardly depends on.
#[inline]
fn tag_bits(h: u64, id_mask: u32) -> u32 {
    (h as u32) & !id_mask
}

/// The start slot of a hash in a table of `n` slots: the hash scaled to `n` (its high bits
/// decide).
#[inline]
fn start_slot(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

impl TokenTable {
    /// Index `texts` (at most `u32::MAX - 1` of them; callers check the vocabulary size).
    pub(crate) fn new(mut texts: StrList) -> Self {
        texts.shrink_to_fit();
        let n_slots = texts.len().saturating_mul(4).div_ceil(3).max(2);
        // Tagged ids stay below ID_MASK_TAGGED, so no slot can equal EMPTY.
        let id_mask = if texts.len() < ID_MASK_TAGGED as usize {
            ID_MASK_TAGGED
        } else {
            u32::MAX
        };
        let mut slots = vec![EMPTY; n_slots].into_boxed_slice();
        // In id order, walking the texts once (an in-place list is cheap to walk, dearer to
        // index); a probe that meets a tag match compares against the list.
        for (id, s) in texts.iter().enumerate() {
            let h = hash(s);
            let tag = tag_bits(h, id_mask);
            let mut i = start_slot(h, n_slots);
            loop {
                let slot = slots[i];
                if slot == EMPTY
                    || (slot & !id_mask == tag
                        && texts.get_bytes((slot & id_mask) as usize) == Some(s.as_bytes()))
                {
                    // A repeated text: the later id wins.
                    slots[i] = tag | id as u32;
                    break;
                }
                i = if i + 1 == n_slots { 0 } else { i + 1 };
            }
        }
        TokenTable {
            texts,
            slots,
            id_mask,
        }
    }

    /// The id of a text.
    #[inline]
    pub(crate) fn get(&self, s: &str) -> Option<TokenId> {
        let n = self.slots.len();
        let h = hash(s);
        let tag = tag_bits(h, self.id_mask);
        let mut i = start_slot(h, n);
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            if slot & !self.id_mask == tag {
                let id = slot & self.id_mask;
                if self.texts.get_bytes(id as usize) == Some(s.as_bytes()) {
                    return Some(id);
                }
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// The text of an id.
    #[inline]
    pub(crate) fn text(&self, id: TokenId) -> Option<&str> {
        self.texts.get(id as usize)
    }

    /// Number of tokens.
    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    /// The texts in id order.
    pub(crate) fn texts(&self) -> &StrList {
        &self.texts
    }

    /// Heap bytes held: texts, offsets and index.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.texts.heap_bytes() + self.slots.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_list_round_trip() {
        let l: StrList = ["", "a", "▁the", "", "<0x0A>"].iter().collect();
        assert_eq!(l.len(), 5);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            ["", "a", "▁the", "", "<0x0A>"]
        );
        assert_eq!(&l[2], "▁the");
        assert_eq!(l.get(5), None);
        assert_eq!(l.text_len(), 1 + "▁the".len() + 6);
    }

    #[test]
    fn table_finds_every_token_and_last_duplicate_wins() {
        let words: Vec<String> = (0..5000).map(|i| format!("w{i}")).collect();
        let mut texts: StrList = words.iter().collect();
        texts.push("w17").unwrap(); // duplicate of id 17, id 5000
        let t = TokenTable::new(texts);
        for (i, w) in words.iter().enumerate() {
            let want = if i == 17 { 5000 } else { i as u32 };
            assert_eq!(t.get(w), Some(want), "{w}");
            assert_eq!(t.text(i as u32), Some(w.as_str()));
        }
        assert_eq!(t.get("w5000"), None);
        assert_eq!(t.get(""), None);
        assert_eq!(t.len(), 5001);
        // 4/3 slots of 4 bytes per token, plus the offsets and the texts (an arena here).
        assert!(t.heap_bytes() >= 5001 * 4 * 4 / 3 + 5001 * 4 + t.texts().text_len());
    }

    #[test]
    fn empty_table() {
        let t = TokenTable::new(StrList::new());
        assert_eq!(t.get("x"), None);
        assert_eq!(t.text(0), None);
    }
}
