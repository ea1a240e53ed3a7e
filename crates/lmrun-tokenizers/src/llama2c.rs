//! llama2c `tokenizer.bin` (ExecuTorch's variant, reference §3.2): a header of four
//! little-endian int32 (vocab_size, bos_id, eos_id, max_token_length), then per token an f32
//! score, an i32 byte length and the raw bytes. Encoding follows llama2.c: a dummy-prefix space
//! token, one token per UTF-8 character (bytes + 3 as fallback), then greedy merges of the
//! adjacent pair whose concatenation has the highest score.

use std::borrow::Cow;
use std::collections::BinaryHeap;
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::{push_n, EncodeOptions, Result, TokenId, Tokenizer, TokenizerError};

const FORMAT: &str = "llama2c tokenizer.bin";
const MAX_VOCAB: usize = 1 << 24;

/// A merge candidate: the pair at `left`/`right` (ids `a`, `b`) would become `id`.
struct Cand {
    score: f32,
    left: usize,
    right: usize,
    a: TokenId,
    b: TokenId,
    id: TokenId,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Max-heap: higher score first, then the leftmost pair.
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// A tokenizer loaded from a llama2c `tokenizer.bin`.
#[derive(Debug)]
pub struct Llama2cTokenizer {
    vocab: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: FxHashMap<Vec<u8>, TokenId>,
    bos: TokenId,
    eos: TokenId,
}

fn read_i32(b: &[u8], pos: &mut usize) -> Option<i32> {
    let s = b.get(*pos..pos.checked_add(4)?)?;
    *pos += 4;
    Some(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Llama2cTokenizer {
    /// Load a `tokenizer.bin`.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse the file bytes; `path` is only used in error messages.
    pub fn from_bytes(b: &[u8], path: &Path) -> Result<Self> {
        let err = |m: String| TokenizerError::format(path, FORMAT, m);
        let mut pos = 0;
        let mut hdr = [0i32; 4];
        for h in hdr.iter_mut() {
            *h = read_i32(b, &mut pos)
                .ok_or_else(|| err("file shorter than its 16-byte header".into()))?;
        }
        let [vocab_size, bos, eos, max_len] = hdr;
        if vocab_size <= 0 || vocab_size as usize > MAX_VOCAB {
            return Err(err(format!("vocab_size {vocab_size} is not plausible")));
        }
        let n = vocab_size as usize;
        if bos < 0 || bos as usize >= n || eos < 0 || eos as usize >= n {
            return Err(err(format!(
                "bos {bos} / eos {eos} outside the vocabulary of {n}"
            )));
        }
        if max_len <= 0 || max_len > 1 << 16 {
            return Err(err(format!("max_token_length {max_len} is not plausible")));
        }
        let mut vocab = Vec::with_capacity(n.min(b.len() / 8));
        let mut scores = Vec::with_capacity(n.min(b.len() / 8));
        for i in 0..n {
            let score = read_i32(b, &mut pos)
                .ok_or_else(|| err(format!("truncated at token {i} (score)")))?;
            let len = read_i32(b, &mut pos)
                .ok_or_else(|| err(format!("truncated at token {i} (length)")))?;
            if len < 0 || len > max_len {
                return Err(err(format!(
                    "token {i} has length {len} (max_token_length {max_len})"
                )));
            }
            let end = pos + len as usize;
            let bytes = b
                .get(pos..end)
                .ok_or_else(|| err(format!("truncated at token {i} (bytes)")))?;
            pos = end;
            scores.push(f32::from_bits(score as u32));
            vocab.push(bytes.to_vec());
        }
        if pos != b.len() {
            return Err(err(format!(
                "{} trailing bytes after {n} tokens",
                b.len() - pos
            )));
        }
        let mut lookup = FxHashMap::default();
        for (i, t) in vocab.iter().enumerate() {
            lookup.entry(t.clone()).or_insert(i as TokenId);
        }
        Ok(Llama2cTokenizer {
            vocab,
            scores,
            lookup,
            bos: bos as TokenId,
            eos: eos as TokenId,
        })
    }

    fn encode_text(&self, text: &str, out: &mut Vec<TokenId>) {
        if text.is_empty() {
            return;
        }
        let mut toks: Vec<TokenId> = Vec::with_capacity(text.len() + 1);
        if let Some(&sp) = self.lookup.get(&b" "[..]) {
            toks.push(sp);
        }
        let mut buf = [0u8; 4];
        for c in text.chars() {
            let s = c.encode_utf8(&mut buf).as_bytes();
            match self.lookup.get(s) {
                Some(&id) => toks.push(id),
                None => {
                    for &byte in s {
                        let id = u32::from(byte) + 3;
                        if (id as usize) < self.vocab.len() {
                            toks.push(id);
                        }
                    }
                }
            }
        }
        // llama2.c rescans every pair after each merge (quadratic); a heap gives the same
        // choice (highest score, leftmost on ties) in O(n log n).
        let n = toks.len();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut alive = vec![true; n];
        let mut heap: BinaryHeap<Cand> = BinaryHeap::new();
        let mut cat = Vec::new();
        let mut push = |heap: &mut BinaryHeap<Cand>, toks: &[TokenId], l: usize, r: usize| {
            if l >= n || r >= n {
                return;
            }
            cat.clear();
            cat.extend_from_slice(&self.vocab[toks[l] as usize]);
            cat.extend_from_slice(&self.vocab[toks[r] as usize]);
            if let Some(&id) = self.lookup.get(&cat) {
                heap.push(Cand {
                    score: self.scores[id as usize],
                    left: l,
                    right: r,
                    a: toks[l],
                    b: toks[r],
                    id,
                });
            }
        };
        for i in 1..n {
            push(&mut heap, &toks, i - 1, i);
        }
        while let Some(c) = heap.pop() {
            let (l, r) = (c.left, c.right);
            if !alive[l] || !alive[r] || next[l] != r || toks[l] != c.a || toks[r] != c.b {
                continue;
            }
            toks[l] = c.id;
            alive[r] = false;
            next[l] = next[r];
            if next[r] < n {
                prev[next[r]] = l;
            }
            push(&mut heap, &toks, prev[l], l);
            push(&mut heap, &toks, l, next[l]);
        }
        let toks: Vec<TokenId> = toks
            .iter()
            .zip(&alive)
            .filter(|(_, &a)| a)
            .map(|(&t, _)| t)
            .collect();
        out.extend(toks);
    }
}

impl Tokenizer for Llama2cTokenizer {
    fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<TokenId>> {
        let mut out = Vec::new();
        push_n(&mut out, Some(self.bos), opts.num_bos);
        self.encode_text(text, &mut out);
        push_n(&mut out, Some(self.eos), opts.num_eos);
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn bos_id(&self) -> Option<TokenId> {
        Some(self.bos)
    }

    fn eos_id(&self) -> Option<TokenId> {
        Some(self.eos)
    }

    fn special_token_id(&self, text: &str) -> Option<TokenId> {
        [self.bos, self.eos]
            .into_iter()
            .find(|&id| self.vocab[id as usize] == text.as_bytes())
    }

    fn is_special(&self, id: TokenId) -> bool {
        id == self.bos || id == self.eos
    }

    fn piece(&self, id: TokenId) -> Option<String> {
        self.vocab
            .get(id as usize)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>> {
        let v = self
            .vocab
            .get(id as usize)
            .ok_or(TokenizerError::BadTokenId {
                id,
                vocab_size: self.vocab.len(),
            })?;
        if self.is_special(id) && !render_special {
            return Ok(Cow::Borrowed(&[]));
        }
        if v.len() == 6 && v.starts_with(b"<0x") && v[5] == b'>' {
            if let Some(b) = std::str::from_utf8(&v[3..5])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                return Ok(Cow::Owned(vec![b]));
            }
        }
        Ok(Cow::Borrowed(v))
    }

    fn strips_leading_space(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "llama2c"
    }
}
