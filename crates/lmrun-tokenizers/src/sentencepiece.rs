//! SentencePiece `tokenizer.model` files (a `ModelProto` protobuf) read by a small hand-written
//! protobuf reader that takes only the fields a tokenizer needs: the pieces (text, score,
//! type), the model type (BPE or unigram), byte fallback, the special ids, and the normalizer
//! flags. BPE models merge by score like llama.cpp's SPM; unigram models use Viterbi search.
//! Only identity normalization is applied (a precompiled NFKC map is ignored, with a warning).

use std::borrow::Cow;
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::gguf::TokenType;
use crate::spm::{SpmModel, SpmScratch};
use crate::vocab::{StrList, TokenTable};
use crate::{push_n, EncodeOptions, Result, TokenId, Tokenizer, TokenizerError};

const FORMAT: &str = "SentencePiece";

/// A protobuf wire-format cursor over a byte slice.
struct Pb<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Pb<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Pb { buf, pos: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    /// The next `(field number, value)`, or `None` at the end.
    fn next(&mut self) -> std::result::Result<Option<(u32, Field<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let num = u32::try_from(key >> 3).map_err(|_| "bad field number")?;
        if num == 0 {
            return Err("field number 0".into());
        }
        let take = |pb: &mut Self, n: usize| -> std::result::Result<&'a [u8], String> {
            let end = pb
                .pos
                .checked_add(n)
                .filter(|&e| e <= pb.buf.len())
                .ok_or("truncated field")?;
            let s = &pb.buf[pb.pos..end];
            pb.pos = end;
            Ok(s)
        };
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                take(self, 8)?;
                Field::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Field::Bytes(take(self, len)?)
            }
            5 => {
                let b = take(self, 4)?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((num, f)))
    }
}

/// What the loader reads out of a `ModelProto`.
#[derive(Debug, Default)]
struct Proto {
    pieces: Vec<(String, f32, i32)>,
    model_type: i32,
    byte_fallback: bool,
    unk_id: i64,
    bos_id: i64,
    eos_id: i64,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    has_charsmap: bool,
}

fn parse_proto(buf: &[u8]) -> std::result::Result<Proto, String> {
    let mut p = Proto {
        model_type: 1,
        unk_id: 0,
        bos_id: 1,
        eos_id: 2,
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        escape_whitespaces: true,
        ..Default::default()
    };
    let mut pb = Pb::new(buf);
    let mut saw_trainer_or_normalizer = false;
    while let Some((num, f)) = pb.next()? {
        match (num, f) {
            (1, Field::Bytes(b)) => {
                let (mut piece, mut score, mut ty) = (None, 0.0f32, 1i32);
                let mut q = Pb::new(b);
                while let Some((n, f)) = q.next()? {
                    match (n, f) {
                        (1, Field::Bytes(s)) => {
                            piece = Some(
                                std::str::from_utf8(s)
                                    .map_err(|_| "piece is not UTF-8")?
                                    .to_string(),
                            )
                        }
                        (2, Field::Fixed32(v)) => score = f32::from_bits(v),
                        (3, Field::Varint(v)) => ty = v as i32,
                        _ => {}
                    }
                }
                p.pieces
                    .push((piece.ok_or("piece without text")?, score, ty));
            }
            (2, Field::Bytes(b)) => {
                saw_trainer_or_normalizer = true;
                let mut q = Pb::new(b);
                while let Some((n, f)) = q.next()? {
                    match (n, f) {
                        (3, Field::Varint(v)) => p.model_type = v as i32,
                        (35, Field::Varint(v)) => p.byte_fallback = v != 0,
                        (40, Field::Varint(v)) => p.unk_id = v as i32 as i64,
                        (41, Field::Varint(v)) => p.bos_id = v as i32 as i64,
                        (42, Field::Varint(v)) => p.eos_id = v as i32 as i64,
                        _ => {}
                    }
                }
            }
            (3, Field::Bytes(b)) => {
                saw_trainer_or_normalizer = true;
                let mut q = Pb::new(b);
                while let Some((n, f)) = q.next()? {
                    match (n, f) {
                        (2, Field::Bytes(m)) => p.has_charsmap = !m.is_empty(),
                        (3, Field::Varint(v)) => p.add_dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => p.remove_extra_whitespaces = v != 0,
                        (5, Field::Varint(v)) => p.escape_whitespaces = v != 0,
                        _ => {}
                    }
                }
            }
            (1..=3, _) => return Err(format!("field {num} has the wrong wire type")),
            _ => {}
        }
    }
    if p.pieces.is_empty() {
        return Err("no pieces".into());
    }
    if !saw_trainer_or_normalizer {
        return Err("no trainer or normalizer spec".into());
    }
    Ok(p)
}

#[derive(Debug)]
enum Algo {
    /// The merger and the mergeable pieces' table (other pieces are empty texts there).
    Bpe(SpmModel, TokenTable),
    Unigram {
        map: FxHashMap<Box<str>, (TokenId, f32)>,
        max_chars: usize,
        unk_score: f32,
    },
}

/// A tokenizer loaded from a SentencePiece `tokenizer.model`.
#[derive(Debug)]
pub struct SentencePieceTokenizer {
    pieces: Vec<String>,
    types: Vec<TokenType>,
    algo: Algo,
    byte_ids: [Option<TokenId>; 256],
    byte_fallback: bool,
    unk: Option<TokenId>,
    bos: Option<TokenId>,
    eos: Option<TokenId>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    specials: FxHashMap<String, TokenId>,
}

impl SentencePieceTokenizer {
    /// Load a `tokenizer.model`.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parse the protobuf bytes; `path` is only used in error messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let p = parse_proto(bytes).map_err(|e| TokenizerError::format(path, FORMAT, e))?;
        if p.has_charsmap {
            log::warn!(
                "{}: precompiled normalization map ignored (identity normalization only)",
                path.display()
            );
        }
        let n = p.pieces.len();
        let id_of =
            |v: i64| -> Option<TokenId> { (v >= 0 && (v as usize) < n).then_some(v as TokenId) };
        let pieces: Vec<String> = p.pieces.iter().map(|(s, _, _)| s.clone()).collect();
        let types: Vec<TokenType> = p
            .pieces
            .iter()
            .map(|&(_, _, t)| TokenType::from_i32(t))
            .collect();
        let mut byte_ids = [None; 256];
        for (i, (s, _, _)) in p.pieces.iter().enumerate() {
            if types[i] == TokenType::Byte {
                if let Some(b) = s
                    .strip_prefix("<0x")
                    .and_then(|h| h.strip_suffix('>'))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    byte_ids[b as usize] = Some(i as TokenId);
                }
            }
        }
        let mergeable = |t: TokenType| matches!(t, TokenType::Normal | TokenType::UserDefined);
        let algo = match p.model_type {
            1 => {
                let mut map = FxHashMap::default();
                let mut max_chars = 1;
                let mut min_score = f32::MAX;
                for (i, (s, score, _)) in p.pieces.iter().enumerate() {
                    if mergeable(types[i]) {
                        map.insert(s.as_str().into(), (i as TokenId, *score));
                        max_chars = max_chars.max(s.chars().count());
                        min_score = min_score.min(*score);
                    }
                }
                if min_score == f32::MAX {
                    min_score = 0.0;
                }
                Algo::Unigram {
                    map,
                    max_chars,
                    unk_score: min_score - 10.0,
                }
            }
            2 => {
                let mut texts = StrList::new();
                for (i, (s, _, _)) in p.pieces.iter().enumerate() {
                    let text = if mergeable(types[i]) { s.as_str() } else { "" };
                    texts
                        .push(text)
                        .map_err(|e| TokenizerError::format(path, FORMAT, e.to_string()))?;
                }
                let texts = TokenTable::new(texts);
                let scores = p
                    .pieces
                    .iter()
                    .map(|&(_, s, _)| s)
                    .collect::<Vec<_>>()
                    .into();
                let mut m = SpmModel::new(&texts, scores, id_of(p.unk_id));
                // Byte pieces are not mergeable text, so give the merger the byte table here.
                *m.byte_ids = if p.byte_fallback {
                    byte_ids
                } else {
                    [None; 256]
                };
                Algo::Bpe(m, texts)
            }
            t => {
                return Err(TokenizerError::format(
                    path,
                    FORMAT,
                    format!("model type {t} is not supported (BPE and unigram are)"),
                ))
            }
        };
        let specials = pieces
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                matches!(
                    types[*i],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                )
            })
            .map(|(i, s)| (s.clone(), i as TokenId))
            .collect();
        Ok(SentencePieceTokenizer {
            pieces,
            types,
            algo,
            byte_ids,
            byte_fallback: p.byte_fallback,
            unk: id_of(p.unk_id),
            bos: id_of(p.bos_id),
            eos: id_of(p.eos_id),
            add_dummy_prefix: p.add_dummy_prefix,
            remove_extra_whitespaces: p.remove_extra_whitespaces,
            escape_whitespaces: p.escape_whitespaces,
            specials,
        })
    }

    fn normalize(&self, text: &str) -> String {
        let mut s: String = if self.remove_extra_whitespaces {
            let mut out = String::with_capacity(text.len());
            for w in text.split(' ').filter(|w| !w.is_empty()) {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(w);
            }
            out
        } else {
            text.to_string()
        };
        if self.add_dummy_prefix && !s.is_empty() {
            s.insert(0, ' ');
        }
        if self.escape_whitespaces {
            s = s.replace(' ', "▁");
        }
        s
    }

    fn push_unknown(&self, piece: &str, out: &mut Vec<TokenId>) {
        if self.byte_fallback {
            for &b in piece.as_bytes() {
                if let Some(id) = self.byte_ids[b as usize].or(self.unk) {
                    out.push(id);
                }
            }
        } else if let Some(u) = self.unk {
            // Consecutive unknown characters become one unknown token.
            if out.last() != Some(&u) {
                out.push(u);
            }
        }
    }

    fn encode_normalized(&self, s: &str, out: &mut Vec<TokenId>) {
        match &self.algo {
            Algo::Bpe(spm, texts) => {
                let mut tmp = Vec::new();
                spm.encode(texts, s, &mut SpmScratch::default(), &mut tmp);
                // Without byte fallback every unknown byte became unk: merge runs of them.
                for id in tmp {
                    if self.byte_fallback || Some(id) != self.unk || out.last() != Some(&id) {
                        out.push(id);
                    }
                }
            }
            Algo::Unigram {
                map,
                max_chars,
                unk_score,
            } => {
                // Viterbi over character positions.
                let starts: Vec<usize> = s
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain(std::iter::once(s.len()))
                    .collect();
                let nc = starts.len() - 1;
                let mut best = vec![f32::NEG_INFINITY; nc + 1];
                let mut back: Vec<(usize, Option<TokenId>)> = vec![(0, None); nc + 1];
                best[0] = 0.0;
                for i in 0..nc {
                    if best[i] == f32::NEG_INFINITY {
                        continue;
                    }
                    let mut matched_single = false;
                    for l in 1..=(*max_chars).min(nc - i) {
                        let piece = &s[starts[i]..starts[i + l]];
                        if let Some(&(id, score)) = map.get(piece) {
                            let sc = if self.types[id as usize] == TokenType::UserDefined {
                                0.0
                            } else {
                                score
                            };
                            if l == 1 {
                                matched_single = true;
                            }
                            if best[i] + sc > best[i + l] {
                                best[i + l] = best[i] + sc;
                                back[i + l] = (i, Some(id));
                            }
                        }
                    }
                    if !matched_single && best[i] + unk_score > best[i + 1] {
                        best[i + 1] = best[i] + unk_score;
                        back[i + 1] = (i, None);
                    }
                }
                let mut path = Vec::new();
                let mut j = nc;
                while j > 0 {
                    let (i, id) = back[j];
                    path.push((i, j, id));
                    j = i;
                }
                for (i, j, id) in path.into_iter().rev() {
                    match id {
                        Some(id) => out.push(id),
                        None => self.push_unknown(&s[starts[i]..starts[j]], out),
                    }
                }
            }
        }
    }
}

impl Tokenizer for SentencePieceTokenizer {
    fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<TokenId>> {
        let mut out = Vec::new();
        push_n(&mut out, self.bos, opts.num_bos);
        if opts.parse_special && !self.specials.is_empty() {
            // Split out control/user-defined pieces written in the text, longest first.
            let mut names: Vec<(&String, &TokenId)> = self
                .specials
                .iter()
                .filter(|(s, _)| !s.is_empty())
                .collect();
            names.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(b.1)));
            let mut rest = text;
            while !rest.is_empty() {
                let hit = names
                    .iter()
                    .filter_map(|(s, &id)| rest.find(s.as_str()).map(|p| (p, s.len(), id)))
                    .min_by_key(|&(p, l, _)| (p, std::cmp::Reverse(l)));
                let (p, l, id) = match hit {
                    Some(h) => h,
                    None => (rest.len(), 0, TokenId::MAX),
                };
                if p > 0 {
                    let norm = self.normalize(&rest[..p]);
                    self.encode_normalized(&norm, &mut out);
                }
                if id != TokenId::MAX {
                    out.push(id);
                }
                rest = &rest[p + l..];
            }
        } else {
            let norm = self.normalize(text);
            self.encode_normalized(&norm, &mut out);
        }
        push_n(&mut out, self.eos, opts.num_eos);
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    fn bos_id(&self) -> Option<TokenId> {
        self.bos
    }

    fn eos_id(&self) -> Option<TokenId> {
        self.eos
    }

    fn special_token_id(&self, text: &str) -> Option<TokenId> {
        self.specials.get(text).copied()
    }

    fn is_special(&self, id: TokenId) -> bool {
        matches!(
            self.types.get(id as usize),
            Some(TokenType::Control | TokenType::Unknown | TokenType::Unused)
        )
    }

    fn piece(&self, id: TokenId) -> Option<String> {
        self.pieces.get(id as usize).cloned()
    }

    fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>> {
        let p = self
            .pieces
            .get(id as usize)
            .ok_or(TokenizerError::BadTokenId {
                id,
                vocab_size: self.pieces.len(),
            })?;
        Ok(match self.types[id as usize] {
            TokenType::Control | TokenType::Unused | TokenType::Undefined => {
                if render_special {
                    Cow::Borrowed(p.as_bytes())
                } else {
                    Cow::Borrowed(&[])
                }
            }
            TokenType::Unknown => {
                if render_special {
                    Cow::Borrowed(p.as_bytes())
                } else {
                    Cow::Borrowed(" \u{2047} ".as_bytes())
                }
            }
            TokenType::Byte => match p
                .strip_prefix("<0x")
                .and_then(|h| h.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => Cow::Owned(vec![b]),
                None => Cow::Borrowed(p.as_bytes()),
            },
            _ => Cow::Owned(p.replace('▁', " ").into_bytes()),
        })
    }

    fn strips_leading_space(&self) -> bool {
        self.add_dummy_prefix
    }

    fn kind(&self) -> &'static str {
        "sentencepiece"
    }
}
