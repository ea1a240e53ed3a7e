//! SentencePiece-style BPE, the tokenizer of Gemma 4 GGUF files (`tokenizer.ggml.model =
//! "gemma4"`). Unlike byte-level BPE there is no GPT-2 byte alphabet and no word-level
//! pre-tokenizer: spaces become `▁`, the text is cut only into runs of newlines and runs of
//! everything else, and each run is merged by rank starting from its UTF-8 characters. A run of
//! newlines that is itself a token stays whole, and a character the vocabulary lacks falls
//! back to its `<0xXX>` byte tokens (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_GEMMA4` rules). It is
//! its own module because neither the score-driven SPM path nor the byte-level BPE path can
//! express these rules.

use crate::bpe::{merge_word_with, BpeScratch, MergeTable};
use crate::vocab::TokenTable;
use crate::TokenId;

/// The merge table and byte-fallback ids of a `gemma4` vocabulary.
#[derive(Debug)]
pub(crate) struct SpmBpeModel {
    pub(crate) merges: MergeTable,
    /// The id of `<0xXX>` for each byte (`TokenId::MAX` where the vocabulary lacks it).
    byte_tokens: Box<[TokenId; 256]>,
}

/// Reusable buffers for [`SpmBpeModel::encode`].
#[derive(Default)]
pub(crate) struct SpmBpeScratch {
    text: String,
    ids: Vec<TokenId>,
    /// Byte offset of each initial symbol (one per character) in the piece.
    starts: Vec<usize>,
    bpe: BpeScratch,
}

impl SpmBpeModel {
    pub(crate) fn new(vocab: &TokenTable, merges: MergeTable) -> Self {
        let mut byte_tokens = Box::new([TokenId::MAX; 256]);
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            if let Some(id) = vocab.get(&format!("<0x{b:02X}>")) {
                *slot = id;
            }
        }
        SpmBpeModel {
            merges,
            byte_tokens,
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.merges.heap_bytes() + 256 * 4
    }

    /// Append the ids of `text` (one fragment between special tokens) to `out`.
    pub(crate) fn encode(
        &self,
        vocab: &TokenTable,
        text: &str,
        scratch: &mut SpmBpeScratch,
        out: &mut Vec<TokenId>,
    ) {
        let SpmBpeScratch {
            text: escaped,
            ids,
            starts,
            bpe,
        } = scratch;
        escaped.clear();
        escaped.extend(text.chars().map(|c| if c == ' ' { '▁' } else { c }));
        let mut rest = escaped.as_str();
        while !rest.is_empty() {
            // `[^\n]+|[\n]+`
            let newlines = rest.starts_with('\n');
            let len = rest.find(|c| (c == '\n') != newlines).unwrap_or(rest.len());
            let (piece, tail) = rest.split_at(len);
            rest = tail;
            if newlines {
                if let Some(id) = vocab.get(piece) {
                    out.push(id);
                    continue;
                }
            }
            ids.clear();
            starts.clear();
            let mut buf = [0u8; 4];
            for (i, c) in piece.char_indices() {
                starts.push(i);
                ids.push(vocab.get(c.encode_utf8(&mut buf)).unwrap_or(TokenId::MAX));
            }
            merge_word_with(&self.merges, ids, bpe, out, |k, out| {
                let s = starts[k];
                let e = starts.get(k + 1).copied().unwrap_or(piece.len());
                for &b in &piece.as_bytes()[s..e] {
                    let id = self.byte_tokens[b as usize];
                    if id != TokenId::MAX {
                        out.push(id);
                    }
                }
            });
        }
    }
}
