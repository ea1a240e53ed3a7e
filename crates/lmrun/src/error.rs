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
    /// The file is not a model format lmrun knows.
    #[error("{}: not a model lmrun can run ({what})", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What was found.
        what: String,
    },
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt does not fit in the context that is left.
    #[error(
        "the prompt has {prompt_tokens} tokens but only {left} positions are left in the \
         context of {context} (use a shorter prompt, a larger --seq-len, or reset)"
    )]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Positions left.
        left: usize,
        /// The context size.
        context: usize,
    },
    /// No room to generate any token.
    #[error("no room to generate: {left} positions left in the context of {context}, max_new_tokens resolves to 0")]
    NoRoom {
        /// Positions left.
        left: usize,
        /// The context size.
        context: usize,
    },
    /// The tokenizer does not fit the model.
    #[error("tokenizer does not match the model: {0}")]
    TokenizerMismatch(String),
    /// A method the runner needs is missing.
    #[error("the model has no method '{0}'")]
    MissingMethod(String),
    /// A bad argument.
    #[error("{0}")]
    InvalidArgument(String),
}
