//! The text LLM runner — ExecuTorch's `create_text_llm_runner` → `TextLLMRunner`, rebuilt over
//! lmrun's backends: `GenerationConfig`, the persistent `Sampler`, `Stats` with the
//! `PyTorchObserver` line, metadata helpers, and backend selection by file magic. The default
//! load mode lives here, in [`DEFAULT_LOAD_MODE`], and nowhere else.
#![forbid(unsafe_code)]

pub mod backend;
pub mod bench;
pub mod chat;
mod config;
pub mod decoder;
mod error;
mod metadata;
mod runner;
pub mod sampler;
mod stats;
pub mod stop;
pub mod tools;
/// GBNF grammars and JSON schemas for `GenerationConfig::grammar`.
pub use lmrun_grammar as grammar;
/// The KV cache element type (`RunnerOptions::kv_dtype`).
pub use lmrun_models::KvDtype;

pub use config::{ContextOverflow, GenerationConfig, RunnerOptions};
pub use decoder::{DecoderMemory, TextDecoder};
pub use error::RunnerError;
pub use lmrun_loader::{LoadMode, LoadReport, MlockOutcome};
pub use lmrun_models::ModelError;
pub use metadata::{get_eos_ids, get_llm_metadata};
pub use runner::{
    create_text_llm_runner, create_text_llm_runner_with, grammar_vocab, Generation, StopHandle,
    StopReason, TextLLMRunner,
};
pub use sampler::Sampler;
pub use stats::Stats;

/// The load mode the runner uses when the caller does not choose one (ExecuTorch PR #17613):
/// map the model, try to pin it with `mlock`, and carry on unpinned if pinning fails.
pub const DEFAULT_LOAD_MODE: LoadMode = LoadMode::MmapUseMlockIgnoreErrors;

/// Load a tokenizer file (or a directory holding `tokenizer.json`), detecting its format in
/// ExecuTorch's order.
pub fn load_tokenizer(
    path: &std::path::Path,
) -> Result<Box<dyn lmrun_tokenizers::Tokenizer>, RunnerError> {
    Ok(lmrun_tokenizers::load_tokenizer(path)?)
}

/// The default compute thread count: the number of physical cores.
pub fn default_threads() -> usize {
    lmrun_kernels::ThreadPool::default_threads()
}
