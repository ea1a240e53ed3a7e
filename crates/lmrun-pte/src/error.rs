//! The one error type of the crate. Every variant carries enough context (file, offset, method,
//! operator or delegate name) for the CLI to print one clear line; hostile input always ends in
//! one of these, never a panic.

use std::path::PathBuf;

use crate::fb::FbError;

/// Everything that can go wrong loading or running an ExecuTorch program.
#[derive(Debug, thiserror::Error)]
pub enum PteError {
    /// The loader failed (missing file, I/O, out of range, mlock failure...).
    #[error(transparent)]
    Load(#[from] lmrun_loader::LoadError),

    /// The file is not a valid `.pte` (bad identifier, header, or flatbuffer).
    #[error("{path}: invalid program: {what}")]
    InvalidProgram {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },

    /// The flatbuffer in a file could not be decoded.
    #[error("{path}: corrupt flatbuffer: {source}")]
    Flatbuffer {
        /// The file.
        path: PathBuf,
        /// The decoding error (with offset).
        source: FbError,
    },

    /// A `.ptd` data file is invalid.
    #[error("{path}: invalid external data file: {what}")]
    InvalidExternalData {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },

    /// A tensor or delegate needs named data that no loaded data file provides.
    #[error("method '{method}': external data missing: key '{key}' is not in the program or any .ptd data file (pass the .ptd with the weights)")]
    ExternalDataMissing {
        /// The method being loaded.
        method: String,
        /// The missing key.
        key: String,
    },

    /// No method of that name.
    #[error("no method named '{0}' in the program")]
    MethodNotFound(String),

    /// The method uses an operator lmrun has no kernel for (ExecuTorch's `OperatorMissing`).
    #[error("method '{method}': operator missing: no kernel for '{operator}'")]
    OperatorMissing {
        /// The method being loaded.
        method: String,
        /// `name.overload` of the operator.
        operator: String,
    },

    /// A delegate lmrun cannot run (unknown backend id, or an unsupported node inside it).
    #[error("method '{method}': delegate {index} ({backend}): {what}")]
    Delegate {
        /// The method being loaded or run.
        method: String,
        /// Index in the plan's delegate table.
        index: usize,
        /// Backend id (e.g. `XnnpackBackend`).
        backend: String,
        /// What is wrong.
        what: String,
    },

    /// The method's values or instructions are inconsistent.
    #[error("method '{method}': invalid program: {what}")]
    InvalidMethod {
        /// The method.
        method: String,
        /// What is wrong.
        what: String,
    },

    /// A kernel rejected its arguments while executing.
    #[error("method '{method}': instruction {instruction} ({operator}): {what}")]
    Kernel {
        /// The method.
        method: String,
        /// Index of the instruction in chain 0.
        instruction: usize,
        /// The operator (or delegate) being run.
        operator: String,
        /// What went wrong.
        what: String,
    },

    /// The caller passed bad inputs.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
