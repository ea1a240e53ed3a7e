//! The runner's error type: every failure a user can cause (bad files, an empty or too-long
//! prompt, a tokenizer that does not fit the model) is a value with a clear message, never an
//! abort.

use std::path::PathBuf;

/// Why a runner call failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The model file could not be loaded.
    #[error(transparent)]
    Load(#[from] lmrun_loader::LoadError),
    /// The GGUF container is malformed.
    #[error(transparent)]
    Gguf(#[from] lmrun_gguf::GgufError),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] lmrun_models::ModelError),
    /// The ExecuTorch program could not be loaded or run.
    #[error(transparent)]
    Pte(#[from] lmrun_pte::PteError),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] lmrun_tokenizers::TokenizerError),
    /// The tokenizer stored in a model file cannot be built.
    #[error("{}: {source}", path.display())]
    FileTokenizer {
        /// The model file.
        path: PathBuf,
        /// What was wrong.
        source: lmrun_tokenizers::TokenizerError,
    },
    /// The file is not a model format lmrun knows.
    #[error("{}: not a model lmrun can run ({what})", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What was found.
        what: String,
    },
    /// The context asked for is longer than the model was trained for.
    #[error(
        "{}: a context of {requested} tokens is longer than the {trained} the model was trained \
         for (quality degrades past it); ask for at most {trained}, or allow it explicitly \
         (allow_long_context)",
        path.display()
    )]
    ContextTooLong {
        /// The model file.
        path: PathBuf,
        /// Positions asked for.
        requested: usize,
        /// The model's training context (`<arch>.context_length`).
        trained: usize,
    },
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt does not fit in the context that is left.
    #[error(
        "the prompt has {prompt_tokens} tokens but only {left} of the context's {context} \
         positions are left{}",
        if *left == *context {
            " (use a shorter prompt or a larger context)".to_string()
        } else {
            format!(
                " ({} hold the conversation so far; use a shorter prompt, a larger context, \
                 or reset)",
                context - left
            )
        }
    )]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Positions left.
        left: usize,
        /// The context size.
        context: usize,
    },
    /// No room to generate any token: `seq_len` caps prompt + generated tokens at or below
    /// the prompt's length.
    #[error(
        "no room to generate: the prompt has {prompt_tokens} tokens and seq_len caps the whole \
         sequence at {seq_len} tokens (raise seq_len, or -1 for the context)"
    )]
    NoRoom {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The cap on prompt + generated tokens.
        seq_len: i64,
    },
    /// The tokenizer does not fit the model.
    #[error("tokenizer does not match the model: {0}")]
    TokenizerMismatch(String),
    /// A method the runner needs is missing.
    #[error("the model has no method '{0}'")]
    MissingMethod(String),
    /// A stop request (`stop()`, Ctrl-C) interrupted a call before it finished; nothing was
    /// added to the conversation.
    #[error("stopped")]
    Cancelled,
    /// A bad argument.
    #[error("{0}")]
    InvalidArgument(String),
}

impl RunnerError {
    /// Whether this error only says that a stop request interrupted the call.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            RunnerError::Cancelled | RunnerError::Model(lmrun_models::ModelError::Cancelled)
        )
    }
}
