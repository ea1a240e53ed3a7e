//! The one error type of the crate. Everything a model file or a caller can get wrong — an
//! unknown architecture, a missing or mis-shaped tensor, a quant type the kernels cannot
//! compute, a token id past the vocabulary, a position past the KV cache — is a [`ModelError`]
//! value that names the culprit, never a panic.

use lmrun_gguf::GgufError;
use lmrun_kernels::KernelError;

/// Errors from building or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `general.architecture` names an architecture this crate does not implement.
    #[error("unknown architecture '{arch}' (supported: {supported})")]
    UnknownArchitecture {
        /// The architecture in the file.
        arch: String,
        /// The supported ones, comma-separated.
        supported: String,
    },
    /// A tensor the architecture needs is not in the file.
    #[error("missing tensor '{name}' (required by architecture {arch})")]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The architecture.
        arch: String,
    },
    /// A tensor has another shape than the hyperparameters imply.
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?} (ggml order)")]
    BadShape {
        /// The tensor name.
        name: String,
        /// The expected shape.
        expected: Vec<u64>,
        /// The shape in the file.
        found: Vec<u64>,
    },
    /// A tensor's element type is not one the kernels can compute with (in this role).
    #[error("tensor '{name}' has type {ggml_type}, which is not supported {role}")]
    UnsupportedType {
        /// The tensor name.
        name: String,
        /// The ggml type name.
        ggml_type: String,
        /// Where it was used, e.g. "as a matmul weight".
        role: &'static str,
    },
    /// A hyperparameter is missing, inconsistent or out of range.
    #[error("bad hyperparameter {key}: {what}")]
    BadHyperparameter {
        /// The metadata key (or derived quantity).
        key: String,
        /// What is wrong.
        what: String,
    },
    /// A token id is not below the vocabulary size.
    #[error("token id {token} at index {index} is out of range (n_vocab = {n_vocab})")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// Its index in the input.
        index: usize,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// The tokens would run past the KV cache.
    #[error(
        "positions {start_pos}..{end} run past the context of {context_len} tokens \
         (ask for a larger context_len)"
    )]
    ContextOverflow {
        /// First position asked for.
        start_pos: usize,
        /// One past the last position asked for.
        end: usize,
        /// KV cache capacity.
        context_len: usize,
    },
    /// `start_pos` is past the positions already in the KV cache.
    #[error("start position {start_pos} leaves a gap: the KV cache holds {n_past} positions")]
    PositionGap {
        /// First position asked for.
        start_pos: usize,
        /// Positions in the cache.
        n_past: usize,
    },
    /// `start_pos` goes back further than the sliding-window layers' ring caches remember.
    #[error(
        "cannot restart at position {start_pos}: the sliding-window layers' caches hold only the \
         last {max_rewind} of the {n_past} positions' windows; start again from position 0"
    )]
    RewindTooFar {
        /// First position asked for.
        start_pos: usize,
        /// Positions in the cache.
        n_past: usize,
        /// How far back a restart may go.
        max_rewind: usize,
    },
    /// `step` was called with no tokens.
    #[error("step called with no tokens")]
    EmptyInput,
    /// The KV cache asked for does not fit in the memory this process has left.
    #[error(
        "a KV cache of {context_len} positions needs {} but only {} of memory is available; \
         ask for a smaller context",
        lmrun_loader::fmt_bytes(*bytes),
        lmrun_loader::fmt_bytes(*available)
    )]
    KvCacheTooLarge {
        /// Positions asked for.
        context_len: usize,
        /// Bytes the cache would take.
        bytes: u64,
        /// Bytes of memory available (MemAvailable or the cgroup's limit, the tighter).
        available: u64,
    },
    /// A `step` was cancelled through the model's cancel flag (a stop request); the positions
    /// finished before it are in the KV cache ([`crate::Model::n_past`]).
    #[error("cancelled")]
    Cancelled,
    /// Invalid options (e.g. a zero context length).
    #[error("invalid model options: {0}")]
    BadOptions(String),
    /// An error reading the GGUF file's metadata or tensors.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// An error from a kernel (length or type mismatch; indicates a bug or a bad file).
    #[error("kernel error: {0}")]
    Kernel(#[from] KernelError),
}
