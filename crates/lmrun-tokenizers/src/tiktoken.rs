//! tiktoken vocabularies (one `<base64 token bytes> <rank>` per line), as Llama 3 ships them
//! for ExecuTorch. Ranks are token ids and merge priorities at once; the text is split with the
//! Llama 3 pattern and each piece merged by rank. The 256 Llama 3 special tokens follow the base
//! vocabulary, BOS = `<|begin_of_text|>`, EOS = `<|end_of_text|>` (reference §3.2).

use std::borrow::Cow;
use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::FxHashMap;

use crate::bpe::{merge_word, BpeScratch, MergeTable};
use crate::pretok::PreTokenizer;
use crate::{push_n, EncodeOptions, Result, TokenId, Tokenizer, TokenizerError};

const FORMAT: &str = "tiktoken";

/// The Llama 3 special tokens, in id order after the base vocabulary.
pub fn llama3_special_tokens() -> Vec<String> {
    let mut v: Vec<String> = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut k = 2;
    while v.len() < 256 {
        v.push(format!("<|reserved_special_token_{k}|>"));
        k += 1;
    }
    v
}

/// A tiktoken tokenizer with Llama 3 special tokens.
#[derive(Debug)]
pub struct TiktokenTokenizer {
    tokens: Vec<Vec<u8>>,
    specials: Vec<String>,
    special_map: FxHashMap<String, TokenId>,
    special_ac: AhoCorasick,
    bytes_to_id: FxHashMap<Vec<u8>, TokenId>,
    merges: MergeTable,
    byte_ids: [TokenId; 256],
    pre: PreTokenizer,
}

fn b64_val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decode standard (or URL-safe) base64, with or without padding.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= b64_val(c)? << (18 - 6 * i);
        }
        let nbytes = chunk.len() * 6 / 8;
        for i in 0..nbytes {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

impl TiktokenTokenizer {
    /// Load a tiktoken file with the Llama 3 special tokens.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse tiktoken text; `path` is only used in error messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| TokenizerError::format(path, FORMAT, "not UTF-8 text"))?;
        let mut entries: Vec<(Vec<u8>, u32)> = Vec::new();
        for (lineno, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            let (Some(tok), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(TokenizerError::format(
                    path,
                    FORMAT,
                    format!("line {}: expected `<base64> <rank>`", lineno + 1),
                ));
            };
            let tok = base64_decode(tok).ok_or_else(|| {
                TokenizerError::format(path, FORMAT, format!("line {}: bad base64", lineno + 1))
            })?;
            let rank: u32 = rank.parse().map_err(|_| {
                TokenizerError::format(
                    path,
                    FORMAT,
                    format!("line {}: bad rank {rank:?}", lineno + 1),
                )
            })?;
            entries.push((tok, rank));
        }
        if entries.is_empty() {
            return Err(TokenizerError::format(path, FORMAT, "no tokens"));
        }
        let n = entries.len();
        let mut tokens = vec![Vec::new(); n];
        let mut filled = vec![false; n];
        for (tok, rank) in entries {
            let r = rank as usize;
            if r >= n || filled[r] {
                return Err(TokenizerError::format(
                    path,
                    FORMAT,
                    format!("rank {rank} is out of range or repeated ({n} tokens)"),
                ));
            }
            tokens[r] = tok;
            filled[r] = true;
        }
        let mut bytes_to_id = FxHashMap::default();
        bytes_to_id.reserve(n);
        for (i, t) in tokens.iter().enumerate() {
            bytes_to_id.insert(t.clone(), i as TokenId);
        }
        // Every split of a token into two tokens is a merge ranked by the token.
        let mut merges = MergeTable::with_capacity(n * 4);
        for (i, t) in tokens.iter().enumerate() {
            for k in 1..t.len() {
                if let (Some(&a), Some(&b)) = (bytes_to_id.get(&t[..k]), bytes_to_id.get(&t[k..])) {
                    merges.insert(a, b, i as u32, i as TokenId);
                }
            }
        }
        let mut byte_ids = [TokenId::MAX; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            if let Some(&id) = bytes_to_id.get(&[b as u8][..]) {
                *slot = id;
            }
        }
        let specials = llama3_special_tokens();
        let special_map = specials
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), (n + i) as TokenId))
            .collect();
        let special_ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&specials)
            .map_err(|e| TokenizerError::format(path, FORMAT, e.to_string()))?;
        let pre = PreTokenizer::from_gguf_pre(Some("llama3"))?;
        Ok(TiktokenTokenizer {
            tokens,
            specials,
            special_map,
            special_ac,
            bytes_to_id,
            merges,
            byte_ids,
            pre,
        })
    }

    fn encode_text(&self, text: &str, scratch: &mut BpeScratch, out: &mut Vec<TokenId>) {
        let mut ids = Vec::new();
        for (a, b) in self.pre.split(text) {
            let piece = &text.as_bytes()[a..b];
            if let Some(&id) = self.bytes_to_id.get(piece) {
                out.push(id);
                continue;
            }
            ids.clear();
            ids.extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
            merge_word(&self.merges, &ids, scratch, out);
        }
    }
}

impl Tokenizer for TiktokenTokenizer {
    fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<TokenId>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 4);
        push_n(&mut out, self.bos_id(), opts.num_bos);
        let mut scratch = BpeScratch::default();
        if opts.parse_special {
            let mut last = 0;
            for m in self.special_ac.find_iter(text) {
                self.encode_text(&text[last..m.start()], &mut scratch, &mut out);
                out.push((self.tokens.len() + m.pattern().as_usize()) as TokenId);
                last = m.end();
            }
            self.encode_text(&text[last..], &mut scratch, &mut out);
        } else {
            self.encode_text(text, &mut scratch, &mut out);
        }
        push_n(&mut out, self.eos_id(), opts.num_eos);
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        self.tokens.len() + self.specials.len()
    }

    fn bos_id(&self) -> Option<TokenId> {
        Some(self.tokens.len() as TokenId)
    }

    fn eos_id(&self) -> Option<TokenId> {
        Some(self.tokens.len() as TokenId + 1)
    }

    fn eog_ids(&self) -> Vec<TokenId> {
        let mut v = vec![self.tokens.len() as TokenId + 1];
        v.extend(
            ["<|eot_id|>", "<|eom_id|>"]
                .iter()
                .filter_map(|s| self.special_map.get(*s).copied()),
        );
        v
    }

    fn special_token_id(&self, text: &str) -> Option<TokenId> {
        self.special_map.get(text).copied()
    }

    fn is_special(&self, id: TokenId) -> bool {
        (id as usize) >= self.tokens.len()
    }

    fn piece(&self, id: TokenId) -> Option<String> {
        let i = id as usize;
        match self.tokens.get(i) {
            Some(t) => Some(String::from_utf8_lossy(t).into_owned()),
            None => self.specials.get(i - self.tokens.len()).cloned(),
        }
    }

    fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>> {
        let i = id as usize;
        if let Some(t) = self.tokens.get(i) {
            return Ok(Cow::Borrowed(t));
        }
        match self.specials.get(i - self.tokens.len()) {
            Some(s) if render_special => Ok(Cow::Borrowed(s.as_bytes())),
            Some(_) => Ok(Cow::Borrowed(&[])),
            None => Err(TokenizerError::BadTokenId {
                id,
                vocab_size: self.vocab_size(),
            }),
        }
    }

    fn kind(&self) -> &'static str {
        "tiktoken"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("SGVsbG8=").unwrap(), b"Hello");
        assert_eq!(base64_decode("IQ==").unwrap(), b"!");
        assert_eq!(base64_decode("IHRo").unwrap(), b" th");
        assert!(base64_decode("*").is_none());
    }
}
