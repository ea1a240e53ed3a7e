//! `load_tokenizer(path)`: find out which format a tokenizer file is by trying the loaders in
//! ExecuTorch's order (tokenizer.json, tiktoken, SentencePiece, llama2c) and keep the first that
//! accepts it; if none does, one error lists what each loader said.

use std::path::Path;

use crate::{
    HfTokenizer, Llama2cTokenizer, Result, SentencePieceTokenizer, TiktokenTokenizer, Tokenizer,
    TokenizerError,
};

/// The standalone tokenizer file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Hugging Face `tokenizer.json` (or a directory holding one).
    HuggingFace,
    /// tiktoken (`<base64> <rank>` lines) with Llama 3 special tokens.
    Tiktoken,
    /// SentencePiece `tokenizer.model`.
    SentencePiece,
    /// llama2c `tokenizer.bin`.
    Llama2c,
}

impl TokenizerKind {
    /// All kinds, in detection order.
    pub const ALL: [TokenizerKind; 4] = [
        TokenizerKind::HuggingFace,
        TokenizerKind::Tiktoken,
        TokenizerKind::SentencePiece,
        TokenizerKind::Llama2c,
    ];

    /// The loader's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::HuggingFace => "tokenizer.json",
            TokenizerKind::Tiktoken => "tiktoken",
            TokenizerKind::SentencePiece => "sentencepiece",
            TokenizerKind::Llama2c => "llama2c",
        }
    }

    /// Load `path` as this kind.
    pub fn load(self, path: &Path) -> Result<Box<dyn Tokenizer>> {
        Ok(match self {
            TokenizerKind::HuggingFace => Box::new(HfTokenizer::from_path(path)?),
            TokenizerKind::Tiktoken => Box::new(TiktokenTokenizer::from_path(path)?),
            TokenizerKind::SentencePiece => Box::new(SentencePieceTokenizer::from_path(path)?),
            TokenizerKind::Llama2c => Box::new(Llama2cTokenizer::from_path(path)?),
        })
    }
}

/// Load a tokenizer file (or a directory holding `tokenizer.json`), detecting its format.
pub fn load_tokenizer(path: impl AsRef<Path>) -> Result<Box<dyn Tokenizer>> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(TokenizerError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    if path.is_dir() {
        return TokenizerKind::HuggingFace.load(path);
    }
    let mut attempts = Vec::new();
    for kind in TokenizerKind::ALL {
        match kind.load(path) {
            Ok(t) => {
                log::info!("Loaded {} tokenizer from {}", kind.name(), path.display());
                return Ok(t);
            }
            Err(TokenizerError::Io { path, source }) => {
                return Err(TokenizerError::Io { path, source })
            }
            Err(e) => attempts.push((kind.name(), e.to_string())),
        }
    }
    if std::fs::read(path).is_ok_and(|b| b.starts_with(b"GGUF")) {
        attempts.push((
            "gguf",
            "this is a GGUF model: build its tokenizer with GgufTokenizer::from_vocab".into(),
        ));
    }
    Err(TokenizerError::NoLoader {
        path: path.to_path_buf(),
        attempts,
    })
}
