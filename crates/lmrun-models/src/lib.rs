//! Transformer decoders (llama, qwen2, qwen3, gemma2, gemma3, phi3, smollm3, granite, mistral3)
//! assembled from GGUF metadata, computing with
//! `lmrun-kernels` on weights that stay where the loader put them.
//!
//! ```no_run
//! use lmrun_gguf::{GgufFile, LoadMode};
//! use lmrun_models::{Model, ModelOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gguf = GgufFile::open("model.gguf".as_ref(), LoadMode::Mmap)?;
//! let mut model = Model::from_gguf(&gguf, &ModelOptions { context_len: 1024, ..Default::default() })?;
//! let logits = model.step(&[1, 2, 3], 0, false)?; // prefill: logits of the last position
//! let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32);
//! let _ = model.step(&[next.unwrap()], 3, false)?; // one decode step
//! # Ok(()) }
//! ```
//!
//! An architecture is an [`ArchSpec`] (which optional pieces a block has) plus the GGUF tensor
//! names in [`arch::names`]; the forward pass in [`Model::step`] is written once.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arch;
mod attention;
mod blocks;
mod config;
mod error;
mod kv;
mod model;
mod weights;

pub use arch::{ArchSpec, FfnAct, Need, SwaLayout};
pub use config::{ModelConfig, RopeConfig};
pub use error::ModelError;
pub use kv::{KvCache, KvDtype};
pub use model::{Model, ModelOptions, SeqChunk, UBATCH};
pub use weights::{LayerWeights, ModelWeights, Weight};
