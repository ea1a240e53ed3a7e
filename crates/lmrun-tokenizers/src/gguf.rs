//! The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata. The runner reads the
//! keys into a plain [`GgufVocab`] (this crate does not depend on the GGUF parser) and
//! [`GgufTokenizer::from_vocab`] turns it into a tokenizer that matches llama.cpp: `llama`
//! vocabularies use score-driven SPM merges with byte fallback and `▁` for spaces, `gpt2`
//! vocabularies use byte-level BPE by merge rank behind the pre-tokenizer named by
//! `tokenizer.ggml.pre`, `gemma4` vocabularies SentencePiece-style BPE over characters and
//! `bert` vocabularies WordPiece. Special tokens written in the text are split out first.

use std::borrow::Cow;

use aho_corasick::AhoCorasick;
use lmrun_gguf::LeArray;
use rustc_hash::FxHashMap;

use crate::bpe::{merge_word, BpeScratch, MergeTable};
use crate::pretok::PreTokenizer;
use crate::spm::{SpmModel, SpmScratch};
use crate::spm_bpe::{SpmBpeModel, SpmBpeScratch};
use crate::unicode::{byte_to_char, bytelevel_to_bytes};
use crate::vocab::{StrList, TokenTable};
use crate::wpm::WpmModel;
use crate::{push_n, EncodeOptions, Result, TokenId, Tokenizer, TokenizerError};

/// The tokenizer metadata of a GGUF file (`tokenizer.ggml.*` keys), filled by the caller.
#[derive(Clone, Debug, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"llama"` (SPM), `"gpt2"` (byte-level BPE), `"gemma4"`
    /// (SentencePiece-style BPE) or `"bert"` (WordPiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a `gpt2` vocabulary.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens` (kept, without copying, as the tokenizer's vocabulary).
    pub tokens: StrList,
    /// `tokenizer.ggml.scores` (needed by `llama`; kept, without copying, by the tokenizer).
    pub scores: Option<LeArray<f32>>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub token_types: Option<LeArray<i32>>,
    /// `tokenizer.ggml.merges` (needed by `gpt2`), `"left right"` per entry in rank order.
    pub merges: Option<StrList>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot_id: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`.
    pub eom_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
}

/// Heap bytes a [`GgufTokenizer`] holds, by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenizerMemory {
    /// Token texts (one arena), their offsets and the text → id index.
    pub vocab: usize,
    /// One byte of token type per token.
    pub types: usize,
    /// SPM: scores and the character-pair set; BPE: the merge table and byte ids.
    pub model: usize,
    /// The special tokens and the matcher that finds them in text.
    pub specials: usize,
}

impl TokenizerMemory {
    /// Sum of the parts.
    pub fn total(&self) -> usize {
        self.vocab + self.types + self.model + self.specials
    }
}

/// How a vocabulary entry behaves (GGUF `tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// Type 0 or anything unknown: never produced from text, renders as nothing.
    Undefined,
    /// Ordinary text token.
    Normal,
    /// The unknown token.
    Unknown,
    /// Control token (BOS, `<start_of_turn>`): only from text when special parsing is on.
    Control,
    /// User-defined token: always split out of text as one token.
    UserDefined,
    /// Unused slot.
    Unused,
    /// Byte-fallback token `<0xXX>`.
    Byte,
}

impl TokenType {
    /// From the GGUF integer.
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

#[derive(Debug)]
enum Model {
    Spm {
        spm: SpmModel,
        add_space_prefix: bool,
    },
    Bpe {
        pre: PreTokenizer,
        merges: MergeTable,
        byte_ids: Box<[TokenId; 256]>,
    },
    SpmBpe(SpmBpeModel),
    Wpm(WpmModel),
}

/// A tokenizer built from GGUF metadata; behaves like llama.cpp's `llama_tokenize`.
#[derive(Debug)]
pub struct GgufTokenizer {
    model: Model,
    /// Token texts and the text → id index, held once for every use.
    vocab: TokenTable,
    types: Vec<TokenType>,
    bos: Option<TokenId>,
    eos: Option<TokenId>,
    eog: Vec<TokenId>,
    add_bos: bool,
    add_eos: bool,
    /// Special tokens in matching priority (longest text first).
    specials: Vec<TokenId>,
    /// Finds which special tokens occur anywhere in a text.
    special_ac: Option<AhoCorasick>,
}

/// Token texts llama.cpp treats as end-of-generation (and forces to control type).
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// FIM pad/repo/separator markers: forced to control type and also end generation.
const FIM_EOG_NAMES: &[&str] = &[
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// Other token texts llama.cpp forces to control type when it finds them (EOT, EOM, FIM).
const FORCED_CONTROL: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];

/// Token texts llama.cpp makes user-defined whatever the file says (gpt-oss harmony format).
const FORCED_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

impl GgufTokenizer {
    /// Build the tokenizer; fails on an unknown model or pre-tokenizer or inconsistent arrays.
    pub fn from_vocab(v: GgufVocab) -> Result<Self> {
        let n = v.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Vocab(
                "tokenizer.ggml.tokens is empty".into(),
            ));
        }
        if n > u32::MAX as usize / 2 {
            return Err(TokenizerError::Vocab(format!("{n} tokens is too many")));
        }
        let check_id = |name: &str, id: Option<u32>| -> Result<Option<TokenId>> {
            match id {
                Some(i) if (i as usize) >= n => {
                    log::warn!("GGUF tokenizer: {name} = {i} is outside the vocabulary ({n} tokens); ignored");
                    Ok(None)
                }
                other => Ok(other),
            }
        };
        let mut types: Vec<TokenType> = match &v.token_types {
            Some(t) if t.len() == n => t.iter().map(TokenType::from_i32).collect(),
            Some(t) => {
                return Err(TokenizerError::Vocab(format!(
                    "tokenizer.ggml.token_type has {} entries, tokens has {n}",
                    t.len()
                )))
            }
            None => vec![TokenType::Normal; n],
        };
        // Moves the texts (no copy) and indexes them; the last id wins for a repeated text.
        let vocab = TokenTable::new(v.tokens);
        let mut eog = mark_special_types(&vocab, &mut types);

        let mut def_add_eos = false;
        let mut force_add_bos = false;
        let (model, def_bos, def_eos, def_unk, def_add_bos) = match v.model.as_str() {
            "llama" => {
                let scores = match v.scores {
                    Some(s) if s.len() == n => s,
                    Some(s) => {
                        return Err(TokenizerError::Vocab(format!(
                            "tokenizer.ggml.scores has {} entries, tokens has {n}",
                            s.len()
                        )))
                    }
                    // Every score 0 (what a missing entry reads as).
                    None => LeArray::default(),
                };
                let unk = check_id("unknown_token_id", v.unk_id.or(Some(0)))?;
                let spm = SpmModel::new(&vocab, scores, unk);
                (
                    Model::Spm {
                        spm,
                        add_space_prefix: v.add_space_prefix.unwrap_or(true),
                    },
                    Some(1),
                    Some(2),
                    Some(0),
                    true,
                )
            }
            "gpt2" => {
                let (model, def_add_bos) = bpe_model(v.pre.as_deref(), v.merges.as_ref(), &vocab)?;
                (model, Some(11), Some(11), None, def_add_bos)
            }
            "gemma4" => {
                if let Some(pre) = v.pre.as_deref().filter(|p| *p != "gemma4") {
                    log::debug!(
                        "GGUF tokenizer: gemma4 vocabulary; tokenizer.ggml.pre {pre:?} ignored"
                    );
                }
                let src = v.merges.as_ref().ok_or_else(|| {
                    TokenizerError::Vocab("model gemma4 needs tokenizer.ggml.merges".into())
                })?;
                let merges = merge_table(src, &vocab);
                // llama.cpp always adds BOS for Gemma 4, whatever add_bos_token says.
                force_add_bos = true;
                (
                    Model::SpmBpe(SpmBpeModel::new(&vocab, merges)),
                    None,
                    None,
                    None,
                    true,
                )
            }
            "bert" => {
                let unk = check_id("unknown_token_id", v.unk_id.or(Some(100)))?;
                // [CLS] text [SEP]: BOS is the CLS token and the SEP token closes the text
                // (llama.cpp's `add_sep`), so SEP is the EOS here.
                def_add_eos = true;
                (
                    Model::Wpm(WpmModel::new(&vocab, unk)),
                    Some(101),
                    Some(102),
                    Some(100),
                    true,
                )
            }
            other => return Err(TokenizerError::UnknownModel(other.to_string())),
        };
        let _ = def_unk;
        let bos = check_id("bos_token_id", v.bos_id.or(def_bos))?;
        let eos = check_id("eos_token_id", v.eos_id.or(def_eos))?;
        for id in [
            eos,
            check_id("eot_token_id", v.eot_id)?,
            check_id("eom_token_id", v.eom_id)?,
        ]
        .into_iter()
        .flatten()
        {
            if !eog.contains(&id) {
                eog.push(id);
            }
        }
        eog.sort_unstable();
        eog.dedup();

        let (specials, special_ac) = special_matcher(&vocab, &types)?;

        let t = GgufTokenizer {
            model,
            vocab,
            types,
            bos,
            eos,
            eog,
            add_bos: force_add_bos || v.add_bos.unwrap_or(def_add_bos),
            add_eos: v.add_eos.unwrap_or(def_add_eos),
            specials,
            special_ac,
        };
        let m = t.memory();
        log::debug!(
            "GGUF tokenizer: {n} tokens, {} KiB: vocabulary {} KiB, types {} KiB, model {} KiB, \
             special tokens {} KiB",
            m.total() >> 10,
            m.vocab >> 10,
            m.types >> 10,
            m.model >> 10,
            m.specials >> 10
        );
        Ok(t)
    }

    /// The heap memory the tokenizer holds, by part (capacities, so a little above the bytes
    /// in use; hash tables counted without the allocator's own overhead).
    pub fn memory(&self) -> TokenizerMemory {
        TokenizerMemory {
            vocab: self.vocab.heap_bytes(),
            types: self.types.capacity(),
            model: match &self.model {
                Model::Spm { spm, .. } => spm.heap_bytes(),
                Model::Bpe { merges, .. } => merges.heap_bytes() + 256 * 4,
                Model::SpmBpe(m) => m.heap_bytes(),
                Model::Wpm(_) => 0,
            },
            specials: self.specials.capacity() * 4
                + self
                    .special_ac
                    .as_ref()
                    .map_or(0, AhoCorasick::memory_usage),
        }
    }

    /// Whether the model asks for a BOS token in front of a prompt (`add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether the model asks for an EOS token after a prompt (`add_eos_token`).
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// The type of token `id`.
    pub fn token_type(&self, id: TokenId) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Encode exactly as llama.cpp's `llama_tokenize(text, add_special, parse_special)`.
    pub fn encode_llama(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        let opts = EncodeOptions {
            num_bos: usize::from(add_special && self.add_bos),
            num_eos: usize::from(add_special && self.add_eos),
            parse_special,
        };
        self.encode_inner(text, &opts)
    }

    /// Split `text` into raw-text pieces and special tokens (llama.cpp `tokenizer_st_partition`).
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Frag<'t>> {
        let mut frags = vec![Frag::Text(text)];
        let Some(ac) = &self.special_ac else {
            return frags;
        };
        // Which special tokens occur at all (patterns are in priority order).
        let mut present = vec![];
        let mut seen = vec![false; self.specials.len()];
        for m in ac.find_overlapping_iter(text) {
            let k = m.pattern().as_usize();
            if let Some(s) = seen.get_mut(k) {
                if !*s {
                    *s = true;
                    present.push(k);
                }
            }
        }
        present.sort_unstable();
        for k in present {
            let id = self.specials[k];
            let ty = self.types[id as usize];
            if !parse_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            let pat = &self.vocab.texts()[id as usize];
            let mut next = Vec::with_capacity(frags.len() + 4);
            for f in frags {
                match f {
                    Frag::Text(mut t) => {
                        while let Some(pos) = t.find(pat) {
                            if pos > 0 {
                                next.push(Frag::Text(&t[..pos]));
                            }
                            next.push(Frag::Token(id));
                            t = &t[pos + pat.len()..];
                        }
                        if !t.is_empty() {
                            next.push(Frag::Text(t));
                        }
                    }
                    tok => next.push(tok),
                }
            }
            frags = next;
        }
        frags
    }

    fn encode_inner(&self, text: &str, opts: &EncodeOptions) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(text.len() / 3 + 4);
        push_n(&mut out, self.bos, opts.num_bos);
        let frags = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, opts.parse_special)
        };
        match &self.model {
            Model::Spm {
                spm,
                add_space_prefix,
            } => {
                let mut prev_special = true;
                let mut scratch = SpmScratch::default();
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Text(t) => {
                            buf.clear();
                            if *add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for c in t.chars() {
                                buf.push(if c == ' ' { '▁' } else { c });
                            }
                            spm.encode(&self.vocab, &buf, &mut scratch, &mut out);
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe {
                pre,
                merges,
                byte_ids,
            } => {
                let mut scratch = BpeScratch::default();
                let mut ids = Vec::new();
                let mut cache: FxHashMap<&str, (usize, usize)> = FxHashMap::default();
                let mut mapped = String::new();
                for f in frags {
                    match f {
                        Frag::Text(t) => {
                            for (a, b) in pre.split(t) {
                                let word = &t[a..b];
                                if let Some(&(s, e)) = cache.get(word) {
                                    out.extend_from_within(s..e);
                                    continue;
                                }
                                let start = out.len();
                                if pre.ignore_merges {
                                    mapped.clear();
                                    crate::unicode::bytes_to_bytelevel(
                                        word.as_bytes(),
                                        &mut mapped,
                                    );
                                    if let Some(id) = self.vocab.get(&mapped) {
                                        out.push(id);
                                        cache.insert(word, (start, out.len()));
                                        continue;
                                    }
                                }
                                ids.clear();
                                ids.extend(word.bytes().map(|b| byte_ids[b as usize]));
                                merge_word(merges, &ids, &mut scratch, &mut out);
                                if word.len() <= 64 {
                                    cache.insert(word, (start, out.len()));
                                }
                            }
                        }
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
            Model::SpmBpe(m) => {
                let mut scratch = SpmBpeScratch::default();
                for f in frags {
                    match f {
                        Frag::Text(t) => m.encode(&self.vocab, t, &mut scratch, &mut out),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
            Model::Wpm(m) => {
                for f in frags {
                    match f {
                        Frag::Text(t) => m.encode(&self.vocab, t, &mut out),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
        }
        push_n(&mut out, self.eos, opts.num_eos);
        out
    }
}

#[derive(Clone, Copy, Debug)]
enum Frag<'t> {
    Text(&'t str),
    Token(TokenId),
}

fn parse_byte_token(s: &str) -> Option<u8> {
    let hex = s.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer for GgufTokenizer {
    fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<TokenId>> {
        Ok(self.encode_inner(text, opts))
    }

    fn default_options(&self, parse_special: bool) -> EncodeOptions {
        EncodeOptions {
            num_bos: usize::from(self.add_bos),
            num_eos: usize::from(self.add_eos),
            parse_special,
        }
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn bos_id(&self) -> Option<TokenId> {
        self.bos
    }

    fn eos_id(&self) -> Option<TokenId> {
        self.eos
    }

    fn eog_ids(&self) -> Vec<TokenId> {
        self.eog.clone()
    }

    fn special_token_id(&self, text: &str) -> Option<TokenId> {
        // The index gives the last id with this text; when that one is not special, an earlier
        // duplicate may be (the highest such id answers, as a text → special id map would).
        let id = self.vocab.get(text)?;
        if self.specials.contains(&id) {
            return Some(id);
        }
        self.specials
            .iter()
            .copied()
            .filter(|&s| self.vocab.text(s) == Some(text))
            .max()
    }

    fn is_special(&self, id: TokenId) -> bool {
        matches!(
            self.token_type(id),
            Some(
                TokenType::Control | TokenType::Unknown | TokenType::Unused | TokenType::Undefined
            )
        )
    }

    fn piece(&self, id: TokenId) -> Option<String> {
        self.vocab.text(id).map(str::to_string)
    }

    fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>> {
        let text = self.vocab.text(id).ok_or(TokenizerError::BadTokenId {
            id,
            vocab_size: self.vocab.len(),
        })?;
        let ty = self.types[id as usize];
        // Every model but byte-level BPE writes spaces as `▁` and bytes as `<0xXX>`.
        let spm = !matches!(self.model, Model::Bpe { .. });
        Ok(match ty {
            TokenType::Control | TokenType::Unused | TokenType::Undefined => {
                if render_special {
                    Cow::Borrowed(text.as_bytes())
                } else {
                    Cow::Borrowed(&[])
                }
            }
            TokenType::Unknown => {
                if render_special {
                    Cow::Borrowed(text.as_bytes())
                } else {
                    Cow::Borrowed("\u{2585}".as_bytes())
                }
            }
            TokenType::Byte if spm => match parse_byte_token(text) {
                Some(b) => Cow::Owned(vec![b]),
                None => Cow::Borrowed(text.as_bytes()),
            },
            TokenType::UserDefined if !spm => Cow::Borrowed(text.as_bytes()),
            _ if spm => {
                if text.contains('▁') {
                    Cow::Owned(text.replace('▁', " ").into_bytes())
                } else {
                    Cow::Borrowed(text.as_bytes())
                }
            }
            _ => match bytelevel_to_bytes(text) {
                Some(b) => Cow::Owned(b),
                None => {
                    // Characters outside the byte alphabet stand for themselves.
                    let mut out = Vec::with_capacity(text.len());
                    for c in text.chars() {
                        match crate::unicode::char_to_byte(c) {
                            Some(b) => out.push(b),
                            None => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
                        }
                    }
                    Cow::Owned(out)
                }
            },
        })
    }

    fn strips_leading_space(&self) -> bool {
        matches!(
            self.model,
            Model::Spm {
                add_space_prefix: true,
                ..
            } | Model::Wpm(_)
        )
    }

    fn kind(&self) -> &'static str {
        match self.model {
            Model::Spm { .. } => "gguf-spm",
            Model::Bpe { .. } => "gguf-bpe",
            Model::SpmBpe(_) => "gguf-spm-bpe",
            Model::Wpm(_) => "gguf-wpm",
        }
    }
}

/// llama.cpp's type fixes by token text: well-known end and FIM markers become control tokens,
/// a few others user-defined; returns the end-of-generation ids found that way.
fn mark_special_types(vocab: &TokenTable, types: &mut [TokenType]) -> Vec<TokenId> {
    // llama.cpp forces well-known end/FIM markers to control type (the lists of the llama.cpp
    // vendored by llama-cpp-python 0.3.36), and a few others to user-defined.
    let mut eog: Vec<TokenId> = Vec::new();
    for name in EOG_NAMES.iter().chain(FIM_EOG_NAMES).chain(FORCED_CONTROL) {
        if let Some(id) = vocab.get(name) {
            if types[id as usize] != TokenType::Control {
                types[id as usize] = TokenType::Control;
            }
            if EOG_NAMES.contains(name) || FIM_EOG_NAMES.contains(name) {
                eog.push(id);
            }
        }
    }
    for name in FORCED_USER_DEFINED {
        if let Some(id) = vocab.get(name) {
            types[id as usize] = TokenType::UserDefined;
        }
    }
    let has = |eog: &[TokenId], t: &str| vocab.get(t).is_some_and(|id| eog.contains(&id));
    if (has(&eog, "<|return|>") && has(&eog, "<|call|>") && has(&eog, "<|end|>"))
        || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>") && has(&eog, "<|end|>"))
    {
        if let Some(id) = vocab.get("<|end|>") {
            eog.retain(|&e| e != id);
            types[id as usize] = TokenType::UserDefined;
        }
    }
    if (has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>")) && has(&eog, "</s>") {
        if let Some(id) = vocab.get("</s>") {
            eog.retain(|&e| e != id);
            types[id as usize] = TokenType::Normal;
        }
    }
    eog
}

/// The byte-level BPE model of a `gpt2` vocabulary: the pre-tokenizer named by
/// `tokenizer.ggml.pre`, the merge table (merges naming texts outside the vocabulary are
/// skipped with a warning) and the byte → token map. Returns it with the pre-tokenizer's
/// default for adding BOS.
fn bpe_model(
    pre_name: Option<&str>,
    merges: Option<&StrList>,
    vocab: &TokenTable,
) -> Result<(Model, bool)> {
    let pre = PreTokenizer::from_gguf_pre(pre_name)?;
    if pre_name.is_none() {
        log::warn!(
            "GGUF tokenizer: tokenizer.ggml.pre is missing; using the default pre-tokenizer"
        );
    }
    let merges_src = merges
        .ok_or_else(|| TokenizerError::Vocab("model gpt2 needs tokenizer.ggml.merges".into()))?;
    let merges = merge_table(merges_src, vocab);
    let map = byte_to_char();
    let mut byte_ids = Box::new([TokenId::MAX; 256]);
    for (b, slot) in byte_ids.iter_mut().enumerate() {
        let mut buf = [0u8; 4];
        if let Some(id) = vocab.get(map[b].encode_utf8(&mut buf)) {
            *slot = id;
        }
    }
    let def_add_bos = pre.default_add_bos;
    Ok((
        Model::Bpe {
            pre,
            merges,
            byte_ids,
        },
        def_add_bos,
    ))
}

/// The merge table of `tokenizer.ggml.merges` (`"left right"` per entry in rank order) over
/// token ids; merges naming texts outside the vocabulary are skipped with a warning.
fn merge_table(merges_src: &StrList, vocab: &TokenTable) -> MergeTable {
    let mut merges = MergeTable::with_capacity(merges_src.len());
    let mut skipped = 0usize;
    let mut joined = String::new();
    for (rank, m) in merges_src.iter().enumerate() {
        // The separator is the first space after the first character.
        let first_len = m.chars().next().map_or(0, char::len_utf8);
        let Some(sep) = m
            .get(first_len..)
            .and_then(|r| r.find(' '))
            .map(|p| p + first_len)
        else {
            skipped += 1;
            continue;
        };
        let (l, r) = (&m[..sep], &m[sep + 1..]);
        joined.clear();
        joined.push_str(l);
        joined.push_str(r);
        match (vocab.get(l), vocab.get(r), vocab.get(&joined)) {
            (Some(a), Some(b), Some(c)) => merges.insert(a, b, rank as u32, c),
            _ => skipped += 1,
        }
    }
    if skipped > 0 {
        log::warn!(
            "GGUF tokenizer: {skipped} merges refer to texts outside the vocabulary; ignored"
        );
    }
    merges
}

/// The control, user-defined and unknown tokens with text, longest first, and a matcher that
/// finds them in a prompt (`None` when there are none).
fn special_matcher(
    vocab: &TokenTable,
    types: &[TokenType],
) -> Result<(Vec<TokenId>, Option<AhoCorasick>)> {
    let n = types.len();
    let mut specials: Vec<TokenId> = (0..n as TokenId)
        .filter(|&i| {
            matches!(
                types[i as usize],
                TokenType::Control | TokenType::UserDefined | TokenType::Unknown
            ) && !vocab.texts()[i as usize].is_empty()
        })
        .collect();
    let text = |id: TokenId| &vocab.texts()[id as usize];
    specials.sort_by(|&a, &b| text(b).len().cmp(&text(a).len()).then(a.cmp(&b)));
    let special_ac = if specials.is_empty() {
        None
    } else {
        let pats: Vec<&str> = specials.iter().map(|&i| text(i)).collect();
        Some(
            AhoCorasick::new(pats)
                .map_err(|e| TokenizerError::Vocab(format!("special tokens: {e}")))?,
        )
    };
    specials.shrink_to_fit();
    Ok((specials, special_ac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spm_vocab() -> GgufVocab {
        let toks = [
            "<unk>", "<s>", "</s>", "<0x41>", "▁", "a", "b", "▁a", "ab", "<ctl>", "<ud>",
        ];
        GgufVocab {
            model: "llama".into(),
            tokens: toks.iter().collect(),
            scores: Some(LeArray::from(vec![
                0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -2.0, -3.0, 0.0, 0.0,
            ])),
            token_types: Some(vec![2, 3, 3, 6, 1, 1, 1, 1, 1, 3, 4].into()),
            ..Default::default()
        }
    }

    #[test]
    fn spm_space_prefix_and_specials() {
        let t = GgufTokenizer::from_vocab(spm_vocab()).unwrap();
        assert_eq!(t.encode_llama("ab", true, false), [1, 7, 6]);
        assert_eq!(t.encode_llama("a<ctl>b", false, true), [7, 9, 4, 6]);
        // control text is plain text when special parsing is off; user-defined always splits
        let plain = t.encode_llama("<ctl>", false, false);
        assert!(!plain.contains(&9));
        assert_eq!(t.encode_llama("<ud>", false, false), [10]);
        assert_eq!(t.encode_llama("A", false, false), [4, 3]);
        assert_eq!(t.decode(&[1, 7, 6]).unwrap(), "ab");
    }

    /// Gemma 4's rules on a toy vocabulary: `▁` for spaces, merges by rank over characters,
    /// byte fallback for a character outside the vocabulary, newline runs whole.
    #[test]
    fn gemma4_spm_bpe() {
        let toks = [
            "<pad>", "<eos>", "<bos>", "<unk>", "a", "b", "▁", "▁a", "ab", "▁ab", "\n", "\n\n",
            "<0xC3>", "<0xA9>",
        ];
        let v = GgufVocab {
            model: "gemma4".into(),
            tokens: toks.iter().collect(),
            token_types: Some(vec![3, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 6, 6].into()),
            merges: Some(["▁ a", "▁a b", "a b"].iter().collect()),
            bos_id: Some(2),
            eos_id: Some(1),
            add_bos: Some(false),
            ..Default::default()
        };
        let t = GgufTokenizer::from_vocab(v).unwrap();
        assert_eq!(t.kind(), "gguf-spm-bpe");
        // "ab▁ab": `▁ a` (rank 0) and then `▁a b` win the second word over `a b` (rank 2)
        assert_eq!(t.encode_llama("ab ab", false, false), [8, 9]);
        assert_eq!(
            t.encode_llama("a\n\n\n\nb", false, false),
            [4, 10, 10, 10, 10, 5]
        );
        assert_eq!(t.encode_llama("\n\nb", false, false), [11, 5]);
        assert_eq!(t.encode_llama("é", false, false), [12, 13]);
        // Gemma 4 always gets its BOS, whatever add_bos_token says
        assert_eq!(t.encode_llama("a", true, false), [2, 4]);
        assert_eq!(t.decode(&[8, 9, 12, 13]).unwrap(), "ab abé");
    }

    #[test]
    fn bert_wordpiece() {
        let toks = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁hello", "▁world", "▁!", "▁wor", "ld",
        ];
        let v = GgufVocab {
            model: "bert".into(),
            tokens: toks.iter().collect(),
            token_types: Some(vec![3, 3, 3, 3, 1, 1, 1, 1, 1].into()),
            unk_id: Some(1),
            bos_id: Some(2),
            eos_id: Some(3),
            ..Default::default()
        };
        let t = GgufTokenizer::from_vocab(v).unwrap();
        assert_eq!(t.kind(), "gguf-wpm");
        assert_eq!(t.encode_llama("Hello, World!", false, false), [4, 1, 5, 6]);
        assert_eq!(t.encode_llama("hello", true, false), [2, 4, 3]);
        assert_eq!(t.decode(&[2, 4, 5, 3]).unwrap(), "hello world");
    }

    #[test]
    fn bad_model_and_pre() {
        let mut v = spm_vocab();
        v.model = "nope".into();
        assert!(matches!(
            GgufTokenizer::from_vocab(v),
            Err(TokenizerError::UnknownModel(_))
        ));
        let mut v = spm_vocab();
        v.model = "gpt2".into();
        v.pre = Some("mystery".into());
        v.merges = Some(StrList::new());
        assert!(matches!(
            GgufTokenizer::from_vocab(v),
            Err(TokenizerError::UnknownPre { .. })
        ));
    }
}
