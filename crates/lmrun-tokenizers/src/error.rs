//! One error type for every tokenizer in the crate, so callers (the runner, the CLI) can report
//! which file was bad and why without knowing which loader produced the failure.

use std::path::PathBuf;

/// Everything that can go wrong while loading a tokenizer or encoding/decoding with it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read from disk.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not a valid tokenizer of the expected format.
    #[error("{path}: not a valid {format} tokenizer: {reason}")]
    Format {
        /// The file that was being parsed.
        path: PathBuf,
        /// The format the loader expected (`tokenizer.json`, `tiktoken`, ...).
        format: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The vocabulary handed to a GGUF tokenizer is inconsistent or unsupported.
    #[error("GGUF tokenizer: {0}")]
    Vocab(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error(
        "GGUF tokenizer: unknown pre-tokenizer tokenizer.ggml.pre = {pre:?} (known: {})",
        known.join(", ")
    )]
    UnknownPre {
        /// The name in the file.
        pre: String,
        /// The names this crate implements.
        known: &'static [&'static str],
    },
    /// `tokenizer.ggml.model` names a tokenizer model this crate does not implement.
    #[error("GGUF tokenizer: unsupported tokenizer.ggml.model = {0:?} (supported: llama, gpt2, gemma4, bert)")]
    UnknownModel(String),
    /// No loader accepted the file; one line per loader says why.
    #[error("{path}: no tokenizer loader accepted this file:\n{}", .attempts.iter().map(|(n, e)| format!("  {n}: {e}")).collect::<Vec<_>>().join("\n"))]
    NoLoader {
        /// The file or directory given to `load_tokenizer`.
        path: PathBuf,
        /// `(loader name, what it said)` for every loader tried, in order.
        attempts: Vec<(&'static str, String)>,
    },
    /// A token id outside the vocabulary was passed to decode.
    #[error("token id {id} is out of range (vocab size {vocab_size})")]
    BadTokenId {
        /// The offending id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// An encode or decode operation failed inside a backend library.
    #[error("{0}")]
    Backend(String),
}

/// Shorthand result type.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

impl TokenizerError {
    pub(crate) fn format(
        path: &std::path::Path,
        format: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        TokenizerError::Format {
            path: path.to_path_buf(),
            format,
            reason: reason.into(),
        }
    }
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
