//! The GGUF container: header, typed metadata, tensor infos and zero-copy tensor views over
//! [`lmrun_loader::Buffer`]s from any load mode.
//!
//! GGUF is what llama.cpp users have on disk. This crate reads it the way ExecuTorch reads a
//! `.pte`'s segments: one small load for the header, metadata and tensor infos (grown until the
//! parse no longer runs out of bytes), then one load of the whole tensor data section with the
//! chosen [`LoadMode`], so `mlock` covers exactly the weights and tensor views point into that
//! one buffer. Every count, length, type id and offset in the file is checked; a malformed file
//! is a [`GgufError`] naming the offset, never a panic.
//!
//! ```no_run
//! use lmrun_gguf::GgufFile;
//! use lmrun_loader::LoadMode;
//! # fn main() -> Result<(), lmrun_gguf::GgufError> {
//! let gguf = GgufFile::open("model.gguf".as_ref(), LoadMode::MmapUseMlockIgnoreErrors)?;
//! let layers = gguf.get_u32(&gguf.arch_key("block_count")?)?;
//! let wq = gguf.tensor("blk.0.attn_q.weight")?;
//! println!("{layers} layers; {} is {} {:?}, {} bytes", wq.name, wq.ggml_type, wq.shape, wq.bytes.len());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod file;
mod parse;
mod summary;
mod types;
mod value;

pub use error::{GgufError, Result};
pub use file::{GgufFile, OwnedTensor, TensorView, INITIAL_HEADER_LOAD};
pub use lmrun_loader::LoadMode;
pub use parse::{
    parse_header, parse_header_prefix, GgufHeader, Limits, Metadata, TensorInfo, DEFAULT_ALIGNMENT,
    MAX_DIMS,
};
pub use summary::{
    inspect, render_text, MetaRow, Summary, SummaryValue, TensorRow, TokenizerSummary, TypeBytes,
    MAX_ARRAY_SHOWN,
};
pub use types::GgmlType;
pub use value::{FromMeta, MetaArray, MetaValue, Mismatch, StrArray, StrArrayFull, ValueType};
