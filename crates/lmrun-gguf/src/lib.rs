//! The GGUF container: header, typed metadata, tensor infos and zero-copy tensor views over
//! [`lmrun_loader::Buffer`]s from any load mode.
//!
//! GGUF is what llama.cpp users have on disk. This crate loads the whole file once with the
//! chosen [`LoadMode`] and parses the header in place: tensor views, and the big metadata
//! arrays (a vocabulary's strings, scores and token types), are views of that one buffer, so in
//! the mmap modes neither weights nor vocabulary become anonymous memory. Every count, length,
//! type id and offset in the file is checked; a malformed file is a [`GgufError`] naming the
//! offset, never a panic.
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
pub use file::{GgufFile, OwnedTensor, TensorView};
pub use lmrun_loader::LoadMode;
pub use parse::{
    parse_header, parse_header_in, parse_header_prefix, GgufHeader, Limits, Metadata, TensorInfo,
    DEFAULT_ALIGNMENT, MAX_DIMS,
};
pub use summary::{
    inspect, render_text, MetaRow, Summary, SummaryValue, TensorRow, TokenizerSummary, TypeBytes,
    MAX_ARRAY_SHOWN,
};
pub use types::GgmlType;
pub use value::{
    FromMeta, LeArray, LeNum, MetaArray, MetaValue, Mismatch, StrArray, StrArrayFull, StrIter,
    ValueType, MARK_STRIDE,
};
