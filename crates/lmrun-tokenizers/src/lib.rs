//! Tokenizers behind one trait: GGUF vocabularies (SentencePiece-style, byte-level BPE, Gemma 4's
//! character-level BPE, BERT's WordPiece), Hugging Face `tokenizer.json`, tiktoken,
//! SentencePiece `.model` and llama2c `tokenizer.bin`.
//!
//! A runner is only as right as its tokenizer, so the GGUF paths follow llama.cpp's rules
//! (score-driven SPM merges, rank-driven byte-level BPE with the pre-tokenizer picked by
//! `tokenizer.ggml.pre`, special-token partitioning) and are tested against llama.cpp's output
//! on real models. Every loader returns [`TokenizerError`] values naming the file on bad input;
//! nothing here panics on any input.
//!
//! Entry points: [`GgufTokenizer::from_vocab`] for GGUF files (the runner fills a
//! [`GgufVocab`] from `tokenizer.ggml.*` metadata) and [`load_tokenizer`] for the standalone
//! tokenizer files ExecuTorch models ship with.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bpe;
mod error;
mod gguf;
mod hf;
mod llama2c;
mod load;
mod pretok;
mod sentencepiece;
mod spm;
mod spm_bpe;
mod stream;
mod tiktoken;
mod unicode;
mod vocab;
mod wpm;

use std::borrow::Cow;

pub use error::{Result, TokenizerError};
pub use gguf::{GgufTokenizer, GgufVocab, TokenType, TokenizerMemory};
pub use hf::HfTokenizer;
pub use llama2c::Llama2cTokenizer;
pub use load::{load_tokenizer, TokenizerKind};
pub use pretok::{PreTokenizer, KNOWN_PRE};
pub use sentencepiece::SentencePieceTokenizer;
pub use stream::StreamDecoder;
pub use tiktoken::TiktokenTokenizer;
pub use vocab::{StrList, StrListFull};

/// A token id. Every format in this crate has fewer than 2^32 tokens.
pub type TokenId = u32;

/// How to encode one text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// How many BOS tokens to put in front (ExecuTorch's `bos` argument).
    pub num_bos: usize,
    /// How many EOS tokens to put at the end.
    pub num_eos: usize,
    /// Whether control tokens written in the text (`<start_of_turn>`, `<|im_start|>`) become
    /// single tokens (the chat path) or are tokenized as plain text.
    pub parse_special: bool,
}

/// One tokenizer, whatever file it came from.
///
/// Implementations are immutable after loading and can be shared between threads.
pub trait Tokenizer: Send + Sync {
    /// Encode `text` with explicit options.
    fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<TokenId>>;

    /// Encode `text` as ExecuTorch does: `num_bos` BOS ids, the text (special tokens in the
    /// text are plain text), `num_eos` EOS ids.
    fn encode(&self, text: &str, num_bos: usize, num_eos: usize) -> Result<Vec<TokenId>> {
        self.encode_with(
            text,
            &EncodeOptions {
                num_bos,
                num_eos,
                parse_special: false,
            },
        )
    }

    /// The options the model's own metadata asks for (e.g. GGUF `add_bos_token`), with
    /// `parse_special` as given.
    fn default_options(&self, parse_special: bool) -> EncodeOptions {
        EncodeOptions {
            num_bos: usize::from(self.bos_id().is_some()),
            num_eos: 0,
            parse_special,
        }
    }

    /// Number of token ids (the size of the embedding table the ids index).
    fn vocab_size(&self) -> usize;

    /// The beginning-of-sequence id, if the tokenizer has one.
    fn bos_id(&self) -> Option<TokenId>;

    /// The end-of-sequence id, if the tokenizer has one.
    fn eos_id(&self) -> Option<TokenId>;

    /// Every id that ends generation (EOS, end-of-turn, ...). Defaults to the EOS id.
    fn eog_ids(&self) -> Vec<TokenId> {
        self.eos_id().into_iter().collect()
    }

    /// The id of a special (control) token written as text, e.g. `"<|im_end|>"`.
    fn special_token_id(&self, text: &str) -> Option<TokenId>;

    /// Whether `id` is a special/control token (not rendered by default when decoding).
    fn is_special(&self, id: TokenId) -> bool;

    /// The vocabulary entry for `id` as stored (e.g. `▁the`, `Ġthe`, `<0x0A>`), for display.
    fn piece(&self, id: TokenId) -> Option<String>;

    /// The bytes `id` stands for in decoded text. Special tokens render as their text when
    /// `render_special` is set and as nothing otherwise. Bytes of one token need not be valid
    /// UTF-8 on their own (byte-fallback and byte-level tokens split characters).
    fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>>;

    /// Whether decoding drops one leading space from the first text token (SentencePiece
    /// "dummy prefix" models).
    fn strips_leading_space(&self) -> bool {
        false
    }

    /// Decode a whole sequence; special tokens are skipped. Invalid UTF-8 becomes U+FFFD.
    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        let mut dec = StreamDecoder::new(self.strips_leading_space());
        let mut out = String::new();
        for &id in ids {
            out.push_str(&dec.push(self, id, false)?);
        }
        out.push_str(&dec.finish());
        Ok(out)
    }

    /// A short name of the format ("gguf-spm", "gguf-bpe", "tokenizer.json", ...).
    fn kind(&self) -> &'static str;
}

impl<T: Tokenizer + ?Sized> Tokenizer for Box<T> {
    fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<TokenId>> {
        (**self).encode_with(text, opts)
    }
    fn encode(&self, text: &str, num_bos: usize, num_eos: usize) -> Result<Vec<TokenId>> {
        (**self).encode(text, num_bos, num_eos)
    }
    fn default_options(&self, parse_special: bool) -> EncodeOptions {
        (**self).default_options(parse_special)
    }
    fn vocab_size(&self) -> usize {
        (**self).vocab_size()
    }
    fn bos_id(&self) -> Option<TokenId> {
        (**self).bos_id()
    }
    fn eos_id(&self) -> Option<TokenId> {
        (**self).eos_id()
    }
    fn eog_ids(&self) -> Vec<TokenId> {
        (**self).eog_ids()
    }
    fn special_token_id(&self, text: &str) -> Option<TokenId> {
        (**self).special_token_id(text)
    }
    fn is_special(&self, id: TokenId) -> bool {
        (**self).is_special(id)
    }
    fn piece(&self, id: TokenId) -> Option<String> {
        (**self).piece(id)
    }
    fn token_bytes(&self, id: TokenId, render_special: bool) -> Result<Cow<'_, [u8]>> {
        (**self).token_bytes(id, render_special)
    }
    fn strips_leading_space(&self) -> bool {
        (**self).strips_leading_space()
    }
    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        (**self).decode(ids)
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

/// Add `n` copies of `id` (if any) to `out`; used by every implementation for BOS/EOS.
pub(crate) fn push_n(out: &mut Vec<TokenId>, id: Option<TokenId>, n: usize) {
    if let Some(id) = id {
        out.extend(std::iter::repeat_n(id, n));
    }
}
