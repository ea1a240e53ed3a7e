//! The one error type of the crate: every length, shape and type mismatch a caller can make is
//! reported as a value (never a panic), with the numbers that did not fit.

use crate::QType;

/// Errors returned by the kernels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A buffer has the wrong length.
    #[error("{what}: expected {expected} elements/bytes, got {got}")]
    Length {
        /// Which argument.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The column count is not a multiple of the type's block size (or a size overflows).
    #[error("{qtype}: {cols} columns is not a multiple of the block size {block}")]
    BadShape {
        /// Weight type.
        qtype: QType,
        /// Column count asked for.
        cols: usize,
        /// Block size of the type.
        block: usize,
    },
    /// A size computation overflowed `usize`.
    #[error("size overflow: {0}")]
    Overflow(&'static str),
    /// An index is out of range.
    #[error("{what}: index {index} out of range (len {len})")]
    OutOfRange {
        /// Which index.
        what: &'static str,
        /// The index.
        index: usize,
        /// The bound.
        len: usize,
    },
    /// The type cannot be used this way (e.g. Q8_K as a weight in matmul).
    #[error("{qtype} is not supported for {op}")]
    Unsupported {
        /// The type.
        qtype: QType,
        /// The operation.
        op: &'static str,
    },
    /// An invalid argument (e.g. zero threads).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The thread pool could not start a worker.
    #[error("could not spawn worker thread: {0}")]
    Spawn(String),
}
