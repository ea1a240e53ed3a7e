//! WordPiece, the tokenizer of BERT-family GGUF files (`tokenizer.ggml.model = "bert"`), as
//! llama.cpp runs it: BERT's basic normalizer (accents stripped through each character's
//! canonical decomposition, simple lowercase, control characters dropped), words split at
//! whitespace with punctuation, ASCII symbols and CJK ideographs as words of their own, then a
//! greedy longest-match over the vocabulary for each word with a `▁` in front (the GGUF
//! converter writes word-initial pieces as `▁word` and continuations without BERT's `##`). A
//! word that cannot be covered becomes the unknown token. Embedding models need exactly the
//! ids their training saw, so this lives beside the SPM and BPE paths rather than behind them.

use crate::unicode::{flags, CONTROL, MARK, PUNCT, SYMBOL, WS};
use crate::vocab::TokenTable;
use crate::TokenId;

/// The WordPiece model of a `bert` vocabulary.
#[derive(Debug)]
pub(crate) struct WpmModel {
    /// Longest token text in bytes (bounds the longest-match search).
    max_token_len: usize,
    /// What a word with no covering becomes.
    unk: Option<TokenId>,
}

impl WpmModel {
    pub(crate) fn new(vocab: &TokenTable, unk: Option<TokenId>) -> Self {
        let max_token_len = vocab.texts().iter().map(str::len).max().unwrap_or(0);
        WpmModel { max_token_len, unk }
    }

    /// Append the ids of `text` (one fragment between special tokens) to `out`.
    pub(crate) fn encode(&self, vocab: &TokenTable, text: &str, out: &mut Vec<TokenId>) {
        let mut word = String::from("▁");
        for w in split_words(text) {
            word.truncate('▁'.len_utf8());
            word.push_str(&w);
            let start = out.len();
            let mut i = 0;
            while i < word.len() {
                // The longest vocabulary entry starting at byte i (char boundaries only).
                let mut j = (i + self.max_token_len).min(word.len());
                let found = loop {
                    if j <= i {
                        break None;
                    }
                    if word.is_char_boundary(j) {
                        if let Some(id) = vocab.get(&word[i..j]) {
                            break Some(id);
                        }
                    }
                    j -= 1;
                };
                match found {
                    Some(id) => {
                        out.push(id);
                        i = j;
                    }
                    None => {
                        out.truncate(start);
                        break;
                    }
                }
            }
            if out.len() == start {
                if let Some(unk) = self.unk {
                    out.push(unk);
                }
            }
        }
    }
}

/// BERT's basic normalization and word split (llama.cpp `llm_tokenizer_wpm_session::preprocess`
/// with lowercase and accent stripping on, its defaults).
fn split_words(text: &str) -> Vec<String> {
    let mut words = vec![String::new()];
    for c in text.chars() {
        let c = decompose_first(c);
        let f = flags(c);
        if f & WS != 0 {
            if !words.last().is_some_and(String::is_empty) {
                words.push(String::new());
            }
            continue;
        }
        if c == '\0' || c == '\u{FFFD}' || f & (CONTROL | MARK) != 0 {
            continue;
        }
        let lower = c.to_lowercase().next().unwrap_or(c);
        if f & PUNCT != 0 || (c < '\u{7F}' && f & SYMBOL != 0) || is_cjk_ideograph(c) {
            if !words.last().is_some_and(String::is_empty) {
                words.push(String::new());
            }
            if let Some(last) = words.last_mut() {
                last.push(lower);
            }
            words.push(String::new());
        } else if let Some(last) = words.last_mut() {
            last.push(lower);
        }
    }
    if words.last().is_some_and(String::is_empty) {
        words.pop();
    }
    words
}

/// The first character of `c`'s canonical decomposition (llama.cpp's NFD table keeps only
/// that one: `é` becomes `e`, a Hangul syllable its leading jamo).
fn decompose_first(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    let mut buf = [0u8; 4];
    let mut n = tokenizers::NormalizedString::from(&*c.encode_utf8(&mut buf));
    n.nfd();
    n.get().chars().next().unwrap_or(c)
}

/// The CJK ranges BERT treats as one-character words (with Hugging Face's 0x2B920 start of
/// Extension E, which llama.cpp copies).
fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StrList;

    #[test]
    fn normalizes_and_splits() {
        assert_eq!(
            split_words("Héllo, WORLD!\t中文 a$b\u{200b}c"),
            ["hello", ",", "world", "!", "中", "文", "a", "$", "bc"]
        );
        assert!(split_words(" \n ").is_empty());
    }

    #[test]
    fn longest_match_and_unknown() {
        let toks = ["[UNK]", "▁un", "▁unaff", "able", "▁x", "aff"];
        let vocab = TokenTable::new(toks.iter().collect::<StrList>());
        let m = WpmModel::new(&vocab, Some(0));
        let mut out = Vec::new();
        m.encode(&vocab, "unaffable x unq", &mut out);
        assert_eq!(out, [2, 3, 4, 0]);
    }
}
